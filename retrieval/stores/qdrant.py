"""A Qdrant server or cluster through ``qdrant-client`` (or its local/in-memory mode)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as m
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from retrieval.embedders import SparseVec
from retrieval.settings import ClusterSettings
from retrieval.stores.base import (
    DENSE,
    FLOAT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    LEARNED,
    SPARSE,
    AllOf,
    AnyOf,
    Clause,
    Condition,
    DocState,
    Hit,
    Not,
    PointRecord,
    StoreError,
    StoreInfo,
    StoreQuery,
    attach_parts,
    check_compatible,
    group_doc_states,
)

log = logging.getLogger(__name__)


def _clause(c: Clause) -> Any:
    if isinstance(c, AnyOf):
        return m.Filter(should=[_clause(x) for x in c.clauses])
    if isinstance(c, AllOf):
        return m.Filter(must=[_clause(x) for x in c.clauses])
    if isinstance(c, Not):
        return m.Filter(must_not=[_clause(c.clause)])
    if c.any is not None:
        values: Any = list(c.any)
        match = m.MatchValue(value=values[0]) if len(values) == 1 else m.MatchAny(any=values)
        return m.FieldCondition(key=c.key, match=match)
    return m.FieldCondition(key=c.key, range=m.Range(gte=c.gte, lte=c.lte))


def _filter(conditions: Sequence[Clause]) -> m.Filter | None:
    if not conditions:
        return None
    return m.Filter(must=[_clause(c) for c in conditions])


class QdrantClientStore:
    """One collection on a Qdrant server (``url``), on disk (``path``) or in memory."""

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        location: str | None = None,
        collection: str = "evidex",
        timeout_s: float = 30.0,
        cluster: ClusterSettings | None = None,
    ) -> None:
        self.collection = collection
        self.cluster = cluster or ClusterSettings()
        where = url or (str(path) if path else location or ":memory:")
        self._where = where
        try:
            if url:
                self._client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout_s))
            elif path is not None:
                self._client = QdrantClient(path=str(path))
            else:
                self._client = QdrantClient(location=location or ":memory:")
        except Exception as exc:
            raise StoreError(f"cannot open Qdrant at {where}: {exc}") from exc
        self._info: StoreInfo | None = None
        try:
            if self._client.collection_exists(collection):
                meta = self._client.get_collection(collection).config.metadata or {}
                if "embedding_model" not in meta:
                    raise StoreError(
                        f"collection {collection!r} at {where} was not created by evidex "
                        "(no embedding_model metadata): choose another store.collection"
                    )
                self._info = StoreInfo.from_dict(meta)
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise StoreError(f"cannot reach Qdrant at {where}: {exc}") from exc

    def info(self) -> StoreInfo | None:
        return self._info

    def init(self, info: StoreInfo) -> None:
        if self._info is not None:
            check_compatible(self._info, info, f"collection {self.collection!r} at {self._where}")
            return
        c = self.cluster
        hnsw = (
            m.HnswConfigDiff(m=c.hnsw_m, ef_construct=c.hnsw_ef_construct)
            if c.hnsw_m or c.hnsw_ef_construct
            else None
        )
        quantization = (
            m.ScalarQuantization(
                scalar=m.ScalarQuantizationConfig(
                    type=m.ScalarType.INT8, quantile=c.quantile, always_ram=True
                )
            )
            if c.quantization == "int8"
            else None
        )
        self._client.create_collection(
            self.collection,
            vectors_config={
                DENSE: m.VectorParams(
                    size=info.dim, distance=m.Distance.COSINE, on_disk=c.on_disk_vectors or None
                )
            },
            sparse_vectors_config={
                SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF),
                **({LEARNED: m.SparseVectorParams()} if info.learned_sparse else {}),
            },
            shard_number=c.shard_number,
            replication_factor=c.replication_factor,
            write_consistency_factor=c.write_consistency_factor,
            on_disk_payload=c.on_disk_payload or None,
            hnsw_config=hnsw,
            quantization_config=quantization,
            metadata=info.to_dict(),
        )
        with warnings.catch_warnings():  # local mode ignores payload indexes, and says so
            warnings.simplefilter("ignore")
            for key in KEYWORD_FIELDS:
                self._client.create_payload_index(self.collection, key, m.PayloadSchemaType.KEYWORD)
            for key in INTEGER_FIELDS:
                self._client.create_payload_index(self.collection, key, m.PayloadSchemaType.INTEGER)
            for key in FLOAT_FIELDS:
                self._client.create_payload_index(self.collection, key, m.PayloadSchemaType.FLOAT)
        self._info = info

    def _exists(self) -> bool:
        return self._info is not None

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        self._client.upsert(
            self.collection,
            wait=True,
            points=[
                m.PointStruct(
                    id=p.id,
                    vector={
                        DENSE: list(map(float, p.dense)),
                        SPARSE: m.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                        **(
                            {
                                LEARNED: m.SparseVector(
                                    indices=p.learned.indices, values=p.learned.values
                                )
                            }
                            if p.learned is not None
                            else {}
                        ),
                    },
                    payload=dict(p.payload),
                )
                for p in points
            ],
        )

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids or not self._exists():
            return
        flt = _filter([Condition("doc_id", any=tuple(doc_ids))])
        assert flt is not None
        self._client.delete(
            self.collection, points_selector=m.FilterSelector(filter=flt), wait=True
        )

    def _scroll(self, conditions: Sequence[Clause], fields: list[str] | bool) -> list[Any]:
        out: list[Any] = []
        offset: Any = None
        while True:
            recs, offset = self._client.scroll(
                self.collection,
                scroll_filter=_filter(conditions),
                limit=1000,
                offset=offset,
                with_payload=fields,
                with_vectors=False,
            )
            out.extend(recs)
            if offset is None:
                return out

    def doc_states(self, doc_ids: Sequence[str]) -> dict[str, DocState]:
        if not doc_ids or not self._exists():
            return {}
        recs = self._scroll(
            [Condition("doc_id", any=tuple(doc_ids))], ["doc_id", "content_hash", "n_chunks"]
        )
        return group_doc_states([r.payload or {} for r in recs])

    def count(self, conditions: Sequence[Clause] = ()) -> int:
        if not self._exists():
            return 0
        return int(
            self._client.count(self.collection, count_filter=_filter(conditions), exact=True).count
        )

    def facet(self, key: str, conditions: Sequence[Clause] = ()) -> dict[str, int]:
        if not self._exists():
            return {}
        resp = self._client.facet(
            self.collection, key, facet_filter=_filter(conditions), limit=10_000, exact=True
        )
        return {str(h.value): int(h.count) for h in resp.hits}

    def payloads(
        self, conditions: Sequence[Clause] = (), batch: int = 1000
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self._exists():
            return
        offset: Any = None
        while True:
            recs, offset = self._client.scroll(
                self.collection,
                scroll_filter=_filter(conditions),
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=False,
            )
            for r in recs:
                yield str(r.id), dict(r.payload or {})
            if offset is None:
                return

    def point_ids(self, conditions: Sequence[Clause] = ()) -> set[str]:
        if not self._exists():
            return set()
        return {str(r.id) for r in self._scroll(conditions, False)}

    def _params(self, name: str) -> m.SearchParams | None:
        """Rescoring on the original vectors for an int8-quantized dense branch."""
        if name != DENSE or self.cluster.quantization != "int8":
            return None
        return m.SearchParams(
            quantization=m.QuantizationSearchParams(
                rescore=True, oversampling=self.cluster.oversampling
            )
        )

    def query(self, request: StoreQuery) -> list[Hit]:
        if not self._exists():
            return []
        flt = _filter(request.conditions)
        chosen = [
            (
                name,
                m.SparseVector(indices=v.indices, values=v.values)
                if isinstance(v, SparseVec)
                else list(map(float, v)),
            )
            for name, v in request.branches()
        ]
        names = [n for n, _ in chosen]
        if not chosen:
            return []
        if len(chosen) == 1:
            name, v = chosen[0]
            res = self._client.query_points(
                self.collection,
                query=v,
                using=name,
                query_filter=flt,
                search_params=self._params(name),
                limit=request.k,
                with_payload=True,
            )
            return [
                Hit(str(p.id), float(p.score), p.payload or {}, {name: float(p.score)})
                for p in res.points
            ]
        w = request.weights_of(names)
        fused = m.QueryRequest(
            prefetch=[
                m.Prefetch(
                    query=v,
                    using=name,
                    limit=request.prefetch,
                    filter=flt,
                    params=self._params(name),
                )
                for name, v in chosen
            ],
            query=m.RrfQuery(rrf=m.Rrf(k=request.rrf_k, weights=w))
            if request.fusion == "rrf"
            else m.FusionQuery(fusion=m.Fusion.DBSF),
            limit=request.k,
            with_payload=True,
        )
        singles = [
            m.QueryRequest(
                query=v,
                using=name,
                filter=flt,
                limit=request.prefetch,
                params=self._params(name),
                with_payload=False,
            )
            for name, v in chosen
        ]
        out = self._client.query_batch_points(self.collection, requests=[fused, *singles])
        return attach_parts(
            names,
            [(str(p.id), float(p.score), p.payload or {}) for p in out[0].points],
            [{str(p.id): float(p.score) for p in r.points} for r in out[1:]],
        )

    def dense_vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        if not self._exists() or not ids:
            return {}
        recs = self._client.retrieve(
            self.collection, ids=list(ids), with_payload=False, with_vectors=[DENSE]
        )
        out = {}
        for r in recs:
            vec: Any = r.vector
            out[str(r.id)] = list(vec[DENSE] if isinstance(vec, dict) else vec)
        return out

    def flush(self) -> None:
        """qdrant-client writes with ``wait=True``: nothing is pending."""

    def optimize(self) -> None:
        """A Qdrant server optimizes in the background."""

    def close(self) -> None:
        self._client.close()
