"""The curation filters on real Chinese rows (CMExam, CMMLU): the format filter, the n-gram
repetition filter, the correctness filter and the difficulty judge read Chinese records."""

from __future__ import annotations

from collections.abc import Sequence

from planner.chat import ChatMessage
from rl_training.data.curate import CurationConfig
from rl_training.data.difficulty import DifficultyJudge, classify, question_of
from rl_training.data.export import cmexam_rows, cmmlu_rows, sft_record
from rl_training.data.filters import (
    correctness_filter,
    format_filter,
    repetition_filter,
    repetition_ratio,
    response_of,
)
from tests.conftest import shared_path
from tests.scripted_chat import ScriptedChat


def _cmexam(n: int) -> list[dict]:
    rows = []
    for row in cmexam_rows(shared_path("zh", "cmexam_dev.jsonl")):
        if len(row["extra_info"]["explanation"]) > 80:
            rows.append(sft_record(row))
        if len(rows) == n:
            break
    return rows


def _with_reply(rec: dict, reply: str) -> dict:
    return {**rec, "messages": [*rec["messages"][:-1], {"role": "assistant", "content": reply}]}


def test_real_chinese_sft_records_pass_format_and_repetition() -> None:
    recs = _cmexam(300)
    assert response_of(recs[0]).endswith("。") and "答案是" in response_of(recs[0])
    kept, rep = format_filter(recs)
    assert len(kept) == len(recs), str(rep)
    cfg = CurationConfig()
    kept, rep = repetition_filter(recs, cfg.repetition_n, cfg.repetition_threshold)
    assert len(kept) >= 0.98 * len(recs), str(rep)  # real rationales are not repetitive
    # a looping Chinese rationale is caught (character n-grams: Chinese has no spaces)
    expl = recs[0]["extra_info"]["explanation"]
    loop = _with_reply(recs[0], f"<think>{expl}{'我需要再想一想这个问题。' * 30}</think>答案是D。")
    kept, rep = repetition_filter([loop], cfg.repetition_n, cfg.repetition_threshold)
    assert not kept and rep.dropped["repetitive"] == 1
    assert repetition_ratio(expl) < 0.3 < repetition_ratio(response_of(loop))
    # broken Chinese replies are named
    broken = [
        _with_reply(recs[1], "答案是 \\boxed{B}。"),
        _with_reply(recs[2], f"<think>{expl}</think>答案是 \\boxed{{B}}。另外C也可以考虑。"),
    ]
    _, rep = format_filter(broken)
    assert rep.dropped == {"no well-formed think block": 1, "text after the final answer": 1}


def test_correctness_reads_chinese_answers_on_real_rows() -> None:
    rows = list(cmmlu_rows(shared_path("zh", "cmmlu_medical", "test")))[:40]
    assert rows and any("\u4e00" <= ch <= "\u9fff" for ch in question_of(rows[0]))
    right = [_with_reply(sft_record(r), f"<think>根据题意分析。</think>答案是 \\boxed{{"
                         f"{r['reward_model']['ground_truth']}}}。") for r in rows]  # fmt: skip
    wrong = [_with_reply(sft_record(r), "<think>根据题意分析。</think>答案是 \\boxed{"
                         + ("A" if r["reward_model"]["ground_truth"] != "A" else "B") + "}。")
             for r in rows]  # fmt: skip
    kept, rep = correctness_filter(right + wrong)
    assert len(kept) == len(rows) and rep.dropped["wrong"] == len(rows), str(rep)
    multi = [r for r in _cmexam(300) if r["extra_info"].get("multi_answer")]
    if multi:  # CMExam's multiple-answer items: every letter must be right
        truth = multi[0]["reward_model"]["ground_truth"]
        ok = _with_reply(multi[0], f"<think>分析。</think>答案是 \\boxed{{{truth}}}。")
        half = _with_reply(multi[0], f"<think>分析。</think>答案是 \\boxed{{{truth[0]}}}。")
        assert len(correctness_filter([ok, half])[0]) == 1


def test_the_difficulty_judge_grades_chinese_questions() -> None:
    recs = [{**r, "id": f"cmexam-{i}"} for i, r in enumerate(_cmexam(12))]

    def judge(messages: Sequence[ChatMessage]) -> str:
        q = messages[-1].content
        assert "Question:" in q and any("\u4e00" <= ch <= "\u9fff" for ch in q)
        return '{"difficulty": "困难"}' if len(q) % 2 else "难度：基础。"  # either, by length

    labelled, rep = classify(recs, DifficultyJudge(ScriptedChat(judge)))
    assert rep.kept == len(recs)
    levels = {r["difficulty"] for r in labelled}
    assert levels <= {"basic", "advanced"} and len(levels) == 2
    for r in labelled:
        expect = "advanced" if len(f"Question:\n{question_of(r)}") % 2 else "basic"
        assert r["difficulty"] == expect and r["difficulty_source"] == "judge"
    # an unreadable Chinese reply falls back to the pass rate, or drops the record
    rates = {str(recs[0]["id"]): 1.0}
    labelled, rep = classify(recs[:2], DifficultyJudge(ScriptedChat("这个问题很有意思")), rates)
    assert [r["difficulty_source"] for r in labelled] == ["pass-rate"]
    assert rep.dropped["unclassified"] == 1
