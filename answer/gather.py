"""Gather: the evidence for a plan - retrieve per subtask, fuse, score relevance, select.

Each subtask's queries run as one batched hybrid search (the user's filters narrowed by the
planner's, which are dropped when they find nothing); the result lists are fused by
reciprocal rank, every candidate is scored by embedding similarity to the subtask's question
(:func:`score_relevance`), and the sources are taken round-robin across subtasks without
duplicates (:func:`select`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.types import Subtask
from retrieval.filters import SearchFilters
from retrieval.search import Searcher
from retrieval.types import ScoredPassage

RRF_K = 60


@dataclass
class Candidate:
    """A retrieved passage with its relevance to the question and its fused rank score."""

    passage: ScoredPassage
    relevance: float
    rrf: float
    subtasks: set[str] = field(default_factory=set)


Evidence = dict[str, list[Candidate]]
"""Candidates per subtask id, best first."""


def subtask_filters(base: SearchFilters | None, sub: Subtask) -> SearchFilters | None:
    """The user's filters narrowed by the planner's for one subtask (years intersected,
    evidence levels within the user's); the user's alone when they contradict."""
    pf = sub.filters
    if pf.year_from is None and pf.year_to is None and not pf.evidence_levels:
        return base
    data = base.model_dump() if base else {}
    if pf.year_from is not None:
        data["year_from"] = max(pf.year_from, data.get("year_from") or pf.year_from)
    if pf.year_to is not None:
        data["year_to"] = min(pf.year_to, data.get("year_to") or pf.year_to)
    if pf.evidence_levels:
        user = set(data.get("evidence_levels") or ())
        levels = [lv for lv in pf.evidence_levels if not user or lv in user]
        data["evidence_levels"] = tuple(levels) or tuple(user)
    try:
        return SearchFilters.model_validate(data)
    except ValueError:  # e.g. the planner's years contradict the user's: keep the user's
        return base


def fuse(lists: Sequence[Sequence[ScoredPassage]], subtask: str) -> list[Candidate]:
    """Reciprocal-rank fusion of one subtask's result lists (one candidate per chunk).

    >>> from retrieval.types import ScoredPassage as P
    >>> a, b = (P(chunk_id=c, doc_id=c, text=c, source="x", score=1.0) for c in "ab")
    >>> [(c.passage.chunk_id, round(c.rrf, 4)) for c in fuse([[a, b], [b]], "s1")]
    [('a', 0.0164), ('b', 0.0325)]
    """
    out: dict[str, Candidate] = {}
    for hits in lists:
        for rank, p in enumerate(hits):
            c = out.get(p.chunk_id)
            if c is None:
                c = out[p.chunk_id] = Candidate(p, 0.0, 0.0, {subtask})
            c.rrf += 1.0 / (RRF_K + rank + 1)
    return list(out.values())


def score_relevance(
    searcher: Searcher, question: str, cands: list[Candidate], queries: Sequence[str] = ()
) -> None:
    """Each candidate's relevance: the best cosine similarity of the question to its chunks
    (stored vectors; passages are embedded when the store cannot return them). For a Chinese
    question the embedding model cannot read: the best cosine of the planner's English
    ``queries``, when it wrote any, else the share of the question's words in the passage."""
    if not cands:
        return
    if searcher.index.language_note(question):  # Chinese with an English-only model
        from retrieval.chinese import has_cjk, overlap

        english = [q for q in queries if not has_cjk(q)]
        if english:
            probes = [score_relevance_of(searcher, q, cands) for q in english]
            for i, c in enumerate(cands):
                c.relevance = max(p[i] for p in probes)
            return
        for c in cands:
            c.relevance = round(overlap(question, c.passage.text), 4)
        return
    for c, r in zip(cands, score_relevance_of(searcher, question, cands), strict=True):
        c.relevance = r


def score_relevance_of(searcher: Searcher, question: str, cands: list[Candidate]) -> list[float]:
    """The best cosine similarity of ``question`` to each candidate's chunks."""
    emb = searcher.index.embedder
    ids = [i for c in cands for i in (c.passage.chunk_id, *c.passage.merged_chunk_ids)]
    vectors = searcher.index.store.dense_vectors(ids)
    q = emb.embed_query(question)
    missing = [c for c in cands if c.passage.chunk_id not in vectors]
    if missing:  # a store that cannot return vectors: embed the passages
        embedded = emb.embed_documents([c.passage.text for c in missing])
        for c, v in zip(missing, embedded, strict=True):
            vectors[c.passage.chunk_id] = list(v)
    out = []
    for c in cands:
        vs = [vectors[i] for i in (c.passage.chunk_id, *c.passage.merged_chunk_ids) if i in vectors]
        out.append(round(max(float(np.dot(q, np.asarray(v))) for v in vs), 4))
    return out


def retrieve(
    searcher: Searcher, subtasks: Sequence[Subtask], filters: SearchFilters | None, k: int
) -> Evidence:
    """Candidates per subtask: its queries' results fused, scored and sorted."""
    out: Evidence = {}
    for sub in subtasks:
        f = subtask_filters(filters, sub)
        lists = searcher.search_batch(list(sub.queries), k=k, filters=f)
        if f != filters and not any(lists):  # the planner's filters found nothing
            lists = searcher.search_batch(list(sub.queries), k=k, filters=filters)
        cands = fuse(lists, sub.id)
        score_relevance(searcher, sub.question, cands, sub.queries)
        cands.sort(key=lambda c: (-c.relevance, -c.rrf))
        out[sub.id] = cands
    return out


def whole_documents(searcher: Searcher, cands: Sequence[Candidate], limit: int) -> None:
    """Widen each candidate to its whole document (up to ``limit`` chunks, in reading order),
    so that a digest can quote the conclusion of an abstract whose other chunk was retrieved.
    The passage keeps its score and relevance; ``merged_chunk_ids`` lists the chunks."""
    from retrieval.ranking import merge_neighbors

    for c in cands:
        p = c.passage
        have = len(p.merged_chunk_ids) or 1
        if not p.n_chunks or p.n_chunks <= have or p.chunk_index is None:
            continue
        parts = searcher.index.document(p.doc_id, min(limit, p.n_chunks))
        ids = {x.chunk_id for x in parts}
        if p.chunk_id not in ids and not ids.intersection(p.merged_chunk_ids):
            continue  # the retrieved chunk lies past the limit: keep it as it is
        merged = merge_neighbors(parts)
        run = next((m for m in merged if p.chunk_id in (m.chunk_id, *m.merged_chunk_ids)), None)
        if run is None:
            continue
        c.passage = p.model_copy(
            update={
                "chunk_id": run.chunk_id,
                "chunk_index": run.chunk_index,
                "text": run.text,
                "merged_chunk_ids": run.merged_chunk_ids,
            }
        )


def drop_retracted(by_sub: Evidence) -> tuple[Evidence, list[ScoredPassage]]:
    """The evidence without retracted records, and the retracted passages left out (one per
    document)."""
    left: dict[str, ScoredPassage] = {}
    kept: Evidence = {}
    for sub, cands in by_sub.items():
        kept[sub] = [c for c in cands if not c.passage.retracted]
        for c in cands:
            if c.passage.retracted:
                left.setdefault(c.passage.doc_id, c.passage)
    return kept, list(left.values())


def retraction_warning(p: ScoredPassage) -> str:
    """Why a retrieved record was left out.

    >>> from retrieval.types import Notice
    >>> p = ScoredPassage(chunk_id="c", doc_id="pmid:1", pmid="1", text="t", source="pubmed",
    ...                   score=1.0, retracted=True, notices=(Notice(kind="RetractionIn",
    ...                   pmid="9", source="Lancet. 2020"),))
    >>> retraction_warning(p)
    'PMID 1 was retrieved but left out: it is retracted (Retraction in PMID 9 (Lancet. 2020))'
    """
    why = "; ".join(n.label() for n in p.notices if n.kind.startswith("Retraction"))
    who = f"PMID {p.pmid}" if p.pmid else p.doc_id
    return f"{who} was retrieved but left out: it is retracted{f' ({why})' if why else ''}"


def has_evidence(cands: Sequence[Candidate], min_relevance: float) -> bool:
    return any(c.relevance >= min_relevance for c in cands)


def select(by_sub: Evidence, limit: int) -> list[Candidate]:
    """Round-robin over subtasks by relevance, without duplicates, up to ``limit``."""
    chosen: dict[str, Candidate] = {}
    queues = [list(v) for v in by_sub.values()]
    while len(chosen) < limit and any(queues):
        for q in queues:
            while q:
                c = q.pop(0)
                if c.passage.chunk_id in chosen:
                    chosen[c.passage.chunk_id].subtasks |= c.subtasks
                    continue
                chosen[c.passage.chunk_id] = c
                break
            if len(chosen) >= limit:
                break
    return sorted(chosen.values(), key=lambda c: -c.relevance)


def closest(by_sub: Evidence, n: int = 3) -> list[ScoredPassage]:
    """The ``n`` most relevant distinct passages of all subtasks (shown with an abstention)."""
    top = sorted((c for cands in by_sub.values() for c in cands), key=lambda c: -c.relevance)[:n]
    seen: set[str] = set()
    out = []
    for c in top:
        if c.passage.chunk_id not in seen:
            seen.add(c.passage.chunk_id)
            out.append(c.passage)
    return out
