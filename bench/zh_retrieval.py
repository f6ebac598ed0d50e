"""Chinese retrieval on CMExam: each question's own explanation among all explanations.

From ``../shared/data/zh/cmexam_dev.jsonl`` every row with an explanation gives a document (the
explanation) and a query (the question alone, as a clinician would ask it); the relevant
document of a query is its own explanation. Methods, in the same run on the same index:
the default pipeline (hybrid: MiniLM + BM25, fused), BM25 alone, dense alone; and, as the
baseline before Chinese segmentation, BM25 over an index built without it (each run of
Chinese characters one token, as Qdrant's tokenizer sees it).

Usage: python bench/zh_retrieval.py [--queries 600]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval import embedders  # noqa: E402
from retrieval.evaluation import evaluate_index  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402


def build_set(tmp: Path) -> tuple[Path, Path, Path, int]:
    rows = [json.loads(x) for x in (SHARED / "zh" / "cmexam_dev.jsonl").read_text().splitlines()]
    rows = [r for r in rows if (r.get("explanation") or "nan").strip() not in ("", "nan")]
    corpus, queries, qrels = tmp / "corpus.jsonl", tmp / "queries.jsonl", tmp / "qrels.tsv"
    with corpus.open("w") as c, queries.open("w") as q, qrels.open("w") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for row in rows:
            doc = f"d-{row['id']}"
            c.write(json.dumps({"_id": doc, "title": "", "text": row["explanation"]},
                               ensure_ascii=False) + "\n")  # fmt: skip
            q.write(json.dumps({"_id": row["id"], "text": row["question"]}, ensure_ascii=False))
            q.write("\n")
            r.write(f"{row['id']}\t{doc}\t1\n")
    return corpus, queries, qrels, len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "zh_retrieval.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evidex-zh-"))
    corpus, queries, qrels, n = build_set(tmp)

    rows = []
    settings = load_settings(data_dir=tmp)
    with Index(settings, tmp / "segmented") as idx:
        run_ingest(records("beir", [corpus]), idx, progress=False)
        res = evaluate_index(idx, queries, qrels, baselines=True, limit=args.queries)
        rows += [(name, r) for name, r in res.items()]

    segment = embedders.segment
    embedders.segment = lambda text: text  # the baseline: no Chinese segmentation
    try:
        with Index(settings, tmp / "unsegmented") as idx:
            run_ingest(records("beir", [corpus]), idx, progress=False)
            res = evaluate_index(idx, queries, qrels, baselines=True, limit=args.queries)
            rows += [(f"{name} (no segmentation)", r) for name, r in res.items()
                     if name.startswith("bm25")]  # fmt: skip
    finally:
        embedders.segment = segment

    lines = [
        "# Chinese retrieval: CMExam questions over their explanations",
        "",
        f"- Date: {dt.date.today().isoformat()}; machine: {machine()}",
        f"- Corpus: the {n:,} CMExam dev explanations (one document each); queries: the first "
        f"{args.queries} questions (the question alone); relevant: the question's own "
        "explanation.",
        "- Embedder: the default all-MiniLM-L6-v2 (English); BM25 with jieba segmentation "
        "(`retrieval/chinese.py`), and without it as the baseline.",
        "",
        "| method | recall@10 | nDCG@10 | MRR@100 | p50 ms |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r.recall_10:.3f} | {r.ndcg_10:.3f} | {r.mrr_100:.3f} | {r.p50_ms:.0f} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
