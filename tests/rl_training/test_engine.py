"""The data engine against a scripted loopback server (the rules exactly: retries, resume after
kill -9, no repeated requests, selection order, timeouts) and against llama.cpp's own server
with the packaged SmolLM2."""

from __future__ import annotations

import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from retrieval.errors import ConfigError, InputError, ServiceError
from rl_training.data.engine import BatchEngine, EngineConfig, Request
from rl_training.data.export import export
from rl_training.data.generate import cache_path, distill, select, trace
from rl_training.rewards.scoring import compute_score
from tests.conftest import shared_path
from ui.cli import app

Reply = tuple[int, Any]  # (status, JSON body or raw bytes)


def ok(text: str, tokens: int = 7) -> Reply:
    return 200, {"model": "teacher", "choices": [{"message": {"content": text},
                 "finish_reason": "stop"}], "usage": {"prompt_tokens": 11,
                 "completion_tokens": tokens}}  # fmt: skip


class Scripted:
    """An OpenAI-compatible server whose reply is ``script(prompt, seed, attempt)``; it logs
    every request as (last user message, seed)."""

    def __init__(self, script: Callable[[str, int, int], Reply], delay: float = 0.0) -> None:
        self.script, self.delay = script, delay
        self.log: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def handle(self, body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        with self.lock:
            self.log.append((prompt, body["seed"]))
            attempt = sum(1 for p, s in self.log if (p, s) == (prompt, body["seed"]))
        time.sleep(self.delay)
        return self.script(prompt, body["seed"], attempt)


@pytest.fixture
def serve() -> Iterator[Callable[[Scripted], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(state: Scripted) -> str:
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = state.handle(body)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real PubMedQA rows as evidex train export writes them (parquet)."""
    out = tmp_path_factory.mktemp("rows") / "rows.parquet"
    full = out.with_name("all.jsonl")
    export("pubmedqa", shared_path("pubmedqa", "pqal_dev.json"), full)
    lines = full.read_text("utf-8").splitlines()[:6]
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = [json.loads(x) for x in lines]
    for r in recs:
        r.pop("messages")
        r["extra_info"] = {k: v if k == "index" else str(v) for k, v in r["extra_info"].items()}
    pq.write_table(pa.Table.from_pylist(recs), out)
    return out


def _truth(rows: Path) -> dict[str, str]:
    """Question text -> PubMedQA ground truth."""
    import pyarrow.parquet as pq

    return {r["prompt"][-1]["content"]: r["reward_model"]["ground_truth"]
            for r in pq.read_table(rows).to_pylist()}  # fmt: skip


def cfg(url: str, **kw: Any) -> EngineConfig:
    base: dict[str, Any] = {"model": "teacher", "samples": 2, "concurrency": 3, "backoff_s": 0.01,
                            "timeout_s": 5.0}  # fmt: skip
    return EngineConfig(base_url=url, **{**base, **kw})


def test_distill_writes_scored_candidates_and_resumes_without_asking_again(
    serve: Callable[[Scripted], str], rows: Path, tmp_path: Path
) -> None:
    truth = _truth(rows)

    def script(p: str, seed: int, attempt: int) -> Reply:
        if seed % 2:
            return ok(f"<think>seed {seed}</think>\\boxed{{{truth[p]}}}")
        return ok("<think>hm</think>\\boxed{maybe}")

    state = Scripted(script)
    url = serve(state)
    out = tmp_path / "candidates.jsonl"
    report = distill(rows, out, cfg(url, samples=3))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert report.written == len(lines) == 18 and report.engine.requests == 18
    assert report.engine.completion_tokens == 18 * 7 and not report.engine.failures
    assert [(r["index"], r["sample"]) for r in lines[:3]] == [(0, 0), (0, 1), (0, 2)]
    for r in lines:
        assert r["teacher"] == "teacher" and r["response"].startswith("<think>")
        assert r["prompt"][-1]["role"] == "user" and r["data_source"] == "evidex/pubmedqa"
        expected = compute_score("evidex/pubmedqa", r["response"], r["ground_truth"])
        assert r["score"] == expected["score"] and r["correct"] == expected["acc"]
    assert {r["score"] for r in lines} == {0.0, 1.0} or all(r["score"] == 0 for r in lines)
    seeds = {(r["row"], r["sample"]): Request(r["row"], r["sample"], ()).seed() for r in lines}
    assert len(set(seeds.values())) == 18  # every sample has its own seed
    state.log.clear()
    again = distill(rows, out, cfg(url, samples=3))
    assert state.log == [] and again.engine.cached == 18  # nothing asked twice
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    more = distill(rows, out, cfg(url, samples=4))  # one more sample: only that one is asked
    assert len(state.log) == 6 and more.written == 24


def test_retries_on_429_500_bad_replies_and_timeouts(
    serve: Callable[[Scripted], str], rows: Path, tmp_path: Path
) -> None:
    plan = [
        (429, {"error": "slow down"}),
        (500, {"error": "oops"}),
        (200, b"<html>not json</html>"),
        ok(""),  # empty completion
        ok("<think>cut off"),  # unfinished think
    ]

    def script(p: str, seed: int, attempt: int) -> Reply:
        return plan[attempt - 1] if attempt <= len(plan) else ok("<think>t</think>\\boxed{yes}")

    state = Scripted(script)
    url = serve(state)
    out = tmp_path / "c.jsonl"
    report = distill(rows, out, cfg(url, samples=1, retries=5))
    assert report.written == 6 and not report.engine.failures
    assert report.engine.requests == 6 * 6 and report.engine.retries == 6 * 5
    # a request that keeps failing is reported and skipped; a 400 is not retried
    first = next(iter(_truth(rows)))
    state2 = Scripted(lambda p, s, a: (400, {"error": "bad request"}) if p == first
                      else ok("<think>t</think>\\boxed{no}"))  # fmt: skip
    out2 = tmp_path / "d.jsonl"
    report2 = distill(rows, out2, cfg(serve(state2), samples=1, retries=3))
    assert len(report2.engine.failures) == 1 and "HTTP 400" in report2.engine.failures[0]
    assert report2.written == 5
    assert len(state2.log) == 6  # no retries of the 400s
    # timeouts are retried too, then reported
    slow = Scripted(lambda p, s, a: ok("<think>t</think>\\boxed{no}"), delay=1.0)
    report3 = distill(rows, tmp_path / "e.jsonl", cfg(serve(slow), samples=1, retries=1,
                                                      timeout_s=0.3))  # fmt: skip
    assert len(report3.engine.failures) == 6 and "within 0.3 s" in report3.engine.failures[0]
    assert len(slow.log) == 12


def test_a_teacher_that_is_down_stops_with_its_name_and_keeps_the_rest(
    rows: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ServiceError, match=f"the endpoint {url} is unreachable"):
        distill(rows, tmp_path / "c.jsonl", cfg(url, samples=1, retries=1, unreachable_after=4))
    res = CliRunner().invoke(app, ["train", "distill", "--input", str(rows), "--teacher-url",
                                   url, "--out", str(tmp_path / "c.jsonl"), "--samples", "1"],
                             env={"EVIDEX_ENGINE__RETRIES": "0"})  # fmt: skip
    assert res.exit_code == 1 and "is unreachable" in res.stderr and "Traceback" not in res.output


def test_bad_input_is_named(serve: Callable[[Scripted], str], rows: Path, tmp_path: Path) -> None:
    url = serve(Scripted(lambda p, s, a: ok("<think>t</think>\\boxed{yes}")))
    with pytest.raises(ConfigError, match="--samples must be at least 1, got 0"):
        cfg(url, samples=0)
    with pytest.raises(ConfigError, match="http"):
        cfg("gpu-node:8000", samples=1)
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b\n")
    with pytest.raises(InputError, match="must be what evidex train export writes"):
        distill(csv, tmp_path / "o.jsonl", cfg(url))
    mixed = tmp_path / "mixed.jsonl"
    good = {
        "data_source": "evidex/pubmedqa",
        "prompt": [{"role": "user", "content": "Q?"}],
        "reward_model": {"style": "rule", "ground_truth": "yes"},
        "extra_info": {"index": 0},
    }
    no_truth = {**good, "reward_model": {"style": "rule"}}
    no_prompt = {**good, "prompt": []}
    mixed.write_text("\n".join(json.dumps(r) for r in (good, no_truth, no_prompt)) + "\n")
    report = distill(mixed, tmp_path / "m.jsonl", cfg(url, samples=1))
    assert report.written == 1
    assert report.skipped_rows == [
        "row 2: no reward_model.ground_truth (rows from evidex train export)",
        "row 3: no prompt (a chat list with a user turn)",
    ]


def test_a_job_killed_with_sigkill_resumes_and_never_asks_twice(
    serve: Callable[[Scripted], str], rows: Path, tmp_path: Path
) -> None:
    state = Scripted(lambda p, s, a: ok("<think>t</think>\\boxed{yes}"), delay=0.15)
    url = serve(state)
    out = tmp_path / "c.jsonl"
    args = [sys.executable, "-m", "ui.cli", "train", "distill", "--input", str(rows),
            "--teacher-url", url, "--out", str(out), "--samples", "4",
            "--concurrency", "2"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    db = cache_path(out)
    deadline = time.monotonic() + 60
    done_before = 0
    while time.monotonic() < deadline:
        if db.exists():
            try:
                done_before = sqlite3.connect(str(db)).execute(
                    "SELECT COUNT(*) FROM completions").fetchone()[0]  # fmt: skip
            except sqlite3.OperationalError:
                done_before = 0
            if done_before >= 5:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 5 <= done_before < 24 and not out.exists()
    cached = {tuple(r) for r in sqlite3.connect(str(db)).execute(
        "SELECT row, sample FROM completions")}  # fmt: skip
    asked_before = Counter(state.log)
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 24 and len({(r["row"], r["sample"]) for r in lines}) == 24
    asked = Counter(state.log)
    seed_of = {(r["row"], r["sample"]): Request(r["row"], r["sample"], ()).seed() for r in lines}
    prompt_of = {(r["row"], r["sample"]): r["prompt"][-1]["content"] for r in lines}
    for key in cached:  # what the killed run had finished was never asked again
        k = (prompt_of[key], seed_of[key])
        assert asked[k] == asked_before[k] == 1, key
    assert all(n <= 2 for n in asked.values())  # at most the in-flight ones twice


def test_select_drops_all_right_and_all_wrong_and_orders_by_pass_count(
    serve: Callable[[Scripted], str], rows: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(rows).to_pylist()
    keys = [f"evidex/pubmedqa#{r['extra_info']['index']}" for r in table]
    right_by_row = [4, 0, 3, 1, 2, 1]  # samples answered right, of 4, per row
    truth = {r["prompt"][-1]["content"]: r["reward_model"]["ground_truth"] for r in table}
    wrong = {"yes": "no", "no": "yes", "maybe": "yes"}
    right: set[tuple[str, int]] = set()
    for n, (key, row) in enumerate(zip(keys, table, strict=True)):
        for s in range(right_by_row[n]):
            right.add((row["prompt"][-1]["content"], Request(key, s, ()).seed()))

    def script(p: str, seed: int, attempt: int) -> Reply:
        answer = truth[p] if (p, seed) in right else wrong[truth[p]]
        return ok(f"<think>t</think>\\boxed{{{answer}}}")

    url = serve(Scripted(script))
    out = tmp_path / "rl.parquet"
    report = select(rows, out, cfg(url, samples=4))
    kept = pq.read_table(out).to_pylist()
    assert [r["extra_info"]["pass_count"] for r in kept] == [1, 1, 2, 3]
    assert [r["extra_info"]["index"] for r in kept] == [3, 5, 4, 2]  # ties keep input order
    assert all(r["extra_info"]["samples"] == 4 for r in kept)
    assert report.dropped == {"all right": 1, "all wrong": 1, "incomplete": 0}
    assert kept[0]["reward_model"] == table[3]["reward_model"]  # the row itself, unchanged
    budget = select(rows, tmp_path / "rl2.jsonl", cfg(url, samples=4), budget=2)
    two = [json.loads(x) for x in (tmp_path / "rl2.jsonl").read_text().splitlines()]
    assert [r["extra_info"]["index"] for r in two] == [3, 5]
    assert budget.dropped["over the budget"] == 2
    with pytest.raises(ConfigError, match="give --judge-url"):
        medquad = tmp_path / "mq.jsonl"
        medquad.write_text(json.dumps({"data_source": "evidex/medquad", "prompt": [
            {"role": "user", "content": "What is gout?"}], "reward_model": {
            "style": "model", "ground_truth": "A form of arthritis."}}) + "\n")  # fmt: skip
        select(medquad, tmp_path / "x.jsonl", cfg(url, samples=2))


def test_trace_keeps_only_traces_that_reach_the_given_answer(
    serve: Callable[[Scripted], str], tmp_path: Path
) -> None:
    def script(p: str, seed: int, attempt: int) -> Reply:
        if "aspirin" in p:
            return ok("<think>Aspirin inhibits COX-1, so platelets...</think>\\boxed{B}")
        return ok("<think>Insulin lowers glucose...</think>\\boxed{C}")  # the given answer is D

    url = serve(Scripted(script))
    src = tmp_path / "answered.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Which drug is aspirin? A..D", "answer": "\\boxed{B}"},
        {"messages": [{"role": "user", "content": "Which hormone lowers glucose? A..D"},
                      {"role": "assistant", "content": "\\boxed{D}"}]},
        {"messages": [{"role": "user", "content": "Q"}]},
    ]) + "\n")  # fmt: skip
    out = tmp_path / "traced.jsonl"
    report = trace(src, out, cfg(url, samples=1, require_think=True))
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(kept) == 1 and report.dropped == {"answer does not match": 1, "no trace": 0}
    reply = kept[0]["messages"][-1]["content"]
    assert reply.startswith("<think>\nAspirin inhibits COX-1") and reply.endswith("\\boxed{B}")
    assert kept[0]["messages"][0] == {"role": "user", "content": "Which drug is aspirin? A..D"}
    assert report.skipped_rows == ["record 3: no user question followed by an assistant answer"]


def test_the_ray_data_path_gives_the_same_records(
    serve: Callable[[Scripted], str], rows: Path, tmp_path: Path, local_ray: object
) -> None:
    script = Scripted(lambda p, s, a: ok(f"<think>{s}</think>\\boxed{{yes}}"))
    url = serve(script)
    local = distill(rows, tmp_path / "local.jsonl", cfg(url, samples=2))
    remote = distill(rows, tmp_path / "ray.jsonl", cfg(url, samples=2), engine="ray")
    assert remote.written == local.written == 12 and remote.engine.requests == 12
    strip = [{k: v for k, v in json.loads(x).items()} for x in
             (tmp_path / "local.jsonl").read_text().splitlines()]  # fmt: skip
    other = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert other == strip
    again = distill(rows, tmp_path / "ray.jsonl", cfg(url, samples=2), engine="ray")
    assert again.engine.cached == 12 and again.engine.requests == 0


def _smollm2(url: str, max_tokens: int) -> EngineConfig:
    return EngineConfig(base_url=url, model="smollm2", samples=2, concurrency=2,
                        max_tokens=max_tokens, temperature=0.8, timeout_s=120)  # fmt: skip


def _first(rows: Path, n: int, tmp_path: Path) -> Path:
    import pyarrow.parquet as pq

    out = tmp_path / f"first{n}.parquet"
    pq.write_table(pq.read_table(rows).slice(0, n), out)
    return out


def test_distill_with_the_real_embedded_model(
    llama_server: str, rows: Path, tmp_path: Path
) -> None:
    config, two = _smollm2(llama_server, 24), _first(rows, 2, tmp_path)
    out = tmp_path / "c.jsonl"
    report = distill(two, out, config)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert report.written == 4 and report.engine.requests == 4 and not report.engine.failures
    assert report.engine.completion_tokens > 0
    for r in lines:
        assert r["response"].strip() and r["teacher"] == "smollm2"
        assert r["score"] == compute_score("evidex/pubmedqa", r["response"], r["ground_truth"])[
            "score"]  # fmt: skip
    with BatchEngine(config, cache_path(out)) as engine:  # a re-run is served from the cache
        req = Request(lines[0]["row"], 0, tuple(lines[0]["prompt"]))
        done, rep = engine.run([req])
    assert rep.requests == 0 and done[(req.row, 0)].text == lines[0]["response"]


def test_select_and_trace_with_the_real_embedded_model(
    llama_server: str, rows: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    config, three = _smollm2(llama_server, 16), _first(rows, 3, tmp_path)
    out = tmp_path / "rl.jsonl"
    report = select(three, out, config)
    assert report.engine.requests == 6 and not report.engine.failures
    kept = [json.loads(x) for x in out.read_text().splitlines()] if out.read_text() else []
    assert report.written == len(kept) and report.written + sum(report.dropped.values()) == 3
    # the verdicts are the rule reward's on the model's own completions (from the job's cache)
    db = sqlite3.connect(str(cache_path(out)))
    table = pq.read_table(three).to_pylist()
    passes = {}
    for r in table:
        key = f"evidex/pubmedqa#{r['extra_info']['index']}"
        texts = [t for (t,) in db.execute("SELECT text FROM completions WHERE row = ?", (key,))]
        passes[r["extra_info"]["index"]] = sum(
            compute_score("evidex/pubmedqa", t, r["reward_model"]["ground_truth"])["acc"]
            for t in texts
        )
    assert report.dropped["all wrong"] == sum(v == 0 for v in passes.values())
    assert report.dropped["all right"] == sum(v == 2 for v in passes.values())
    assert [r["extra_info"]["pass_count"] for r in kept] == sorted(
        v for v in passes.values() if v == 1
    )
    answered = tmp_path / "answered.jsonl"
    answered.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n")
    traced = trace(answered, tmp_path / "traced.jsonl",
                   EngineConfig(base_url=llama_server, model="smollm2", max_tokens=32,
                                timeout_s=120))  # fmt: skip
    assert traced.written + sum(traced.dropped.values()) == 1
