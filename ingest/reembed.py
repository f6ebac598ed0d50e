"""Rebuilding a store's vectors with another embedding model (``evidex index reembed``).

The points are copied with their payloads unchanged and new vectors (the model's dense vector,
BM25 recomputed from the same text, BGE-M3's learned sparse when the model has it) into a new
store that records the new model. The old store is untouched until the new one is complete;
then, when no ``--out`` is given, the new store takes the old one's place and the old one is
kept beside it as ``<store>.before-reembed``. A killed job resumes: points already in the new
store are not embedded again, and a re-run adds nothing.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrieval.embedders import LearnedSparseEmbedder
from retrieval.errors import ConfigError
from retrieval.index import Index
from retrieval.settings import Settings
from retrieval.stores import StoreError
from retrieval.stores.base import PointRecord

log = logging.getLogger(__name__)


@dataclass
class ReembedReport:
    """What a re-embed did."""

    store: str
    model: str
    dim: int
    points: int
    embedded: int
    already_done: int
    seconds: float
    replaced: bool
    backup: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _local(settings: Settings, path: Path | None) -> Path:
    if settings.store.kind == "qdrant" and settings.store.url:
        raise ConfigError(
            "re-embedding in place is for local stores; for a Qdrant server give --out (a new "
            "local store), or re-ingest into a new collection"
        )
    return Path(path or settings.store_path)


def reembed(
    settings: Settings,
    model: Path,
    store: Path | None = None,
    out: Path | None = None,
    *,
    batch: int = 256,
    progress: bool | None = None,
) -> ReembedReport:
    """Re-embed ``store`` (default: the configured one) with the model folder ``model`` into
    ``out``, or in place (see the module doc)."""
    from tqdm import tqdm

    from ingest.chunking import Chunker

    model = Path(model)
    if not (model / "config.json").exists() and not (model / "modules.json").exists():
        raise ConfigError(f"{model} is not a sentence-transformers model folder")
    src_path = _local(settings, store)
    if not src_path.exists():
        raise StoreError(f"no store at {src_path}: ingest a corpus first")
    in_place = out is None
    target = Path(out) if out else src_path.with_name(src_path.name + ".reembed-partial")
    if target.resolve() == src_path.resolve():
        raise ConfigError("--out must be another folder than the store itself")
    new_settings = settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"model_path": model})}
    )
    t0 = time.perf_counter()
    with Index(settings, src_path, create=False) as src:
        info = src.store.info()
        if info is None:
            raise StoreError(f"{src_path} holds no evidex store")
        dst = Index(new_settings, target)
        try:
            emb = dst.embedder
            if in_place and emb.dim != info.dim:
                raise ConfigError(
                    f"{model} makes {emb.dim}-d vectors and the store holds {info.dim}-d ones: "
                    "give --out for a store of the new dimension (and point embedding.model_path "
                    "at the model to search it)"
                )
            dst.ensure_store()  # refuses a half-built store of another model
            done = dst.store.point_ids()
            total = src.store.count()
            chunker = Chunker(emb, new_settings.ingest.chunking)
            prefixes: dict[str, str] = {}
            embedded = 0
            bar = tqdm(total=total, desc="re-embed", unit="chunk", disable=progress is False)
            bar.update(len(done))
            pending: list[tuple[str, dict[str, Any], str]] = []

            def flush() -> None:
                nonlocal embedded
                if not pending:
                    return
                texts = [t for _, _, t in pending]
                dense = emb.embed_documents(texts)
                sparse = dst.bm25.embed_documents(texts)
                learned = (
                    emb.embed_sparse(texts) if isinstance(emb, LearnedSparseEmbedder) else None
                )
                dst.store.upsert([
                    PointRecord(id=pid, dense=dense[i], sparse=sparse[i], payload=payload,
                                learned=learned[i] if learned is not None else None)
                    for i, (pid, payload, _) in enumerate(pending)
                ])  # fmt: skip
                embedded += len(pending)
                bar.update(len(pending))
                pending.clear()

            for pid, payload in src.store.payloads(batch=batch):
                if pid in done:
                    continue
                title = str(payload.get("title") or "")
                if title not in prefixes:
                    prefixes[title] = chunker.title_prefix(title)
                pending.append((pid, payload, prefixes[title] + str(payload.get("text") or "")))
                if len(pending) >= batch:
                    flush()
            flush()
            bar.close()
            dst.store.flush()
            complete = dst.store.count() == total
        finally:
            dst.close()
    if not complete:
        raise StoreError(f"the re-embedded store at {target} is incomplete; run again to resume")
    backup = None
    if in_place:
        old = src_path.with_name(src_path.name + ".before-reembed")
        if old.exists():
            shutil.rmtree(old)
        src_path.rename(old)
        target.rename(src_path)
        backup = str(old)
        log.info("re-embedded %s with %s; the old store is kept at %s", src_path, model, old)
    return ReembedReport(
        store=str(src_path if in_place else target), model=emb.name, dim=emb.dim, points=total,
        embedded=embedded, already_done=len(done), seconds=round(time.perf_counter() - t0, 2),
        replaced=in_place, backup=backup,
    )  # fmt: skip
