"""Gather: fusion, filters per subtask and selection across subtasks."""

from __future__ import annotations

from answer.gather import Candidate, closest, fuse, select, subtask_filters
from planner.types import Subtask
from retrieval.filters import SearchFilters
from retrieval.types import ScoredPassage


def _p(c: str) -> ScoredPassage:
    return ScoredPassage(chunk_id=c, doc_id=c, text=c, source="pubmed", score=1.0)


def _c(c: str, rel: float, sub: str) -> Candidate:
    return Candidate(_p(c), rel, 0.0, {sub})


def test_fuse_sums_reciprocal_ranks_per_chunk() -> None:
    cands = {c.passage.chunk_id: c for c in fuse([[_p("a"), _p("b")], [_p("b")]], "s1")}
    assert cands["b"].rrf > cands["a"].rrf and cands["a"].subtasks == {"s1"}


def test_select_is_round_robin_without_duplicates() -> None:
    by_sub = {"s1": [_c("a", 0.9, "s1"), _c("b", 0.8, "s1"), _c("c", 0.7, "s1")],
              "s2": [_c("a", 0.9, "s2"), _c("d", 0.5, "s2")]}  # fmt: skip
    chosen = select(by_sub, limit=3)
    assert [c.passage.chunk_id for c in chosen] == ["a", "b", "d"]
    assert chosen[0].subtasks == {"s1", "s2"}  # a is evidence for both subtasks
    assert [p.chunk_id for p in closest(by_sub, 3)] == ["a", "b"]  # top 3, then distinct


def test_subtask_filters_narrow_the_users_and_yield_on_contradiction() -> None:
    sub = Subtask.model_validate(
        {"id": "s1", "question": "q", "queries": ["q"],
         "filters": {"year_from": 2015, "evidence_levels": ["systematic_review"]}}
    )  # fmt: skip
    user = SearchFilters(year_from=2010, year_to=2020)
    narrowed = subtask_filters(user, sub)
    assert narrowed is not None and narrowed.year_from == 2015 and narrowed.year_to == 2020
    assert narrowed.evidence_levels == ("systematic_review",)
    old = SearchFilters(year_to=2012)
    assert subtask_filters(old, sub) == old  # 2015..2012 is empty: the user's filters stand
