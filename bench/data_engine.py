"""The data engine's batch client beside a plain sequential client, in the same run, against
llama.cpp's own OpenAI-compatible server serving the packaged SmolLM2 (or any --url).

Both make the same completions (the same PubMedQA prompts, seeds, temperature and token
limit): the sequential client posts them one after another with httpx; the engine runs them
with its concurrency, retries and cache (a fresh cache, so nothing is served from it). A
second engine run over the same cache shows what a resumed job costs. Reports requests/s and
completion tokens/s; appends to bench/results/data_engine.md with the machine and date.

Usage: python bench/data_engine.py [--rows 12] [--samples 2] [--max-tokens 48]
       [--concurrency 4] [--url http://HOST:8000/v1 --model NAME]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

import httpx  # noqa: E402

from answer.llm import smollm2_path  # noqa: E402
from bench import append_results  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402
from rl_training.data.engine import BatchEngine, EngineConfig, Request  # noqa: E402
from rl_training.data.export import pubmedqa_rows  # noqa: E402
from tests.llama_server import free_port  # noqa: E402


def start_server(threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
         "--n_threads", str(threads), "--model_alias", "smollm2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama.cpp's server did not come up")


def sequential(url: str, model: str, requests: list[Request], max_tokens: int) -> dict[str, float]:
    t0 = time.perf_counter()
    tokens = 0
    with httpx.Client(timeout=600) as client:
        for r in requests:
            body = {"model": model, "messages": [dict(m) for m in r.messages], "temperature": 0.7,
                    "max_tokens": max_tokens, "seed": r.seed()}  # fmt: skip
            resp = client.post(f"{url}/chat/completions", json=body)
            resp.raise_for_status()
            tokens += int(resp.json().get("usage", {}).get("completion_tokens") or 0)
    secs = time.perf_counter() - t0
    return {"requests": len(requests), "seconds": secs, "tokens": tokens}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    ap.add_argument("--url", default=None, help="an OpenAI-compatible endpoint instead")
    ap.add_argument("--model", default="smollm2")
    args = ap.parse_args()

    rows = list(pubmedqa_rows(SHARED / "pubmedqa" / "pqal_dev.json"))[: args.rows]
    requests = [Request(f"pubmedqa#{i}", s, tuple(r["prompt"])) for i, r in enumerate(rows)
                for s in range(args.samples)]  # fmt: skip
    proc, url = (None, args.url) if args.url else start_server(args.threads)
    try:
        seq = sequential(url, args.model, requests, args.max_tokens)
        cfg = EngineConfig(base_url=url, model=args.model, samples=args.samples,
                           concurrency=args.concurrency, temperature=0.7,
                           max_tokens=args.max_tokens)  # fmt: skip
        cache = Path(tempfile.mkdtemp()) / "bench.sqlite"
        with BatchEngine(cfg, cache) as engine:
            t0 = time.perf_counter()
            _, rep = engine.run(requests)
            eng = {"requests": rep.requests, "seconds": time.perf_counter() - t0,
                   "tokens": rep.completion_tokens, "failures": len(rep.failures)}  # fmt: skip
            t0 = time.perf_counter()
            _, again = engine.run(requests)
            resumed = {"requests": again.requests, "seconds": time.perf_counter() - t0,
                       "cached": again.cached}  # fmt: skip
    finally:
        if proc is not None:
            proc.kill()

    def line(name: str, r: dict[str, float]) -> str:
        rps = r["requests"] / r["seconds"] if r["seconds"] else 0.0
        tps = r.get("tokens", 0) / r["seconds"] if r["seconds"] else 0.0
        return (f"| {name} | {int(r['requests'])} | {r['seconds']:.2f} | {rps:.2f} | "
                f"{int(r.get('tokens', 0))} | {tps:.1f} |")  # fmt: skip

    server = args.url or f"llama.cpp server, SmolLM2-135M Q8 GGUF, {args.threads} threads"
    text = "\n".join(
        [
            f"\n## {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC · {machine()}",
            "",
            f"Endpoint: {server}. {len(requests)} completions ({args.rows} PubMedQA prompts x "
            f"{args.samples} seeded samples), max_tokens {args.max_tokens}, temperature 0.7.",
            "",
            "| client | requests | seconds | requests/s | completion tokens | tokens/s |",
            "|---|---|---|---|---|---|",
            line("sequential httpx (baseline)", seq),
            line(f"evidex engine, concurrency {args.concurrency}", eng),
            line("evidex engine, resumed run (all cached)", {**resumed, "tokens": 0}),
            "",
            f"Engine failures: {eng['failures']}. The resumed run sent {resumed['requests']} "
            f"requests ({resumed['cached']} completions from the cache).",
        ]
    )
    append_results("data_engine", "Data engine: batch client vs a sequential client", text + "\n")
    print(json.dumps({"sequential": seq, "engine": eng, "resumed": resumed}))


if __name__ == "__main__":
    main()
