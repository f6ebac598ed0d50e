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
    run_ingest(records("beir", [small]), idx, progress=False)
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
