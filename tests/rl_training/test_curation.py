"""Curation steps on real exported rows: correctness through the real rule rewards, the
reward-model filter with a real (tiny, random) sequence-classification model, difficulty by a
judge (scripted, and the real embedded SmolLM2) with the pass-rate fallback, and the mix."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from planner.chat import ChatError
from rl_training.data.difficulty import (
    DifficultyJudge,
    classify,
    from_pass_rate,
    parse_difficulty,
)
from rl_training.data.export import cmexam_rows, mcq_rows
from rl_training.data.filters import correctness_filter, reward_model_filter
from rl_training.data.mix import MixConfig, weighted_sample
from tests.conftest import build_tiny_model, shared_path
from tests.scripted_chat import ScriptedChat


def _answered(row: dict[str, Any], letter: str) -> dict[str, Any]:
    msgs = [
        *row["prompt"],
        {"role": "assistant", "content": f"<think>…</think>\\boxed{{{letter}}}"},
    ]
    return {**row, "messages": msgs}


@pytest.fixture(scope="module")
def medqa() -> list[dict[str, Any]]:
    rows = itertools.islice(mcq_rows(shared_path("mirage_medqa_medmcqa_mmlu.json")), 60)
    return list(rows)


def test_correctness_filter_uses_the_rule_rewards(medqa: list[dict[str, Any]]) -> None:
    right = [_answered(r, r["reward_model"]["ground_truth"]) for r in medqa[:30]]
    wrong = [
        _answered(r, "A" if r["reward_model"]["ground_truth"] != "A" else "B") for r in medqa[30:]
    ]
    free = {"messages": [{"role": "user", "content": "Tell me about sleep."}]}
    kept, rep = correctness_filter([*right, *wrong, free])
    assert kept == [*right, free]
    assert rep.dropped == {"wrong": 30} and rep.passed == 1 and rep.kept == 31
    unknown = {**right[0], "data_source": "evidex/astrology"}
    kept, rep = correctness_filter([unknown])
    assert not kept and "astrology" in next(iter(rep.dropped))


def test_reward_model_filter_with_a_real_model(tmp_path: Path, medqa: list[dict[str, Any]]) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from rl_training.data.reward_model import HFRewardModel

    path = build_tiny_model(
        tmp_path / "rm", BertForSequenceClassification, BertConfig, num_labels=1
    )
    rm = HFRewardModel(path, batch_size=3)
    records = [
        {"messages": [*r["prompt"], {"role": "assistant", "content": f"answer {i}"}]}
        for i, r in enumerate(medqa[:7])
    ]
    scores = rm(records)
    # The same scores as running the model by hand, one record at a time.
    model = BertForSequenceClassification.from_pretrained(str(path)).eval()
    for rec, score in zip(records[:2], scores[:2], strict=True):
        text = "\n".join(f"{m['role']}: {m['content']}" for m in rec["messages"])
        enc = rm.tokenizer(text, return_tensors="pt", truncation=True, max_length=4096)
        with torch.no_grad():
            assert model(**enc).logits[0, 0].item() == pytest.approx(score, abs=1e-4)
    kept, rep = reward_model_filter(records, rm, top_fraction=3 / 7)
    best = sorted(range(7), key=lambda i: -scores[i])[:3]
    assert kept == [records[i] for i in sorted(best)] and rep.dropped == {
        "below the top fraction": 4
    }
    cut = sorted(scores)[3]
    kept, _ = reward_model_filter(records, rm, threshold=cut)
    assert len(kept) == 4
    verified = _answered(medqa[0], "A")
    kept, rep = reward_model_filter([verified, *records[:2]], rm, threshold=1e9)
    assert kept == [verified] and rep.passed == 1
    with pytest.raises(ValueError, match="exactly one"):
        reward_model_filter(records, rm)
    with pytest.raises(ValueError, match="not a Hugging Face checkpoint"):
        HFRewardModel(tmp_path)


def test_difficulty_judge_and_pass_rate_fallback(medqa: list[dict[str, Any]]) -> None:
    recs = [{**r, "id": f"q{i}"} for i, r in enumerate(medqa[:4])]
    chat = ScriptedChat(
        '{"difficulty": "advanced"}', "I think basic.", "no idea", ChatError("endpoint down")
    )
    out, rep = classify(recs, DifficultyJudge(chat), pass_rates={"q2": 0.5})
    assert [(r["id"], r["difficulty"], r["difficulty_source"]) for r in out] == [
        ("q0", "advanced", "judge"),
        ("q1", "basic", "judge"),
        ("q2", "intermediate", "pass-rate"),
    ]
    assert rep.dropped == {"unclassified": 1}
    assert "advanced: long multi-step" in chat.sent[0][0].content
    assert medqa[0]["prompt"][-1]["content"] in chat.sent[0][1].content
    out, _ = classify(recs, None, pass_rates={"q0": 1.0, "q1": 0.1})
    assert [r["difficulty"] for r in out] == ["basic", "advanced"]
    with pytest.raises(ValueError):
        from_pass_rate(1.5)


def test_difficulty_with_the_real_embedded_model(medqa: list[dict[str, Any]]) -> None:
    from answer.llm import load_chat
    from retrieval.settings import LLMSettings

    chat = load_chat(LLMSettings(max_tokens=32))
    replies: list[str] = []

    class Recorder:  # the real model, its replies kept to recompute the grades
        name = chat.name

        def complete(self, *args: Any, **kwargs: Any) -> Any:
            result = chat.complete(*args, **kwargs)
            replies.append(result.text)
            return result

    judge = DifficultyJudge(Recorder())  # type: ignore[arg-type]
    recs = [{**r, "id": str(i)} for i, r in enumerate(medqa[:3])]
    rates = {"0": 1.0, "1": 0.5, "2": 0.0}  # a different fallback grade per record
    out, rep = classify(recs, judge, pass_rates=rates)
    assert len(out) == 3 and rep.kept == 3 and len(replies) == 3
    for r, reply in zip(out, replies, strict=True):
        graded = parse_difficulty(reply)
        expected = graded or from_pass_rate(rates[r["id"]])
        assert (r["difficulty"], r["difficulty_source"]) == (
            expected,
            "judge" if graded else "pass-rate",
        ), reply


def _general(n: int, lang: str) -> list[dict[str, Any]]:
    text = "介绍一下睡眠的作用" if lang == "zh" else "Explain what sleep does"
    levels = ["basic", "intermediate", "advanced"]
    return [
        {
            "messages": [{"role": "user", "content": f"{text} {i}"}],
            "difficulty": levels[i % 3],
            "id": f"{lang}{i}",
        }
        for i in range(n)
    ]


def test_weighted_sample_balances_categories_languages_and_difficulty(
    medqa: list[dict[str, Any]],
) -> None:
    zh = list(itertools.islice(cmexam_rows(shared_path("zh", "cmexam_dev.jsonl")), 20))
    pool = [*medqa, *zh, *_general(600, "en"), *_general(600, "zh")]
    cfg = MixConfig(total=200, category_shares={"general": 0.7, "medical": 0.3}, seed=1)
    out, rep = weighted_sample(pool, cfg)
    assert len(out) == 200
    by_cat = rep.by(0)
    assert by_cat == {"general": 140, "medical": 60}
    en = sum(n for (c, lg, _), n in rep.counts.items() if (c, lg) == ("general", "en"))
    assert en == 70  # general split equally over en and zh
    # medical: 20 Chinese items for a quota of 30, so the English side takes 30 + 10 spare
    med = [(lg, n) for (c, lg, _), n in rep.counts.items() if c == "medical"]
    assert sum(n for lg, n in med if lg == "zh") == 20 and sum(n for _, n in med) == 60
    assert not rep.shortfall
    diff = rep.by(2)
    assert diff["advanced"] > diff["intermediate"] > diff["basic"]  # weights 3:2:1, equal pools
    again, _ = weighted_sample(pool, cfg)
    assert [r.get("id") for r in again] == [r.get("id") for r in out]  # seeded
    small, rep = weighted_sample(zh[:5], MixConfig(total=10, category_shares={"medical": 1.0}))
    assert len(small) == 5 and rep.shortfall == {("medical", "*"): 5}
    with pytest.raises(ValueError, match="sum to 1"):
        MixConfig(category_shares={"general": 0.5})


def test_curate_command_reports_each_step(tmp_path: Path, medqa: list[dict[str, Any]]) -> None:
    import json

    from typer.testing import CliRunner

    from ui.cli import app

    right = [_answered(r, r["reward_model"]["ground_truth"]) for r in medqa[:5]]
    wrong = [
        _answered(r, "E" if r["reward_model"]["ground_truth"] != "E" else "A") for r in medqa[5:8]
    ]
    loop = {
        **right[0],
        "messages": [
            *right[0]["prompt"],
            {"role": "assistant", "content": "<think>" + "go on " * 200 + "</think>\\boxed{A}"},
        ],
    }
    unformatted = {
        **right[1],
        "messages": [*right[1]["prompt"], {"role": "assistant", "content": "B"}],
    }
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [*right, *wrong, loop, unformatted]))
    out = tmp_path / "kept.jsonl"
    res = CliRunner().invoke(app, ["train", "curate", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "format: kept 9; dropped no well-formed think block 1" in res.stderr
    assert "dropped repetitive 1" in res.stderr and "dropped wrong 3" in res.stderr
    assert [json.loads(x) for x in out.read_text().splitlines()] == right
    src.write_text("{not json\n")
    bad = CliRunner().invoke(app, ["train", "curate", str(src), "--out", str(out)])
    assert bad.exit_code == 1 and "in.jsonl:1: not JSON" in bad.stderr


def test_curation_config_refuses_conflicting_scorers_and_bad_thresholds() -> None:
    from retrieval.errors import UsageError
    from rl_training.data.curate import CurationConfig

    with pytest.raises(UsageError, match="not both"):
        CurationConfig(reward_model=Path("rm"), vrm_url="http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match=r"within \[0, 1\], got 1.5"):
        CurationConfig(repetition_threshold=1.5)
