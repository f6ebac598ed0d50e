"""The Python search API: ``search(query, k, filters)``, sync, async and batched.

Example::

    from retrieval.search import Searcher

    with Searcher() as s:
        for p in s.search("statins for primary prevention", k=5,
                          filters={"year_from": 2015, "evidence_levels": ["systematic_review"]}):
            print(p.pmid, p.title, p.score, p.score_parts)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.filters import SearchFilters
from retrieval.index import Index
from retrieval.settings import Settings, load_settings
from retrieval.stores.base import SearchMode
from retrieval.types import IndexStats, ScoredPassage

FiltersLike = SearchFilters | Mapping[str, Any] | None


def as_filters(filters: FiltersLike) -> SearchFilters | None:
    """Accept a :class:`SearchFilters` or a plain mapping (validated; unknown keys rejected)."""
    if filters is None or isinstance(filters, SearchFilters):
        return filters
    return SearchFilters.model_validate(dict(filters))


class Searcher:
    """Search an existing evidex index. Thread-safe; one instance per process is enough."""

    def __init__(self, settings: Settings | None = None, store: Path | None = None) -> None:
        self.settings = settings or load_settings()
        self.index = Index(self.settings, store, create=False)
        self._lock = threading.Lock()

    def search(
        self,
        query: str,
        k: int | None = None,
        filters: FiltersLike = None,
        mode: SearchMode | None = None,
        rerank: bool = False,
    ) -> list[ScoredPassage]:
        """Top ``k`` passages for ``query``, best first, with their score parts; with
        ``rerank`` the configured reranker reads the top candidates (slower: interactive
        search leaves it out, answering uses it)."""
        f = as_filters(filters)
        with self._lock:
            return self.index.search(query, k=k, mode=mode, filters=f, rerank=rerank)

    def search_batch(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filters: FiltersLike = None,
        mode: SearchMode | None = None,
        rerank: bool = True,
    ) -> list[list[ScoredPassage]]:
        """One result list per query (the query embeddings are computed in one batch); the
        answer pipeline's call, so the configured reranker is used unless ``rerank=False``."""
        f = as_filters(filters)
        with self._lock:
            return self.index.search_many(list(queries), k=k, mode=mode, filters=f,
                                          rerank=rerank)  # fmt: skip

    async def asearch(
        self,
        query: str,
        k: int | None = None,
        filters: FiltersLike = None,
        mode: SearchMode | None = None,
        rerank: bool = False,
    ) -> list[ScoredPassage]:
        """:meth:`search` without blocking the event loop."""
        return await asyncio.to_thread(self.search, query, k, filters, mode, rerank)

    async def asearch_batch(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filters: FiltersLike = None,
        mode: SearchMode | None = None,
    ) -> list[list[ScoredPassage]]:
        """:meth:`search_batch` without blocking the event loop."""
        return await asyncio.to_thread(self.search_batch, queries, k, filters, mode)

    def stats(self) -> IndexStats:
        with self._lock:
            return self.index.stats()

    def close(self) -> None:
        with self._lock:
            self.index.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def search(
    query: str,
    k: int | None = None,
    filters: FiltersLike = None,
    settings: Settings | None = None,
    store: Path | None = None,
) -> list[ScoredPassage]:
    """One-off search (opens and closes the index; keep a :class:`Searcher` for many)."""
    with Searcher(settings, store) as s:
        return s.search(query, k, filters)
