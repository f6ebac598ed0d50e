"""The search service: evidex retrieval over HTTP for other apps and for RL rollouts.

* ``GET /health`` – status and index size (only the status without a key when keys are set).
* ``POST /search`` – ``{"query", "k"?, "mode"?, "filters"?}`` -> ranked passages with score parts.
* ``POST /retrieve`` – the Search-R1 retriever shape: ``{"queries": [...], "topk": 3,
  "return_scores": true}`` -> ``{"result": [[{"document": {"id", "contents", ...},
  "score"}, ...], ...]}``.

Started by ``evidex serve-search``. What guards it (settings ``service.*``):

* **API keys**: with ``service.api_keys`` (SHA-256 hashes), every request but ``/health`` needs
  ``Authorization: Bearer KEY`` (401 otherwise). On a non-loopback address the service refuses
  to start without keys. On loopback the ``Host`` header must name loopback (or one of
  ``service.allowed_hosts``): a web page cannot reach it through DNS rebinding (421).
* **Limits**: the body (413 past ``max_body_bytes``), the queries per call, ``k``/``topk``,
  filter list lengths and query lengths; errors quote at most a short excerpt of the input.
* **A bounded worker**: searches run in one worker thread off the event loop, so ``/health``
  answers while they run; at most ``max_pending`` requests wait or run, and past that, or past
  ``timeout_s``, the answer is 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import ConfigError, EvidexError
from retrieval.filters import SearchFilters
from retrieval.search import Searcher
from retrieval.settings import ServiceSettings, Settings
from retrieval.types import ScoredPassage

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
EXCERPT = 60  # characters of a bad input quoted back in an error


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A short, safe quotation of a bad input for an error message.

    >>> excerpt("x" * 100, 10)
    "'xxxxxxxx… (100 characters)"
    >>> excerpt({"a": 1})
    "{'a': 1}"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes | list | tuple | dict) else len(text)
    return f"{text[: limit - 1]}… ({size:,} {'characters' if isinstance(value, str) else 'items'})"


def new_key() -> tuple[str, str]:
    """A new API key and the ``sha256:`` hash to put in ``service.api_keys``."""
    key = "evx_" + secrets.token_urlsafe(32)
    return key, key_hash(key)


def key_hash(key: str) -> str:
    """The ``service.api_keys`` entry of ``key``.

    >>> key_hash("k")[:14]
    'sha256:8254c32'
    """
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to bind) is loopback only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host.strip("[]").lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="A clinical question or search terms.")
    k: int | None = Field(None, ge=1, le=1000, description="Passages to return.")
    mode: Literal["dense", "sparse", "hybrid"] | None = Field(None, description="Search mode.")
    filters: SearchFilters | None = Field(None, description="Restrictions; see SearchFilters.")
    rerank: bool = Field(
        False, description="Let the configured reranker read the top candidates (slower)."
    )


class SearchResponse(BaseModel):
    query: str
    results: list[ScoredPassage]


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queries: list[str] = Field(min_length=1, max_length=1024, description="Queries to answer.")
    topk: int = Field(3, ge=1, le=1000, description="Passages per query.")
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


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def authorized(headers: Mapping[str, str], hashes: frozenset[str]) -> bool:
    """Whether the lower-cased ``headers`` carry a bearer key whose hash is in ``hashes``.

    >>> authorized({"authorization": "Bearer k"}, frozenset({key_hash("k")}))
    True
    >>> authorized({"authorization": "Bearer x"}, frozenset({key_hash("k")}))
    False
    """
    return matching_key(headers, hashes) is not None


def matching_key(headers: Mapping[str, str], hashes: frozenset[str]) -> str | None:
    """The hash in ``hashes`` of the bearer key the headers carry, or None (every hash is
    compared, in constant time each)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    seen = key_hash(token.strip())
    found = [h for h in sorted(hashes) if hmac.compare_digest(seen, h)]
    return found[0] if found else None


def client_id(scope: Mapping[str, Any]) -> str:
    """Who called, for audit logs: ``key:<8 hex of its hash>``, or ``local`` without keys."""
    return str(scope.get("state", {}).get("client", "local"))


class _Guard:
    """ASGI middleware in front of the app: the Host check, the API key and the body limit.
    The body is read here (up to the limit) and replayed to the app."""

    def __init__(
        self, app: Any, *, hashes: frozenset[str], max_body: int, hosts: frozenset[str] | None
    ) -> None:
        self.app, self.hashes, self.max_body, self.hosts = app, hashes, max_body, hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        reply: JSONResponse | None = None
        if self.hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.hosts:
                reply = _error(
                    421,
                    f"Host {excerpt(host, 40)} is not this service's name: it listens on "
                    "loopback; call it as localhost or 127.0.0.1 (or add the name to "
                    "service.allowed_hosts)",
                )
        key = matching_key(headers, self.hashes) if self.hashes else None
        open_path = scope["path"] == "/health"
        if reply is None and self.hashes and not open_path and key is None:
            reply = _error(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY' (keys come "
                "from evidex keys new; their hashes go in service.api_keys)",
                {"WWW-Authenticate": "Bearer"},
            )
        if reply is None:
            declared = headers.get("content-length", "")
            if declared and (not declared.isdigit() or int(declared) > self.max_body):
                reply = self._too_large()
        if reply is not None:
            await reply(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await self._too_large()(scope, receive, send)
                return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            message: dict[str, Any] = await receive()
            return message

        scope["state"] = {**scope.get("state", {}),
                          "client": f"key:{key[7:15]}" if key else "local"}  # fmt: skip
        await self.app(scope, replay, send)

    def _too_large(self) -> JSONResponse:
        return _error(
            413,
            f"the request body is over {self.max_body:,} bytes (service.max_body_bytes): send "
            "fewer or shorter queries per call",
        )


class Worker:
    """One search thread off the event loop with a bounded number of requests in flight."""

    def __init__(
        self,
        max_pending: int,
        timeout_s: float,
        name: str = "search",
        settings: tuple[str, str] = ("service.max_pending", "service.timeout_s"),
    ) -> None:
        """``settings``: the names of the two limits, quoted in the 503s."""
        self.max_pending, self.timeout_s, self.name = max_pending, timeout_s, name
        self.pending_key, self.timeout_key = settings
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"evidex-{name}")
        self.in_flight = 0
        self._count = threading.Lock()

    def _busy(self, why: str) -> HTTPException:
        return HTTPException(503, detail=why, headers={"Retry-After": "2"})

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``fn(*args)`` on the worker; a 503 when ``max_pending`` are waiting or running."""
        if self.in_flight >= self.max_pending:
            raise self._busy(
                f"the {self.name} worker is busy ({self.in_flight} requests waiting or running; "
                f"{self.pending_key}): retry shortly"
            )
        with self._count:
            self.in_flight += 1
        future = self.pool.submit(fn, *args)
        future.add_done_callback(self._release)  # when the work ends, not when we stop waiting
        return future

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the worker, awaited up to ``timeout_s`` (503 past it); an
        :class:`EvidexError` is a 400 with its message."""
        future = self.submit(fn, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)),
                                          self.timeout_s)  # fmt: skip
        except TimeoutError:
            raise self._busy(
                f"the {self.name} took longer than {self.timeout_s:g} s ({self.timeout_key}): "
                "retry later"
            ) from None
        except EvidexError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None

    def _release(self, _: Any) -> None:
        with self._count:
            self.in_flight -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors()[:20]:
        item = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300]}
        if "input" in e:
            item["input"] = excerpt(e["input"])
        out.append(item)
    return out


def create_app(
    searcher: Searcher, service: ServiceSettings | None = None, host: str | None = None
) -> FastAPI:
    """The FastAPI application over an open :class:`Searcher`.

    ``host`` is the address it listens on: on loopback the ``Host`` header is checked."""
    service = service or ServiceSettings()
    app = FastAPI(title="evidex search", version="1")
    worker = Worker(service.max_pending, service.timeout_s)
    stats = searcher.stats()  # the store cannot change while the service holds it
    health_full = {
        "status": "ok",
        "documents": stats.documents,
        "chunks": stats.chunks,
        "embedding_model": stats.embedding_model,
    }
    hosts = None
    if host is not None and is_loopback(host):
        hosts = LOOPBACK_NAMES | {h.lower() for h in service.allowed_hosts}
    app.add_middleware(
        _Guard,
        hashes=frozenset(service.api_keys),
        max_body=service.max_body_bytes,
        hosts=hosts,
    )
    app.router.on_shutdown.append(worker.close)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_detail(exc))

    def check_k(k: int | None, what: str) -> None:
        if k is not None and k > service.max_k:
            raise HTTPException(422, f"{what} is {k}; the limit is {service.max_k} (service.max_k)")

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        if service.api_keys and not authorized(
            {k.lower(): v for k, v in request.headers.items()}, frozenset(service.api_keys)
        ):
            return {"status": "ok"}
        return {**health_full, "in_flight": worker.in_flight}

    @app.post("/search", response_model=SearchResponse)
    async def search(req: SearchRequest) -> SearchResponse:
        check_k(req.k, "k")
        hits = await worker.run(
            searcher.search, req.query, req.k, req.filters, req.mode, req.rerank
        )
        return SearchResponse(query=req.query, results=hits)

    @app.post("/retrieve")
    async def retrieve(req: RetrieveRequest) -> dict[str, Any]:
        if len(req.queries) > service.max_queries:
            raise HTTPException(
                422,
                f"{len(req.queries)} queries in one call; the limit is {service.max_queries} "
                "(service.max_queries): split them over several calls",
            )
        check_k(req.topk, "topk")
        results = await worker.run(searcher.search_batch, req.queries, req.topk, req.filters)
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


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse a non-loopback address without API keys (a :class:`ConfigError` saying what to
    do)."""
    if not is_loopback(host) and not settings.service.api_keys:
        raise ConfigError(
            f"refusing to serve the index on {host} without API keys: anyone on the network "
            "could query it. Run evidex keys new, put the printed hash in service.api_keys "
            "(or EVIDEX_SERVICE__API_KEYS='[\"sha256:...\"]'), or listen on 127.0.0.1"
        )


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], Any] | None = None,
) -> None:
    """Serve the index of ``settings`` on ``host:port`` until stopped (``evidex
    serve-search``). The embedding model is loaded before the first request."""
    import uvicorn

    check_exposure(settings, host)
    searcher = Searcher(settings)
    try:
        searcher.index.embedder  # load the model before the first request  # noqa: B018
        app = create_app(searcher, settings.service, host)
        if on_ready:
            keys = len(settings.service.api_keys)
            on_ready(
                f"evidex search service on http://{host}:{port} (store {searcher.index.where}; "
                f"{f'{keys} API key(s)' if keys else 'no API keys: loopback only'})"
            )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        searcher.close()
