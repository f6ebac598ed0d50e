"""Rerankers: a cross-encoder reads query and passage together and scores their relevance.

Both kinds load from a local path (nothing is downloaded): sentence-transformers
``CrossEncoder`` (e.g. MedCPT-Cross-Encoder, ms-marco MiniLM) and FlagEmbedding
``FlagReranker`` (e.g. bge-reranker-v2-m3, the ``[bge]`` extra). No reranker is configured by
default: no reranker with its weights can be installed from a package registry, and the
default stays fast without one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from retrieval.embedders import EmbedderError
from retrieval.settings import RerankSettings


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant, in [0, 1]."""

    @property
    def name(self) -> str:
        """Model name shown with the scores."""

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """One relevance probability per passage."""


def trained_weight(path: Path) -> float:
    """The blend weight ``evidex train reranker`` chose for the model in ``path`` on held-out
    queries (``evidex_reranker.json``); 1.0 (the reranker alone) for any other model."""
    import json

    meta = Path(path) / "evidex_reranker.json"
    try:
        return float(json.loads(meta.read_text()).get("weight", 1.0)) if meta.exists() else 1.0
    except (ValueError, TypeError, AttributeError) as exc:
        raise EmbedderError(f"{meta} is not valid: {exc}") from exc


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` from a local folder."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        if not Path(path).exists():
            raise EmbedderError(f"reranker folder {path} does not exist")
        self._model = CrossEncoder(str(path), device=device, local_files_only=True)
        self._batch = batch_size
        self._name = Path(path).name
        self._lock = threading.Lock()
        self.weight = trained_weight(Path(path))

    @property
    def name(self) -> str:
        return self._name

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        import torch

        with self._lock:
            out = self._model.predict(
                [(query, p) for p in passages],
                batch_size=self._batch,
                activation_fn=torch.nn.Sigmoid(),
                show_progress_bar=False,
            )
        return [float(x) for x in out]


class FlagRerankerReranker:
    """FlagEmbedding's ``FlagReranker`` (bge-reranker family) from a local folder."""

    def __init__(self, path: Path, device: str = "cpu", batch_size: int = 32) -> None:
        try:
            from FlagEmbedding import FlagReranker
        except ImportError as exc:
            raise EmbedderError(
                "rerank.kind='flag' needs FlagEmbedding: pip install 'evidex[bge]'"
            ) from exc
        if not Path(path).exists():
            raise EmbedderError(f"reranker folder {path} does not exist")
        self._model: Any = FlagReranker(str(path), use_fp16=False, devices=[device])
        self._batch = batch_size
        self._name = Path(path).name

    @property
    def name(self) -> str:
        return self._name

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        out = self._model.compute_score(
            [[query, p] for p in passages], batch_size=self._batch, normalize=True
        )
        return [float(x) for x in (out if isinstance(out, list) else [out])]


_CACHE: dict[tuple[str, str, str], Reranker] = {}
_LOCK = threading.Lock()


def load_reranker(settings: RerankSettings, device: str = "cpu") -> Reranker | None:
    """The configured reranker (built once per process), or None when there is none."""
    if settings.kind == "none":
        return None
    if settings.model_path is None:
        raise EmbedderError(f"rerank.kind={settings.kind!r} needs rerank.model_path")
    key = (settings.kind, str(settings.model_path), device)
    with _LOCK:
        if key not in _CACHE:
            cls = CrossEncoderReranker if settings.kind == "cross-encoder" else FlagRerankerReranker
            _CACHE[key] = cls(settings.model_path, device, settings.batch_size)
        return _CACHE[key]
