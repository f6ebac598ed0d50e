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
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    out = tmp_path_factory.mktemp("models") / "tiny-bge-m3"
    # pad id 0 = MiniLM's [PAD]
    path = build_tiny_model(
        out, XLMRobertaModel, XLMRobertaConfig, max_position_embeddings=514, pad_token_id=0
    )
    # BGE-M3's sparse and ColBERT heads, as a real checkpoint has them: without both files
    # FlagEmbedding draws new random heads at every load (two loads would disagree)
    hidden = int(XLMRobertaConfig.from_pretrained(path).hidden_size)
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(hidden, 1).state_dict(), path / "sparse_linear.pt")
    torch.save(torch.nn.Linear(hidden, hidden).state_dict(), path / "colbert_linear.pt")
    return path


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
    idx.close()


def test_the_ray_engine_writes_bge_m3s_three_vectors(
    tmp_path: Path, tiny_bge: Path, local_ray: object
) -> None:
    """The Ray engine's actors compute the learned sparse vectors too: its points (dense,
    BM25, learned sparse, payloads) are the default engine's, and hybrid search agrees."""
    from ingest.ray_engine import ingest_ray

    corpus = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    small = tmp_path / "corpus.jsonl"
    small.write_text("\n".join(corpus.read_text().splitlines()[:12]) + "\n")
    settings = load_settings(
        embedding={"kind": "bge-m3", "model_path": tiny_bge, "max_tokens": 256}
    )
    out = {}
    for engine in ("local", "ray"):
        with Index(settings, tmp_path / engine) as idx:
            if engine == "ray":

                def refuse(texts: object) -> None:
                    raise AssertionError("the driver embedded: the actors' vectors were not used")

                emb = idx.embedder
                emb.embed_documents = refuse  # type: ignore[method-assign]
                emb.embed_sparse = refuse  # type: ignore[attr-defined]
                r = ingest_ray([small], idx, "beir", pmid_ids=True, progress=False)
                del emb.embed_documents, emb.embed_sparse  # queries are embedded here
            else:
                r = run_ingest(records("beir", [small], pmid_ids=True), idx, progress=False)
            assert r.written == 12
            hits = idx.search("programmed cell death in the lace plant", k=5, mode="hybrid")
            # the fused scores carry all three branches (one missing would change them)
            out[engine] = ([(h.chunk_id, round(h.score, 5)) for h in hits],
                           dict(idx.store.payloads()), idx.store.info())  # fmt: skip
    assert out["ray"] == out["local"] and out["ray"][2].learned_sparse


def test_bge_m3_needs_a_path() -> None:
    from retrieval.embedders import load_embedder
    from retrieval.settings import EmbeddingSettings

    with pytest.raises(EmbedderError, match="model_path"):
        load_embedder(EmbeddingSettings(kind="bge-m3"))
