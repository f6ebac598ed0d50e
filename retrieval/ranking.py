"""The ranking steps of a search, in the order :meth:`retrieval.index.Index.search` runs them,
each a small function that can be read and tested alone:

1. :func:`check_query` - normalize the query's white space; refuse an empty or over-long one;
2. (the store runs the dense, BM25 and learned-sparse prefetches and fuses them);
3. :func:`fused` - each hit's relevance: its fused score normalized to the best hit;
4. :func:`rerank` - a cross-encoder's scores replace the relevance of the top candidates;
5. :func:`score` - evidence-aware ranking (below), sorted with deterministic ties;
6. :func:`mmr_order` - optional maximal-marginal-relevance diversity;
7. :func:`cap_per_document` - at most ``max_per_doc`` passages per document, ``k`` groups,
   neighbouring chunks merged (:func:`merge_neighbors`).

Evidence-aware ranking on top of relevance, with every score part kept for explanation.

The final score of a passage is its relevance (the fused hybrid score normalized to the best
hit, or the reranker's probability when a reranker is configured) plus small, configurable
bonuses for the strength of evidence and for recency::

    final = relevance + evidence_weight * evidence + recency_weight * recency

``evidence`` is 1.0 for a practice guideline down to 0.0 for 'other' in the order of
:class:`retrieval.types.EvidenceLevel`; ``recency`` halves every ``recency_half_life`` years.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrieval.errors import InputError
from retrieval.types import EvidenceLevel, Notice, ScoredPassage

if TYPE_CHECKING:
    from retrieval.rerankers import Reranker
    from retrieval.settings import SearchSettings
    from retrieval.stores.base import Hit

_LEVELS = list(EvidenceLevel)


def evidence_score(level: str) -> float:
    """1.0 for guidelines, then down in equal steps to 0.0 for 'other'.

    >>> evidence_score("practice_guideline"), evidence_score("randomized_controlled_trial")
    (1.0, 0.6666666666666667)
    >>> evidence_score("other"), evidence_score("unknown level")
    (0.0, 0.0)
    """
    try:
        rank = _LEVELS.index(EvidenceLevel(level))
    except ValueError:
        return 0.0
    return 1.0 - rank / (len(_LEVELS) - 1)


def recency_score(year: int | None, half_life: float, now: int | None = None) -> float:
    """``0.5 ** (age / half_life)``; 0 when the year is unknown.

    >>> recency_score(2026, 10, now=2026), recency_score(2016, 10, now=2026)
    (1.0, 0.5)
    >>> recency_score(None, 10)
    0.0
    """
    if year is None:
        return 0.0
    now = now or dt.date.today().year
    age = max(0, now - year)
    return math.pow(0.5, age / half_life) if half_life > 0 else 0.0


def check_query(query: str, limit: int, what: str = "query") -> str:
    """The query with its white space normalized; an empty or over-long one is refused.

    >>> check_query("  statins   in  CKD ", 100)
    'statins in CKD'
    >>> check_query("   ", 100)
    Traceback (most recent call last):
    ...
    retrieval.errors.InputError: the query is empty: type a clinical question or search terms
    >>> check_query("x" * 11, 10, what="question")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    retrieval.errors.InputError: the question has 11 characters; the limit is 10 (...): ask ...
    """
    query = " ".join(str(query or "").split())
    if not query:
        raise InputError(f"the {what} is empty: type a clinical question or search terms")
    bad = _not_utf8(query)
    if bad is not None:
        raise InputError(
            f"the {what} has an invalid character at position {bad} (a byte that is not UTF-8, "
            "or a lone surrogate): retype it as plain text"
        )
    if len(query) > limit:
        raise InputError(
            f"the {what} has {len(query):,} characters; the limit is {limit:,} "
            "(search.max_query_chars): ask a shorter question"
        )
    return query


def query_ok(query: str, limit: int) -> bool:
    """Whether :func:`check_query` accepts ``query`` (already normalized)."""
    return bool(query) and len(query) <= limit and _not_utf8(query) is None


def _not_utf8(text: str) -> int | None:
    r"""Where ``text`` stops being encodable as UTF-8 (an undecodable command-line byte
    arrives as a surrogate escape), or None.

    >>> _not_utf8("aspirin"), _not_utf8("aspirin \udcff")
    (None, 8)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


@dataclass
class Candidate:
    """A hit on its way through the steps: its relevance, final score and score parts."""

    hit: Hit
    relevance: float
    parts: dict[str, float] = field(default_factory=dict)
    final: float = 0.0

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.hit.payload


def fused(hits: Sequence[Hit]) -> list[Candidate]:
    """Candidates in the store's fused order, relevance = fused score / the best one."""
    top = max(h.score for h in hits) or 1.0
    return [Candidate(h, h.score / top, dict(h.parts)) for h in hits]


def rerank(
    query: str, cands: list[Candidate], reranker: Reranker, n: int, weight: float = 1.0
) -> list[Candidate]:
    """The relevance of the first ``n`` candidates becomes ``weight`` times the reranker's
    probability plus ``1 - weight`` times their fused relevance (1: the reranker alone); the
    unreranked tail gets 0 and sorts last."""
    head = cands[:n]
    scores = reranker.score(query, [str(c.payload.get("text", "")) for c in head])
    for c, sc in zip(head, scores, strict=True):
        c.parts["rerank"] = sc
        c.relevance = weight * sc + (1.0 - weight) * c.relevance
    for c in cands[n:]:
        c.relevance = 0.0
    return cands


def score(
    cands: list[Candidate], s: SearchSettings, *, bonuses: bool = True, now: int | None = None
) -> list[Candidate]:
    """Final scores (relevance plus the evidence and recency bonuses when ``bonuses``), best
    first. Qdrant breaks RRF ties in no fixed order: ties are broken here, by the branch
    scores and then the point id."""
    now = now or dt.date.today().year
    for c in cands:
        c.final = c.relevance
        if bonuses:
            ev = evidence_score(str(c.payload.get("evidence_level") or "other"))
            rc = recency_score(c.payload.get("year"), s.recency_half_life, now)
            c.parts["evidence"], c.parts["recency"] = ev, rc
            c.final += s.evidence_weight * ev + s.recency_weight * rc
        c.parts["relevance"] = c.relevance
        c.parts["final"] = c.final
    return sorted(
        cands,
        key=lambda c: (-c.final, -c.parts.get("dense", 0.0), -c.parts.get("bm25", 0.0), c.hit.id),
    )


def cap_per_document(
    cands: Sequence[Candidate], k: int, per_doc_cap: int, *, merge: bool = True
) -> list[ScoredPassage]:
    """The top passages: at most ``per_doc_cap`` per document, until ``k`` passages remain once
    neighbouring chunks are merged (with ``merge``)."""
    out: list[ScoredPassage] = []
    per_doc: dict[str, int] = {}
    present: set[tuple[str, int]] = set()
    groups = 0  # passages left once neighbouring chunks are merged
    for c in cands:
        doc = str(c.payload.get("doc_id", ""))
        if per_doc.get(doc, 0) >= per_doc_cap:
            continue
        per_doc[doc] = per_doc.get(doc, 0) + 1
        out.append(passage(c.hit, c.final, c.parts))
        idx = c.payload.get("chunk_index")
        if merge and isinstance(idx, int):
            groups += 1 - sum((doc, idx + d) in present for d in (-1, 1))
            present.add((doc, idx))
        else:
            groups += 1
        if groups == k:
            break
    return merge_neighbors(out) if merge else out


def passage(h: Hit, score: float, parts: dict[str, float]) -> ScoredPassage:
    """A hit as the :class:`ScoredPassage` a search returns."""
    p = h.payload
    return ScoredPassage(
        chunk_id=h.id,
        doc_id=str(p.get("doc_id", "")),
        text=str(p.get("text", "")),
        title=str(p.get("title") or ""),
        section=str(p.get("section") or ""),
        source=str(p.get("source", "")),
        score=score,
        score_parts=parts,
        pmid=p.get("pmid"),
        doi=p.get("doi"),
        year=p.get("year"),
        journal=p.get("journal"),
        url=p.get("url"),
        evidence_level=str(p.get("evidence_level") or "other"),
        chunk_index=p.get("chunk_index"),
        status=str(p.get("status") or "current"),
        retracted=bool(p.get("retracted")),
        notices=tuple(Notice.model_validate(n) for n in p.get("notices") or ()),
        n_chunks=p.get("n_chunks"),
        lead=str(p.get("lead") or ""),
        pmcid=p.get("pmcid"),
        grade=_grade(p.get("extra")),
        language=p.get("language") or None,
    )


def _grade(extra: object) -> str | None:
    grade = extra.get("grade") if isinstance(extra, Mapping) else None
    return str(grade) if grade else None


def mmr_order(
    cands: list[Candidate], vectors: Mapping[str, Sequence[float]], lam: float
) -> list[Candidate]:
    """Greedy maximal-marginal-relevance order: relevance traded against similarity to the
    passages already chosen (cosine on the stored, normalized dense vectors)."""
    import numpy as np

    rest = list(cands)
    top = max(c.final for c in rest) or 1.0
    chosen: list[Candidate] = []
    picked: list[np.ndarray] = []
    while rest:
        best_i, best_v = 0, -float("inf")
        for i, c in enumerate(rest):
            vec = vectors.get(c.hit.id)
            sim = max((float(np.dot(vec, p)) for p in picked), default=0.0) if vec else 0.0
            value = lam * c.final / top - (1 - lam) * sim
            if value > best_v:
                best_i, best_v = i, value
        item = rest.pop(best_i)
        item.parts["mmr"] = best_v
        chosen.append(item)
        vec = vectors.get(item.hit.id)
        if vec:
            picked.append(np.asarray(vec))
    return chosen


def merge_neighbors(passages: list[ScoredPassage]) -> list[ScoredPassage]:
    r"""Merge passages that are runs of adjacent chunks of one document into one passage,
    kept at the rank of its best part.

    >>> from retrieval.types import ScoredPassage as P
    >>> a = P(chunk_id="a", doc_id="d", text="One.", source="x", score=2.0, chunk_index=0)
    >>> b = P(chunk_id="b", doc_id="d", text="Two.", source="x", score=1.0, chunk_index=1)
    >>> [(p.text, p.merged_chunk_ids) for p in merge_neighbors([b, a])]
    [('One.\nTwo.', ('a', 'b'))]
    """
    run_of: dict[str, list[ScoredPassage]] = {}
    by_doc: dict[str, list[ScoredPassage]] = {}
    for p in passages:
        by_doc.setdefault(p.doc_id, []).append(p)
    for parts in by_doc.values():
        if any(p.chunk_index is None for p in parts):
            for p in parts:
                run_of[p.chunk_id] = [p]
            continue
        run: list[ScoredPassage] = []
        for p in sorted(parts, key=lambda x: x.chunk_index or 0):
            if run and (p.chunk_index or 0) != (run[-1].chunk_index or 0) + 1:
                run = []
            run.append(p)
            run_of[p.chunk_id] = run
    out, done = [], set()
    for p in passages:
        run = run_of[p.chunk_id]
        if id(run) in done:
            continue
        done.add(id(run))
        if len(run) == 1:
            out.append(p)
            continue
        out.append(
            p.model_copy(
                update={
                    "chunk_id": run[0].chunk_id,
                    "chunk_index": run[0].chunk_index,
                    "text": "\n".join(x.text for x in run),
                    "merged_chunk_ids": tuple(x.chunk_id for x in run),
                }
            )
        )
    return out
