"""The data engine's batch client: many chat completions from an OpenAI-compatible endpoint
(vLLM in production; llama.cpp's server in tests), for distillation, think-tracing and RL data
selection (:mod:`rl_training.data.generate`).

- **Resumable, exactly once.** Every finished completion is committed to a SQLite cache keyed
  by (row, sample, model, prompt hash) before anything else happens, so a job killed at any
  point (``kill -9`` too) resumes on the next run and never asks the endpoint again for a
  (row, sample) it already has.
- **Concurrent and bounded.** ``concurrency`` requests in flight; an optional rate limit
  (requests/s) and a per-run request budget; a timeout per request.
- **Retries.** 429 and 5xx answers, transport errors and timeouts are retried with
  exponential back-off (``Retry-After`` honoured); so are replies that are not JSON, empty
  completions and unfinished ``<think>`` blocks. A (row, sample) that keeps failing is
  reported and skipped; other 4xx answers fail at once. An endpoint that never answers stops
  the job with a :class:`retrieval.errors.ServiceError` naming it; what was done is kept.
- **Seeded samples.** Sample ``s`` of a row is requested with a seed derived from the row and
  ``s``, so samples differ from each other and a re-run asks for the same ones.
- **Progress and a report.** A tqdm bar, logging, and an :class:`EngineReport` (rows,
  candidates, failures, tokens, seconds, tokens/s).

For very large runs the same requests go through Ray Data (:func:`run_ray`: an actor pool of
HTTP clients, the same records in and out); vLLM's offline ``LLM.chat`` is the other path on
a GPU machine (see rl_training/README.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import ConfigError, ServiceError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class EngineConfig:
    """Where the model is and how hard to push it."""

    base_url: str
    """The OpenAI-compatible endpoint, e.g. ``http://gpu-node:8000/v1`` (``vllm serve``)."""
    model: str = "default"
    """Model name sent to the endpoint (vLLM ``--served-model-name``)."""
    api_key: str | None = None
    samples: int = 1
    """Completions per row."""
    concurrency: int = 8
    """Requests in flight at once."""
    temperature: float = 0.6
    max_tokens: int = 4096
    """Most tokens per completion."""
    timeout_s: float = 600.0
    """Seconds one request may take."""
    retries: int = 4
    """Further attempts of a request after a retryable failure."""
    backoff_s: float = 1.0
    """First back-off; doubled on each retry (with jitter), at most ``max_backoff_s``."""
    max_backoff_s: float = 60.0
    rate_limit: float | None = None
    """Most requests started per second (None: no limit)."""
    request_budget: int | None = None
    """Most HTTP requests this run (retries included); the rest waits for the next run."""
    require_think: bool = False
    """A completion without a finished ``<think>...</think>`` block is a bad completion."""
    unreachable_after: int = 12
    """Stop the job when this many requests in a row failed to reach the endpoint (or all of
    them, in a shorter job)."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"--samples must be at least 1, got {self.samples!r}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency!r}")
        if self.max_tokens < 1:
            raise ConfigError(f"--max-tokens must be at least 1, got {self.max_tokens!r}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature!r}")
        if self.retries < 0 or self.timeout_s <= 0:
            raise ConfigError(
                f"retries must be >= 0 and timeout_s > 0, got {self.retries!r}, {self.timeout_s!r}"
            )
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError(f"--rate-limit must be positive, got {self.rate_limit!r}")
        if self.request_budget is not None and self.request_budget < 0:
            raise ConfigError(f"--request-budget must be >= 0, got {self.request_budget!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the endpoint must be an http(s) URL, got {self.base_url!r}")


@dataclass(frozen=True)
class Request:
    """One completion to make: sample ``sample`` of row ``row``."""

    row: str
    """The row's stable key (e.g. ``evidex/medqa#12``)."""
    sample: int
    messages: tuple[Mapping[str, str], ...]

    def prompt_hash(self) -> str:
        raw = json.dumps([dict(m) for m in self.messages], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def cache_key(self, model: str) -> str:
        raw = json.dumps([self.row, self.sample, model, self.prompt_hash()])
        return hashlib.sha256(raw.encode()).hexdigest()

    def seed(self) -> int:
        raw = f"{self.row}\x00{self.sample}".encode()
        return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Completion:
    """A finished completion (``text`` holds the reasoning in its ``<think>`` block)."""

    row: str
    sample: int
    model: str
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False


@dataclass
class EngineReport:
    """What a run did."""

    rows: int = 0
    candidates: int = 0
    """Completions available after the run (new and cached)."""
    cached: int = 0
    """Of those, completions an earlier run had made."""
    requests: int = 0
    """HTTP requests sent (retries included)."""
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    """(row, sample) that kept failing: ``row#sample: why``."""
    pending: int = 0
    """(row, sample) not attempted because the request budget ran out."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = len(self.failures)
        out["failed"] = self.failures[:50]
        out["tokens_per_s"] = round(self.tokens_per_s, 2)
        out["seconds"] = round(self.seconds, 2)
        return out

    def __str__(self) -> str:
        return (
            f"{self.rows} rows, {self.candidates} candidates ({self.cached} from earlier runs), "
            f"{len(self.failures)} failed, {self.pending} pending, {self.requests} requests, "
            f"{self.completion_tokens} tokens in {self.seconds:.1f} s "
            f"({self.tokens_per_s:.1f} tokens/s)"
        )


class BadReply(ServiceError):
    """A reply that cannot be used (retried; it never leaves this module)."""

    def __init__(self, message: str, retry: bool = True, reach: bool = True,
                 after: float | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.retry, self.reach, self.after = retry, reach, after


class CompletionCache:
    """SQLite store of finished completions; one commit per completion (safe under kill -9)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, row TEXT, sample "
            "INTEGER, model TEXT, text TEXT, finish_reason TEXT, prompt_tokens INTEGER, "
            "completion_tokens INTEGER, seconds REAL)"
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> Completion | None:
        with self._lock:
            r = self._db.execute(
                "SELECT row, sample, model, text, finish_reason, prompt_tokens, "
                "completion_tokens, seconds FROM completions WHERE key = ?",
                (key,),
            ).fetchone()
        if r is None:
            return None
        row, sample, model, text, finish, p_tok, c_tok, secs = r
        return Completion(row, sample, model, text, finish, p_tok, c_tok, secs, cached=True)

    def put(self, key: str, c: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, c.row, c.sample, c.model, c.text, c.finish_reason, c.prompt_tokens,
                 c.completion_tokens, c.seconds),
            )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._db.close()


def think_problem(text: str, require_think: bool = False) -> str | None:
    """Why a completion is unusable, or None.

    >>> think_problem("<think>a</think>B"), think_problem("   "), think_problem("<think>a")
    (None, 'empty completion', 'unfinished <think> block')
    >>> think_problem("B", require_think=True)
    'no <think> block'
    """
    if not text.strip():
        return "empty completion"
    if "<think>" in text and "</think>" not in text:
        return "unfinished <think> block"
    if require_think and "</think>" not in text:
        return "no <think> block"
    return None


def parse_reply(body: bytes, require_think: bool = False) -> tuple[str, str | None, int, int]:
    """(text, finish reason, prompt tokens, completion tokens) of a chat-completions reply;
    a vLLM reasoning parser's ``reasoning_content`` becomes the ``<think>`` block."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        msg = choice.get("message") or {}
        content = str(msg.get("content") or "")
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise BadReply(f"not a chat-completions reply: {body[:120]!r}") from None
    text = f"<think>{reasoning}</think>{content}" if reasoning else content
    problem = think_problem(text, require_think)
    if problem:
        raise BadReply(problem)
    usage = data.get("usage") or {}
    return (text, choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0))  # fmt: skip


class _Pacer:
    """At most ``rate`` request starts per second, and at most ``budget`` requests."""

    def __init__(self, rate: float | None, budget: int | None) -> None:
        self._gap = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self.budget = budget
        self.sent = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.budget is not None and self.sent >= self.budget:
                return False
            self.sent += 1
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        if start > now:
            time.sleep(start - now)
        return True


class BatchEngine:
    """Runs :class:`Request` s against one endpoint (see the module doc)."""

    def __init__(self, config: EngineConfig, cache: Path, client: Any = None) -> None:
        import httpx

        self.config = config
        self.cache = CompletionCache(cache)
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = client or httpx.Client(timeout=config.timeout_s, headers=headers)
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._lock = threading.Lock()
        self._unreached = 0
        self._unreachable_limit = config.unreachable_after

    def close(self) -> None:
        self.cache.close()
        self._http.close()

    def __enter__(self) -> BatchEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, req: Request) -> tuple[str, str | None, int, int]:
        import httpx

        c = self.config
        body = {
            "model": c.model,
            "messages": [dict(m) for m in req.messages],
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
            "seed": req.seed(),
        }
        try:
            resp = self._http.post(self._url, json=body)
        except httpx.TimeoutException:
            raise BadReply(f"no answer from {self._url} within {c.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise BadReply(f"cannot reach {self._url}: {exc}", reach=False) from None
        if resp.status_code != 200:
            after = resp.headers.get("retry-after")
            raise BadReply(
                f"{self._url} answered HTTP {resp.status_code}: {resp.text[:160]!r}",
                retry=resp.status_code in RETRY_STATUS,
                after=float(after) if after and after.replace(".", "", 1).isdigit() else None,
            )
        return parse_reply(resp.content, c.require_think)

    def _one(self, req: Request, pacer: _Pacer, report: EngineReport) -> Completion | None:
        """One (row, sample) with its retries; None when the budget ran out first."""
        c = self.config
        last = "no attempt"
        for attempt in range(c.retries + 1):
            if not pacer.take():
                return None
            t0 = time.perf_counter()
            try:
                text, finish, p_tok, c_tok = self._post(req)
            except BadReply as exc:
                last = str(exc)
                with self._lock:
                    self._unreached = 0 if exc.reach else self._unreached + 1
                    unreached = self._unreached
                if unreached >= self._unreachable_limit:
                    raise ServiceError(
                        f"the endpoint {c.base_url} is unreachable ({last}); what was "
                        "generated is kept: re-run the same command when it is up"
                    ) from None
                if not exc.retry or attempt == c.retries:
                    break
                with self._lock:
                    report.retries += 1
                pause = exc.after or min(c.max_backoff_s, c.backoff_s * 2**attempt)
                log.debug("%s#%d: %s; retrying in %.1f s", req.row, req.sample, last, pause)
                time.sleep(pause * (1 + 0.1 * random.random()))
                continue
            with self._lock:
                self._unreached = 0
            done = Completion(req.row, req.sample, c.model, text, finish, p_tok, c_tok,
                              round(time.perf_counter() - t0, 3))  # fmt: skip
            self.cache.put(req.cache_key(c.model), done)
            return done
        raise _Failed(f"{req.row}#{req.sample}: {last}")

    def run(
        self, requests: Sequence[Request], progress: Callable[[int], Any] | None = None
    ) -> tuple[dict[tuple[str, int], Completion], EngineReport]:
        """Every request's completion (cached ones are not asked again) and the report."""
        from tqdm import tqdm

        t0 = time.perf_counter()
        report = EngineReport(rows=len({r.row for r in requests}))
        out: dict[tuple[str, int], Completion] = {}
        todo: list[Request] = []
        for r in requests:
            hit = self.cache.get(r.cache_key(self.config.model))
            if hit is not None:
                out[(r.row, r.sample)] = hit
            else:
                todo.append(r)
        report.cached = len(out)
        # a short job whose every request fails to connect is stopped as unreachable too
        self._unreachable_limit = max(1, min(self.config.unreachable_after, len(todo)))
        pacer = _Pacer(self.config.rate_limit, self.config.request_budget)
        bar = tqdm(total=len(requests), initial=len(out), desc="generate", unit="completion",
                   disable=None)  # fmt: skip
        try:
            with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
                it = iter(todo)
                running: dict[Future[Completion | None], Request] = {}
                stop = False

                def fill() -> None:
                    while not stop and len(running) < self.config.concurrency * 2:
                        nxt = next(it, None)
                        if nxt is None:
                            return
                        running[pool.submit(self._one, nxt, pacer, report)] = nxt

                fill()
                while running:
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        req = running.pop(fut)
                        try:
                            done = fut.result()
                        except _Failed as exc:
                            report.failures.append(str(exc))
                            log.warning("%s (skipped; a re-run retries it)", exc)
                            continue
                        except ServiceError:
                            stop = True
                            for f in running:
                                f.cancel()
                            raise
                        if done is None:
                            report.pending += 1
                            continue
                        out[(req.row, req.sample)] = done
                        report.prompt_tokens += done.prompt_tokens
                        report.completion_tokens += done.completion_tokens
                        bar.update(1)
                        if progress:
                            progress(1)
                    fill()
                report.pending += sum(1 for _ in it)
        finally:
            bar.close()
            report.requests = pacer.sent
            report.candidates = len(out)
            report.seconds = time.perf_counter() - t0
        if report.pending:
            log.warning("the request budget ran out: %d completions wait for the next run",
                        report.pending)  # fmt: skip
        return out, report


class _Failed(ServiceError):
    pass


def run_ray(
    requests: Sequence[Request], config: EngineConfig, cache: Path, *, actors: int = 2
) -> tuple[dict[tuple[str, int], Completion], EngineReport]:
    """The same run through Ray Data: the requests not yet cached become a dataset, mapped by
    an actor pool of HTTP clients (``actors`` actors, ``config.concurrency`` requests each);
    the completions are committed to the same cache on the driver, so a Ray run and a local
    run resume each other and give the same records."""
    import ray

    t0 = time.perf_counter()
    store = CompletionCache(cache)
    report = EngineReport(rows=len({r.row for r in requests}))
    out: dict[tuple[str, int], Completion] = {}
    todo = []
    for r in requests:
        hit = store.get(r.cache_key(config.model))
        if hit is None:
            todo.append(r)
        else:
            out[(r.row, r.sample)] = hit
    report.cached = len(out)
    if todo:
        if not ray.is_initialized():
            ray.init(num_cpus=max(1, actors), include_dashboard=False, log_to_driver=False)
        items = [{"row": r.row, "sample": r.sample, "messages": json.dumps(
            [dict(m) for m in r.messages])} for r in todo]  # fmt: skip
        ds = ray.data.from_items(items).map_batches(
            _RayClient, fn_constructor_kwargs={"config": asdict(config)},
            batch_size=config.concurrency, compute=ray.data.ActorPoolStrategy(size=actors),
            batch_format="pandas",
        )  # fmt: skip
        by_key = {(r.row, r.sample): r for r in todo}
        for rec in ds.iter_rows():
            req = by_key[(rec["row"], int(rec["sample"]))]
            if rec["error"]:
                report.failures.append(f"{req.row}#{req.sample}: {rec['error']}")
                continue
            done = Completion(req.row, req.sample, config.model, rec["text"],
                              rec["finish_reason"] or None, int(rec["prompt_tokens"]),
                              int(rec["completion_tokens"]), float(rec["seconds"]))  # fmt: skip
            store.put(req.cache_key(config.model), done)
            out[(req.row, req.sample)] = done
            report.completion_tokens += done.completion_tokens
            report.prompt_tokens += done.prompt_tokens
        report.requests = len(todo)
    store.close()
    report.candidates = len(out)
    report.seconds = time.perf_counter() - t0
    return out, report


class _RayClient:
    """A Ray Data actor: one HTTP client, a batch of requests at a time (in threads)."""

    def __init__(self, config: dict[str, Any]) -> None:
        import tempfile

        self.config = EngineConfig(**config)
        self.engine = BatchEngine(self.config, Path(tempfile.mkdtemp()) / "actor.sqlite")

    def __call__(self, batch: Any) -> Any:
        rows = []
        reqs = [Request(r, int(s), tuple(json.loads(m))) for r, s, m in
                zip(batch["row"], batch["sample"], batch["messages"], strict=True)]  # fmt: skip
        done, report = self.engine.run(reqs)
        failed = {f.split(": ", 1)[0]: f.split(": ", 1)[1] for f in report.failures}
        for r in reqs:
            c = done.get((r.row, r.sample))
            rows.append({
                "row": r.row, "sample": r.sample, "text": c.text if c else "",
                "finish_reason": (c.finish_reason or "") if c else "",
                "prompt_tokens": c.prompt_tokens if c else 0,
                "completion_tokens": c.completion_tokens if c else 0,
                "seconds": c.seconds if c else 0.0,
                "error": "" if c else failed.get(f"{r.row}#{r.sample}", "not attempted"),
            })  # fmt: skip
        import pandas as pd

        return pd.DataFrame(rows)
