"""One contract, run against every store: Qdrant Edge (embedded) and qdrant-client
(local in-memory and on-disk modes, standing in for a Qdrant server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedders import Bm25Encoder
from retrieval.stores.base import (
    Condition,
    Fusion,
    PointRecord,
    StoreError,
    StoreInfo,
    StoreQuery,
    VectorStore,
)
from retrieval.stores.edge import EdgeStore
from retrieval.stores.qdrant import QdrantClientStore

INFO = StoreInfo(embedding_model="test-model", dim=8, sparse_model="bm25-english")
BM25 = Bm25Encoder()

DOCS = {
    "pmid:1": ("pubmed", 2001, "Aspirin reduces myocardial infarction in adults."),
    "pmid:2": ("pubmed", 2015, "Metformin is first-line therapy for type 2 diabetes."),
    "uspstf:3": ("guideline", 2019, "Screen adults for hypertension with office blood pressure."),
}


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return v / np.linalg.norm(v)


def _points(doc_id: str, n: int = 2, content_hash: str = "h1") -> list[PointRecord]:
    source, year, base = DOCS[doc_id]
    seed = sum(map(ord, doc_id)) * 10
    texts = [base + " More detail." * i for i in range(n)]  # distinct chunks, no score ties
    return [
        PointRecord(
            id=f"00000000-0000-0000-{seed:04d}-{i:012d}"
            if content_hash == "h1"
            else f"00000000-0000-0001-{seed:04d}-{i:012d}",
            dense=_vec(seed + i),
            sparse=BM25.embed_documents([texts[i]])[0],
            payload={
                "doc_id": doc_id,
                "chunk_index": i,
                "n_chunks": n,
                "content_hash": content_hash,
                "source": source,
                "year": year,
                "text": texts[i],
            },
        )
        for i in range(n)
    ]


def _make(kind: str, path: Path) -> VectorStore:
    if kind == "edge":
        return EdgeStore(path / "edge")
    if kind == "qdrant-memory":
        return QdrantClientStore(location=":memory:")
    return QdrantClientStore(path=path / "qdrant-local")


KINDS = ["edge", "qdrant-memory", "qdrant-path"]


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = _make(request.param, tmp_path)
    s.init(INFO)
    for d in DOCS:
        s.upsert(_points(d))
    s.flush()
    yield s
    s.close()


def test_new_store_is_empty(tmp_path: Path) -> None:
    for kind in KINDS:
        s = _make(kind, tmp_path / kind)
        assert s.info() is None
        assert s.count() == 0 and s.doc_states(["pmid:1"]) == {}
        s.close()


def test_counts_and_facets(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    assert store.info() == INFO
    assert store.count() == 6
    assert store.count([Condition("source", any=("guideline",))]) == 2
    assert store.count([Condition("year", gte=2010)]) == 4
    assert store.facet("source") == {"pubmed": 4, "guideline": 2}
    assert store.facet("source", [Condition("chunk_index", any=(0,))]) == {
        "pubmed": 2,
        "guideline": 1,
    }
    assert len(store.point_ids()) == 6
    assert len(store.point_ids([Condition("doc_id", any=("pmid:1",))])) == 2


def test_payloads_stream_every_point_in_batches(store: VectorStore) -> None:
    got = dict(store.payloads(batch=4))  # 6 points: two batches
    want = {p.id: dict(p.payload) for d in DOCS for p in _points(d)}
    assert got == want
    only = dict(store.payloads([Condition("source", any=("guideline",))], batch=1))
    assert {v["doc_id"] for v in only.values()} == {"uspstf:3"} and len(only) == 2


def test_doc_states_detect_complete_and_partial(store: VectorStore) -> None:
    states = store.doc_states(["pmid:1", "pmid:2", "pmid:404"])
    assert set(states) == {"pmid:1", "pmid:2"}
    assert states["pmid:1"].complete and states["pmid:1"].content_hash == "h1"
    store.upsert(_points("pmid:2", n=3, content_hash="h2")[:1])  # a partial new version
    assert not store.doc_states(["pmid:2"])["pmid:2"].complete


def test_upsert_is_idempotent_and_delete_by_doc(store: VectorStore) -> None:
    store.upsert(_points("pmid:1"))
    assert store.count() == 6
    store.delete_docs(["pmid:1", "pmid:404"])
    assert store.count() == 4
    assert "pmid:1" not in store.doc_states(["pmid:1"])


def test_dense_sparse_and_hybrid_queries(store: VectorStore) -> None:
    target = _points("pmid:2")[0]
    kw = dict(k=3, prefetch=10, rrf_k=60)
    dense = store.query(StoreQuery(dense=target.dense, sparse=None, mode="dense", **kw))
    assert dense[0].id == target.id and dense[0].score == pytest.approx(1.0, abs=1e-4)
    sparse = store.query(
        StoreQuery(dense=None, sparse=BM25.embed_query("metformin diabetes"), mode="sparse", **kw)
    )
    assert {h.payload["doc_id"] for h in sparse} == {"pmid:2"}
    hybrid = store.query(
        StoreQuery(dense=target.dense, sparse=BM25.embed_query("metformin"), mode="hybrid", **kw)
    )
    assert hybrid[0].id == target.id
    assert hybrid[0].payload["text"].startswith("Metformin")
    filtered = store.query(
        StoreQuery(
            dense=target.dense,
            sparse=BM25.embed_query("metformin"),
            mode="hybrid",
            conditions=[Condition("source", any=("guideline",))],
            **kw,
        )
    )
    assert filtered and {h.payload["source"] for h in filtered} == {"guideline"}


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_same_results_on_every_backend(tmp_path: Path, fusion: Fusion) -> None:
    q = _vec(7)
    sparse = BM25.embed_query("aspirin myocardial")  # no ties: ties may break either way
    results = []
    for kind in KINDS:
        s = _make(kind, tmp_path / kind)
        s.init(INFO)
        for d in DOCS:
            s.upsert(_points(d))
        hits = s.query(
            StoreQuery(
                dense=q, sparse=sparse, k=6, mode="hybrid", prefetch=10, rrf_k=60, fusion=fusion
            )
        )
        results.append([h.id for h in hits])
        s.close()
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("kind", ["edge", "qdrant-path"])
def test_reopen_keeps_data_and_refuses_another_model(kind: str, tmp_path: Path) -> None:
    s = _make(kind, tmp_path)
    s.init(INFO)
    s.upsert(_points("pmid:1"))
    s.close()
    s = _make(kind, tmp_path)
    assert s.info() == INFO and s.count() == 2
    with pytest.raises(StoreError, match="384"):
        s.init(StoreInfo(embedding_model="other", dim=384, sparse_model="bm25-english"))
    s.close()


def test_edge_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an evidex store"):
        EdgeStore(tmp_path / "x")


def test_nested_clauses(store: VectorStore) -> None:
    from retrieval.stores.base import AllOf, AnyOf, Not

    guideline = Condition("source", any=("guideline",))
    recent = Condition("year", gte=2010)
    # (not a guideline) or (a guideline from 2010 on): everything here
    assert store.count([AnyOf((Not(guideline), AllOf((guideline, recent))))]) == 6
    # not a guideline and recent: only pmid:2
    assert store.point_ids([Not(guideline), recent]) == store.point_ids(
        [Condition("doc_id", any=("pmid:2",))]
    )
    assert store.count([Not(Condition("doc_id", any=("pmid:1", "pmid:2")))]) == 2
