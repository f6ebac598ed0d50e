"""Cited answers with the embedded model on PubMedQA (questions from pqal_dev.json, corpus =
the 1,000 PubMedQA dev abstracts in beir_dev/corpus.jsonl).

Measures, per question: whether the question's own abstract (its PMID) is retrieved and is
cited; how many of the model's citations the verifier kept (supported) or removed; whether
the answer abstained or degraded; time per stage. Also the share of valid plans the embedded
model writes when asked (planner.use_llm = "always"), which is why "auto" skips it.
Writes bench/results/answer_eval.md with 20 answers in full for checking by hand.

Usage: python bench/answer_eval.py [--questions 60] [--plans 30] [--store DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from answer import Assistant  # noqa: E402
from answer.llm import load_chat  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from planner.planner import Planner  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import PlannerSettings, load_settings  # noqa: E402

REMOVED_CITATION = ("the cited source does not support it", "citation dropped")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--plans", type=int, default=30)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "answer_eval.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tmp = Path(tempfile.mkdtemp(prefix="evidex-answer-"))
    store = args.store or tmp / "store"
    settings = load_settings(data_dir=tmp, store={"path": store})
    idx = Index(settings, store)
    t0 = time.perf_counter()
    run_ingest(
        records("beir", [SHARED / "pubmedqa" / "beir_dev" / "corpus.jsonl"], pmid_ids=True), idx
    )
    idx.close()
    ingest_s = time.perf_counter() - t0

    data = json.loads((SHARED / "pubmedqa" / "pqal_dev.json").read_text())
    items = list(data.items())[: args.questions]
    rows = []
    full = []
    with Assistant(settings) as a:
        a.ask("warm-up: does aspirin prevent stroke?")
        for pmid, item in items:
            q = item["QUESTION"]
            t = time.perf_counter()
            ans = a.ask(q)
            wall = time.perf_counter() - t
            own = f"pmid:{pmid}"
            kept = sum(c.status == "verified" for c in ans.citations)
            added = sum(c.status == "added" for c in ans.citations)
            dropped = sum(
                len(r.markers) for r in ans.removed if r.reason.startswith(REMOVED_CITATION)
            )
            rows.append({
                "retrieved": any(r.doc_id == own for r in ans.references),
                "cited": any(c.doc_id == own for c in ans.citations),
                "abstained": ans.abstained, "degraded": ans.degraded,
                "kept": kept, "added": added, "dropped": dropped,
                "removed_sentences": len(ans.removed), "wall": wall, **ans.timings_ms,
            })  # fmt: skip
            if len(full) < 20:
                full.append((pmid, q, item["final_decision"], ans))

    plan_valid = plan_calls = 0
    plan_times = []
    chat = load_chat(settings.llm)
    planner = Planner(chat, PlannerSettings(use_llm="always"))
    for _, item in list(data.items())[: args.plans]:
        t = time.perf_counter()
        out = planner.plan(item["QUESTION"])
        plan_times.append(time.perf_counter() - t)
        plan_calls += 1
        plan_valid += out.plan.origin in ("llm", "repaired")

    n = len(rows)
    frac = lambda key: sum(bool(r[key]) for r in rows) / n  # noqa: E731
    kept = sum(r["kept"] for r in rows)
    dropped = sum(r["dropped"] for r in rows)
    added = sum(r["added"] for r in rows)
    lines = [
        "# Cited answers with the embedded model (bench/answer_eval.py)",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}",
        f"- model: {full[0][3].models.get('chat')} (llama.cpp, CPU); embedding "
        f"{full[0][3].models.get('embedding')}; verifier: {full[0][3].models.get('verifier')}",
        f"- corpus: 1,000 PubMedQA dev abstracts (ingested in {ingest_s:.0f} s); questions: the "
        f"first {n} of pqal_dev.json; planner.use_llm = auto (deterministic plan)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| question's own abstract among the sources | {frac('retrieved'):.1%} |",
        f"| question's own abstract cited in the answer | {frac('cited'):.1%} |",
        f"| abstained (insufficient evidence) | {frac('abstained'):.1%} |",
        f"| degraded (top evidence, no synthesis) | {frac('degraded'):.1%} |",
        f"| model citations kept by the verifier | {kept} of {kept + dropped} "
        f"({kept / max(kept + dropped, 1):.1%}) |",
        f"| citations added to uncited sentences by the verifier | {added} |",
        f"| sentences removed per answer (mean) | "
        f"{statistics.mean(r['removed_sentences'] for r in rows):.1f} |",
        f"| valid plans from the embedded model when asked (use_llm=always) | "
        f"{plan_valid} of {plan_calls}; {statistics.median(plan_times):.1f} s median per plan |",
        "",
        "Latency per stage (ms):",
        "",
        "| stage | p50 | p95 |",
        "|---|---|---|",
    ]
    for stage in ("plan", "retrieve", "generate", "verify", "total"):
        xs = [float(r[stage]) for r in rows if stage in r]
        if xs:
            lines.append(f"| {stage} | {pct(xs, 0.5):,.0f} | {pct(xs, 0.95):,.0f} |")
    lines += ["", "## 20 answers in full (for checking by hand)", ""]
    for pmid, q, gold, ans in full:
        lines += [
            f"### PMID {pmid}: {q}", "",
            f"PubMedQA label: {gold}. Abstained: {ans.abstained}. Degraded: {ans.degraded}.", "",
            "Answer: " + ans.text.replace("\n", " "), "",
        ]  # fmt: skip
        for c in ans.citations:
            lines.append(f"- [{c.marker}] {c.status}, support {c.support:.2f}, {c.doc_id}: "
                         f"claim \"{c.sentence[:200]}\" / evidence \"{c.evidence[:200]}\"")  # fmt: skip
        lines.append("")
    args.out.write_text("\n".join(lines) + "\n")
    logging.getLogger("bench").info("%s\nwritten to %s", "\n".join(lines[:30]), args.out)


if __name__ == "__main__":
    main()
