"""The named ranking steps of Index.search, one at a time, on hand-made hits."""

from __future__ import annotations

import pytest

from retrieval import ranking
from retrieval.errors import InputError
from retrieval.settings import SearchSettings
from retrieval.stores.base import Hit


def _hit(i: str, score: float, doc: str, idx: int | None = None, **payload: object) -> Hit:
    return Hit(id=i, score=score, payload={"doc_id": doc, "text": f"text {i}",
                                          "chunk_index": idx, **payload},
               parts={"dense": score, "bm25": 0.0})  # fmt: skip


def test_check_query_normalizes_and_refuses() -> None:
    assert ranking.check_query(" a \t b ", 10) == "a b"
    with pytest.raises(InputError, match="question is empty"):
        ranking.check_query(" ", 10, what="question")
    with pytest.raises(InputError, match="11 characters; the limit is 10"):
        ranking.check_query("x" * 11, 10)
    assert ranking.query_ok("abc", 3) and not ranking.query_ok("abcd", 3)


def test_fused_relevance_is_relative_to_the_best_hit() -> None:
    cands = ranking.fused([_hit("a", 0.5, "d1"), _hit("b", 0.25, "d2")])
    assert [c.relevance for c in cands] == [1.0, 0.5]


class _Reranker:
    name = "fake"

    def score(self, query: str, passages: list[str]) -> list[float]:
        return [0.1 * (n + 1) for n in range(len(passages))]  # reverses the order


def test_rerank_scores_the_head_and_sinks_the_tail() -> None:
    cands = ranking.fused([_hit("a", 3, "d1"), _hit("b", 2, "d2"), _hit("c", 1, "d3")])
    out = ranking.rerank("q", cands, _Reranker(), n=2)
    assert [round(c.relevance, 2) for c in out] == [0.1, 0.2, 0.0]
    assert "rerank" in out[1].parts and "rerank" not in out[2].parts
    order = [c.hit.id for c in ranking.score(out, SearchSettings(), bonuses=False)]
    assert order == ["b", "a", "c"]


def test_rerank_weight_blends_the_reranker_with_the_fused_relevance() -> None:
    # fused relevance 1.0, 0.5; reranker 0.1, 0.2: half and half gives 0.55 and 0.35
    cands = ranking.fused([_hit("a", 2, "d1"), _hit("b", 1, "d2")])
    out = ranking.rerank("q", cands, _Reranker(), n=2, weight=0.5)
    assert [round(c.relevance, 3) for c in out] == [0.55, 0.35]
    assert [round(c.parts["rerank"], 3) for c in out] == [0.1, 0.2]
    order = [c.hit.id for c in ranking.score(out, SearchSettings(), bonuses=False)]
    assert order == ["a", "b"]  # the reranker alone would put b first


def test_score_adds_evidence_and_recency_bonuses_and_breaks_ties() -> None:
    s = SearchSettings(evidence_weight=0.5, recency_weight=0.0)
    guideline = _hit("g", 1.0, "d1", evidence_level="practice_guideline")
    other = _hit("o", 1.0, "d2", evidence_level="other")
    out = ranking.score(ranking.fused([other, guideline]), s, now=2026)
    assert [c.hit.id for c in out] == ["g", "o"]
    assert out[0].final == pytest.approx(1.5) and out[0].parts["evidence"] == 1.0
    plain = ranking.score(ranking.fused([other, guideline]), s, bonuses=False)
    assert [c.hit.id for c in plain] == ["g", "o"]  # a tie: broken by the point id
    assert "evidence" not in plain[0].parts and plain[0].final == 1.0


def test_cap_per_document_counts_merged_neighbours_as_one() -> None:
    cands = ranking.score(
        ranking.fused([_hit("a0", 4, "A", 0), _hit("a1", 3, "A", 1), _hit("a5", 2.5, "A", 5),
                       _hit("b0", 2, "B", 0), _hit("c0", 1, "C", 0)]),
        SearchSettings(), bonuses=False,
    )  # fmt: skip
    merged = ranking.cap_per_document(cands, k=2, per_doc_cap=2, merge=True)
    assert [p.merged_chunk_ids for p in merged] == [("a0", "a1"), ()]
    assert [p.chunk_id for p in merged] == ["a0", "b0"]  # a5 is over A's cap of 2
    plain = ranking.cap_per_document(cands, k=2, per_doc_cap=1, merge=False)
    assert [p.chunk_id for p in plain] == ["a0", "b0"]
