"""BGE-M3 through FlagEmbedding: dense + learned sparse vectors beside BM25, end to end on a
tiny random XLM-RoBERTa built in-process (real BGE-M3 weights are configured by path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import run_ingest
from ingest.sources.files import records
from retrieval.embedders import BgeM3Embedder, EmbedderError, LearnedSparseEmbedder
from retrieval.index import Index
from retrieval.settings import load_settings
from tests.conftest import build_tiny_model, shared_path

pytest.importorskip("FlagEmbedding", reason="the [bge] extra (FlagEmbedding) is not installed")


@pytest.fixture(scope="module")
def tiny_bge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaModel

    out = tmp_path_factory.mktemp("models") / "tiny-bge-m3"
    # pad id 0 = MiniLM's [PAD]
    return build_tiny_model(
        out, XLMRobertaModel, XLMRobertaConfig, max_position_embeddings=514, pad_token_id=0
    )


def test_dense_and_learned_sparse(tiny_bge: Path) -> None:
    emb = BgeM3Embedder(tiny_bge)
    assert isinstance(emb, LearnedSparseEmbedder)
    dense = emb.embed_documents(["aspirin after myocardial infarction", "metformin"])
    assert dense.shape == (2, 32)
    sparse = emb.embed_sparse(["aspirin after myocardial infarction"])[0]
    assert sparse.indices and len(sparse.indices) == len(sparse.values)


def test_index_with_bge_m3_fuses_three_branches(tmp_path: Path, tiny_bge: Path) -> None:
    corpus = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    small = tmp_path / "corpus.jsonl"
    small.write_text("\n".join(corpus.read_text().splitlines()[:20]) + "\n")
    settings = load_settings(
        embedding={"kind": "bge-m3", "model_path": tiny_bge, "max_tokens": 256}
    )
    idx = Index(settings, tmp_path / "store")
    report = run_ingest(records("beir", [small], pmid_ids=True), idx, progress=False)
    assert report.written == 20
    info = idx.store.info()
    assert info is not None and info.learned_sparse and info.embedding_model == "tiny-bge-m3"
    hits = idx.search("programmed cell death in the lace plant", k=3, mode="hybrid")
    assert hits and hits[0].pmid == "21645374"  # BM25 carries it; the fusion keeps it on top
    from ingest.ray_engine import ingest_ray
    from retrieval.errors import ConfigError

    with pytest.raises(ConfigError, match="learned sparse vectors are not computed"):
        ingest_ray([small], idx, "beir")  # refused before Ray starts or anything is written
    assert idx.store.count() == report.chunks
    idx.close()


def test_bge_m3_needs_a_path() -> None:
    from retrieval.embedders import load_embedder
    from retrieval.settings import EmbeddingSettings

    with pytest.raises(EmbedderError, match="model_path"):
        load_embedder(EmbeddingSettings(kind="bge-m3"))
