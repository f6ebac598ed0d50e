"""Retrieval evaluation on BEIR-layout data: recall@10, nDCG@10, MRR@100 and latency.

Relevance is judged per document (a corpus id from the qrels); a ranked list of passages is
turned into a ranked list of distinct documents before scoring.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.errors import ConfigError, InputError
from retrieval.jsonl import iter_jsonl
from retrieval.stores.base import SearchMode
from retrieval.types import ScoredPassage

if TYPE_CHECKING:
    from retrieval.index import Index


def read_queries(path: Path) -> dict[str, str]:
    """BEIR ``queries.jsonl``: ``{"_id", "text"}`` per line."""
    out: dict[str, str] = {}
    for n, rec in iter_jsonl(path):
        try:
            out[str(rec["_id"])] = str(rec["text"])
        except KeyError as exc:
            raise InputError(f"{path}:{n}: not a BEIR query line (no {exc})") from exc
    if not out:
        raise InputError(f"{path} holds no queries")
    return out


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR ``qrels/*.tsv``: ``query-id, corpus-id, score`` with a header line."""
    out: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        rows = csv.reader(fh, delimiter="\t")
        for n, row in enumerate(rows, 1):
            if n == 1 and row and not row[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                raise InputError(f"{path}:{n}: expected query-id<TAB>corpus-id<TAB>score")
            out.setdefault(row[0], {})[row[1]] = int(row[2])
    if not out:
        raise InputError(f"{path} holds no judgements")
    return out


def ndcg_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """nDCG@k with graded relevance.

    >>> ndcg_at(["a", "b"], {"a": 1}, 10)
    1.0
    >>> round(ndcg_at(["b", "a"], {"a": 1}, 10), 4)
    0.6309
    """
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Share of relevant documents in the top k.

    >>> recall_at(["a", "x"], {"a": 1, "b": 1}, 10)
    0.5
    """
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document within k.

    >>> mrr_at(["x", "a"], {"a": 1}, 100)
    0.5
    """
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def corpus_id(p: ScoredPassage) -> str:
    """The BEIR corpus id of a hit (its doc id without the kind prefix otherwise)."""
    return p.doc_id.split(":", 1)[-1]


def documents(hits: Iterable[ScoredPassage], key: Callable[[ScoredPassage], str]) -> list[str]:
    """Distinct documents in rank order."""
    return list(dict.fromkeys(key(h) for h in hits))


@dataclass(frozen=True)
class MethodResult:
    recall_10: float
    ndcg_10: float
    mrr_100: float
    p50_ms: float
    p95_ms: float
    queries: int
    stages: Mapping[str, float] = field(default_factory=dict)
    """Median milliseconds per search stage (embed, query, rerank) when they were timed."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "recall@10": round(self.recall_10, 4),
            "ndcg@10": round(self.ndcg_10, 4),
            "mrr@100": round(self.mrr_100, 4),
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            "queries": self.queries,
            "stages_ms": {k: round(v, 2) for k, v in self.stages.items()},
        }


def evaluate(
    search: Callable[[str], list[ScoredPassage]],
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    key: Callable[[ScoredPassage], str] = corpus_id,
    progress: Callable[[int], None] | None = None,
    timings: Callable[[], Mapping[str, float]] | None = None,
) -> MethodResult:
    """Run every judged query through ``search`` and score the ranked documents;
    ``timings`` (read after each search) gives that search's milliseconds per stage."""
    r10, n10, mrr, lat = [], [], [], []
    stages: dict[str, list[float]] = {}
    for qid, rels in qrels.items():
        if qid not in queries:
            continue
        t = time.perf_counter()
        hits = search(queries[qid])
        lat.append((time.perf_counter() - t) * 1000)
        for name, ms in (timings() if timings else {}).items():
            stages.setdefault(name.removesuffix("_ms"), []).append(ms)
        ranked = documents(hits, key)
        r10.append(recall_at(ranked, rels, 10))
        n10.append(ndcg_at(ranked, rels, 10))
        mrr.append(mrr_at(ranked, rels, 100))
        if progress:
            progress(1)
    if not lat:
        raise InputError("no judged query has a text in the queries file")
    lat.sort()
    p95 = lat[min(len(lat) - 1, math.ceil(0.95 * len(lat)) - 1)]
    return MethodResult(
        statistics.fmean(r10),
        statistics.fmean(n10),
        statistics.fmean(mrr),
        statistics.median(lat),
        p95,
        len(lat),
        {name: statistics.median(v) for name, v in stages.items()},
    )


SearchFn = Callable[[str], list[ScoredPassage]]

BASELINES: dict[str, str] = {"bm25": "sparse", "dense": "dense", "hybrid": "hybrid"}
"""The baselines ``--baselines`` adds: BM25 only, dense only, and hybrid (RRF) without the
reranker and the evidence-aware ranking, each with its search mode."""

RERANKED = "evidex + rerank"
"""The method ``--rerank`` adds: the configured pipeline with its reranker."""


def methods_for(index: Index, baselines: bool = False, rerank: bool = False) -> dict[str, SearchFn]:
    """The configured pipeline without a reranker (``evidex``, as plain search runs), with
    ``rerank`` also with the configured reranker (as ``ask`` runs), and with ``baselines``
    the plain modes; each a function from a query to its top 100 passages (one per
    document)."""
    if rerank and index.reranker is None:
        raise ConfigError(
            "--rerank needs a reranker: set search.rerank.kind and search.rerank.model_path "
            "(evidex train reranker makes one), or pass --reranker PATH"
        )

    def configured(q: str) -> list[ScoredPassage]:
        return index.search(q, k=100, max_per_doc=1, rerank=False)

    def reranked(q: str) -> list[ScoredPassage]:
        return index.search(q, k=100, max_per_doc=1, rerank=True)

    def baseline(mode: SearchMode) -> SearchFn:
        def run(q: str) -> list[ScoredPassage]:
            return index.search(q, k=100, mode=mode, rerank=False, ranking=False,
                                max_per_doc=1, fusion="rrf")  # fmt: skip

        return run

    out: dict[str, SearchFn] = {"evidex": configured}
    if rerank:
        out[RERANKED] = reranked
    if baselines:
        out.update({name: baseline(mode) for name, mode in BASELINES.items()})  # type: ignore[arg-type]
    return out


def evaluate_index(
    index: Index,
    queries_file: Path,
    qrels_file: Path,
    *,
    baselines: bool = False,
    limit: int | None = None,
    rerank: bool = False,
) -> dict[str, MethodResult]:
    """Every method of :func:`methods_for` on a BEIR query set, with a progress bar each."""
    from tqdm import tqdm

    qs = read_queries(queries_file)
    judged = read_qrels(qrels_file)
    if limit:
        judged = dict(list(judged.items())[:limit])
    results = {}
    for name, fn in methods_for(index, baselines, rerank).items():
        with tqdm(total=len(judged), desc=f"eval {name}", disable=None) as bar:
            results[name] = evaluate(fn, qs, judged, progress=bar.update,
                                     timings=lambda: dict(index.last_timings))  # fmt: skip
    return results
