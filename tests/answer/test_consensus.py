"""Consensus with a scripted served model that plants a contradiction between the sources,
on the real index and verifier; offline there is none, and the answer says so."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from answer import Assistant
from answer.consensus import SCHEMA, UNAVAILABLE
from answer.verify import split_sentences
from planner.chat import ChatMessage
from tests.answer.test_pipeline import sources
from tests.answer_fixture import AnswerIndex
from tests.scripted_chat import ScriptedChat


def _answer(messages: Sequence[ChatMessage]) -> str:
    """Quotes the longest sentence of sources 1 and 2, each with its citation."""
    src = sources(messages)
    return " ".join(f"{max(split_sentences(src[n]), key=len)} [{n}]" for n in (1, 2) if n in src)


def _stances(messages: Sequence[ChatMessage]) -> str:
    """Source 1 supports, every other source shown contradicts (the planted disagreement)."""
    shown = [int(n) for n in re.findall(r"^\[(\d+)\] ", messages[-1].content, re.MULTILINE)]
    return json.dumps({"stances": [{"source": n, "stance": "supports" if n == 1
                                    else "contradicts"} for n in shown]})  # fmt: skip


def test_planted_contradiction_is_tallied_and_flagged(answer_index: AnswerIndex) -> None:
    chat = ScriptedChat(_answer, _stances)
    with Assistant(answer_index.settings(), chat=chat) as a:
        ans = a.ask(answer_index.question)
    assert not ans.abstained and len({c.marker for c in ans.citations}) >= 2, ans.text
    c = ans.consensus
    assert c is not None and c.available and c.contradiction
    cited = sorted({x.marker for x in ans.citations})
    assert [s.marker for s in c.stances] == cited  # only cited sources are judged
    assert {s.stance for s in c.stances} == {"supports", "contradicts"}
    assert c.summary.startswith(f"Consensus of {len(cited)} cited sources: 1 supports")
    assert "The sources disagree: [1] supports" in c.summary
    assert any(w.startswith("the cited sources disagree") for w in ans.warnings)
    assert ans.render().startswith(c.summary)  # the answer opens with the tally
    assert [u.stage for u in ans.usage][-1] == "consensus"
    # the stance call saw the cited sources as quoted data, with the schema
    stance_msgs = chat.sent[-1]
    assert "Question: " + answer_index.question in stance_msgs[-1].content
    assert SCHEMA["required"] == ["stances"]


def test_a_bad_stance_reply_and_offline(answer_index: AnswerIndex) -> None:
    chat = ScriptedChat(_answer, "I cannot tell. [7] supports")  # number 7 was not cited
    with Assistant(answer_index.settings(), chat=chat) as a:
        ans = a.ask(answer_index.question)
    assert not ans.abstained
    assert ans.consensus is not None and not ans.consensus.available
    assert "no usable reply" in ans.consensus.note
    with Assistant(answer_index.settings()) as a:  # the embedded default: a digest
        ans = a.ask(answer_index.question)
    assert ans.digest and ans.consensus is not None and not ans.consensus.available
    assert ans.consensus.note == UNAVAILABLE and UNAVAILABLE in ans.render()
    off = answer_index.settings(answer={"consensus": False})
    with Assistant(off, chat=ScriptedChat(_answer)) as a:
        assert a.ask(answer_index.question).consensus is None
