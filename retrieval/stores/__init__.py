"""Vector stores: Qdrant Edge (embedded, default) and qdrant-client (server / local mode)."""

from __future__ import annotations

from pathlib import Path

from retrieval.settings import Settings
from retrieval.stores.base import StoreError, VectorStore


def open_store(settings: Settings, path: Path | None = None, *, create: bool = True) -> VectorStore:
    """Open the configured store; ``path`` overrides the store folder.

    With ``create=False`` a missing store is an error that names the path.
    """
    if settings.store.kind == "qdrant" and (settings.store.url or str(path) == ":memory:"):
        from retrieval.stores.qdrant import QdrantClientStore

        return QdrantClientStore(
            url=settings.store.url,
            api_key=settings.store.api_key.get_secret_value() if settings.store.api_key else None,
            location=":memory:" if str(path) == ":memory:" else None,
            collection=settings.store.collection,
            timeout_s=settings.store.timeout_s,
            cluster=settings.store.cluster,
        )
    folder = Path(path) if path is not None else settings.store_path
    if not create and not folder.exists():
        raise StoreError(
            f"no index at {folder}: ingest something first (evidex ingest ...) "
            "or pass --store with the folder of an existing index"
        )
    if settings.store.kind == "qdrant":
        from retrieval.stores.qdrant import QdrantClientStore

        return QdrantClientStore(
            path=folder, collection=settings.store.collection, cluster=settings.store.cluster
        )
    from retrieval.stores.edge import EdgeStore

    return EdgeStore(folder)


__all__ = ["StoreError", "VectorStore", "open_store"]
