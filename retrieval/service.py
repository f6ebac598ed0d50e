"""The search service: evidex retrieval over HTTP for other apps and for RL rollouts.

* ``GET /health`` – status and index size.
* ``POST /search`` – ``{"query", "k"?, "mode"?, "filters"?}`` -> ranked passages with score parts.
* ``POST /retrieve`` – the Search-R1 retriever shape: ``{"queries": [...], "topk": 3,
  "return_scores": true}`` -> ``{"result": [[{"document": {"id", "contents", ...},
  "score"}, ...], ...]}``.

Started by ``evidex serve-search``. Bad requests get a 4xx with a ``detail`` that says what is
wrong; the index is searched by one worker at a time (CPU-bound), so concurrent clients queue
instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import EvidexError
from retrieval.filters import SearchFilters
from retrieval.search import Searcher
from retrieval.settings import Settings
from retrieval.types import ScoredPassage

log = logging.getLogger(__name__)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="A clinical question or search terms.")
    k: int | None = Field(None, ge=1, le=1000, description="Passages to return.")
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(None, description="Search mode.")
    filters: SearchFilters | None = Field(None, description="Restrictions; see SearchFilters.")


class SearchResponse(BaseModel):
    query: str
    results: list[ScoredPassage]


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(min_length=1, max_length=512, description="Queries to answer.")
    topk: int = Field(3, ge=1, le=100, description="Passages per query.")
    return_scores: bool = Field(True, description="Wrap each document with its score.")
    filters: SearchFilters | None = Field(None, description="Restrictions for every query.")


def _document(p: ScoredPassage) -> dict[str, Any]:
    title = p.title or (f"PMID {p.pmid}" if p.pmid else p.doc_id)
    return {
        "id": p.chunk_id,
        "doc_id": p.doc_id,
        "title": title,
        "pmid": p.pmid,
        "url": p.url,
        "evidence_level": p.evidence_level,
        "contents": f'"{title}"\n{p.text}',
    }


def create_app(searcher: Searcher) -> FastAPI:
    """The FastAPI application over an open :class:`Searcher`."""
    app = FastAPI(title="evidex search", version="1")

    def guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EvidexError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    @app.get("/health")
    def health() -> dict[str, Any]:
        stats = searcher.stats()
        return {
            "status": "ok",
            "documents": stats.documents,
            "chunks": stats.chunks,
            "embedding_model": stats.embedding_model,
        }

    @app.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> SearchResponse:
        hits = guarded(searcher.search, req.query, req.k, req.filters, req.mode)
        return SearchResponse(query=req.query, results=hits)

    @app.post("/retrieve")
    def retrieve(req: RetrieveRequest) -> dict[str, Any]:
        results = guarded(searcher.search_batch, req.queries, req.topk, req.filters)
        out = []
        for hits in results:
            docs = [_document(h) for h in hits]
            out.append(
                [{"document": d, "score": h.score} for d, h in zip(docs, hits, strict=True)]
                if req.return_scores
                else docs
            )
        return {"result": out}

    return app


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], Any] | None = None,
) -> None:
    """Serve the index of ``settings`` on ``host:port`` until stopped (``evidex
    serve-search``). The embedding model is loaded before the first request."""
    import uvicorn

    searcher = Searcher(settings)
    try:
        searcher.index.embedder  # load the model before the first request  # noqa: B018
        if on_ready:
            on_ready(
                f"evidex search service on http://{host}:{port} (store {searcher.index.where})"
            )
        uvicorn.run(create_app(searcher), host=host, port=port, log_level="warning")
    finally:
        searcher.close()
