"""Search latency per stage at 10k and 100k chunks on the embedded Qdrant Edge store.

The 1,993 real chunks of the PubMedQA corpus (real all-MiniLM-L6-v2 vectors, real BM25
vectors, real payloads) are expanded to N points: each copy's dense vector gets small
Gaussian noise (then re-normalized) and its payload a new document id, a year, source and
evidence level drawn at random, so filters have realistic selectivity. Queries are the 500
PubMedQA dev questions (the first --queries of them).

Stages: embed the query (MiniLM, CPU), the Qdrant query (hybrid = dense + BM25 prefetch fused
by RRF, one batched call; baselines dense only and BM25 only in the same run), and rerank
(a MiniLM-sized cross-encoder on 30 candidates, to show its cost; no reranker is the default).
Hybrid runs with DBSF (the default fusion) and with RRF.

Usage: python bench/search_latency.py [--sizes 10000 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench import append_results  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.embedders import Bm25Encoder, SparseVec, load_embedder  # noqa: E402
from retrieval.filters import SearchFilters  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402
from retrieval.stores.base import PointRecord, StoreInfo, StoreQuery  # noqa: E402
from retrieval.stores.edge import EdgeStore  # noqa: E402
from retrieval.types import EvidenceLevel, Source  # noqa: E402

FILTER = SearchFilters(
    year_from=2010,
    sources=(Source.PUBMED,),
    evidence_levels=(
        EvidenceLevel.RCT,
        EvidenceLevel.SYSTEMATIC_REVIEW,
        EvidenceLevel.CLINICAL_STUDY,
    ),
)


def base_points(tmp: Path) -> list[tuple[list[float], SparseVec, dict]]:
    settings = load_settings(data_dir=tmp)
    idx = Index(settings, tmp / "base")
    run_ingest(
        records("beir", [SHARED / "pubmedqa/beir_dev/corpus.jsonl"], pmid_ids=True),
        idx,
        progress=False,
    )
    store = idx.store
    assert isinstance(store, EdgeStore)
    recs, offset, out = [], None, []
    import qdrant_edge as q

    while True:
        page, offset = store.shard.scroll(
            q.ScrollRequest(offset=offset, limit=1000, with_payload=True, with_vector=["dense"])
        )
        recs.extend(page)
        if offset is None:
            break
    bm = Bm25Encoder()
    for r in recs:
        vec = r.vector["dense"] if isinstance(r.vector, dict) else r.vector
        out.append((list(vec), bm.embed_documents([r.payload["text"]])[0], dict(r.payload)))
    idx.close()
    return out


def build(path: Path, base: list, n: int, dim: int) -> tuple[EdgeStore, float, float]:
    rng = np.random.default_rng(0)
    rnd = random.Random(0)
    store = EdgeStore(path)
    store.init(StoreInfo("sentence-transformers/all-MiniLM-L6-v2", dim, "bm25-english"))
    levels = [e for e in EvidenceLevel]
    t = time.perf_counter()
    batch = []
    for i in range(n):
        vec, sparse, payload = base[i % len(base)]
        v = np.asarray(vec) + rng.normal(0, 0.03, dim)
        v /= np.linalg.norm(v)
        p = dict(payload)
        p["doc_id"] = f"{payload['doc_id']}#{i // len(base)}"
        p["year"] = rnd.randint(1990, 2025)
        p["source"] = rnd.choice(["pubmed", "pubmed", "pubmed", "pmc", "guideline"])
        level = rnd.choice(levels)
        p["evidence_level"], p["evidence_rank"] = level.value, level.rank
        batch.append(PointRecord(f"00000000-0000-4000-8000-{i:012d}", v.tolist(), sparse, p))
        if len(batch) == 1000:
            store.upsert(batch)
            batch = []
    store.upsert(batch)
    store.flush()
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    store.optimize()
    return store, load_s, time.perf_counter() - t


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * len(xs)) - 1)] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="evidex-bench-"))
    settings = load_settings(data_dir=tmp)
    emb = load_embedder(settings.embedding)
    bm = Bm25Encoder()
    queries = [
        json.loads(x)["text"]
        for x in (SHARED / "pubmedqa/beir_dev/queries.jsonl").read_text().splitlines()
    ]
    queries = queries[: args.queries]
    base = base_points(tmp)
    # embed stage (independent of index size)
    embed_ms = []
    qvecs = []
    for q in queries:
        t = time.perf_counter()
        qvecs.append((emb.embed_query(q).tolist(), bm.embed_query(q)))
        embed_ms.append((time.perf_counter() - t) * 1000)
    # rerank stage: a MiniLM-sized cross-encoder (random head) on 30 candidates
    from transformers import AutoTokenizer, BertForSequenceClassification

    from retrieval.embedders import default_model_path
    from retrieval.rerankers import CrossEncoderReranker

    ce_dir = tmp / "minilm-cross-encoder"
    BertForSequenceClassification.from_pretrained(
        str(default_model_path()), num_labels=1
    ).save_pretrained(str(ce_dir))
    AutoTokenizer.from_pretrained(str(default_model_path())).save_pretrained(str(ce_dir))
    ce = CrossEncoderReranker(ce_dir)
    texts = [b[2]["text"] for b in base[:30]]
    rerank_ms = []
    for q in queries[:50]:
        t = time.perf_counter()
        ce.score(q, texts)
        rerank_ms.append((time.perf_counter() - t) * 1000)
    lines = [
        f"\n## {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"Machine: {machine()}",
        "",
        f"Queries: {len(queries)} PubMedQA dev questions. Stage times in ms (p50 / p95).",
        "",
        f"- embed query (all-MiniLM-L6-v2, CPU): {statistics.median(embed_ms):.1f} / "
        f"{pct(embed_ms, 95):.1f}",
        f"- rerank 30 candidates (MiniLM-sized cross-encoder, CPU; not in the default): "
        f"{statistics.median(rerank_ms):.1f} / {pct(rerank_ms, 95):.1f}",
        "",
        "| chunks | load s | HNSW build s | query | filter | Qdrant p50 | Qdrant p95 | "
        "embed+Qdrant p50 | embed+Qdrant p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in args.sizes:
        store, load_s, build_s = build(tmp / f"s{n}", base, n, emb.dim)
        for filt in (None, FILTER):
            clauses = filt.clauses() if filt else []
            for mode, fusion in (
                ("hybrid", "dbsf"),
                ("hybrid", "rrf"),
                ("dense", "rrf"),
                ("sparse", "rrf"),
            ):
                qms = []
                for dense, sparse in qvecs:
                    t = time.perf_counter()
                    store.query(
                        StoreQuery(
                            dense=dense,
                            sparse=sparse,
                            k=10,
                            mode=mode,
                            prefetch=50,
                            rrf_k=60,
                            conditions=clauses,
                            fusion=fusion,
                        )
                    )
                    qms.append((time.perf_counter() - t) * 1000)
                total = [a + b for a, b in zip(embed_ms, qms, strict=True)]
                name = {
                    ("hybrid", "dbsf"): "hybrid DBSF (default)",
                    ("hybrid", "rrf"): "hybrid RRF",
                    ("dense", "rrf"): "dense only",
                    ("sparse", "rrf"): "BM25 only",
                }[(mode, fusion)]
                lines.append(
                    f"| {n:,} | {load_s:.1f} | {build_s:.1f} | {name} | "
                    f"{'year≥2010, pubmed, RCT/SR/study' if filt else 'none'} | "
                    f"{statistics.median(qms):.2f} | {pct(qms, 95):.2f} | "
                    f"{statistics.median(total):.1f} | {pct(total, 95):.1f} |"
                )
                print(lines[-1], flush=True)
        store.close()
    text = "\n".join(lines) + "\n"
    print(text)
    append_results("search_latency", "Search latency", text)


if __name__ == "__main__":
    main()
