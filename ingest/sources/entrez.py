"""Live PubMed through NCBI E-utilities.

``esearch`` with the history server finds the PMIDs (its reply parsed by ``Bio.Entrez.read``),
then ``efetch`` pulls PubmedArticleSet XML in batches, parsed by the same streaming parser as
files. Requests respect NCBI's rate limits (3/s, 10/s with an API key), time out, and retry
transient failures with exponential back-off. Each fetched batch is kept on disk under the
job's state folder before it is parsed, so an interrupted job resumes from the next batch and
replays the ones it already has without asking NCBI again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Bio import Entrez

from ingest.records import InputError, Record
from ingest.sources.fulltext import with_full_text
from ingest.sources.pubmed_xml import parse_stream
from retrieval.settings import EntrezSettings

log = logging.getLogger(__name__)


class EntrezUnavailable(InputError):
    """NCBI cannot be reached (offline, DNS, timeouts after retries)."""


@dataclass(frozen=True)
class SearchResult:
    count: int
    webenv: str
    query_key: str


class _RateLimiter:
    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            if delay > 0:
                time.sleep(delay)
            self._next = max(now, self._next) + self.interval


class EntrezClient:
    """A small, polite E-utilities client."""

    def __init__(self, settings: EntrezSettings) -> None:
        self.settings = settings
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self._api_key = key
        self._limiter = _RateLimiter(10.0 if key else 3.0)
        self.requests = 0

    def _params(self, params: dict[str, str | int]) -> dict[str, str | int]:
        out: dict[str, str | int] = {"tool": self.settings.tool, **params}
        if self.settings.email:
            out["email"] = self.settings.email
        if self._api_key:
            out["api_key"] = self._api_key
        return out

    def request(self, util: str, params: dict[str, str | int]) -> bytes:
        """GET/POST one E-utility and return the body, retrying transient failures."""
        url = f"{self.settings.base_url.rstrip('/')}/{util}.fcgi"
        data = urllib.parse.urlencode(self._params(params)).encode()
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            self._limiter.wait()
            self.requests += 1
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, data=data), timeout=self.settings.timeout_s
                ) as resp:
                    body: bytes = resp.read()
                    return body
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and 400 <= exc.code < 500:
                    raise InputError(
                        f"NCBI {util} refused the request: HTTP {exc.code} {exc.reason}"
                    ) from exc
                err: Exception = exc
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, socket.gaierror | ConnectionRefusedError):
                    raise EntrezUnavailable(
                        f"cannot reach NCBI E-utilities at {self.settings.base_url} ({exc.reason})"
                    ) from exc
                err = exc
            except (TimeoutError, ConnectionError, OSError) as exc:
                err = exc
            if attempt + 1 < attempts:
                delay = self.settings.backoff_s * (2**attempt)
                log.warning(
                    "NCBI %s failed (%s); retry %d/%d in %.1fs",
                    util,
                    err,
                    attempt + 1,
                    attempts - 1,
                    delay,
                )
                time.sleep(delay)
        raise EntrezUnavailable(f"NCBI {util} failed after {attempts} tries: {err}")

    def esearch(self, query: str) -> SearchResult:
        body = self.request(
            "esearch", {"db": "pubmed", "term": query, "usehistory": "y", "retmax": 0}
        )
        try:
            rec = Entrez.read(io.BytesIO(body))  # type: ignore[no-untyped-call]
        except Exception as exc:  # Bio.Entrez raises its own parser errors
            raise InputError(f"unexpected esearch reply: {exc}") from exc
        if "WebEnv" not in rec or "QueryKey" not in rec:
            raise InputError(f"esearch for {query!r} returned no history (WebEnv)")
        return SearchResult(int(rec["Count"]), str(rec["WebEnv"]), str(rec["QueryKey"]))

    def efetch_pmc(self, pmcids: Sequence[str]) -> bytes:
        """The JATS full text of these PMC articles (``efetch db=pmc``)."""
        ids = ",".join(i.upper().removeprefix("PMC") for i in pmcids)
        return self.request("efetch", {"db": "pmc", "id": ids, "retmode": "xml"})

    def efetch(self, search: SearchResult, retstart: int, retmax: int) -> bytes:
        return self.request(
            "efetch",
            {
                "db": "pubmed",
                "WebEnv": search.webenv,
                "query_key": search.query_key,
                "retstart": retstart,
                "retmax": retmax,
                "retmode": "xml",
            },
        )


def job_dir(state_root: Path, query: str, max_records: int) -> Path:
    """Folder holding one query's state and fetched batches."""
    digest = hashlib.sha1(f"{query}\x1f{max_records}".encode()).hexdigest()[:16]
    return state_root / "entrez" / digest


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def fetch_records(
    query: str,
    settings: EntrezSettings,
    state_root: Path,
    client: EntrezClient | None = None,
    max_records: int | None = None,
) -> Iterator[Record]:
    """Records for ``query``: cached batches first, then new ones fetched from NCBI."""
    query = query.strip()
    if not query:
        raise InputError("the PubMed query is empty")
    client = client or EntrezClient(settings)
    limit = max_records or settings.max_records
    folder = job_dir(state_root, query, limit)
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if "webenv" not in state:
        res = client.esearch(query)
        state = {
            "query": query,
            "count": res.count,
            "webenv": res.webenv,
            "query_key": res.query_key,
            "max_records": limit,
        }
        _write_atomic(state_file, json.dumps(state, indent=2).encode())
        log.info("PubMed: %d results for %r; fetching up to %d", res.count, query, limit)
    search = SearchResult(int(state["count"]), state["webenv"], state["query_key"])
    total = min(search.count, limit)
    size = settings.batch_size
    for retstart in range(0, total, size):
        batch = folder / f"batch_{retstart:08d}.xml"
        if batch.exists():
            log.debug("replaying %s", batch)
        else:
            body = client.efetch(search, retstart, min(size, total - retstart))
            if b"<ERROR>" in body[:2000] and b"PubmedArticle" not in body:
                # The history server forgets old WebEnvs: search again and go on.
                res = client.esearch(query)
                state.update(webenv=res.webenv, query_key=res.query_key, count=res.count)
                _write_atomic(state_file, json.dumps(state, indent=2).encode())
                search = SearchResult(res.count, res.webenv, res.query_key)
                body = client.efetch(search, retstart, min(size, total - retstart))
            _write_atomic(batch, body)
        with open(batch, "rb") as fh:
            recs = parse_stream(fh, f"PubMed efetch {query!r} records {retstart}+")
            if not settings.full_text:
                yield from recs
                continue
            got = list(recs)
        yield from with_full_text(got, _cached_pmc(client, folder, retstart),
                                  batch=settings.full_text_batch)  # fmt: skip


def _cached_pmc(client: EntrezClient, folder: Path, retstart: int) -> Any:
    """PMC efetch for one PubMed batch, each reply cached in the job folder."""

    def fetch(ids: Sequence[str], n: int) -> bytes:
        path = folder / f"pmc_{retstart:08d}_{n:04d}.xml"
        if path.exists():
            return path.read_bytes()
        body = client.efetch_pmc(ids)
        _write_atomic(path, body)
        return body

    return fetch
