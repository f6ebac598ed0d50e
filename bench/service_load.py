"""Load test of the search service (``evidex serve-search``) on loopback.

The real service runs in its own process (``python -m ui.cli serve-search``) over an index of
the first --docs PubMedQA abstracts (real MiniLM vectors, real BM25). Clients are asyncio
tasks on one httpx connection pool; each sends its share of a bounded number of requests
(``max(--min-requests, 2 x clients)``, 120 s timeout each). For 1, 10, 50 and 200 concurrent
clients it reports p50/p95 latency, throughput and errors (by status) for

* ``POST /search``: one PubMedQA question, k=5;
* ``POST /retrieve``: 8 questions in one call, topk 3 (the Search-R1 shape RL rollouts use);

and, while the 200 clients run, the latency of ``GET /health`` (answered on the event loop,
not behind the search worker). Baseline in the same run: the same searches through the
Python API (``Searcher.search``) in this process, one at a time - what HTTP and queueing add.

Usage: python bench/service_load.py [--docs 400] [--clients 1 10 50 200] [--min-requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.search import Searcher  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402
from tests.llama_server import free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_load(url: str, path: str, bodies: list[dict], clients: int, total: int) -> dict:
    latencies: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(total):
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, json=bodies[i % len(bodies)])
                    codes[str(r.status_code)] += 1
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - t0)
                except httpx.HTTPError as exc:
                    codes[type(exc).__name__] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": total,
        "ok": codes.get("200", 0),
        "errors": {k: v for k, v in codes.items() if k != "200"},
        "p50_ms": 1000 * pct(latencies, 0.5),
        "p95_ms": 1000 * pct(latencies, 0.95),
        "per_s": codes.get("200", 0) / wall,
    }


async def health_during(url: str, path: str, bodies: list[dict], clients: int, total: int):
    stop = asyncio.Event()
    samples: list[float] = []

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                r = await client.get("/health")
                if r.status_code == 200:
                    samples.append(time.perf_counter() - t0)
                await asyncio.sleep(0.2)

    task = asyncio.create_task(probe())
    load = await run_load(url, path, bodies, clients, total)
    stop.set()
    await task
    return load, samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50, 200])
    ap.add_argument("--min-requests", type=int, default=40)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "service_load.md")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="evidex-load-"))
    corpus = tmp / "corpus.jsonl"
    src = (SHARED / "pubmedqa" / "beir_dev" / "corpus.jsonl").read_text().splitlines()
    corpus.write_text("\n".join(src[: args.docs]) + "\n")
    questions = [
        json.loads(line)["text"]
        for line in (SHARED / "pubmedqa" / "beir_dev" / "queries.jsonl").read_text().splitlines()
    ][:200]
    settings = load_settings(data_dir=tmp, store={"path": tmp / "store"})
    with Index(settings, tmp / "store") as idx:
        run_ingest(records("beir", [corpus], pmid_ids=True), idx, progress=False)

    # baseline: the Python API, one search at a time
    searcher = Searcher(settings)
    searcher.search(questions[0], k=5)
    api: list[float] = []
    for q in questions[:100]:
        t0 = time.perf_counter()
        searcher.search(q, k=5)
        api.append(time.perf_counter() - t0)
    api8: list[float] = []
    for i in range(0, 80, 8):
        t0 = time.perf_counter()
        searcher.search_batch(questions[i : i + 8], 3)
        api8.append(time.perf_counter() - t0)
    searcher.close()

    port = free_port()
    env = {**os.environ, "EVIDEX_DATA_DIR": str(tmp), "EVIDEX_STORE__PATH": str(tmp / "store"),
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "serve-search", "--port", str(port)],
        env=env, cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        server.kill()
        raise SystemExit("the service did not start")

    search_bodies = [{"query": q, "k": 5} for q in questions]
    retrieve_bodies = [
        {"queries": questions[i : i + 8], "topk": 3} for i in range(0, len(questions) - 8, 8)
    ]
    rows: list[tuple[str, dict]] = []
    health: list[float] = []
    try:
        for path, bodies in (("/search", search_bodies), ("/retrieve", retrieve_bodies)):
            for n in args.clients:
                total = max(args.min_requests, 2 * n)
                if n == max(args.clients) and path == "/search":
                    res, health = asyncio.run(health_during(url, path, bodies, n, total))
                else:
                    res = asyncio.run(run_load(url, path, bodies, n, total))
                rows.append((path, res))
                print(path, json.dumps(res), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    lines = [
        "# Search service under load (loopback)",
        "",
        f"- Date: {dt.date.today().isoformat()}; machine: {machine()}",
        f"- Index: the first {args.docs} PubMedQA abstracts (MiniLM + BM25, hybrid search, "
        "embedded Qdrant Edge); the service in its own process (`evidex serve-search`, one "
        "search worker, `service.max_pending` 256).",
        "- Clients: asyncio tasks over httpx; requests per row: max("
        f"{args.min_requests}, 2 x clients); `/search` = 1 question, k=5; `/retrieve` = 8 "
        "questions, topk 3.",
        "",
        f"Baseline, Python API in-process, one at a time: `search` p50 "
        f"{1000 * statistics.median(api):.0f} ms, p95 {1000 * pct(api, 0.95):.0f} ms; "
        f"`search_batch` of 8 p50 {1000 * statistics.median(api8):.0f} ms.",
        "",
        "| endpoint | clients | requests | ok | errors | p50 ms | p95 ms | ok/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, r in rows:
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {path} | {r['clients']} | {r['requests']} | {r['ok']} | {errors} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['per_s']:.1f} |"
        )
    lines += [
        "",
        f"`GET /health` while {max(args.clients)} clients searched: {len(health)} probes, p50 "
        f"{1000 * pct(health, 0.5):.1f} ms, max {1000 * max(health, default=float('nan')):.1f} ms.",
        "",
        "Reading: one worker serves searches in turn, so latency grows with the queue while "
        "throughput stays that of one search at a time; nothing fails up to "
        "`service.max_pending` waiting requests (past it: 503 + Retry-After), and `/health` "
        "keeps answering in milliseconds under load.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
