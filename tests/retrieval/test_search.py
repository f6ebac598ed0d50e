"""Search on a real index: score parts, evidence-aware ranking, per-document cap, reranking
with a cross-encoder (a tiny random one built in-process), and bad queries."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ingest.pipeline import run_ingest
from ingest.sources.files import records
from retrieval.index import Index
from retrieval.settings import load_settings
from retrieval.stores.base import StoreError
from tests.conftest import build_tiny_model, shared_path


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("search")
    idx = Index(load_settings(data_dir=tmp), tmp / "store")
    src = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    small = tmp / "corpus.jsonl"
    small.write_text("\n".join(src.read_text().splitlines()[:80]) + "\n")
    run_ingest(records("beir", [small], pmid_ids=True), idx, progress=False)
    run_ingest(
        records("guidelines", [shared_path("guidelines", "uspstf_recommendations.json")]),
        idx,
        progress=False,
    )
    idx.close()
    return tmp / "store"


def _index(store_dir: Path, **search: object) -> Index:
    return Index(load_settings(search=search), store_dir, create=False)


def test_hybrid_hits_carry_their_score_parts(store_dir: Path) -> None:
    idx = _index(store_dir)
    hits = idx.search("programmed cell death in lace plant leaves", k=5)
    assert hits[0].pmid == "21645374"
    top = hits[0].score_parts
    assert {"dense", "bm25", "fused", "relevance", "evidence", "recency", "final"} <= set(top)
    assert top["relevance"] == 1.0 and hits[0].score == top["final"]
    assert all(h.score >= n.score for h, n in itertools.pairwise(hits))
    dense_only = idx.search("programmed cell death in lace plant leaves", k=3, mode="dense")
    assert set(dense_only[0].score_parts) >= {"dense", "final"}
    assert "bm25" not in dense_only[0].score_parts
    idx.close()


def test_at_most_n_passages_per_document(store_dir: Path) -> None:
    idx = _index(store_dir, max_per_doc=1)
    hits = idx.search("cancer screening recommendation", k=10)
    docs = [h.doc_id for h in hits]
    assert len(docs) == len(set(docs)) == 10
    idx.close()


def test_evidence_weight_lifts_guidelines(store_dir: Path) -> None:
    q = "screening adults for high blood pressure"
    plain = _index(store_dir).search(q, k=10, ranking=False)
    boosted = _index(store_dir, evidence_weight=2.0).search(q, k=10)
    rank = [h.source for h in boosted]
    assert rank[0] == "guideline"
    assert sum(s == "guideline" for s in rank) >= sum(h.source == "guideline" for h in plain)
    assert boosted[0].score_parts["evidence"] == 1.0


def test_bad_queries_are_clear_errors(store_dir: Path, tmp_path: Path) -> None:
    idx = _index(store_dir)
    with pytest.raises(ValueError, match="empty"):
        idx.search("   \n ")
    with pytest.raises(ValueError, match="50,000 characters"):
        idx.search("a" * 50_000)
    assert idx.search("zzzz qqqq xxxx", k=3, mode="sparse") == []
    idx.close()
    with pytest.raises(StoreError, match="no index at"):
        Index(load_settings(), tmp_path / "missing", create=False)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("models") / "tiny-cross-encoder"
    return build_tiny_model(out, BertForSequenceClassification, BertConfig, num_labels=1)


def test_cross_encoder_reranks_the_candidates(store_dir: Path, tiny_cross_encoder: Path) -> None:
    from retrieval.rerankers import CrossEncoderReranker

    ce = CrossEncoderReranker(tiny_cross_encoder)
    q = "lace plant programmed cell death"
    idx = _index(
        store_dir,
        rerank={"kind": "cross-encoder", "model_path": tiny_cross_encoder, "candidates": 12},
    )
    hits = idx.search(q, k=5)
    assert all("rerank" in h.score_parts for h in hits)
    expected = ce.score(q, [h.text for h in hits])
    assert [h.score_parts["rerank"] for h in hits] == pytest.approx(expected, abs=1e-5)
    finals = [h.score_parts["relevance"] for h in hits]
    assert finals == sorted(finals, reverse=True)  # ordered by the reranker's scores
    assert "rerank_ms" in idx.last_timings
    plain = idx.search(q, k=5, rerank=False)
    assert all("rerank" not in h.score_parts for h in plain)
    idx.close()


def test_neighbouring_chunks_are_merged(store_dir: Path) -> None:
    src = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    import json

    doc = json.loads(src.read_text().splitlines()[0])  # the lace-plant abstract: 2+ chunks
    idx = _index(store_dir)
    hits = idx.search(doc["text"][:3000], k=3, mode="sparse")
    top = hits[0]
    assert top.pmid == doc["_id"] and len(top.merged_chunk_ids) >= 2
    assert top.text.count("\n") >= 1
    idx.close()
    plain = _index(store_dir, merge_neighbors=False).search(doc["text"][:3000], k=3, mode="sparse")
    assert not plain[0].merged_chunk_ids and len({h.doc_id for h in plain[:2]}) == 1


def test_a_store_in_use_is_a_clear_error(store_dir: Path) -> None:
    first = _index(store_dir)
    with pytest.raises(StoreError, match="open in another evidex process"):
        _index(store_dir)
    first.close()


def test_mmr_diversifies(store_dir: Path) -> None:
    q = "cancer screening recommendation for adults"
    plain = [h.chunk_id for h in _index(store_dir, max_per_doc=3).search(q, k=8)]
    same = [h.chunk_id for h in _index(store_dir, max_per_doc=3, mmr_lambda=1.0).search(q, k=8)]
    diverse = _index(store_dir, max_per_doc=3, mmr_lambda=0.3).search(q, k=8)
    assert same == plain
    assert [h.chunk_id for h in diverse] != plain
    assert all("mmr" in h.score_parts for h in diverse)


def test_one_off_search_function(store_dir: Path) -> None:
    from retrieval.search import search

    hits = search(
        "lace plant programmed cell death",
        k=2,
        filters={"year_from": 2000},
        settings=load_settings(),
        store=store_dir,
    )
    assert len(hits) == 2 and hits[0].pmid == "21645374"


def test_chinese_queries_get_a_hint(store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    idx = _index(store_dir)
    with caplog.at_level("WARNING"):
        hits = idx.search("阿司匹林能预防心血管事件吗？", k=3)
    assert "BGE-M3" in caplog.text and "BM25 alone" in caplog.text
    assert hits == []  # BM25 alone: no unrelated English hits from English-only vectors
    assert idx.search("阿司匹林 aspirin", k=3)  # mixed text still finds the English word
    idx.close()
    multi = Index(load_settings(embedding={"multilingual": True}), store_dir, create=False)
    assert multi.language_note("阿司匹林") is None  # a multilingual model reads it
    multi.close()
