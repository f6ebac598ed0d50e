"""Qdrant Edge: the real Qdrant engine in-process, on disk (``qdrant-edge-py``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as q

from retrieval.embedders import SparseVec
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

META_FILE = "evidex_store.json"
SHARD_DIR = "shard"


def _clause(c: Clause) -> Any:
    if isinstance(c, AnyOf):
        return q.Filter(should=[_clause(x) for x in c.clauses])
    if isinstance(c, AllOf):
        return q.Filter(must=[_clause(x) for x in c.clauses])
    if isinstance(c, Not):
        return q.Filter(must_not=[_clause(c.clause)])
    if c.any is not None:
        values: Any = list(c.any)
        match = q.MatchValue(values[0]) if len(values) == 1 else q.MatchAny(values)
        return q.FieldCondition(key=c.key, match=match)
    return q.FieldCondition(key=c.key, range=q.RangeFloat(gte=c.gte, lte=c.lte))


def _filter(conditions: Sequence[Clause]) -> q.Filter | None:
    if not conditions:
        return None
    return q.Filter(must=[_clause(c) for c in conditions])


class EdgeStore:
    """A store folder holding one Qdrant Edge shard and a small metadata file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._shard: q.EdgeShard | None = None
        self._info: StoreInfo | None = None
        meta = self.path / META_FILE
        if meta.exists():
            try:
                self._info = StoreInfo.from_dict(json.loads(meta.read_text("utf-8")))
            except (ValueError, KeyError) as exc:
                raise StoreError(f"store metadata {meta} is unreadable: {exc}") from exc
            if (self.path / SHARD_DIR).exists():
                self._shard = self._load()
        elif self.path.exists() and any(self.path.iterdir()):
            raise StoreError(
                f"{self.path} exists but is not an evidex store (no {META_FILE}); "
                "pass an empty or new folder with --store"
            )

    def _load(self) -> q.EdgeShard:
        try:
            return q.EdgeShard.load(str(self.path / SHARD_DIR))
        except Exception as exc:  # the engine raises plain Exception
            if "WouldBlock" in str(exc):
                raise StoreError(
                    f"the store at {self.path} is open in another evidex process (an ingest job "
                    "or the search service): wait for it to finish, search through that "
                    "service, or use a Qdrant server (store.kind='qdrant') for shared access"
                ) from exc
            raise StoreError(f"cannot open the Qdrant Edge shard in {self.path}: {exc}") from exc

    @property
    def shard(self) -> q.EdgeShard:
        if self._shard is None:
            raise StoreError(f"the store at {self.path} is empty: ingest documents first")
        return self._shard

    def info(self) -> StoreInfo | None:
        return self._info

    def init(self, info: StoreInfo) -> None:
        if self._info is not None:
            check_compatible(self._info, info, f"the store at {self.path}")
            if self._shard is not None:
                return
        self.path.mkdir(parents=True, exist_ok=True)
        # The metadata goes first: a crash before the shard exists leaves a store that the
        # next run completes instead of a folder it refuses.
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(info.to_dict(), indent=2), "utf-8")
        os.replace(tmp, self.path / META_FILE)
        if (self.path / SHARD_DIR).exists():  # a half-created shard from a crash
            import shutil

            shutil.rmtree(self.path / SHARD_DIR)
        config = q.EdgeConfig(
            vectors={DENSE: q.EdgeVectorParams(size=info.dim, distance=q.Distance.Cosine)},
            sparse_vectors={
                SPARSE: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf),
                **({LEARNED: q.EdgeSparseVectorParams()} if info.learned_sparse else {}),
            },
        )
        shard = q.EdgeShard.create(str(self.path / SHARD_DIR), config)
        for key in KEYWORD_FIELDS:
            shard.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Keyword))
        for key in INTEGER_FIELDS:
            shard.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Integer))
        for key in FLOAT_FIELDS:
            shard.update(q.UpdateOperation.create_field_index(key, q.PayloadSchemaType.Float))
        shard.flush()
        self._shard, self._info = shard, info

    def upsert(self, points: Sequence[PointRecord]) -> None:
        if not points:
            return
        batch = [
            q.Point(
                p.id,
                {
                    DENSE: list(map(float, p.dense)),
                    SPARSE: q.SparseVector(p.sparse.indices, p.sparse.values),
                    **(
                        {LEARNED: q.SparseVector(p.learned.indices, p.learned.values)}
                        if p.learned is not None
                        else {}
                    ),
                },
                dict(p.payload),
            )
            for p in points
        ]
        self.shard.update(q.UpdateOperation.upsert_points(batch))

    def delete_docs(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids or self._shard is None:
            return
        flt = _filter([Condition("doc_id", any=tuple(doc_ids))])
        assert flt is not None
        self.shard.update(q.UpdateOperation.delete_points_by_filter(flt))

    def _scroll(self, conditions: Sequence[Clause], fields: list[str] | bool) -> list[q.Record]:
        out: list[q.Record] = []
        offset: Any = None
        while True:
            recs, offset = self.shard.scroll(
                q.ScrollRequest(
                    offset=offset,
                    limit=1000,
                    filter=_filter(conditions),
                    with_payload=fields,
                )
            )
            out.extend(recs)
            if offset is None:
                return out

    def doc_states(self, doc_ids: Sequence[str]) -> dict[str, DocState]:
        if not doc_ids or self._shard is None:
            return {}
        recs = self._scroll(
            [Condition("doc_id", any=tuple(doc_ids))], ["doc_id", "content_hash", "n_chunks"]
        )
        return group_doc_states([r.payload or {} for r in recs])

    def count(self, conditions: Sequence[Clause] = ()) -> int:
        if self._shard is None:
            return 0
        return int(self.shard.count(q.CountRequest(filter=_filter(conditions), exact=True)))

    def facet(self, key: str, conditions: Sequence[Clause] = ()) -> dict[str, int]:
        if self._shard is None:
            return {}
        resp = self.shard.facet(
            q.FacetRequest(key=key, limit=10_000, exact=True, filter=_filter(conditions))
        )
        return {str(h.value): int(h.count) for h in resp.hits}

    def payloads(
        self, conditions: Sequence[Clause] = (), batch: int = 1000
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._shard is None:
            return
        offset: Any = None
        while True:
            recs, offset = self.shard.scroll(
                q.ScrollRequest(
                    offset=offset,
                    limit=batch,
                    filter=_filter(conditions),
                    with_payload=True,
                )
            )
            for r in recs:
                yield str(r.id), dict(r.payload or {})
            if offset is None:
                return

    def point_ids(self, conditions: Sequence[Clause] = ()) -> set[str]:
        if self._shard is None:
            return set()
        return {str(r.id) for r in self._scroll(conditions, False)}

    def query(self, request: StoreQuery) -> list[Hit]:
        if self._shard is None:
            return []
        flt = _filter(request.conditions)
        chosen = request.branches()
        names = [n for n, _ in chosen]
        queries = [
            q.Query.Nearest(
                q.SparseVector(v.indices, v.values)
                if isinstance(v, SparseVec)
                else list(map(float, v)),
                using=name,
            )
            for name, v in chosen
        ]
        if not queries:
            return []
        if len(queries) == 1:
            req = q.QueryRequest(limit=request.k, query=queries[0], filter=flt, with_payload=True)
            return [
                Hit(str(p.id), float(p.score), p.payload or {}, {names[0]: float(p.score)})
                for p in self.shard.query(req)
            ]
        w = request.weights_of(names)
        fused_query: Any = (
            q.Fusion.Rrf(k=request.rrf_k, weights=w) if request.fusion == "rrf" else q.Fusion.Dbsf()
        )
        fused = q.QueryRequest(
            limit=request.k,
            prefetches=[q.Prefetch(query=x, limit=request.prefetch, filter=flt) for x in queries],
            query=fused_query,
            with_payload=True,
        )
        singles = [
            q.QueryRequest(limit=request.prefetch, query=x, filter=flt, with_payload=False)
            for x in queries
        ]
        res = self.shard.query_batch(q.QueryBatchRequest([fused, *singles]))
        return attach_parts(
            names,
            [(str(p.id), float(p.score), p.payload or {}) for p in res[0]],
            [{str(p.id): float(p.score) for p in r} for r in res[1:]],
        )

    def dense_vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        if self._shard is None or not ids:
            return {}
        recs = self.shard.retrieve(list(ids), with_payload=False, with_vector=[DENSE])
        out = {}
        for r in recs:
            vec: Any = r.vector
            out[str(r.id)] = list(vec[DENSE] if isinstance(vec, dict) else vec)
        return out

    def flush(self) -> None:
        if self._shard is not None:
            self._shard.flush()

    def optimize(self) -> None:
        if self._shard is not None:
            self._shard.optimize()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None
