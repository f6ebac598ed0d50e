"""The store contract: what the index needs from a vector database.

Two implementations exist: :mod:`retrieval.stores.edge` (Qdrant Edge, embedded, default) and
:mod:`retrieval.stores.qdrant` (qdrant-client: a Qdrant server or cluster, or its local
mode). ``tests/retrieval/test_store_contract.py`` runs one suite against both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from retrieval.embedders import SparseVec
from retrieval.errors import ServiceError

DENSE = "dense"
SPARSE = "bm25"
LEARNED = "learned"  # a model's own sparse weights (BGE-M3), when the embedder has them
SCHEMA_VERSION = 2

# Payload fields that get an index (filters and per-document bookkeeping).
KEYWORD_FIELDS = (
    "doc_id",
    "source",
    "evidence_level",
    "language",
    "publication_types",
    "mesh_terms",
    "pmid",
    "applies_sex",
    "extra.grade",
    "extra.body",
    "status",
)
INTEGER_FIELDS = ("chunk_index", "year", "evidence_rank")
FLOAT_FIELDS = ("applies_age_min", "applies_age_max")


class StoreError(ServiceError):
    """The store cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class StoreInfo:
    """What a store was built with; a store never mixes embedding models."""

    embedding_model: str
    dim: int
    sparse_model: str
    learned_sparse: bool = False
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "embedding_model": self.embedding_model,
            "dim": self.dim,
            "sparse_model": self.sparse_model,
            "learned_sparse": self.learned_sparse,
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoreInfo:
        return cls(
            embedding_model=str(data["embedding_model"]),
            dim=int(data["dim"]),
            sparse_model=str(data.get("sparse_model", "")),
            learned_sparse=bool(data.get("learned_sparse", False)),
            schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
        )


@dataclass(frozen=True)
class Condition:
    """One filter condition on a payload field; all conditions of a filter must hold.

    Exactly one of ``any`` (the field equals one of these values, or for list fields
    contains one) or a range (``gte``/``lte``) is given.
    """

    key: str
    any: tuple[str | int, ...] | None = None
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class AnyOf:
    """At least one of the clauses holds."""

    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class AllOf:
    """Every clause holds."""

    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class Not:
    """The clause does not hold."""

    clause: Clause


Clause: TypeAlias = "Condition | AnyOf | AllOf | Not"


@dataclass(frozen=True)
class PointRecord:
    """One chunk ready to store."""

    id: str
    dense: Sequence[float]
    sparse: SparseVec
    payload: Mapping[str, Any]
    learned: SparseVec | None = None


@dataclass(frozen=True)
class StoreQuery:
    """One query of a store: the query vectors, the mode, and how to fuse and filter."""

    k: int
    """Hits to return."""
    mode: SearchMode
    dense: Sequence[float] | None = None
    sparse: SparseVec | None = None
    """The BM25 query."""
    learned: SparseVec | None = None
    """The learned-sparse query (BGE-M3), for stores built with one."""
    prefetch: int = 100
    """Candidates per branch before fusion."""
    rrf_k: int = 60
    conditions: Sequence[Clause] = ()
    """Filters, all of which must hold."""
    weights: Mapping[str, float] | None = None
    """Per-branch RRF weights by vector name (default 1)."""
    fusion: Fusion = "rrf"

    def branches(self) -> list[tuple[str, Sequence[float] | SparseVec]]:
        """The (vector name, query vector) pairs this query searches (see :func:`branches`)."""
        return branches(self.mode, self.dense, self.sparse, self.learned)

    def weights_of(self, names: Sequence[str]) -> list[float]:
        return [float((self.weights or {}).get(n, 1.0)) for n in names]


@dataclass(frozen=True)
class Hit:
    """A raw store hit."""

    id: str
    score: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    parts: Mapping[str, float] = field(default_factory=dict)
    """Per-branch scores ('dense', 'bm25', 'learned') and the 'fused' RRF score, where known."""


@dataclass(frozen=True)
class DocState:
    """What the store holds of one document."""

    content_hash: str
    n_chunks: int
    present: int

    @property
    def complete(self) -> bool:
        return self.present == self.n_chunks


SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "dbsf"]


@runtime_checkable
class VectorStore(Protocol):
    """A Qdrant collection holding evidex chunks (dense + BM25 sparse vectors)."""

    def info(self) -> StoreInfo | None:
        """What the store was created with, or None for a new, empty store."""

    def init(self, info: StoreInfo) -> None:
        """Create the collection for ``info`` or check that the existing one matches."""

    def upsert(self, points: Sequence[PointRecord]) -> None:
        """Insert or replace points by id."""

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents."""

    def doc_states(self, doc_ids: Sequence[str]) -> dict[str, DocState]:
        """Hash, expected and present chunk counts of those documents that are stored."""

    def count(self, conditions: Sequence[Clause] = ()) -> int:
        """Number of chunks matching all conditions."""

    def facet(self, key: str, conditions: Sequence[Clause] = ()) -> dict[str, int]:
        """Chunk counts per value of a keyword field."""

    def point_ids(self, conditions: Sequence[Clause] = ()) -> set[str]:
        """Ids of the points matching all conditions (all points by default)."""

    def payloads(
        self, conditions: Sequence[Clause] = (), batch: int = 1000
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every matching point's id and payload, a batch at a time (memory stays bounded)."""

    def query(self, request: StoreQuery) -> list[Hit]:
        """Top ``k`` chunks by dense, BM25 or fused hybrid score.

        ``fusion`` is reciprocal rank fusion ('rrf', weighted by ``weights``) or Qdrant's
        distribution-based score fusion ('dbsf', unweighted).

        A hybrid query runs in one batch: the fused query (prefetch + RRF, optionally weighted
        per branch) and each branch alone, so every hit carries its branch scores.

        ``hybrid`` fuses every branch given (dense, BM25 and, for stores built with a
        learned-sparse model, its sparse vector); ``sparse`` is BM25 alone.
        """

    def dense_vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored dense vectors of these points (for diversity re-ranking)."""

    def flush(self) -> None:
        """Make all writes durable."""

    def optimize(self) -> None:
        """Build search indexes after a bulk load (may be a no-op)."""

    def close(self) -> None:
        """Flush and release the store."""


def check_compatible(have: StoreInfo, want: StoreInfo, where: str) -> None:
    """Refuse to write ``want``-model vectors into a store built for ``have``."""
    if have.dim != want.dim or have.embedding_model != want.embedding_model:
        raise StoreError(
            f"{where} holds {have.embedding_model} vectors ({have.dim}-d) but the configured "
            f"model is {want.embedding_model} ({want.dim}-d): use another --store or the same "
            "embedding model"
        )
    if have.schema_version != want.schema_version or have.learned_sparse != want.learned_sparse:
        raise StoreError(
            f"{where} was built with another index layout (schema {have.schema_version}); "
            "ingest into a new --store"
        )


def branches(
    mode: SearchMode,
    dense: Sequence[float] | None,
    sparse: SparseVec | None,
    learned: SparseVec | None,
) -> list[tuple[str, Sequence[float] | SparseVec]]:
    """The (vector name, query vector) pairs a query of ``mode`` searches.

    >>> [n for n, _ in branches("hybrid", [0.1], SparseVec([1], [1.0]), None)]
    ['dense', 'bm25']
    >>> [n for n, _ in branches("sparse", [0.1], SparseVec([1], [1.0]), None)]
    ['bm25']
    >>> branches("sparse", [0.1], SparseVec([], []), None)
    []
    """
    out: list[tuple[str, Sequence[float] | SparseVec]] = []
    if dense is not None and mode in ("dense", "hybrid"):
        out.append((DENSE, dense))
    if sparse is not None and sparse.indices and mode in ("sparse", "hybrid"):
        out.append((SPARSE, sparse))
    if learned is not None and learned.indices and mode == "hybrid":
        out.append((LEARNED, learned))
    return out


def attach_parts(
    names: Sequence[str],
    fused: Sequence[tuple[str, float, Mapping[str, Any]]],
    singles: Sequence[Mapping[str, float]],
) -> list[Hit]:
    """Hits of a fused query with the scores each branch gave them."""
    out = []
    for pid, score, payload in fused:
        parts = {"fused": score}
        for name, scores in zip(names, singles, strict=True):
            if pid in scores:
                parts[name] = scores[pid]
        out.append(Hit(pid, score, payload, parts))
    return out


def group_doc_states(rows: Sequence[Mapping[str, Any]]) -> dict[str, DocState]:
    """Fold per-chunk payload rows into one :class:`DocState` per document.

    >>> rows = [{"doc_id": "a", "content_hash": "h", "n_chunks": 2}] * 2
    >>> group_doc_states(rows)["a"].complete
    True
    """
    acc: dict[str, tuple[str, int, int]] = {}
    for row in rows:
        doc = str(row["doc_id"])
        h, n, present = acc.get(doc, (str(row["content_hash"]), int(row["n_chunks"]), 0))
        if h != row["content_hash"]:  # chunks of two versions: never complete
            n = -1
        acc[doc] = (h, n, present + 1)
    return {d: DocState(h, n, p) for d, (h, n, p) in acc.items()}
