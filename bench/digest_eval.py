"""The evidence digest against the embedded model's synthesized answers, in one run, on
PubMedQA (questions from pqal_dev.json; corpus = the 1,000 PubMedQA abstracts of
beir_dev/corpus.jsonl, which carry no section labels).

Per question: whether the question's own abstract is cited, whether the quoted sentence of it
lies in the abstract's CONCLUSIONS section (read from abstracts.jsonl, which the corpus does
not have: the digest must find the conclusion by itself), whether the answer abstained,
whether every quote is verbatim in its passage, and the latency. Three arms:

- ``digest``: answer.mode = "digest" with the default sentence scorer;
- ``digest, similarity only``: the same digest with the role weights at 0 (sentences chosen by
  embedding similarity to the question alone, as the old "top evidence" fallback did);
- ``synthesized``: answer.mode = "synthesize" with the embedded SmolLM2-135M (first
  ``--synth`` questions; it takes seconds per answer).

Usage: python bench/digest_eval.py [--questions 500] [--synth 40] [--store DIR]
Writes bench/results/digest_eval.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from answer import Assistant  # noqa: E402
from answer.digest import verbatim  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402

log = logging.getLogger("bench")
SIMILARITY_ONLY = {"conclusion_weight": 0, "result_weight": 0, "background_weight": 0}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def norm(text: str) -> str:
    return " ".join(text.split())


def run_arm(settings: Any, items: list[tuple[str, dict[str, Any]]],
            conclusions: dict[str, str]) -> tuple[list[dict[str, Any]], list[Any]]:  # fmt: skip
    rows, kept = [], []
    with Assistant(settings) as a:
        a.ask("warm-up: does aspirin prevent stroke?")
        for pmid, item in items:
            t = time.perf_counter()
            ans = a.ask(item["QUESTION"])
            wall = (time.perf_counter() - t) * 1000
            own = [c for c in ans.citations if c.doc_id == f"pmid:{pmid}"]
            concl = norm(conclusions.get(pmid, ""))
            rows.append({
                "cited": bool(own),
                "conclusion": any(norm(c.sentence.rstrip(".")) in concl for c in own if concl),
                "first_conclusion": bool(own) and norm(own[0].sentence.rstrip(".")) in concl,
                "abstained": ans.abstained,
                "digest": ans.digest,
                "quotes": len(ans.citations) if ans.digest else 0,
                "verbatim": all(verbatim(c.sentence, c.text) for c in ans.citations)
                if ans.digest else None,
                "total": wall,
            })  # fmt: skip
            if len(kept) < 12:
                kept.append((pmid, item, ans))
    return rows, kept


def summary(name: str, rows: list[dict[str, Any]]) -> str:
    n = len(rows)

    def frac(key: str) -> str:
        return f"{sum(bool(r[key]) for r in rows) / n:.1%}"

    cited = [r for r in rows if r["cited"]]
    concl = sum(r["conclusion"] for r in cited) / max(len(cited), 1)
    verb = [r["verbatim"] for r in rows if r["verbatim"] is not None]
    quotes = [r["quotes"] for r in rows if r["digest"]]
    return (
        f"| {name} | {n} | {frac('cited')} | {concl:.1%} | {frac('first_conclusion')} | "
        f"{frac('abstained')} | {f'{sum(verb) / len(verb):.1%}' if verb else 'n/a'} | "
        f"{f'{sum(quotes) / len(quotes):.1f}' if quotes else 'n/a'} | "
        f"{pct([r['total'] for r in rows], 0.5):,.0f} | {pct([r['total'] for r in rows], 0.95):,.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=500)
    ap.add_argument("--synth", type=int, default=40)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "digest_eval.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)

    tmp = Path(tempfile.mkdtemp(prefix="evidex-digest-"))
    store = args.store or tmp / "store"
    base = {"data_dir": tmp, "store": {"path": store}}
    ingest_s = 0.0
    if not (store.exists() and any(store.iterdir())):
        t0 = time.perf_counter()
        with Index(load_settings(**base), store) as idx:  # type: ignore[arg-type]
            run_ingest(
                records("beir", [SHARED / "pubmedqa" / "beir_dev" / "corpus.jsonl"], pmid_ids=True),
                idx,
            )
        ingest_s = time.perf_counter() - t0

    conclusions = {}
    for line in (SHARED / "pubmedqa" / "abstracts.jsonl").open():
        rec = json.loads(line)
        conclusions[rec["pmid"]] = " ".join(
            s["text"] for s in rec["sections"] if s["label"].upper().startswith("CONCLU")
        )
    data = json.loads((SHARED / "pubmedqa" / "pqal_dev.json").read_text())
    items = list(data.items())[: args.questions]

    arms = {
        "digest": load_settings(**base, answer={"mode": "digest"}),  # type: ignore[arg-type]
        "digest, similarity only": load_settings(  # type: ignore[arg-type]
            **base, answer={"mode": "digest", "digest": SIMILARITY_ONLY}
        ),
        "synthesized (SmolLM2-135M)": load_settings(  # type: ignore[arg-type]
            **base, answer={"mode": "synthesize"}
        ),
    }
    results, shown = {}, {}
    for name, settings in arms.items():
        its = items[: args.synth] if name.startswith("synth") else items
        log.info("arm %s: %d questions", name, len(its))
        results[name], shown[name] = run_arm(settings, its, conclusions)
    # the same questions as the synthesized arm, for a like-for-like row
    results["digest (first questions only)"] = results["digest"][: args.synth]

    lines = [
        "# The evidence digest and the embedded model's answers (bench/digest_eval.py)",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}",
        "- corpus: the 1,000 PubMedQA abstracts of beir_dev/corpus.jsonl (no section labels; "
        + (f"ingested in {ingest_s:.0f} s" if ingest_s else "store reused")
        + "); questions: "
        f"the first {len(items)} of pqal_dev.json (synthesized: the first {args.synth})",
        "- embedding all-MiniLM-L6-v2; planner deterministic (planner.use_llm = auto); "
        "conclusions read from abstracts.jsonl (CONCLUSIONS), which the corpus does not label",
        "",
        "| arm | questions | own abstract cited | its quote is a conclusion sentence (of cited) "
        "| first quote of it is a conclusion | abstained | quotes verbatim | quotes per answer "
        "| p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("digest", "digest, similarity only", "digest (first questions only)",
                 "synthesized (SmolLM2-135M)"):  # fmt: skip
        lines.append(summary(name, results[name]))
    lines += ["", "## Digests in full (first questions, for checking by hand)", ""]
    for pmid, item, ans in shown["digest"]:
        lines += [f"### PMID {pmid}: {item['QUESTION']}", "",
                  f"PubMedQA label: {item['final_decision']}; conclusion: "
                  f"“{conclusions.get(pmid, '')}”", "", ans.text, ""]  # fmt: skip
    args.out.write_text("\n".join(lines) + "\n")
    log.info("%s\nwritten to %s", "\n".join(lines[:16]), args.out)


if __name__ == "__main__":
    main()
