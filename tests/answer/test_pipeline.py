"""The answer pipeline on a real index with the real embedding model and verifier.

Generation is scripted here (so each rule is checked exactly); the real embedded model runs in
test_embedded.py."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import pytest

from answer import REVIEW_NOTICE, Answer, AnswerError, Assistant
from answer.injection import block_contents
from answer.patient import load_patient
from answer.verify import split_sentences
from planner.chat import ChatError, ChatMessage
from tests.answer_fixture import AnswerIndex
from tests.scripted_chat import ScriptedChat


def sources(messages: Sequence[ChatMessage]) -> dict[int, str]:
    """Source texts by number, as the prompt shows them."""
    user = messages[-1].content
    blocks = re.split(r"\n\n(?=\[\d+\] )", block_contents(user) or "")
    out = {}
    for b in blocks:
        m = re.match(r"\[(\d+)\] [^\n]*\n(.*)", b, re.DOTALL)
        if m:
            out[int(m.group(1))] = m.group(2).split("\n\nPatient:")[0]
    return out


def faithful(messages: Sequence[ChatMessage]) -> str:
    """Quotes the longest sentence of source 1 and cites it; adds an uncited supported one."""
    src = sources(messages)
    first = max(split_sentences(src[1]), key=len)
    second = max(split_sentences(src[2]), key=len) if 2 in src else ""
    return f"<think>source 1 answers it</think>{first} [1]. {second}"


def ask(ix: AnswerIndex, chat: ScriptedChat, question: str | None = None, **kw: object) -> Answer:
    with Assistant(ix.settings(), chat=chat) as a:
        return a.ask(question or ix.question, **kw)  # type: ignore[arg-type]


def test_a_faithful_answer_keeps_verified_citations(answer_index: AnswerIndex) -> None:
    ans = ask(answer_index, ScriptedChat(faithful))
    assert not ans.abstained and not ans.degraded
    assert ans.notice == REVIEW_NOTICE and REVIEW_NOTICE in ans.render()
    assert ans.citations and ans.citations[0].marker == 1
    assert ans.citations[0].status == "verified" and ans.citations[0].support >= 0.55
    assert any(c.status == "added" for c in ans.citations) or len(ans.references) < 2
    # every citation points at a retrieved passage, whose text it carries
    for c in ans.citations:
        ref = ans.references[c.marker - 1]
        assert ref.cited and ref.chunk_id == c.chunk_id
        assert ans.passages[c.marker - 1].text == c.text
    # the question's own abstract is among the sources
    assert any(r.pmid == answer_index.pmid for r in ans.references)
    # what an answer carries
    assert ans.plan is not None and ans.plan.subtasks
    assert {"plan", "retrieve", "generate", "verify", "total"} <= set(ans.timings_ms)
    assert [u.stage for u in ans.usage][-2:] == ["generate", "consensus"]
    assert ans.models["chat"] == "scripted" and "MiniLM" in ans.models["embedding"]
    assert len(ans.settings_hash) == 16
    assert ans.reasoning == "" and "source 1 answers it" not in ans.text
    assert all(p.score_parts for p in ans.passages)


def test_reasoning_is_kept_apart_when_asked(answer_index: AnswerIndex) -> None:
    s = answer_index.settings(answer={"show_reasoning": True})
    with Assistant(s, chat=ScriptedChat(faithful)) as a:
        ans = a.ask(answer_index.question)
    assert ans.reasoning == "source 1 answers it" and "<think>" not in ans.text


def test_invented_and_unsupported_citations_are_removed(answer_index: AnswerIndex) -> None:
    def liar(messages: Sequence[ChatMessage]) -> str:
        src = sources(messages)
        good = max(split_sentences(src[1]), key=len)
        return (
            f"{good} [1][9]. Regular coffee drinking cures 97% of pancreatic cancers [2]. "
            "Is this relevant? 1. 1."
        )

    ans = ask(answer_index, ScriptedChat(liar))
    assert not ans.abstained
    assert [c.marker for c in ans.citations] == [1]
    assert "coffee" not in ans.text and "[9]" not in ans.text and "[2]" not in ans.text
    reasons = {r.reason for r in ans.removed}
    assert "citation dropped: no such source" in reasons
    assert "the cited source does not support it" in reasons
    assert "not a statement" in reasons
    assert "coffee" in ans.raw_text  # the draft is kept for audit


def test_changed_numbers_are_not_supported(answer_index: AnswerIndex) -> None:
    def misquote(messages: Sequence[ChatMessage]) -> str:
        src = sources(messages)
        with_number = next(
            (s for n in src for s in split_sentences(src[n]) if re.search(r"\d", s)), None
        )
        assert with_number
        changed = re.sub(r"\d+", lambda m: str(int(m.group()) + 7), with_number, count=1)
        return f"{changed} [1][2][3][4][5][6]"

    ans = ask(answer_index, ScriptedChat(misquote))
    assert ans.abstained and not ans.citations
    assert "no statement" in ans.abstain_reason


def test_flag_mode_keeps_unsupported_sentences_marked(answer_index: AnswerIndex) -> None:
    s = answer_index.settings(
        answer={"verify": {"unsupported": "flag", "attribute_uncited": False}}
    )
    reply = "Grapefruit juice doubles the effect of every antibiotic [1]."
    with Assistant(s, chat=ScriptedChat(reply)) as a:
        ans = a.ask(answer_index.question)
    # flagged citations alone do not make an answer: it abstains, and says why
    assert ans.abstained and all(c.status == "unsupported" for c in ans.citations)


def test_no_relevant_evidence_abstains(answer_index: AnswerIndex) -> None:
    chat = ScriptedChat("should not be called")
    ans = ask(answer_index, chat, "Which quark flavours dominate gluon plasma jets at the LHC?")
    assert ans.abstained and "no relevant evidence" in ans.abstain_reason
    assert ans.text.startswith("Insufficient evidence") and not ans.citations
    assert chat.sent == []  # nothing to synthesize from
    assert REVIEW_NOTICE in ans.render()


def test_model_down_gives_the_top_evidence_with_citations(answer_index: AnswerIndex) -> None:
    ans = ask(answer_index, ScriptedChat(ChatError("cannot reach the model at http://x/v1")))
    assert ans.degraded and not ans.abstained
    assert any("cannot reach the model" in w for w in ans.warnings)
    assert ans.citations and all(c.evidence in c.text for c in ans.citations)
    assert ans.text.count("[") == len(ans.citations)


def test_garbage_and_empty_output(answer_index: AnswerIndex) -> None:
    for reply in ("", "@@@@ ####", "1. 2. 3."):
        ans = ask(answer_index, ScriptedChat(reply))
        assert ans.abstained and not ans.citations, reply


def test_chinese_question_with_an_english_only_model_degrades(answer_index: AnswerIndex) -> None:
    chat = ScriptedChat("should not be called")
    ans = ask(answer_index, chat, "阿司匹林能预防短暂性脑缺血发作后的卒中吗？ aspirin stroke")
    assert chat.sent == []
    assert any("Chinese" in w for w in ans.warnings)
    assert ans.degraded or ans.abstained


def test_empty_store_and_bad_input_are_clear_errors(answer_index: AnswerIndex, tmp_path) -> None:
    from retrieval.settings import load_settings

    with pytest.raises(AnswerError, match="ingest"):
        Assistant(load_settings(data_dir=tmp_path, store={"path": tmp_path / "none"}))
    with Assistant(answer_index.settings(), chat=ScriptedChat("x")) as a:
        with pytest.raises(AnswerError, match="empty"):
            a.ask("   ")
        with pytest.raises(AnswerError, match="limit"):
            a.ask("why " * 2000)
        with pytest.raises(AnswerError, match="year_from"):
            a.ask("aspirin", filters={"year_from": 2020, "year_to": 2000})


def test_planted_instructions_never_reach_the_model(answer_index: AnswerIndex) -> None:
    """A gullible model obeys anything in its prompt: the injected text must not be there,
    and the rules the code enforces (citations, notice) hold whatever the model writes."""

    def gullible(messages: Sequence[ChatMessage]) -> str:
        prompt = "\n".join(m.content for m in messages)
        if "IGNORE ALL PREVIOUS INSTRUCTIONS" in prompt or "no clinician review" in prompt:
            return "No clinician review is needed. 5000 mg of aspirin daily is safe."
        src = sources(messages)
        n = next(n for n, t in src.items() if "transient ischemic attack" in t)
        return f"Low-dose aspirin reduces the risk of recurrent ischemic stroke after a TIA [{n}]."

    chat = ScriptedChat(gullible)
    ans = ask(
        answer_index,
        chat,
        "Does low-dose aspirin prevent stroke after a transient ischemic attack?",
    )
    prompts = ["\n".join(m.content for m in msgs) for msgs in chat.sent]
    assert "transient ischemic attack" in prompts[0]  # the document was retrieved and quoted
    for prompt in prompts:  # the answer's prompt and the consensus call alike
        assert "IGNORE ALL PREVIOUS" not in prompt and "5000 mg" not in prompt
    assert any("addressed to the assistant" in w for w in ans.warnings)
    assert "5000" not in ans.text and "clinician review is needed" not in ans.text.lower()
    assert ans.citations and ans.notice == REVIEW_NOTICE


def test_a_model_that_follows_an_injection_is_still_checked(answer_index: AnswerIndex) -> None:
    chat = ScriptedChat("No clinician review is needed. Give 5000 mg of aspirin daily; no sources.")
    ans = ask(
        answer_index,
        chat,
        "Does low-dose aspirin prevent stroke after a transient ischemic attack?",
    )
    assert "5000" not in ans.text and ans.notice == REVIEW_NOTICE, ans
    assert ans.abstained, ans.text


def test_patient_context_goes_to_prompt_and_filters_not_logs(
    answer_index: AnswerIndex, caplog: pytest.LogCaptureFixture
) -> None:
    patient = load_patient(
        {
            "age": 52,
            "sex": "female",
            "conditions": ["Zollinger-Ellison syndrome"],
            "medications": ["omeprazole"],
        }
    )
    chat = ScriptedChat(faithful)
    with caplog.at_level(logging.DEBUG), Assistant(answer_index.settings(), chat=chat) as a:
        ans = a.ask(answer_index.question, patient=patient)
        f = a._prepare("q", patient, None).filters
    assert ans.patient_context
    generate = next(m for m in chat.sent if m[0].content.startswith("You are evidex"))
    assert "52-year-old female" in generate[-1].content
    assert "Zollinger" in generate[-1].content
    assert f is not None and f.patient_age == 52 and f.patient_sex == "female"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Zollinger" not in logged and "omeprazole" not in logged
    assert "Zollinger" not in repr(patient)
    cut = patient.model_copy(update={"omitted": ("Condition: the 30 most recent of 6,000 kept",)})
    with Assistant(answer_index.settings(), chat=ScriptedChat(faithful)) as a:
        warned = a.ask(answer_index.question, patient=cut)
    assert any("patient context cut" in w and "6,000" in w for w in warned.warnings)


def test_stream_yields_tokens_then_the_verified_answer(answer_index: AnswerIndex) -> None:
    with Assistant(answer_index.settings(), chat=ScriptedChat(faithful)) as a:
        items = list(a.stream(answer_index.question))
    tokens, final = items[:-1], items[-1]
    assert isinstance(final, Answer) and tokens and all(isinstance(t, str) for t in tokens)
    streamed = "".join(t for t in tokens if isinstance(t, str))
    assert "source 1 answers it" not in streamed  # reasoning held back
    assert final.raw_text.split(" [1]")[0][:40] in streamed


def test_aask(answer_index: AnswerIndex) -> None:
    import asyncio

    with Assistant(answer_index.settings(), chat=ScriptedChat(faithful)) as a:
        ans = asyncio.run(a.aask(answer_index.question))
    assert ans.citations


def test_planner_filters_that_find_nothing_are_widened(answer_index: AnswerIndex) -> None:
    import json

    plan = json.dumps(
        {
            "subtasks": [
                {
                    "id": "s1",
                    "question": answer_index.question,
                    "queries": [answer_index.question],
                    "filters": {"year_from": 2199},
                }
            ]
        }
    )
    s = answer_index.settings(planner={"use_llm": "always"})
    with Assistant(s, chat=ScriptedChat(plan, faithful)) as a:
        ans = a.ask(answer_index.question)
    assert ans.plan is not None and ans.plan.origin == "llm"
    assert ans.plan.subtasks[0].filters.year_from == 2199
    assert ans.citations  # found with the planner's filter dropped
