"""An LLM breaks a clinical question into subtasks with search queries.

The model answers in JSON, validated against :class:`~planner.types.Plan`; invalid output
gets one repair attempt; when that fails too (small models often do), or the model is down,
a deterministic plan is used: the question itself and its key terms. The product works with
any of the three.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from planner.chat import ChatError, ChatMessage, ChatModel, ChatResult
from planner.types import Plan, PlanFilters, Subtask
from retrieval.errors import InputError
from retrieval.language import detect as detect_language
from retrieval.settings import PlannerSettings

log = logging.getLogger(__name__)

_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-+/.]*[A-Za-z0-9+]|[A-Za-z]")
_STOP = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during each
    effect effects effective efficacy few for from further had has have having how i if in into
    is it its itself just may me might more most must my no nor not of off on once only or other
    our out over own patient patients people person persons same should so some such than that
    the their them then there these they this those through to too under until up use used
    using very was we were what when where which while who whom why will with would you your
    recommended recommend treat treated treatment""".split()
)
# The generic clinical words above are dropped only from the key-term query, never from
# the question query, so "treatment" questions still match on it.

SYSTEM_PROMPT = """You plan PubMed literature searches for a clinical question.
Reply with one JSON object and nothing else.
Example. Question: Does vitamin D supplementation prevent falls in older adults?
Reply: {{"subtasks": [{{"id": "s1", "question": "Does vitamin D supplementation prevent falls
in older adults?", "queries": ["vitamin D supplementation falls elderly", "vitamin D fall
prevention randomized trial"], "filters": {{"year_from": null, "year_to": null,
"evidence_levels": ["systematic_review", "randomized_controlled_trial"]}}, "depends_on": []}}]}}
Rules:
- 1 to {max_subtasks} subtasks; a simple question needs just one.
- Each subtask has 1 to {max_queries} short search queries in English, made of the question's
  own medical terms, even when the question is in another language.
- evidence_levels may list: practice_guideline, systematic_review,
  randomized_controlled_trial, clinical_study, review, case_report.
- depends_on lists ids of subtasks that must be answered first.
- Do not answer the question."""

_LEVELS = [
    "practice_guideline",
    "systematic_review",
    "randomized_controlled_trial",
    "clinical_study",
    "review",
    "case_report",
]
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subtasks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 6,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "question": {"type": "string"},
                    "queries": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 3,
                        "items": {"type": "string"},
                    },
                    "filters": {
                        "type": "object",
                        "properties": {
                            "year_from": {"type": ["integer", "null"]},
                            "year_to": {"type": ["integer", "null"]},
                            "evidence_levels": {
                                "type": "array",
                                "items": {"type": "string", "enum": _LEVELS},
                            },
                        },
                    },
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "question", "queries"],
            },
        }
    },
    "required": ["subtasks"],
}
FOLLOW_UP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "queries": {
            "type": "object",
            "additionalProperties": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
        }
    },
    "required": ["queries"],
}


def key_terms(question: str, limit: int = 12) -> list[str]:
    """Content words of a question in order, without stop words or repeats.

    >>> key_terms("Does aspirin reduce the risk of stroke in patients with atrial fibrillation?")
    ['aspirin', 'reduce', 'risk', 'stroke', 'atrial', 'fibrillation']
    """
    words = [w.strip(".-/") for w in _LATIN_WORD.findall(question)]
    out: list[str] = []
    for w in words:
        lw = w.lower()
        if len(lw) < 2 or lw in _STOP or lw in (o.lower() for o in out):
            continue
        out.append(w)
    return out[:limit]


def fallback_plan(question: str, note: str = "") -> Plan:
    """The deterministic plan: one subtask searched by the question and its key terms.

    >>> p = fallback_plan("Is metformin safe in pregnancy?")
    >>> p.subtasks[0].queries
    ('Is metformin safe in pregnancy?', 'metformin safe pregnancy')
    """
    question = " ".join(question.split())
    terms = key_terms(question)
    queries = [question]
    if terms and " ".join(terms).lower() != question.lower():
        queries.append(" ".join(terms))
    return Plan(
        question=question,
        language=detect_language(question),
        subtasks=(Subtask(id="s1", question=question, queries=tuple(queries)),),
        origin="fallback",
        note=note,
    )


def extract_json(text: str) -> Any:
    """The first JSON object in a model's reply (code fences and chatter around it ignored).

    >>> extract_json('Sure! ```json\\n{"a": [1, 2]}\\n``` done')
    {'a': [1, 2]}
    """
    start = text.find("{")
    while start >= 0:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
            return obj
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise InputError("the reply holds no JSON object")


@dataclass
class PlanOutcome:
    """A plan and the model calls it took."""

    plan: Plan
    calls: list[ChatResult] = field(default_factory=list)


class Planner:
    """Plans a question with a chat model, repairing or falling back as needed."""

    def __init__(self, chat: ChatModel | None, settings: PlannerSettings | None = None) -> None:
        self.chat = chat
        self.settings = settings or PlannerSettings()

    @property
    def use_llm(self) -> bool:
        """Whether plans are asked of the model (see ``planner.use_llm``)."""
        if self.chat is None or self.settings.use_llm == "never":
            return False
        if self.settings.use_llm == "auto":
            return not getattr(self.chat, "is_default_embedded", False)
        return True

    def plan(self, question: str, patient_summary: str | None = None) -> PlanOutcome:
        """A validated plan for ``question`` (never raises for model failures)."""
        question = " ".join(question.split())
        if not question:
            raise InputError("the question is empty")
        if not self.use_llm:
            return PlanOutcome(fallback_plan(question, "planning by model is off"))
        assert self.chat is not None
        s = self.settings
        messages = [
            ChatMessage(
                role="system",
                content=SYSTEM_PROMPT.format(
                    max_subtasks=s.max_subtasks, max_queries=s.max_queries
                ),
            ),
            ChatMessage(role="user", content=self._user_prompt(question, patient_summary)),
        ]
        calls: list[ChatResult] = []
        error = ""
        attempts: tuple[Literal["llm", "repaired"], ...] = ("llm", "repaired")
        for attempt in attempts:
            try:
                res = self.chat.complete(messages, max_tokens=s.max_tokens, json_schema=PLAN_SCHEMA)
            except ChatError as exc:
                log.warning("planner model unavailable, using the fallback plan: %s", exc)
                return PlanOutcome(fallback_plan(question, f"model unavailable: {exc}"), calls)
            calls.append(res)
            try:
                plan = self._parse(question, res.text, attempt)
                return PlanOutcome(plan, calls)
            except (ValueError, ValidationError) as exc:
                error = _short_error(exc)
                log.info("plan %s invalid: %s", attempt, error)
                messages = [
                    *messages,
                    ChatMessage(role="assistant", content=res.text[:2000]),
                    ChatMessage(
                        role="user",
                        content=f"That reply is not a valid plan: {error}. Reply with the "
                        "corrected JSON object only.",
                    ),
                ]
        return PlanOutcome(fallback_plan(question, f"model plan invalid: {error}"), calls)

    def follow_up(
        self,
        plan: Plan,
        missing: Sequence[Subtask],
        round_no: int,
    ) -> tuple[list[Subtask], list[ChatResult]]:
        """New searches for subtasks whose evidence is missing; [] when nothing new to try."""
        tried = {q.lower() for s in (*plan.subtasks, *plan.follow_ups) for q in s.queries}
        calls: list[ChatResult] = []
        proposals: dict[str, list[str]] = {}
        if self.use_llm:
            proposals, calls = self._llm_follow_up(missing, tried)
        out: list[Subtask] = []
        for sub in missing:
            queries = [
                q
                for q in proposals.get(sub.id, [])
                if q.lower() not in tried and _on_topic(q, sub.question)
            ]
            if not queries:  # deterministic reformulations: key terms, then the rarest few
                terms = key_terms(sub.question)
                longest = sorted(terms, key=len, reverse=True)[:3]
                for cand in (" ".join(terms), " ".join(longest)):
                    if cand and cand.lower() not in tried:
                        queries.append(cand)
                        break
            if queries:
                out.append(
                    Subtask(
                        id=f"{sub.id}.f{round_no}",
                        question=sub.question,
                        queries=tuple(queries[: self.settings.max_queries]),
                        filters=PlanFilters(),  # widen: the filtered search found nothing
                    )
                )
        return out, calls

    def _llm_follow_up(
        self, missing: Sequence[Subtask], tried: set[str]
    ) -> tuple[dict[str, list[str]], list[ChatResult]]:
        lines = [f'- {s.id}: "{s.question}" (searched: {"; ".join(s.queries)})' for s in missing]
        messages = [
            ChatMessage(
                role="system",
                content="You write PubMed search queries. Reply with one JSON object and "
                'nothing else: {"queries": {"<subtask id>": ["new query", ...]}}. Use '
                "different words than the searches already tried; English only; short.",
            ),
            ChatMessage(
                role="user",
                content="These searches found no relevant evidence:\n" + "\n".join(lines),
            ),
        ]
        try:
            res = self.chat.complete(  # type: ignore[union-attr]
                messages,
                max_tokens=min(self.settings.max_tokens, 160),
                json_schema=FOLLOW_UP_SCHEMA,
            )
        except ChatError as exc:
            log.warning("follow-up planning unavailable: %s", exc)
            return {}, []
        try:
            data = extract_json(res.text)
            raw = data.get("queries", {}) if isinstance(data, dict) else {}
            out = {
                str(k): [" ".join(str(q).split()) for q in v if str(q).strip()][:3]
                for k, v in raw.items()
                if isinstance(v, list)
            }
        except ValueError:
            out = {}
        return out, [res]

    def _user_prompt(self, question: str, patient_summary: str | None) -> str:
        text = f"Question: {question}"
        if patient_summary:
            text += f"\nPatient: {patient_summary}"
        return text

    def _parse(self, question: str, text: str, origin: Literal["llm", "repaired"]) -> Plan:
        data = extract_json(text)
        if not isinstance(data, Mapping) or not isinstance(data.get("subtasks"), list):
            raise InputError('the JSON object has no "subtasks" list')
        s = self.settings
        subtasks: list[Subtask] = []
        for i, raw in enumerate(data["subtasks"][: s.max_subtasks]):
            if not isinstance(raw, Mapping):
                raise InputError(f"subtask {i + 1} is not an object")
            item = dict(raw)
            item.setdefault("id", f"s{i + 1}")
            item["id"] = str(item["id"])
            queries = [q for q in item.get("queries") or [] if isinstance(q, str)]
            item["queries"] = [q for q in queries if 0 < len(q) <= 300][: s.max_queries]
            filters = item.get("filters") or {}
            if isinstance(filters, Mapping):  # unknown filter keys are dropped, not fatal
                filters = {k: v for k, v in filters.items() if k in PlanFilters.model_fields}
                if filters.get("evidence_levels") is None:
                    filters.pop("evidence_levels", None)
            item["filters"] = filters
            item["depends_on"] = [str(d) for d in item.get("depends_on") or []]
            item = {k: v for k, v in item.items() if k in Subtask.model_fields}
            subtasks.append(Subtask.model_validate(item))
        if not subtasks:
            raise InputError("the plan has no subtasks")
        off_topic = [q for sub in subtasks for q in sub.queries if not _on_topic(q, question)]
        if len(off_topic) == sum(len(sub.queries) for sub in subtasks):
            raise InputError(
                f"no search query uses the question's terms (got {off_topic[:3]}); write queries "
                "from the question's medical terms"
            )
        language = detect_language(question)
        if language != "en" and not any(
            detect_language(q) == "en" for sub in subtasks for q in sub.queries
        ):
            raise InputError("the plan has no English search query for a non-English question")
        return Plan(
            question=question,
            language=language,
            subtasks=_with_question_query(question, subtasks, s.max_queries),
            origin=origin,
        )


def _on_topic(query: str, question: str) -> bool:
    """Whether a query shares a content word with the question (Chinese questions: any
    English query counts, since it is a translation).

    >>> _on_topic("aspirin stroke prevention", "Does aspirin prevent stroke?")
    True
    >>> _on_topic("search query", "Does aspirin prevent stroke?")
    False
    """
    if detect_language(question) != "en":
        return detect_language(query) == "en" or query == question
    terms = {t.lower()[:6] for t in key_terms(question, limit=50)}
    return any(t.lower()[:6] in terms for t in key_terms(query, limit=50))


def _with_question_query(
    question: str, subtasks: list[Subtask], max_queries: int
) -> tuple[Subtask, ...]:
    """The question itself is always searched: the model's plan can only add to it."""
    if any(question.lower() == q.lower() for sub in subtasks for q in sub.queries):
        return tuple(subtasks)
    first = subtasks[0]
    on_topic = [q for q in first.queries if _on_topic(q, question)]
    queries = (question, *on_topic)[: max(max_queries, 1)]
    return (first.model_copy(update={"queries": queries}), *subtasks[1:])


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
    return str(exc)[:300]
