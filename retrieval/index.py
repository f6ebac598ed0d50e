"""The index: chunks in, embedded and stored; queries in, scored passages out.

Writes are idempotent and resumable. Every chunk's payload carries its document's content
hash and chunk count, so before writing a batch the index asks the store what it already
holds of those documents: a complete copy with the same hash is skipped, anything else (a
changed document, or a partial copy left by a killed job) is deleted and written again.
Chunk ids are derived from document id, content hash and position, so the same input always
gives the same points.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval import ranking as ranking_steps
from retrieval.chinese import has_cjk
from retrieval.embedders import (
    Bm25Encoder,
    Embedder,
    LearnedSparseEmbedder,
    SparseVec,
    load_embedder,
)
from retrieval.filters import SearchFilters
from retrieval.rerankers import Reranker, load_reranker
from retrieval.settings import Settings
from retrieval.stores import open_store
from retrieval.stores.base import (
    Clause,
    Condition,
    Fusion,
    PointRecord,
    SearchMode,
    StoreError,
    StoreInfo,
    StoreQuery,
    VectorStore,
)
from retrieval.types import (
    Chunk,
    Document,
    IndexStats,
    ScoredPassage,
    SourceCount,
    lead_of,
)

log = logging.getLogger(__name__)

CHUNK_NAMESPACE = uuid.UUID("6f1c8a52-3a5e-4c1e-9a53-2f7d0e9b7c11")


_QueryVectors = tuple[list[float] | None, SparseVec | None, SparseVec | None]


def chunk_uuid(doc_id: str, content_hash: str, index: int) -> str:
    """Deterministic point id of a chunk.

    >>> chunk_uuid("pmid:1", "abc", 0) == chunk_uuid("pmid:1", "abc", 0)
    True
    >>> chunk_uuid("pmid:1", "abc", 0) == chunk_uuid("pmid:1", "abd", 0)
    False
    """
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{content_hash}\x1f{index}"))


def chunk_payload(doc: Document, chunk: Chunk) -> dict[str, Any]:
    """The payload stored with a chunk: the chunk and its document's metadata."""
    return {
        "doc_id": doc.doc_id,
        "chunk_index": chunk.index,
        "n_chunks": chunk.n_chunks,
        "content_hash": chunk.content_hash,
        "text": chunk.text,
        "section": chunk.section,
        "page": chunk.page,
        "n_tokens": chunk.n_tokens,
        "title": doc.title,
        "lead": lead_of(doc),
        "source": doc.source.value,
        "pmid": doc.pmid,
        "doi": doc.doi,
        "pmcid": doc.pmcid,
        "journal": doc.journal,
        "pub_date": doc.pub_date,
        "year": doc.year,
        "authors": list(doc.authors[:20]),
        "language": doc.language,
        "publication_types": list(doc.publication_types),
        "mesh_terms": list(doc.mesh_terms),
        "url": doc.url,
        "evidence_level": doc.evidence_level.value,
        "evidence_rank": doc.evidence_level.rank,
        "extra": {k: v for k, v in doc.extra.items() if k != "notices"},
        # PubMed's notices (retractions, errata, expressions of concern); status is filterable.
        "status": str(doc.extra.get("status") or "current"),
        "retracted": bool(doc.extra.get("retracted")),
        "notices": list(doc.extra.get("notices") or []),  # type: ignore[arg-type]
        # Who a guideline applies to, with explicit defaults so that filters can test them.
        "applies_age_min": _num(doc.extra.get("age_min"), 0.0),
        "applies_age_max": _num(doc.extra.get("age_max"), 200.0),
        "applies_sex": str(doc.extra.get("sex") or "all"),
    }


def _num(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


@dataclass
class WriteResult:
    """What one write call did."""

    written_docs: list[str] = field(default_factory=list)
    replaced_docs: list[str] = field(default_factory=list)
    unchanged_docs: list[str] = field(default_factory=list)
    chunks: int = 0


class Index:
    """Embedder + BM25 encoder + store, used by ingestion and search."""

    def __init__(
        self,
        settings: Settings,
        store_path: Path | None = None,
        *,
        create: bool = True,
        embedder: Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.store: VectorStore = open_store(settings, store_path, create=create)
        self.where = str(
            store_path
            or (settings.store.url if settings.store.kind == "qdrant" else None)
            or settings.store_path
        )
        """Where the index lives (its folder, ``:memory:`` or the Qdrant server's URL)."""
        self._embedder = embedder
        self._noted = False  # the Chinese-query note is logged once per index
        self.bm25 = Bm25Encoder()

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = load_embedder(self.settings.embedding)
        return self._embedder

    def store_info(self) -> StoreInfo:
        emb = self.embedder
        return StoreInfo(
            embedding_model=emb.name,
            dim=emb.dim,
            sparse_model=self.bm25.name,
            learned_sparse=isinstance(emb, LearnedSparseEmbedder),
        )

    def ensure_store(self) -> None:
        """Create the store for the configured model, or check it matches."""
        self.store.init(self.store_info())

    def write(
        self,
        items: Sequence[tuple[Document, Sequence[Chunk]]],
        vectors: Mapping[str, tuple[Sequence[float], SparseVec]] | None = None,
        learned: Mapping[str, SparseVec] | None = None,
    ) -> WriteResult:
        """Embed and store documents' chunks, skipping documents already stored whole.
        ``vectors`` (dense and BM25 by chunk id, computed elsewhere, e.g. by the Ray engine's
        encoders with this model) are used instead of embedding here; with a learned-sparse
        model (BGE-M3) only together with its ``learned`` vectors for every chunk."""
        result = WriteResult()
        if not items:
            return result
        self.ensure_store()
        states = self.store.doc_states([d.doc_id for d, _ in items])
        todo: list[tuple[Document, Sequence[Chunk]]] = []
        stale: list[str] = []
        for doc, chunks in items:
            state = states.get(doc.doc_id)
            if (
                state is not None
                and state.complete
                and chunks
                and state.content_hash == chunks[0].content_hash
            ):
                result.unchanged_docs.append(doc.doc_id)
                continue
            if state is not None:
                stale.append(doc.doc_id)
                result.replaced_docs.append(doc.doc_id)
            else:
                result.written_docs.append(doc.doc_id)
            todo.append((doc, chunks))
        self.store.delete_docs(stale)
        flat = [(d, c) for d, cs in todo for c in cs]
        if not flat:
            return result
        texts = [c.embed_text for _, c in flat]
        emb = self.embedder
        given, given_learned = vectors or {}, learned or {}
        wants_learned = isinstance(emb, LearnedSparseEmbedder)
        learned_vecs: list[SparseVec] | None = None
        if (
            given
            and all(c.chunk_id in given for _, c in flat)
            and (not wants_learned or all(c.chunk_id in given_learned for _, c in flat))
        ):
            dense: Any = [given[c.chunk_id][0] for _, c in flat]
            sparse = [given[c.chunk_id][1] for _, c in flat]
            if wants_learned:
                learned_vecs = [given_learned[c.chunk_id] for _, c in flat]
        else:
            dense = emb.embed_documents(texts)
            sparse = self.bm25.embed_documents(texts)
            if isinstance(emb, LearnedSparseEmbedder):
                learned_vecs = emb.embed_sparse(texts)
        points = [
            PointRecord(
                id=c.chunk_id,
                dense=dense[i],
                sparse=sparse[i],
                payload=chunk_payload(d, c),
                learned=learned_vecs[i] if learned_vecs is not None else None,
            )
            for i, (d, c) in enumerate(flat)
        ]
        self.store.upsert(points)
        result.chunks = len(points)
        return result

    def delete(self, doc_ids: Sequence[str]) -> int:
        """Delete documents; returns how many of them were in the store."""
        present = self.store.doc_states(doc_ids)
        self.store.delete_docs(list(present))
        return len(present)

    def stats(self) -> IndexStats:
        """Documents and chunks per source, and the store's embedding model."""
        info = self.store.info()
        chunks_by_source = self.store.facet("source")
        docs_by_source = self.store.facet("source", [Condition("chunk_index", any=(0,))])
        return IndexStats(
            documents=sum(docs_by_source.values()),
            chunks=sum(chunks_by_source.values()),
            sources={
                s: SourceCount(documents=docs_by_source.get(s, 0), chunks=n)
                for s, n in sorted(chunks_by_source.items())
            },
            embedding_model=info.embedding_model if info else None,
            dim=info.dim if info else None,
            sparse_model=info.sparse_model if info else None,
            store=self.where,
        )

    @property
    def reranker(self) -> Reranker | None:
        if not hasattr(self, "_reranker"):
            self._reranker = load_reranker(
                self.settings.search.rerank, self.settings.embedding.device
            )
        return self._reranker

    @property
    def multilingual(self) -> bool:
        """Whether the dense model embeds Chinese (``embedding.multilingual``; by default
        only BGE-M3 does)."""
        e = self.settings.embedding
        return e.multilingual if e.multilingual is not None else e.kind == "bge-m3"

    def language_note(self, query: str) -> str | None:
        """What happens to a query the dense model cannot read (None when it can).

        A Chinese query with an English-only model is searched by BM25 alone (Chinese
        segmented): it finds Chinese sources, and nothing unrelated in English ones."""
        if self.multilingual or not has_cjk(query):
            return None
        return (
            "a Chinese query with the English-only embedding model: searched by BM25 alone "
            "(Chinese sources only). For English sources configure BGE-M3 "
            "(embedding.kind='bge-m3') or a served model that plans English queries"
        )

    def search(
        self,
        query: str,
        k: int | None = None,
        mode: SearchMode | None = None,
        conditions: Sequence[Clause] = (),
        filters: SearchFilters | None = None,
        *,
        rerank: bool = True,
        ranking: bool = True,
        max_per_doc: int | None = None,
        fusion: Fusion | None = None,
        _vectors: _QueryVectors | None = None,
    ) -> list[ScoredPassage]:
        """Top passages for ``query``, best first, each with its score parts.

        ``rerank=False`` skips a configured reranker and ``ranking=False`` the evidence and
        recency bonuses (the evaluation baselines use both).
        """
        s = self.settings.search
        query = ranking_steps.check_query(query, s.max_query_chars)
        info = self._checked_info()
        k = k or s.k
        note = self.language_note(query) if mode is None else None  # an explicit mode is kept
        mode = mode or s.mode
        if note and mode != "sparse":
            if not self._noted:
                log.warning("%s", note)
                self._noted = True
            mode = "sparse"  # English-only vectors would return unrelated hits
        per_doc_cap = max_per_doc or s.max_per_doc
        clauses = [*conditions, *(filters.clauses() if filters else [])]
        timings: dict[str, float] = {}
        self.last_timings = timings  # filled below: milliseconds per stage of this search
        t0 = time.perf_counter()
        if _vectors is not None:
            dense, sparse, learned = _vectors
        else:
            dense, sparse, learned = self._query_vectors([query], mode, info.learned_sparse)[0]
        timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        reranker = self.reranker if rerank else None
        # Enough candidates for the reranker and for the per-document cap.
        want = max(k * (per_doc_cap + 1), s.rerank.candidates if reranker else 0, k)
        t0 = time.perf_counter()
        hits = self.store.query(
            StoreQuery(
                k=want,
                mode=mode,
                dense=dense,
                sparse=sparse,
                learned=learned,
                prefetch=max(s.prefetch, want),
                rrf_k=s.rrf_k,
                conditions=clauses,
                weights={
                    "dense": s.dense_weight,
                    "bm25": s.sparse_weight,
                    "learned": s.learned_weight,
                },
                fusion=fusion or s.fusion,
            )
        )
        timings["query_ms"] = (time.perf_counter() - t0) * 1000
        if not hits:
            return []
        cands = ranking_steps.fused(hits)
        if reranker is not None:
            t0 = time.perf_counter()
            weight = s.rerank.weight
            if weight is None:
                weight = float(getattr(reranker, "weight", 1.0))
            cands = ranking_steps.rerank(query, cands, reranker, s.rerank.candidates, weight)
            timings["rerank_ms"] = (time.perf_counter() - t0) * 1000
        cands = ranking_steps.score(cands, s, bonuses=ranking)
        if s.mmr_lambda is not None and len(cands) > 1:
            vectors = self.store.dense_vectors([c.hit.id for c in cands])
            cands = ranking_steps.mmr_order(cands, vectors, s.mmr_lambda)
        out = ranking_steps.cap_per_document(cands, k, per_doc_cap, merge=s.merge_neighbors)
        log.debug("search timings %s", timings)
        return out

    def document(self, doc_id: str, limit: int = 8) -> list[ScoredPassage]:
        """The first ``limit`` chunks of one document, in reading order (a payload lookup: the
        query vector only satisfies the store's interface, scores are meaningless)."""
        info = self._checked_info()
        probe = [1.0] + [0.0] * (info.dim - 1)
        hits = self.store.query(
            StoreQuery(
                k=limit,
                mode="dense",
                dense=probe,
                prefetch=limit,
                conditions=[
                    Condition("doc_id", any=(doc_id,)),
                    Condition("chunk_index", gte=0, lte=limit - 1),
                ],
            )
        )
        out = [ranking_steps.passage(h, 0.0, {}) for h in hits]
        return sorted(out, key=lambda p: p.chunk_index or 0)

    def _checked_info(self) -> StoreInfo:
        """The store's info, refused when it is empty or built with another model."""
        info = self.store.info()
        if info is None:
            raise StoreError("the store is empty: ingest documents first (evidex ingest ...)")
        if info.dim != self.embedder.dim or info.embedding_model != self.embedder.name:
            raise StoreError(
                f"the store holds {info.embedding_model} ({info.dim}-d) vectors but the "
                f"configured model is {self.embedder.name} ({self.embedder.dim}-d)"
            )
        return info

    def _query_vectors(
        self, queries: list[str], mode: SearchMode, learned_sparse: bool
    ) -> list[_QueryVectors]:
        emb = self.embedder
        dense = emb.embed_documents(queries).tolist() if mode != "sparse" else None
        use_learned = mode == "hybrid" and learned_sparse and isinstance(emb, LearnedSparseEmbedder)
        learned = emb.embed_sparse(queries) if use_learned else None  # type: ignore[attr-defined]
        return [
            (
                dense[i] if dense is not None else None,
                self.bm25.embed_query(q) if mode != "dense" else None,
                learned[i] if learned is not None else None,
            )
            for i, q in enumerate(queries)
        ]

    def search_many(
        self,
        queries: list[str],
        k: int | None = None,
        mode: SearchMode | None = None,
        filters: SearchFilters | None = None,
        *,
        rerank: bool = True,
    ) -> list[list[ScoredPassage]]:
        """:meth:`search` for many queries, embedding them in one encoder call."""
        if not queries:
            return []
        info = self.store.info()
        mode = mode or self.settings.search.mode
        cleaned = [" ".join(q.split()) for q in queries]
        ok = [q for q in cleaned if ranking_steps.query_ok(q, self.settings.search.max_query_chars)]
        vectors = (
            dict(
                zip(
                    ok,
                    self._query_vectors(ok, mode, bool(info and info.learned_sparse)),
                    strict=True,
                )
            )
            if ok and info is not None
            else {}
        )
        return [
            self.search(q, k=k, mode=mode, filters=filters, rerank=rerank, _vectors=vectors.get(q))
            for q in cleaned
        ]

    def flush(self) -> None:
        self.store.flush()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
