"""The plan: subtasks with sub-questions, search queries, filters and dependencies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retrieval.errors import InputError
from retrieval.types import EvidenceLevel


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanFilters(_Frozen):
    """The filters a planner may put on a subtask's searches."""

    year_from: int | None = Field(None, ge=1800, le=2200, description="Published in or after.")
    year_to: int | None = Field(None, ge=1800, le=2200, description="Published in or before.")
    evidence_levels: tuple[EvidenceLevel, ...] = Field(
        (), description="Only these evidence levels; empty = all."
    )


class Subtask(_Frozen):
    """One step of a plan: a sub-question answered from its own searches."""

    id: str = Field(description="Short id, unique within the plan, e.g. 's1'.")
    question: str = Field(min_length=1, description="The sub-question.")
    queries: tuple[str, ...] = Field(
        min_length=1, max_length=3, description="1-3 search queries, in English."
    )
    filters: PlanFilters = Field(default_factory=PlanFilters, description="Search filters.")
    depends_on: tuple[str, ...] = Field((), description="Ids of subtasks answered first.")

    @field_validator("queries")
    @classmethod
    def _clean_queries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(" ".join(q.split()) for q in v if q.strip()))
        if not cleaned:
            raise InputError("a subtask needs at least one non-empty search query")
        return cleaned


class Plan(_Frozen):
    """How a question is searched."""

    question: str = Field(description="The clinician's question as asked.")
    language: Literal["en", "zh", "other"] = Field("en", description="Language of the question.")
    subtasks: tuple[Subtask, ...] = Field(min_length=1, description="Steps, in order.")
    origin: Literal["llm", "repaired", "fallback"] = Field(
        description="Written by the model, by the model after one repair, or the deterministic "
        "fallback."
    )
    note: str = Field("", description="Why the fallback was used, when it was.")
    follow_ups: tuple[Subtask, ...] = Field(
        (), description="Follow-up searches added after retrieval for subtasks missing evidence."
    )

    @model_validator(mode="after")
    def _check_ids(self) -> Plan:
        ids = [s.id for s in self.subtasks]
        if len(set(ids)) != len(ids):
            raise InputError(f"subtask ids repeat: {ids}")
        known = set(ids)
        for s in self.subtasks:
            unknown = set(s.depends_on) - known
            if unknown:
                raise InputError(f"subtask {s.id} depends on unknown subtasks {sorted(unknown)}")
            if s.id in s.depends_on:
                raise InputError(f"subtask {s.id} depends on itself")
        return self

    def ordered(self) -> list[Subtask]:
        """Subtasks with every dependency before its dependants (plan order otherwise)."""
        done: list[Subtask] = []
        placed: set[str] = set()
        pending = list(self.subtasks)
        while pending:
            ready = [s for s in pending if set(s.depends_on) <= placed]
            if not ready:  # a cycle: keep the written order for the rest
                ready = pending[:1]
            for s in ready:
                done.append(s)
                placed.add(s.id)
                pending.remove(s)
        return done
