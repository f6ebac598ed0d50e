"""Run a chat model over a benchmark and score it with the rule rewards.

Every finished item is appended at once to a JSONL results file (prompt, response, extracted
answer, correct, score), so an interrupted run resumes where it stopped and never scores an
item twice; items whose request failed are not written and are retried on the next run. The
summary (accuracy; mean score, the mean of the per-item scores, which are F1 on multi-answer
items; for multiple-choice benchmarks micro-F1 pooled over the items, as the report's MedReMCQ
metric is; MedCalc's range accuracy is its accuracy) is written beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from planner.chat import ChatError, ChatMessage, ChatModel, ChatResult
from retrieval.errors import ConfigError, InputError
from retrieval.jsonl import read_jsonl, write_jsonl
from rl_training.rewards import compute_score
from rl_training.rewards.extract import choice_letters, pooled_micro_f1
from rl_training.rewards.scoring import MCQ

log = logging.getLogger(__name__)


class PassageSearch(Protocol):
    """What RAG needs from retrieval (``retrieval.search.Searcher`` fits)."""

    def search(self, query: str, k: int | None = None) -> Sequence[Any]: ...


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run."""

    benchmark: str
    model: str
    """The ``--model`` value (endpoint, GGUF, checkpoint or 'embedded')."""
    rag: bool = False
    k: int = 5
    """Passages retrieved per question with ``rag``."""
    rag_mode: str = "search"
    """'search': evidex's hybrid search with the question; 'assistant': the answer pipeline's
    planner and gathered evidence (:mod:`rl_training.eval.rag`)."""
    max_passage_chars: int = 1200
    concurrency: int = 4
    max_tokens: int = 1024
    limit: int | None = None
    """Evaluate only the first N items."""


@dataclass
class Summary:
    benchmark: str
    model: str
    rag: bool
    items: int
    """Items with a result (all runs of this file)."""
    total: int
    """Items in the benchmark slice."""
    correct: int
    accuracy: float
    mean_score: float
    errors: int
    """Items whose request failed in the last run (retried next time)."""
    date: str
    machine: str
    micro_f1: float | None = None
    """Multiple-choice benchmarks: micro-F1 pooled over the items (TP, FP and FN summed)."""
    rag_mode: str = "search"

    @property
    def label(self) -> str:
        how = " + RAG (assistant)" if self.rag and self.rag_mode == "assistant" else " + RAG"
        return f"{self.benchmark} · {self.model}{how if self.rag else ''}"


def slug(text: str) -> str:
    """A file-name-safe form of a model name.

    >>> slug("http://127.0.0.1:8000/v1"), slug("/models/Qwen2.5-32B")
    ('127.0.0.1-8000-v1', 'Qwen2.5-32B')
    """
    text = re.sub(r"^https?://", "", text.rstrip("/"))
    if "/" in text and not re.match(r"[\d.]+[:/]|localhost", text):
        text = text.rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def results_path(out_dir: Path, cfg: EvalConfig) -> Path:
    rag = ("-rag-assistant" if cfg.rag_mode == "assistant" else "-rag") if cfg.rag else ""
    return out_dir / f"{cfg.benchmark}-{slug(cfg.model)}{rag}.jsonl"


def _messages(row: dict[str, Any], passages: Sequence[Any], max_chars: int) -> list[ChatMessage]:
    msgs = [ChatMessage(role=m["role"], content=m["content"]) for m in row["prompt"]]
    if passages:

        def head(p: Any) -> str:
            pmid = getattr(p, "pmid", None)
            parts = [f"PMID {pmid}" if pmid else "", getattr(p, "title", "") or ""]
            return " · ".join(x for x in parts if x)

        docs = "\n\n".join(
            f"[{i}] {head(p)}\n{p.text[:max_chars]}" for i, p in enumerate(passages, 1)
        )
        last = msgs[-1]
        msgs[-1] = ChatMessage(
            role=last.role,
            content=f"Relevant documents:\n{docs}\n\n{last.content}",
        )
    return msgs


def _done(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for rec in read_jsonl(path, on_bad="skip"):  # a killed run's cut last line
            if "id" in rec:
                done[rec["id"]] = rec
    return done


def run(
    rows: Sequence[dict[str, Any]],
    chat: ChatModel,
    cfg: EvalConfig,
    out_dir: Path,
    searcher: PassageSearch | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Summary:
    """Evaluate ``chat`` on ``rows`` (see the module doc); returns and writes the summary."""
    if cfg.rag and searcher is None:
        raise ConfigError("rag needs a searcher over an evidex index")
    rows = list(rows[: cfg.limit] if cfg.limit else rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = results_path(out_dir, cfg)
    done = _done(path)
    todo = [r for r in rows if r["id"] not in done]
    if progress and len(rows) - len(todo):
        progress(len(rows) - len(todo))
    lock = threading.Lock()
    errors = 0

    def prepare(row: dict[str, Any]) -> list[ChatMessage]:
        passages: Sequence[Any] = []
        if cfg.rag and searcher is not None:
            query = str(row["extra_info"].get("question") or row["prompt"][-1]["content"])
            passages = searcher.search(query, k=cfg.k)
        return _messages(row, passages, cfg.max_passage_chars)

    def record(row: dict[str, Any], msgs: list[ChatMessage], res: ChatResult) -> None:
        response = f"<think>{res.reasoning}</think>{res.text}" if res.reasoning else res.text
        truth = row["reward_model"]["ground_truth"]
        scored = compute_score(row["data_source"], response, truth, row["extra_info"])
        rec = {
            "id": row["id"],
            "prompt": [{"role": m.role, "content": m.content} for m in msgs],
            "response": response,
            "ground_truth": truth,
            "extracted": scored.get("pred"),
            "correct": bool(scored["acc"]),
            "score": float(scored["score"]),
            "completion_tokens": res.completion_tokens,
            "seconds": round(res.seconds, 3),
        }
        with lock:
            write_jsonl(path, [rec], append=True)
            done[row["id"]] = rec
        if progress:
            progress(1)

    batch = getattr(chat, "complete_batch", None)
    if callable(batch):  # vLLM offline: one engine call per chunk
        for i in range(0, len(todo), 256):
            chunk = todo[i : i + 256]
            prompts = [prepare(r) for r in chunk]
            for row, msgs, res in zip(chunk, prompts, batch(prompts, cfg.max_tokens), strict=True):
                record(row, msgs, res)
    else:

        def one(row: dict[str, Any]) -> None:
            msgs = prepare(row)
            record(row, msgs, chat.complete(msgs, max_tokens=cfg.max_tokens, temperature=0.0))

        with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency)) as pool:
            futures = {pool.submit(one, r): r for r in todo}
            for fut in as_completed(futures):
                try:
                    fut.result()
                except ChatError as exc:
                    errors += 1
                    log.warning(
                        "%s: the model failed (%s); re-run to retry it", futures[fut]["id"], exc
                    )

    ids = {r["id"] for r in rows}
    results = [done[i] for i in ids if i in done]
    correct = sum(r["correct"] for r in results)
    summary = Summary(
        benchmark=cfg.benchmark,
        model=getattr(chat, "name", cfg.model) if cfg.model == "embedded" else cfg.model,
        rag=cfg.rag,
        rag_mode=cfg.rag_mode,
        items=len(results),
        total=len(rows),
        correct=correct,
        accuracy=correct / len(results) if results else 0.0,
        mean_score=sum(r["score"] for r in results) / len(results) if results else 0.0,
        micro_f1=_pooled_f1(results) if rows and _is_mcq(rows[0]["data_source"]) else None,
        errors=errors,
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=f"{platform.node()} ({platform.machine()}, {platform.system()})",
    )
    path.with_suffix(".summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _is_mcq(data_source: str) -> bool:
    return data_source.split("/", 1)[-1].lower() in MCQ


def _pooled_f1(results: Sequence[dict[str, Any]]) -> float:
    """Pooled micro-F1 of multiple-choice results (an unanswered item is all misses)."""
    return pooled_micro_f1(
        (choice_letters(r.get("extracted") or ""), choice_letters(str(r["ground_truth"])))
        for r in results
    )


def load_summaries(out_dir: Path) -> list[Summary]:
    """Every run's summary in a results folder, sorted by benchmark then model."""
    found = [Summary(**json.loads(p.read_text())) for p in sorted(out_dir.glob("*.summary.json"))]
    return sorted(found, key=lambda s: (s.benchmark, s.model, s.rag))


def bar_chart(summaries: Sequence[Summary], png: Path) -> Path:
    """A bar chart of accuracy per run (grouped by benchmark) saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = sorted({s.benchmark for s in summaries})
    runs = sorted({(s.model, s.rag) for s in summaries})
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(benches) * max(1, len(runs)) ** 0.5), 4))
    for j, (model, rag) in enumerate(runs):
        xs, ys = [], []
        for i, b in enumerate(benches):
            hit = [s for s in summaries if (s.benchmark, s.model, s.rag) == (b, model, rag)]
            if hit:
                xs.append(i + j * width - 0.4 + width / 2)
                ys.append(100 * hit[0].accuracy)
        bars = ax.bar(xs, ys, width, label=f"{model}{' + RAG' if rag else ''}")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("evidex eval qa")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


@dataclass(frozen=True)
class RunDiff:
    """One benchmark in two runs: accuracy in each and the difference (B minus A)."""

    benchmark: str
    a: str
    b: str
    accuracy_a: float
    accuracy_b: float
    items_a: int
    items_b: int

    @property
    def delta(self) -> float:
        return round(self.accuracy_b - self.accuracy_a, 4)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "delta": self.delta}


def _summaries_of(path: Path) -> list[Summary]:
    if path.is_dir():
        found = load_summaries(path)
    elif path.name.endswith(".summary.json") and path.is_file():
        found = [Summary(**json.loads(path.read_text()))]
    else:
        raise InputError(f"{path}: give a results folder of evidex eval qa or a .summary.json")
    if not found:
        raise InputError(f"{path}: no run summaries (*.summary.json) in it")
    return found


def compare_runs(a: Path, b: Path) -> list[RunDiff]:
    """Accuracy differences between two runs (results folders or summary files), per
    benchmark and retrieval setting present in both; two single summaries are compared
    directly.

    A benchmark in only one of them is left out; none in common is an error."""
    runs_a, runs_b = _summaries_of(Path(a)), _summaries_of(Path(b))
    if len(runs_a) == 1 and len(runs_b) == 1:
        pairs = [(runs_a[0], runs_b[0])]
    else:
        by_b = {(s.benchmark, s.rag): s for s in runs_b}
        pairs = [(s, by_b[(s.benchmark, s.rag)]) for s in runs_a if (s.benchmark, s.rag) in by_b]
    if not pairs:
        raise InputError(f"{a} and {b} share no benchmark to compare")
    return [RunDiff(x.benchmark, x.label, y.label, x.accuracy, y.accuracy, x.items, y.items)
            for x, y in pairs]  # fmt: skip


@dataclass(frozen=True)
class BenchmarkRun:
    """What :func:`evaluate_benchmark` did: this run's summary, every run's summary in the
    results folder (for the table and the chart), the chart and this run's results file."""

    summary: Summary
    all_runs: list[Summary]
    chart: Path
    results: Path


def evaluate_benchmark(
    cfg: EvalConfig,
    out_dir: Path,
    *,
    model_name: str = "default",
    source: Path | None = None,
    settings: Any = None,
) -> BenchmarkRun:
    """``evidex eval qa``: load the benchmark (``source``, else its file in ../shared/data)
    and the model, open the index for RAG (``settings``), run with a progress bar, and draw
    the chart of every run in ``out_dir``. Re-running resumes (see :func:`run`)."""
    from tqdm import tqdm

    from rl_training.eval import benchmarks
    from rl_training.eval.models import load_model

    rows = benchmarks.load(cfg.benchmark, source)
    chat = load_model(cfg.model, name=model_name, max_tokens=cfg.max_tokens)
    searcher: Any = None
    try:
        if cfg.rag:
            from retrieval.search import Searcher
            from retrieval.settings import load_settings

            if cfg.rag_mode == "assistant":
                from rl_training.eval.rag import AssistantSearch

                searcher = AssistantSearch(settings or load_settings())
            elif cfg.rag_mode == "search":
                searcher = Searcher(settings or load_settings())
            else:
                raise ConfigError(f"--rag-mode must be search or assistant, not {cfg.rag_mode!r}")
            if searcher.index.store.count() == 0:
                raise ConfigError(
                    f"--rag: the index at {searcher.index.where} is empty: ingest a corpus "
                    "first (evidex ingest beir|pubmed|guidelines PATH)"
                )
        n = min(len(rows), cfg.limit or len(rows))
        with tqdm(total=n, desc=f"eval {cfg.benchmark}", disable=None) as bar:
            summary = run(rows, chat, cfg, out_dir, searcher, progress=bar.update)
    finally:
        if searcher is not None:
            searcher.close()
        close = getattr(chat, "close", None)
        if callable(close):
            close()
    all_runs = load_summaries(out_dir)
    png = bar_chart(all_runs, out_dir / "accuracy.png")
    return BenchmarkRun(summary, all_runs, png, results_path(out_dir, cfg))
