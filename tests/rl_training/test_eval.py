"""The evaluation harness: scripted models that are always right (100%) and always wrong (0%)
on every benchmark prove the metric code; resume and retry; RAG over a real index; and the
embedded model end to end through the CLI (low score, right pipeline)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from planner.chat import ChatError, ChatMessage
from retrieval.errors import InputError
from rl_training.eval import benchmarks, harness
from rl_training.eval.harness import EvalConfig
from rl_training.rewards import compute_score
from tests.answer_fixture import AnswerIndex
from tests.conftest import SHARED
from tests.scripted_chat import ScriptedChat
from ui.cli import app

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found: {SHARED}")


def _wrong(row: dict[str, Any]) -> str:
    truth = str(row["reward_model"]["ground_truth"])
    task = row["data_source"].split("/")[-1]
    if task == "pubmedqa":
        return "no" if truth != "no" else "yes"
    if task == "medcalc":
        info = row["extra_info"]
        if info["output_type"] == "date":
            return "01/01/1900"
        return "(99 weeks, 9 days)" if "week" in truth else "-99999"
    return next(c for c in "ABCDE" if c not in truth)


def _oracle(rows: Sequence[dict[str, Any]], right: bool) -> ScriptedChat:
    by_prompt = {r["prompt"][-1]["content"]: r for r in rows}

    def reply(msgs: Sequence[ChatMessage]) -> str:
        text = msgs[-1].content  # with --rag the retrieved documents come first
        row = by_prompt.get(text) or next(r for p, r in by_prompt.items() if text.endswith(p))
        ans = row["reward_model"]["ground_truth"] if right else _wrong(row)
        return f"<think>working</think>The answer is \\boxed{{{ans}}}"

    return ScriptedChat(reply)


@pytest.mark.parametrize("bench", [b for b in benchmarks.BENCHMARKS if b != "math"])
def test_right_and_wrong_models_score_100_and_0(bench: str, tmp_path: Path) -> None:
    rows = benchmarks.load(bench)
    step = max(1, len(rows) // 40)
    rows = rows[::step][:40]  # a spread of items (MedCalc: many calculators and output types)
    for right, expected in ((True, 1.0), (False, 0.0)):
        cfg = EvalConfig(bench, f"oracle-{right}", concurrency=3)
        s = harness.run(rows, _oracle(rows, right), cfg, tmp_path)
        assert (s.items, s.accuracy, s.mean_score, s.errors) == (len(rows), expected, expected, 0)
        lines = harness.results_path(tmp_path, cfg).read_text().splitlines()
        rec = json.loads(lines[0])
        assert {"id", "prompt", "response", "extracted", "correct", "score"} <= set(rec)
        assert rec["prompt"][-1]["role"] == "user"


def test_multi_answer_items_score_pooled_micro_f1(tmp_path: Path) -> None:
    rows = [r for r in benchmarks.load("cmexam") if len(r["reward_model"]["ground_truth"]) == 2][:5]
    assert len(rows) == 5, "cmexam has multi-answer items"

    def answer(m: Sequence[ChatMessage]) -> str:
        row = _row_of(rows, m)
        gold = row["reward_model"]["ground_truth"]
        if row is rows[0]:  # one of two right: TP 1, FN 1
            return "\\boxed{" + gold[0] + "}"
        extra = next(c for c in "ABCDE" if c not in gold)  # both right and one wrong: TP 2, FP 1
        return "\\boxed{" + gold + extra + "}"

    s = harness.run(rows, ScriptedChat(answer), EvalConfig("cmexam", "mixed"), tmp_path)
    assert s.accuracy == 0.0
    # per item: F1 2/3 once and 0.8 four times; pooled: TP 9, FP 4, FN 1
    assert s.mean_score == pytest.approx((2 / 3 + 4 * 0.8) / 5)
    assert s.micro_f1 == pytest.approx(2 * 9 / (2 * 9 + 4 + 1))


def _row_of(rows: Sequence[dict[str, Any]], msgs: Sequence[ChatMessage]) -> dict[str, Any]:
    return next(r for r in rows if r["prompt"][-1]["content"] == msgs[-1].content)


def test_resume_and_retry(tmp_path: Path) -> None:
    rows = benchmarks.load("medqa")[:12]
    cfg = EvalConfig("medqa", "flaky", concurrency=2)
    calls: list[str] = []

    def flaky(msgs: Sequence[ChatMessage]) -> str:
        row = _row_of(rows, msgs)
        calls.append(row["id"])
        if row["id"] in ("medqa:3", "medqa:7"):
            raise ChatError("endpoint down")
        return f"\\boxed{{{row['reward_model']['ground_truth']}}}"

    first = harness.run(rows[:10], ScriptedChat(flaky), cfg, tmp_path)
    assert (first.items, first.total, first.errors) == (8, 10, 2)
    calls.clear()

    def healthy(msgs: Sequence[ChatMessage]) -> str:
        calls.append(_row_of(rows, msgs)["id"])
        return f"\\boxed{{{_row_of(rows, msgs)['reward_model']['ground_truth']}}}"

    again = harness.run(rows, ScriptedChat(healthy), cfg, tmp_path)
    assert sorted(calls) == ["medqa:10", "medqa:11", "medqa:3", "medqa:7"]  # only what is left
    assert (again.items, again.accuracy, again.errors) == (12, 1.0, 0)
    ids = [
        json.loads(x)["id"] for x in harness.results_path(tmp_path, cfg).read_text().splitlines()
    ]
    assert len(ids) == len(set(ids)) == 12  # never scored twice


def test_rag_puts_retrieved_passages_in_the_prompt(
    answer_index: AnswerIndex, tmp_path: Path
) -> None:
    from retrieval.search import Searcher

    rows = [r for r in benchmarks.load("pubmedqa") if r["extra_info"]["pmid"] == answer_index.pmid]
    assert rows and "Context" not in rows[0]["prompt"][-1]["content"]  # PubMedQA*: no context
    chat = _oracle(rows, True)
    with Searcher(answer_index.settings()) as searcher:
        s = harness.run(
            rows, chat, EvalConfig("pubmedqa", "oracle", rag=True, k=3), tmp_path, searcher
        )
    assert s.accuracy == 1.0
    prompt = chat.sent[0][-1].content
    assert (
        prompt.startswith("Relevant documents:\n[1] PMID") and f"PMID {answer_index.pmid}" in prompt
    )
    assert "\n\n[2] " in prompt and "\n\n[3] " in prompt and "\n\n[4] " not in prompt  # k=3
    with pytest.raises(ValueError, match="searcher"):
        harness.run(rows, chat, EvalConfig("pubmedqa", "x", rag=True), tmp_path)
    # through the answer pipeline: the plan's gathered evidence, relevant passages only
    from rl_training.eval.rag import AssistantSearch

    chat = _oracle(rows, True)
    search = AssistantSearch(answer_index.settings())
    try:
        cfg = EvalConfig("pubmedqa", "oracle", rag=True, k=3, rag_mode="assistant")
        s = harness.run(rows, chat, cfg, tmp_path, search)
        found = search.search(rows[0]["prompt"][-1]["content"], 3)
    finally:
        search.close()
    assert s.accuracy == 1.0 and s.rag_mode == "assistant" and "(assistant)" in s.label
    assert harness.results_path(tmp_path, cfg).name == "pubmedqa-oracle-rag-assistant.jsonl"
    assert f"PMID {answer_index.pmid}" in chat.sent[0][-1].content
    assert 1 <= len(found) <= 3 and found[0].pmid == answer_index.pmid


def test_cli_with_the_embedded_model(tmp_path: Path, answer_index: AnswerIndex) -> None:
    out = tmp_path / "runs"
    runner = CliRunner()
    base = ["eval", "qa", "--model", "embedded", "--max-tokens", "48", "--out", str(out)]
    res = runner.invoke(app, [*base, "--benchmark", "medqa", "--limit", "2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            *base,
            "--benchmark",
            "pubmedqa",
            "--limit",
            "2",
            "--rag",
            "--store",
            str(answer_index.store),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["items"] == 2 and summary["rag"] is True
    lines = (out / "pubmedqa-embedded-rag.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "Relevant documents" in json.loads(lines[0])["prompt"][-1]["content"]
    recs = [json.loads(x) for x in lines]  # the summary is the results file's, recomputed
    assert summary["correct"] == sum(r["correct"] for r in recs)
    assert summary["accuracy"] == sum(r["correct"] for r in recs) / 2
    for r in recs:  # each stored verdict is the reward code's on the stored response
        assert r["correct"] == compute_score("pubmedqa", r["response"], r["ground_truth"])["acc"]
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(harness.load_summaries(out)) == 2
    bad = runner.invoke(app, [*base, "--benchmark", "astro"])
    assert bad.exit_code == 1 and "unknown benchmark" in bad.stderr
    bad = runner.invoke(app, ["eval", "qa", "--benchmark", "medqa", "--model", str(tmp_path)])
    assert bad.exit_code == 1 and "is not 'embedded'" in bad.stderr
    hf = tmp_path / "ckpt"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    bad = runner.invoke(app, ["eval", "qa", "--benchmark", "medqa", "--model", str(hf)])
    assert bad.exit_code == 1 and "needs vLLM" in bad.stderr


def test_pubmedqa_with_context_and_compare(tmp_path: Path) -> None:
    ctx = benchmarks.load("pubmedqa_context")[:6]
    bare = benchmarks.load("pubmedqa")[:6]
    # the report's setting carries the abstract; MIRAGE's PubMedQA* the question alone
    assert all(len(c["prompt"][-1]["content"]) > len(b["prompt"][-1]["content"]) + 200
               for c, b in zip(ctx, bare, strict=True))  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    harness.run(ctx, _oracle(ctx, True), EvalConfig("pubmedqa_context", "model-a"), a)
    harness.run(ctx, _oracle(ctx, False), EvalConfig("pubmedqa_context", "model-b"), b)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "qa", "--compare", str(a), "--compare", str(b), "--json"])
    assert res.exit_code == 0, res.output
    (diff,) = json.loads(res.stdout)
    assert (diff["benchmark"], diff["accuracy_a"], diff["accuracy_b"], diff["delta"]) == (
        "pubmedqa_context", 1.0, 0.0, -1.0)  # fmt: skip
    res = runner.invoke(app, ["eval", "qa", "--compare", str(a), "--compare", str(b)])
    assert res.exit_code == 0 and "-100.0 pts" in res.stdout
    res = runner.invoke(app, ["eval", "qa", "--compare", str(a)])
    assert res.exit_code == 2 and "two runs" in res.stderr
    res = runner.invoke(app, ["eval", "qa", "--compare", str(a), "--compare",
                              str(tmp_path / "empty")])  # fmt: skip
    assert res.exit_code == 1 and "results folder" in res.stderr
    res = runner.invoke(app, ["eval", "qa", "--benchmark", "medqa"])
    assert res.exit_code == 2 and "--model" in res.stderr


MATH_ROWS = [
    {
        "problem": "What is $1/2 + 1/4$?",
        "answer": "\\frac{3}{4}",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "t/1.json",
    },
    {"problem": "Simplify $\\sqrt{8}$.", "answer": "2\\sqrt{2}", "level": 2},
    {"problem": "Solve $x^2 = 9$ for $x > 0$.", "answer": "3"},
]


def test_math_benchmark_scores_by_equivalence(tmp_path: Path) -> None:
    f = tmp_path / "math500.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in MATH_ROWS) + "\n")
    rows = benchmarks.load("math", f)
    assert rows[0]["extra_info"] == {"subject": "Prealgebra", "level": 1, "unique_id": "t/1.json"}
    equivalent = {0: "0.75", 1: "\\sqrt{8}", 2: "3.0"}  # other forms of the same answers
    wrong = {0: "\\frac{2}{3}", 1: "\\sqrt{2}", 2: "-3"}

    def reply(answers: dict[int, str]) -> ScriptedChat:
        by = {r["prompt"][-1]["content"]: i for i, r in enumerate(rows)}
        return ScriptedChat(
            lambda msgs: f"<think>w</think>\\boxed{{{answers[by[msgs[-1].content]]}}}"
        )

    s = harness.run(rows, reply(equivalent), EvalConfig("math", "eq"), tmp_path / "a")
    assert (s.items, s.accuracy) == (3, 1.0)
    s = harness.run(rows, reply(wrong), EvalConfig("math", "wrong"), tmp_path / "b")
    assert (s.items, s.accuracy) == (3, 0.0)
    with pytest.raises(InputError, match="pass --input"):
        benchmarks.load("math")
    (tmp_path / "bad.jsonl").write_text('{"problem": "x"}\n')
    with pytest.raises(InputError, match="needs 'problem' and 'answer'"):
        benchmarks.load("math", tmp_path / "bad.jsonl")


def test_cmmlu_beyond_the_medical_subjects(tmp_path: Path) -> None:
    """A full CMMLU folder (any subjects) is read whole: each subject is a category."""
    full = tmp_path / "cmmlu" / "test"
    full.mkdir(parents=True)
    medical = sorted((SHARED / "zh" / "cmmlu_medical" / "test").glob("*.csv"))
    if not medical:
        pytest.skip("shared data not found: zh/cmmlu_medical/test")
    (full / medical[0].name).write_bytes(medical[0].read_bytes())
    (full / "high_school_physics.csv").write_text(
        ",Question,A,B,C,D,Answer\n"
        "0,光在真空中的速度约为多少？,3×10^8 m/s,3×10^5 m/s,340 m/s,1 m/s,A\n",
        "utf-8",
    )
    rows = benchmarks.load("cmmlu", full)
    cats = {r["extra_info"]["category"] for r in rows}
    assert cats == {medical[0].stem, "high_school_physics"}
    physics = next(r for r in rows if r["extra_info"]["category"] == "high_school_physics")
    assert physics["reward_model"]["ground_truth"] == "A"
