"""Live-PubMed ingestion tested for real over HTTP against a loopback server that replays
real NCBI E-utilities responses (../shared/data/pubmed/fixtures/biopython_Entrez)."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest.records import InputError, Problem
from ingest.sources.entrez import EntrezClient, EntrezUnavailable, fetch_records, job_dir
from retrieval.settings import EntrezSettings
from retrieval.types import Document
from tests.conftest import shared_path

EFETCH_FILES = [
    "pubmed1.xml",
    "pubmed2.xml",
    "pubmed4.xml",
    "pubmed5.xml",
    "pubmed6.xml",
    "pubmed7.xml",
]


class Replay:
    """What the fake NCBI saw and how it should misbehave."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: list[tuple[str, dict[str, str], float]] = []
        self.fail_next: list[int] = []  # HTTP codes to answer before the real reply
        # the real PMC efetch reply, its ids made those of pubmed4.xml's record (PMID
        # 27797938, PMC5442267) so that the full text belongs to a record the replay serves
        self.pmc_reply = (
            (folder / "efetch_pmc.xml").read_bytes()
            .replace(b'"pmid">34527728<', b'"pmid">27797938<')
            .replace(b'"pmc">8435807<', b'"pmc">5442267<')
        )  # fmt: skip

    def handle(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        self.calls.append((path, params, time.monotonic()))
        if self.fail_next:
            return self.fail_next.pop(0), b"busy"
        if path.endswith("esearch.fcgi"):
            return 200, (self.folder / "esearch2.xml").read_bytes()  # has WebEnv + QueryKey
        if path.endswith("efetch.fcgi") and params.get("db") == "pmc":
            return 200, self.pmc_reply
        if path.endswith("efetch.fcgi"):
            start = int(params["retstart"])
            return 200, (self.folder / EFETCH_FILES[start]).read_bytes()
        return 404, b"unknown utility"


@pytest.fixture
def ncbi() -> Iterator[tuple[str, Replay]]:
    replay = Replay(shared_path("pubmed", "fixtures", "biopython_Entrez"))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            params = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            code, body = replay.handle(self.path, params)
            self.send_response(code)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/entrez/eutils", replay
    server.shutdown()
    server.server_close()


def _settings(url: str, **kw: object) -> EntrezSettings:
    return EntrezSettings(
        base_url=url, batch_size=1, max_records=6, backoff_s=0.05, email="dev@example.org", **kw
    )  # type: ignore[arg-type]


def test_search_then_fetch_in_batches(ncbi, tmp_path: Path) -> None:
    url, replay = ncbi
    docs = [r for r in fetch_records("cancer", _settings(url), tmp_path) if isinstance(r, Document)]
    assert len(docs) >= 6 and all(d.pmid for d in docs)
    paths = [c[0] for c in replay.calls]
    assert paths[0].endswith("esearch.fcgi") and paths.count("/entrez/eutils/efetch.fcgi") == 6
    esearch = replay.calls[0][1]
    assert esearch["usehistory"] == "y" and esearch["email"] == "dev@example.org"
    fetch = replay.calls[1][1]
    assert fetch["WebEnv"].startswith("MCID_") and fetch["query_key"] == "1"
    assert [c[1]["retstart"] for c in replay.calls[1:]] == ["0", "1", "2", "3", "4", "5"]


def test_rate_limit_without_and_with_key(ncbi, tmp_path: Path) -> None:
    url, replay = ncbi
    list(fetch_records("cancer", _settings(url), tmp_path))
    gaps = [b[2] - a[2] for a, b in zip(replay.calls, replay.calls[1:], strict=False)]
    assert min(gaps) >= 1 / 3 - 0.02  # at most 3 requests per second
    replay.calls.clear()
    list(fetch_records("other", _settings(url, api_key="k"), tmp_path))
    assert replay.calls[0][1]["api_key"] == "k"
    gaps = [b[2] - a[2] for a, b in zip(replay.calls, replay.calls[1:], strict=False)]
    assert min(gaps) >= 0.1 - 0.02 and max(gaps) < 1 / 3


def test_transient_errors_are_retried(ncbi, tmp_path: Path) -> None:
    url, replay = ncbi
    replay.fail_next = [503, 429]
    docs = [r for r in fetch_records("cancer", _settings(url), tmp_path) if isinstance(r, Document)]
    assert len(docs) >= 6
    assert len(replay.calls) == 2 + 7  # two refusals, esearch, six efetch


def test_client_errors_and_exhausted_retries_are_clear(ncbi, tmp_path: Path) -> None:
    url, replay = ncbi
    replay.fail_next = [400]
    with pytest.raises(InputError, match="HTTP 400"):
        list(fetch_records("cancer", _settings(url), tmp_path))
    replay.fail_next = [503] * 10
    with pytest.raises(EntrezUnavailable, match="failed after 3 tries"):
        list(fetch_records("cancer", _settings(url, retries=2), tmp_path / "b"))


def test_interrupted_job_resumes_without_refetching(ncbi, tmp_path: Path) -> None:
    url, replay = ncbi
    it = fetch_records("cancer", _settings(url), tmp_path)
    first = [next(it) for _ in range(3)]
    it.close()  # the job stops mid-way
    assert all(isinstance(r, Document) for r in first)
    calls_before = len(replay.calls)
    again = [
        r for r in fetch_records("cancer", _settings(url), tmp_path) if isinstance(r, Document)
    ]
    new_calls = replay.calls[calls_before:]
    assert all(c[0].endswith("efetch.fcgi") for c in new_calls)  # no second esearch
    refetched = {int(c[1]["retstart"]) for c in new_calls}
    assert 0 not in refetched and refetched  # cached batches replay from disk
    assert len(again) >= 6
    assert sorted(p.name for p in job_dir(tmp_path, "cancer", 6).glob("batch_*.xml")) == [
        f"batch_{i:08d}.xml" for i in range(6)
    ]


def test_offline_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    s = EntrezSettings(base_url="http://nonexistent.invalid/eutils", timeout_s=5)
    started = time.monotonic()
    with pytest.raises(EntrezUnavailable, match="cannot reach NCBI"):
        EntrezClient(s).esearch("asthma")
    assert time.monotonic() - started < 30


def test_full_text_from_pmc_is_merged_into_the_pubmed_record(ncbi, tmp_path: Path) -> None:
    url, replay = ncbi
    recs = list(fetch_records("cancer", _settings(url, full_text=True), tmp_path))
    docs = {r.pmid: r for r in recs if isinstance(r, Document)}
    pmc_calls = [c[1] for c in replay.calls if c[1].get("db") == "pmc"]
    # one PMC request per PubMed batch holding records with a PMCID (4 of the 6 fixtures)
    assert len(pmc_calls) == 4 and {c["id"] for c in pmc_calls} >= {"5442267"}
    d = docs["27797938"]
    assert d.doc_id == "pmid:27797938" and d.pmcid == "PMC5442267"  # one article, one id
    assert d.extra["full_text"] == "pmc"
    body = [s for s in d.sections if s.title.startswith("Full text")]
    assert body and "upper 95% confidence limit" in body[0].text
    assert d.sections[0].title != body[0].title  # the PubMed abstract stays first
    # the other records' PMC replies carry other articles: they keep their abstracts
    others = [x for x in docs.values() if x.pmcid and x.pmid != "27797938"]
    assert others and all("full_text" not in x.extra for x in others)
    # a re-run replays the cached replies: no new PMC request
    before = len(replay.calls)
    again = [r for r in fetch_records("cancer", _settings(url, full_text=True), tmp_path)
             if isinstance(r, Document)]  # fmt: skip
    assert not [c for c in replay.calls[before:] if c[1].get("db") == "pmc"]
    assert next(r for r in again if r.pmid == "27797938").extra["full_text"] == "pmc"


def test_pmc_reply_without_a_body_or_broken_keeps_the_abstract(ncbi, tmp_path: Path) -> None:
    import re

    url, replay = ncbi
    replay.pmc_reply = re.sub(rb"<body>.*</body>", b"", replay.pmc_reply, flags=re.DOTALL)
    docs = [r for r in fetch_records("q1", _settings(url, full_text=True), tmp_path)
            if isinstance(r, Document)]  # fmt: skip
    d = next(x for x in docs if x.pmid == "27797938")
    assert "full_text" not in d.extra and d.pmcid == "PMC5442267"
    replay.pmc_reply = b"<pmc-articleset><article><front>"  # cut short
    recs = list(fetch_records("q2", _settings(url, full_text=True), tmp_path))
    problems = [r for r in recs if isinstance(r, Problem)]
    assert problems and "malformed XML" in problems[0].message
    assert sum(isinstance(r, Document) for r in recs) >= 6  # the abstracts still land
