"""End to end with the real embedded model (SmolLM2-135M through llama.cpp): whatever the
tiny model writes (answer.mode = "synthesize"), the answer is cited and verified, or it
abstains; never a crash. By default ("auto") the embedded model is not asked to synthesize:
the answer is an evidence digest (tests/answer/test_digest.py)."""

from __future__ import annotations

from answer import REVIEW_NOTICE, Answer, Assistant
from tests.answer_fixture import INJECTION, AnswerIndex


def _check(ans: Answer) -> None:
    assert ans.notice == REVIEW_NOTICE
    assert ans.models["chat"].startswith("SmolLM2")
    assert ans.abstained or ans.citations
    for c in ans.citations:
        assert 1 <= c.marker <= len(ans.references)
        assert ans.references[c.marker - 1].chunk_id == c.chunk_id
        assert f"[{c.marker}]" in ans.text
    assert ans.usage and ans.usage[-1].completion_tokens > 0


def test_ask_and_stream_with_the_embedded_model(answer_index: AnswerIndex) -> None:
    s = answer_index.settings(
        planner={"use_llm": "auto"}, llm={"threads": 2, "context_tokens": 4096},
        answer={"max_tokens": 120, "mode": "synthesize"},
    )  # fmt: skip
    with Assistant(s) as a:
        ans = a.ask(answer_index.question)
        _check(ans)
        assert ans.plan is not None and ans.plan.origin == "fallback"  # auto: tiny model
        items = list(a.stream(answer_index.question))
    final = items[-1]
    assert isinstance(final, Answer)
    _check(final)
    assert all(isinstance(t, str) for t in items[:-1])


def test_embedded_model_and_a_planted_injection(answer_index: AnswerIndex) -> None:
    s = answer_index.settings(llm={"threads": 2}, answer={"max_tokens": 120, "mode": "synthesize"})
    with Assistant(s) as a:
        ans = a.ask("Does low-dose aspirin prevent stroke after a transient ischemic attack?")
    _check(ans)
    assert "5000" not in ans.text and "maintenance mode" not in ans.text
    assert INJECTION[:30] not in ans.text
