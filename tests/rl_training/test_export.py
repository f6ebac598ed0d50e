"""Exported rows carry exactly what the reward needs: boxing each row's own ground truth
scores 1 through the real reward code, for every task, in parquet and JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rl_training.data.filters import correctness_filter, format_filter
from rl_training.rewards import compute_score
from tests.conftest import shared_path
from ui.cli import app

TASKS = {
    "medcalc": ("medcalc", "medcalc_v1.0_dev.csv"),
    "mcq": ("mirage_medqa_medmcqa_mmlu.json",),
    "pubmedqa": ("pubmedqa", "pqal_dev.json"),
    "cmexam": ("zh", "cmexam_dev.jsonl"),
    "cmmlu": ("zh", "cmmlu_medical", "test"),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_export_parquet_rows_score_their_own_answer(task: str, tmp_path: Path) -> None:
    out = tmp_path / f"{task}.parquet"
    res = CliRunner().invoke(
        app,
        [
            "train",
            "export",
            "--task",
            task,
            "--input",
            str(shared_path(*TASKS[task])),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    assert rows and {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(
        rows[0]
    )
    assert (
        rows[0]["prompt"][-1]["role"] == "user" and "\\boxed{}" in rows[0]["prompt"][-1]["content"]
    )
    for r in rows:
        gt = r["reward_model"]["ground_truth"]
        good = compute_score(
            r["data_source"], f"<think>...</think>\\boxed{{{gt}}}", gt, r["extra_info"]
        )
        assert good["score"] == 1.0, (r["data_source"], gt)
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))


def test_export_jsonl_and_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "sft.jsonl"
    res = runner.invoke(
        app,
        [
            "train",
            "export",
            "--task",
            "pubmedqa",
            "--input",
            str(shared_path("pubmedqa", "pqal_dev.json")),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0
    records = [json.loads(line) for line in out.open(encoding="utf-8")]  # not splitlines: U+2028
    first = records[0]
    assert first["data_source"] == "evidex/pubmedqa" and first["extra_info"]["pmid"]
    # SFT records: the prompt, then the long answer as reasoning and the boxed decision; they
    # pass the format and correctness filters as they are.
    assert first["messages"][-1]["role"] == "assistant"
    assert first["extra_info"]["long_answer"][:40] in first["messages"][-1]["content"]
    kept, _ = format_filter(records)
    kept, rep2 = correctness_filter(kept)
    assert len(kept) == len(records) == 500 and rep2.passed == 0
    bad = runner.invoke(
        app,
        [
            "train",
            "export",
            "--task",
            "astro",
            "--input",
            str(out),
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert bad.exit_code == 1 and "unknown task" in bad.stderr
    missing = runner.invoke(
        app,
        [
            "train",
            "export",
            "--task",
            "mcq",
            "--input",
            str(tmp_path / "nope.json"),
            "--out",
            str(out),
        ],
    )
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_cmmlu_folder_keeps_subjects_and_reports_bad_rows(tmp_path: Path) -> None:
    from rl_training.data.export import cmmlu_rows

    rows = list(cmmlu_rows(shared_path("zh", "cmmlu_medical", "test")))
    assert len(rows) == 1815
    cats = {r["extra_info"]["category"] for r in rows}
    assert {"anatomy", "traditional_chinese_medicine", "virology"} <= cats
    assert rows[0]["reward_model"]["ground_truth"] in "ABCD"
    bad = tmp_path / "bad.csv"
    bad.write_text(",Question,A,B,C,D,Answer\n0,q,a,b,c,d,E\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.csv:2: answer 'E'"):
        list(cmmlu_rows(bad))


def test_medquad_rows_are_verifier_scored_with_the_reference_answer(tmp_path: Path) -> None:
    src = shared_path("guidelines", "medquad", "medquad_answered.jsonl.gz")
    out = tmp_path / "medquad.parquet"
    res = CliRunner().invoke(app, ["train", "export", "--task", "medquad", "--input", str(src),
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    import gzip

    with gzip.open(src, "rt", encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    assert len(rows) > 16000 and rows[0]["data_source"] == "evidex/medquad"
    assert rows[0]["reward_model"] == {"style": "model", "ground_truth": first["answer"].strip()}
    assert rows[0]["prompt"][-1] == {"role": "user", "content": first["question"]}
    assert rows[0]["extra_info"]["question"] == first["question"]
    sft = tmp_path / "medquad.jsonl"
    CliRunner().invoke(app, ["train", "export", "--task", "medquad", "--input", str(src),
                             "--out", str(sft)])  # fmt: skip
    record = json.loads(sft.read_text("utf-8").split("\n", 1)[0])
    reply = record["messages"][-1]["content"]
    assert "\\boxed" not in reply and reply.endswith(first["answer"].strip()[-40:])
    assert format_filter([record])[1].dropped == {
        "empty think block": 1
    }  # distillation or think-tracing must fill the reasoning first


def test_chat_records_keep_their_history_for_the_verifier(tmp_path: Path) -> None:
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I have a cough."},
        {"role": "assistant", "content": "For how long?"},
        {"role": "user", "content": "Three weeks. What test?"},
        {"role": "assistant", "content": "A chest X-ray."},
    ]}) + "\n" + json.dumps({"messages": [{"role": "user", "content": "Q"}]}) + "\n")  # fmt: skip
    out = tmp_path / "chat.parquet"
    res = CliRunner().invoke(app, ["train", "export", "--task", "chat", "--input", str(src),
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 1 and "chat.jsonl:2: a chat record must end with" in res.stderr
    src.write_text(src.read_text().splitlines()[0] + "\n")
    res = CliRunner().invoke(app, ["train", "export", "--task", "chat", "--input", str(src),
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = pq.read_table(out).to_pylist()
    assert row["reward_model"] == {"style": "model", "ground_truth": "A chest X-ray."}
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "user"]
    history = json.loads(row["extra_info"]["history"])
    assert history == [["user", "I have a cough."], ["assistant", "For how long?"]]
    from rl_training.rewards import vrm

    item = vrm.item_of({"messages": [*row["prompt"], {"role": "assistant", "content": "x"}],
                        "reward_model": row["reward_model"]})  # fmt: skip
    prompt = vrm.render_prompt(item)
    assert "user: I have a cough.\nassistant: For how long?" in prompt  # the verifier sees it
    assert "user: Three weeks. What test?" in prompt


def test_s3_scores_rule_rows_by_rule_and_open_rows_by_the_verifier() -> None:
    from rl_training.rewards import dispatch

    assert dispatch.compute_score("evidex/medqa", "\\boxed{B}", "B")["score"] == 1.0
    with pytest.raises(ValueError, match="no judge"):  # an open row needs the verifier
        dispatch.compute_score("evidex/medquad", "Gout is arthritis.", "A form of arthritis.",
                               {"question": "What is gout?"})  # fmt: skip
    with pytest.raises(ValueError, match="no judge"):  # so does a style-model row
        dispatch.compute_score("evidex/diagnosis", "\\boxed{MG}", "MG", {}, style="model")
    assert dispatch.compute_score("evidex/diagnosis", "\\boxed{MG}", "MG", {})["score"] == 1.0
