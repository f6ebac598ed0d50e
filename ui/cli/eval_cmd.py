"""``evidex eval retrieval`` and ``evidex eval qa``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ui.cli import render
from ui.cli.app import ConfigOpt, JsonOpt, StoreOpt, command, err, eval_app, load, open_index, out


@command(eval_app, "retrieval")
def eval_retrieval(
    corpus: Annotated[Path, typer.Option(help="BEIR corpus.jsonl (ingested if needed).")],
    queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl.")],
    qrels: Annotated[Path, typer.Option(help="BEIR qrels .tsv (query-id, corpus-id, score).")],
    extra: Annotated[
        list[Path] | None,
        typer.Option(help="More corpora to ingest as distractors (kind detected per path)."),
    ] = None,
    baselines: Annotated[
        bool, typer.Option(help="Also run BM25 only, dense only and hybrid without rerank.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate only the first N queries.")
    ] = None,
    rerank: Annotated[
        bool,
        typer.Option(
            "--rerank", help="Also run the configured search with its reranker (as ask does)."
        ),
    ] = False,
    reranker: Annotated[
        Path | None,
        typer.Option(
            help="A CrossEncoder folder to rerank with (evidex train reranker's output); "
            "implies --rerank."
        ),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall@10, nDCG@10, MRR@100 and latency (whole and per stage) of the configured search
    on a BEIR dataset; plain search runs without the reranker, --rerank adds it."""
    from ingest.pipeline import ingest_paths
    from retrieval.evaluation import evaluate_index

    settings = load(config, store)
    if reranker is not None:
        settings.search.rerank.kind = "cross-encoder"
        settings.search.rerank.model_path = reranker
        rerank = True
    if store is None:  # a throw-away store
        settings.store.path = Path(tempfile.mkdtemp(prefix="evidex-eval-")) / "index"
    index = open_index(settings, store, create=True)
    try:
        if rerank and index.reranker is None:  # before ingesting: fail fast
            from retrieval.evaluation import methods_for

            methods_for(index, rerank=True)
        for path in [corpus, *(extra or [])]:
            report = ingest_paths([path], index, desc=f"ingest {path.name}")
            render.problems(report.problems, 5)
        results = evaluate_index(index, queries, qrels, baselines=baselines, limit=limit,
                                 rerank=rerank)  # fmt: skip
    finally:
        index.close()
    render.retrieval_results(results, as_json, f"retrieval on {qrels}")


@command(eval_app, "qa")
def eval_qa(
    benchmark: Annotated[
        str | None,
        typer.Option(
            help="medqa, medmcqa, mmlu, pubmedqa (the question alone, MIRAGE's PubMedQA*), "
            "pubmedqa_context (with its abstract, the report's setting), medcalc, cmmlu or "
            "cmexam."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="'embedded' (SmolLM2), an OpenAI-compatible endpoint http://HOST:PORT/v1, a "
            ".gguf file, or a checkpoint folder (vLLM offline, GPU)."
        ),
    ] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            help="Compare two earlier runs instead (results folders or .summary.json files): "
            "--compare RUN_A --compare RUN_B.",
        ),
    ] = None,
    model_name: Annotated[
        str, typer.Option(help="Model name sent to an endpoint (vLLM --served-model-name).")
    ] = "default",
    input: Annotated[
        Path | None,
        typer.Option("--input", help="Benchmark file; default: its file in ../shared/data."),
    ] = None,
    rag: Annotated[
        bool, typer.Option("--rag", help="Put evidex's top passages (the --store index) first.")
    ] = False,
    k: Annotated[int, typer.Option(min=1, help="Passages per question with --rag.")] = 5,
    rag_mode: Annotated[
        str,
        typer.Option(
            help="With --rag: 'search' (evidex's hybrid search with the question) or "
            "'assistant' (the answer pipeline's plan and gathered evidence)."
        ),
    ] = "search",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight at once.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per answer.")] = 1024,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Results folder (JSONL per run, summaries, chart).")
    ] = Path("eval-results"),
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy of a model on a medical benchmark, closed-book or with evidex retrieval.

    Re-running the same command resumes: finished items are kept, failed ones retried.
    """
    from retrieval.errors import UsageError
    from rl_training.eval.harness import EvalConfig, compare_runs, evaluate_benchmark

    if compare:
        if len(compare) != 2:
            raise UsageError(f"--compare takes two runs, got {len(compare)}")
        diffs = compare_runs(compare[0], compare[1])
        if as_json:
            out.print_json(json.dumps([d.as_dict() for d in diffs]))
        else:
            render.qa_diffs(diffs)
        return
    if benchmark is None or model is None:
        raise UsageError("give --benchmark and --model (or --compare RUN_A --compare RUN_B)")
    cfg = EvalConfig(benchmark=benchmark, model=model, rag=rag, k=k, rag_mode=rag_mode,
                     concurrency=concurrency, max_tokens=max_tokens, limit=limit)  # fmt: skip
    done = evaluate_benchmark(cfg, out_dir, model_name=model_name, source=input,
                              settings=load(config, store) if rag else None)  # fmt: skip
    if done.summary.errors:
        err.print(
            f"[yellow]{done.summary.errors} item(s) failed at the model and were not scored: "
            "re-run the same command to retry them[/]"
        )
    if as_json:
        out.print_json(json.dumps({**done.summary.__dict__, "chart": str(done.chart)}))
        return
    render.qa_runs(done.all_runs, f"evidex eval qa ({out_dir})")
    err.print(f"results in {done.results}; chart {done.chart}")
