"""Difficulty of a training question: basic, intermediate or advanced.

An LLM judge (any :class:`planner.chat.ChatModel`: a vLLM endpoint or a local GGUF through
``answer.llm``) grades each question with the rubric below, after the WiNGPT-3.0 report's
three levels. When the judge fails or gives no usable grade, and N sampled responses were
scored, the pass rate decides instead (the fallback is deterministic).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from planner.chat import ChatError, ChatMessage, ChatModel
from retrieval.errors import InputError
from rl_training.data.filters import Record, StepReport

log = logging.getLogger(__name__)

Difficulty = Literal["basic", "intermediate", "advanced"]
LEVELS: tuple[Difficulty, ...] = ("basic", "intermediate", "advanced")

RUBRIC = """Grade how difficult the question below is to answer correctly.

- basic: recalls a single well-known fact, definition or standard value; one step of
  reasoning; a competent student answers it without deliberation.
- intermediate: combines several facts or applies a standard guideline, formula or
  procedure to the given case; a few reasoning steps; typical licensing-exam level.
- advanced: long multi-step reasoning, integration of many findings or conflicting
  evidence, rare conditions, or expert judgement beyond standard guidelines; specialists
  may disagree or need careful work.

Reply with JSON only: {"difficulty": "basic" | "intermediate" | "advanced"}."""

SCHEMA = {
    "type": "object",
    "properties": {"difficulty": {"type": "string", "enum": list(LEVELS)}},
    "required": ["difficulty"],
}


_ZH_LEVELS: dict[str, Difficulty] = {
    "基础": "basic", "简单": "basic", "容易": "basic", "初级": "basic",
    "中等": "intermediate", "中级": "intermediate",
    "高级": "advanced", "困难": "advanced", "较难": "advanced", "复杂": "advanced",
}  # fmt: skip
"""A bilingual judge's Chinese level words (the rubric is in English; a Chinese question may
still get a Chinese reply)."""


def _level(word: str) -> Difficulty | None:
    w = word.strip().strip("\"'。.").lower()
    return w if w in LEVELS else _ZH_LEVELS.get(w)


def parse_difficulty(text: str) -> Difficulty | None:
    """The grade in a judge's reply (JSON, or a bare level word, English or Chinese), or None.

    >>> parse_difficulty('{"difficulty": "Advanced"}'), parse_difficulty("basic.")
    ('advanced', 'basic')
    >>> parse_difficulty('{"difficulty": "中等"}'), parse_difficulty("难度：困难。")
    ('intermediate', 'advanced')
    >>> parse_difficulty("basic or advanced") is None, parse_difficulty("简单还是困难") is None
    (True, True)
    """
    m = re.search(r"\{.*\}", text, re.S)
    if m:
        try:
            value = _level(str(json.loads(m.group(0)).get("difficulty", "")))
        except (json.JSONDecodeError, AttributeError):
            value = None
        if value:
            return value
    found: set[Difficulty] = {lv for lv in LEVELS if re.search(rf"\b{lv}\b", text, re.I)}
    found |= {lv for word, lv in _ZH_LEVELS.items() if word in text}
    return found.pop() if len(found) == 1 else None


def from_pass_rate(
    pass_rate: float, basic_at: float = 0.8, advanced_below: float = 0.3
) -> Difficulty:
    """The level implied by the share of sampled responses that were right.

    >>> from_pass_rate(1.0), from_pass_rate(0.5), from_pass_rate(0.0)
    ('basic', 'intermediate', 'advanced')
    """
    if not 0 <= pass_rate <= 1:
        raise InputError(f"pass rate must be within [0, 1], got {pass_rate}")
    if pass_rate >= basic_at:
        return "basic"
    return "advanced" if pass_rate < advanced_below else "intermediate"


def question_of(record: Record) -> str:
    """The last user message of a chat record (``messages`` or verl's ``prompt``)."""
    for msg in reversed(list(record.get("messages") or record.get("prompt") or [])):
        if msg.get("role") == "user":
            return str(msg.get("content") or "")
    return ""


class DifficultyJudge:
    """Grades questions with a chat model and the rubric."""

    def __init__(self, chat: ChatModel, max_tokens: int = 64) -> None:
        self.chat, self.max_tokens = chat, max_tokens

    def grade(self, question: str) -> Difficulty | None:
        msgs = [
            ChatMessage(role="system", content=RUBRIC),
            ChatMessage(role="user", content=f"Question:\n{question}"),
        ]
        try:
            result = self.chat.complete(
                msgs, max_tokens=self.max_tokens, temperature=0.0, json_schema=SCHEMA
            )
        except ChatError as exc:
            log.warning("difficulty judge failed: %s", exc)
            return None
        return parse_difficulty(result.text)


def classify(
    records: Iterable[Record],
    judge: DifficultyJudge | None = None,
    pass_rates: Mapping[str, float] | None = None,
    id_key: str = "id",
) -> tuple[list[dict[str, Any]], StepReport]:
    """Label each record's ``difficulty`` (and ``difficulty_source``: judge or pass-rate).

    Records the judge cannot grade and that have no pass rate (looked up by
    ``record[id_key]``) are dropped and counted as ``unclassified``."""
    rep = StepReport("difficulty")
    out: list[dict[str, Any]] = []
    rates = pass_rates or {}
    for r in records:
        level: Difficulty | None = judge.grade(question_of(r)) if judge else None
        source = "judge"
        if level is None and str(r.get(id_key)) in rates:
            level, source = from_pass_rate(rates[str(r.get(id_key))]), "pass-rate"
        if level is None:
            rep.dropped["unclassified"] += 1
            continue
        out.append({**r, "difficulty": level, "difficulty_source": source})
    rep.kept = len(out)
    return out, rep


def pass_rates(rewards: Mapping[str, Sequence[float]], correct: float = 1.0) -> dict[str, float]:
    """Pass rate per question from N sampled rewards each.

    >>> pass_rates({"a": [1, 0, 1, 1], "b": []})
    {'a': 0.75}
    """
    return {q: sum(x >= correct for x in rs) / len(rs) for q, rs in rewards.items() if rs}
