"""The search service over a real index: /health, /search, /retrieve (Search-R1 shape), bad
requests, and 50 concurrent clients against a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from ingest.pipeline import run_ingest
from ingest.sources.files import records
from retrieval.index import Index
from retrieval.search import Searcher
from retrieval.service import create_app
from retrieval.settings import load_settings
from tests.conftest import shared_path
from tests.llama_server import serve_app

LACE = "programmed cell death in lace plant leaves"


@pytest.fixture(scope="module")
def searcher(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("svc")
    settings = load_settings(data_dir=tmp)
    idx = Index(settings, tmp / "store")
    src = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    small = tmp / "corpus.jsonl"
    small.write_text("\n".join(src.read_text().splitlines()[:60]) + "\n")
    run_ingest(records("beir", [small], pmid_ids=True), idx, progress=False)
    idx.close()
    settings.store.path = tmp / "store"
    s = Searcher(settings)
    yield s
    s.close()


def test_python_api_sync_async_batch(searcher: Searcher) -> None:
    hits = searcher.search(LACE, k=3, filters={"year_from": 2000})
    assert hits[0].pmid == "21645374"
    again = asyncio.run(searcher.asearch(LACE, k=3))
    assert [h.chunk_id for h in again] == [h.chunk_id for h in searcher.search(LACE, k=3)]
    batch = searcher.search_batch([LACE, "lace plant", LACE], k=3)
    assert (
        [h.chunk_id for h in batch[0]]
        == [h.chunk_id for h in batch[2]]
        == [h.chunk_id for h in again]
    )
    abatch = asyncio.run(searcher.asearch_batch([LACE], k=3))
    assert [h.chunk_id for h in abatch[0]] == [h.chunk_id for h in again]
    with pytest.raises(ValueError, match="year_form"):
        searcher.search(LACE, filters={"year_form": 2000})


def test_http_endpoints(searcher: Searcher) -> None:
    client = TestClient(create_app(searcher))
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["documents"] == 60
    res = client.post("/search", json={"query": LACE, "k": 3, "filters": {"year_from": 2005}})
    assert res.status_code == 200
    body = res.json()
    assert body["results"][0]["pmid"] == "21645374"
    assert {"dense", "bm25", "fused", "final"} <= set(body["results"][0]["score_parts"])
    r = client.post("/retrieve", json={"queries": [LACE, "mitochondria"], "topk": 2})
    assert r.status_code == 200
    result = r.json()["result"]
    assert len(result) == 2 and len(result[0]) == 2
    assert set(result[0][0]) == {"document", "score"}
    assert {"id", "contents"} <= set(result[0][0]["document"])
    plain = client.post("/retrieve", json={"queries": [LACE], "topk": 1, "return_scores": False})
    assert "contents" in plain.json()["result"][0][0]


def test_bad_requests_are_clear(searcher: Searcher) -> None:
    client = TestClient(create_app(searcher))
    bad_filter = client.post("/search", json={"query": "x", "filters": {"colour": "red"}})
    assert bad_filter.status_code == 422 and "colour" in bad_filter.text
    empty = client.post("/search", json={"query": "   "})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    huge = client.post("/search", json={"query": "word " * 10_000})
    assert huge.status_code == 400 and "characters" in huge.json()["detail"]
    assert client.post("/retrieve", json={"queries": []}).status_code == 422
    assert client.post("/search", content=b"{not json").status_code == 422


def test_fifty_concurrent_clients(searcher: Searcher) -> None:
    expected = [h.chunk_id for h in searcher.search(LACE, k=3)]
    queries = [LACE if i % 2 == 0 else "mitochondrial dynamics" for i in range(50)]

    with serve_app(create_app(searcher)) as url:

        def call(q: str) -> tuple[int, list[str]]:
            r = httpx.post(f"{url}/search", json={"query": q, "k": 3}, timeout=120)
            return r.status_code, [h["chunk_id"] for h in r.json()["results"]]

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(call, queries))
    assert all(code == 200 for code, _ in results)
    assert all(ids == expected for (_, ids), q in zip(results, queries, strict=True) if q == LACE)
    assert json.dumps(results)  # every answer is complete JSON


# -- hardening: keys, Host, limits, the bounded worker ----------------------------------------

KEY = "evx_test-key-0123456789"


def _service(**values: object):
    from retrieval.settings import ServiceSettings

    return ServiceSettings(**values)  # type: ignore[arg-type]


def test_api_keys_guard_every_route_but_a_bare_health(searcher: Searcher) -> None:
    from retrieval.service import key_hash

    app = create_app(searcher, _service(api_keys=[key_hash(KEY)]))
    client = TestClient(app)
    body = {"query": LACE, "k": 2}
    missing = client.post("/search", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "evidex keys new" in missing.json()["detail"]
    wrong = client.post("/search", json=body, headers={"Authorization": "Bearer evx_other"})
    assert wrong.status_code == 401
    assert client.post("/retrieve", json={"queries": [LACE]}).status_code == 401
    assert client.get("/openapi.json").status_code == 401
    good = {"Authorization": f"Bearer {KEY}"}
    ok = client.post("/search", json=body, headers=good)
    assert ok.status_code == 200 and ok.json()["results"][0]["pmid"] == "21645374"
    assert client.get("/health").json() == {"status": "ok"}  # no index facts without a key
    assert client.get("/health", headers=good).json()["documents"] == 60


def test_settings_hold_hashes_never_keys() -> None:
    from retrieval.service import new_key
    from retrieval.settings import SettingsError

    key, digest = new_key()
    assert digest.startswith("sha256:") and key not in digest
    assert load_settings(service={"api_keys": [digest]}).service.api_keys == (digest,)
    with pytest.raises(SettingsError, match=r"service\.api_keys: .*entry 0 is not a") as info:
        load_settings(service={"api_keys": [key]})
    assert key not in str(info.value)  # a key pasted by mistake is not echoed


def test_non_loopback_without_keys_refuses_to_start(tmp_path) -> None:
    from typer.testing import CliRunner

    from retrieval.errors import ConfigError
    from retrieval.service import check_exposure, key_hash
    from ui.cli import app

    with pytest.raises(ConfigError, match="without API keys"):
        check_exposure(load_settings(data_dir=tmp_path), "0.0.0.0")
    check_exposure(load_settings(data_dir=tmp_path), "127.0.0.1")
    check_exposure(load_settings(data_dir=tmp_path, service={"api_keys": [key_hash(KEY)]}),
                   "0.0.0.0")  # fmt: skip
    res = CliRunner().invoke(
        app, ["serve-search", "--host", "0.0.0.0", "--store", str(tmp_path / "none")],
        env={"EVIDEX_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert res.exit_code == 1 and "refusing to serve" in res.output
    assert "Traceback" not in res.output


def test_keys_new_prints_a_key_and_its_hash() -> None:
    from typer.testing import CliRunner

    from retrieval.service import key_hash
    from ui.cli import app

    res = CliRunner().invoke(app, ["keys", "new", "--name", "rollouts"])
    assert res.exit_code == 0, res.output
    key = res.stdout.strip()
    assert key.startswith("evx_") and len(key) > 30
    assert key_hash(key) in res.stderr and "api_keys" in res.stderr


def test_loopback_service_checks_the_host_header(searcher: Searcher) -> None:
    client = TestClient(create_app(searcher, _service(), host="127.0.0.1"))
    body = {"query": LACE, "k": 1}
    rebound = client.post("/search", json=body, headers={"Host": "evil.example:8765"})
    assert rebound.status_code == 421 and "loopback" in rebound.json()["detail"]
    assert client.post("/search", json=body, headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/health", headers={"Host": "127.0.0.1"}).status_code == 200
    allowed = TestClient(
        create_app(searcher, _service(allowed_hosts=["search.ward"]), host="127.0.0.1")
    )
    assert allowed.get("/health", headers={"Host": "search.ward"}).status_code == 200


def test_limits_answer_with_short_clear_errors(searcher: Searcher) -> None:
    client = TestClient(create_app(searcher, _service(max_body_bytes=200_000)))
    big = client.post("/retrieve", content=b'{"queries": ["' + b"a" * 300_000 + b'"]}',
                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and "service.max_body_bytes" in big.json()["detail"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"queries": ["'
        for _ in range(30):
            yield b"b" * 10_000
        yield b'"]}'

    streamed = client.post("/retrieve", content=chunks(),
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert streamed.status_code == 413
    many = client.post("/retrieve", json={"queries": ["aspirin"] * 65})
    assert many.status_code == 422 and "service.max_queries" in many.json()["detail"]
    assert client.post("/search", json={"query": LACE, "k": 101}).status_code == 422
    assert client.post("/retrieve", json={"queries": [LACE], "topk": 101}).status_code == 422
    long_list = client.post("/search", json={"query": LACE, "filters": {"mesh_terms": ["x"] * 51}})
    assert long_list.status_code == 422 and "mesh_terms" in long_list.text
    # a large invalid filter is quoted back as a short excerpt, not whole
    junk = client.post("/search", json={"query": LACE, "filters": {"colour": "r" * 150_000}})
    assert junk.status_code == 422 and len(junk.content) < 1_000
    assert "150,000 characters" in junk.text
    # the service still answers, and nothing of the index was lost
    assert client.get("/health").json()["documents"] == 60


def test_undecodable_text_is_a_clear_400(searcher: Searcher) -> None:
    from typer.testing import CliRunner

    from ui.cli import app

    client = TestClient(create_app(searcher))
    raw = b'{"query": "aspirin \\ud800"}'  # a lone surrogate escape, valid JSON
    res = client.post("/search", content=raw, headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and "invalid character at position 8" in res.json()["detail"]
    batch = client.post("/retrieve", content=b'{"queries": ["ok", "x \\udfff"]}',
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert batch.status_code == 400
    # the command line: an invalid UTF-8 byte reaches Python as a surrogate escape
    arg = b"aspirin \xff".decode("utf-8", "surrogateescape")
    out = CliRunner().invoke(app, ["search", arg, "--store", "/nonexistent/store"])
    assert out.exit_code == 1 and "invalid character at position 8" in out.output
    assert "Traceback" not in out.output and out.output.count("\n") <= 3


def _long_retrieve(url: str, n: int = 64) -> httpx.Response:
    queries = [f"{LACE} {i} " + "leaf cell death vacuole " * 60 for i in range(n)]
    return httpx.post(f"{url}/retrieve", json={"queries": queries, "topk": 3}, timeout=300)


def test_health_answers_while_a_search_runs_and_saturation_is_a_503(searcher: Searcher) -> None:
    app = create_app(searcher, _service(max_pending=1))
    with serve_app(app) as url, ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(_long_retrieve, url)
        seen_busy = None
        while not running.done():
            health = httpx.get(f"{url}/health", timeout=2)  # answers within 2 s, or fails
            if health.json()["in_flight"] == 1:
                seen_busy = httpx.post(f"{url}/search", json={"query": LACE}, timeout=10)
                break
        assert seen_busy is not None, "the long /retrieve ended before /health saw it running"
        assert seen_busy.status_code == 503 and seen_busy.headers["retry-after"]
        assert "service.max_pending" in seen_busy.json()["detail"]
        assert running.result().status_code == 200
        assert httpx.get(f"{url}/health").json()["in_flight"] == 0
        after = httpx.post(f"{url}/search", json={"query": LACE, "k": 1}, timeout=30)
        assert after.status_code == 200 and after.json()["results"][0]["pmid"] == "21645374"


def test_a_search_past_the_timeout_is_a_503(searcher: Searcher) -> None:
    with serve_app(create_app(searcher, _service(timeout_s=0.05))) as url:
        slow = _long_retrieve(url, 32)
        assert slow.status_code == 503 and "service.timeout_s" in slow.json()["detail"]
