"""Learned ranking: ``evidex train retriever`` (adapt the bi-encoder to the store's corpus),
``evidex index reembed`` (rebuild the store's dense vectors with it) and ``evidex train
reranker`` (a cross-encoder for the top candidates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ui.cli.app import (
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    command,
    err,
    index_app,
    load,
    open_index,
    out,
    train_app,
)

# The training data both ranking models take.
PairsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--pairs",
        help="A BEIR folder of supervised pairs (queries.jsonl, corpus.jsonl, qrels/*.tsv); "
        "repeatable.",
    ),
]
FeedbackOpt = Annotated[
    bool, typer.Option("--feedback", help="Add passages cited in answers rated helpful.")
]
ExcludeOpt = Annotated[
    Path | None,
    typer.Option(
        "--exclude-queries", help="A queries.jsonl whose ids never train (your evaluation queries)."
    ),
]


@command(train_app, "retriever")
def train_retriever(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the adapted model is written.")],
    store: StoreOpt = None,
    pairs: PairsOpt = None,
    feedback: FeedbackOpt = False,
    exclude_queries: ExcludeOpt = None,
    base: Annotated[
        Path | None, typer.Option(help="Model folder to start from (default: the configured one).")
    ] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the pairs.")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Pairs per step (in-batch negatives).")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 3e-5,
    max_pairs: Annotated[int, typer.Option(help="Most training pairs.")] = 50_000,
    no_hard_negatives: Annotated[
        bool, typer.Option("--no-hard-negatives", help="In-batch negatives only (no BM25 mining).")
    ] = False,
    min_documents: Annotated[int, typer.Option(help="Fewest usable documents to train on.")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    train_tokens: Annotated[
        int | None, typer.Option(help="Cut training texts to N tokens (faster on a CPU).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the retriever on the store's own documents (titles, inverse-cloze sentences,
    BM25 hard negatives), plus supervised pairs and clinicians' feedback when given."""
    from rl_training.auxiliary.retriever import RetrieverConfig, adapt

    settings = load(config, store)
    cfg = RetrieverConfig(out=out_dir, base=base or settings.embedding.model_path, epochs=epochs,
                          batch_size=batch_size, lr=lr, max_pairs=max_pairs,
                          hard_negatives=not no_hard_negatives, min_documents=min_documents,
                          device=device, train_max_tokens=train_tokens)  # fmt: skip
    excluded = _excluded(exclude_queries)
    index = open_index(settings, store, create=False)
    try:
        db = settings.chat.feedback_db or Path(settings.data_dir) / "feedback.sqlite"
        report = adapt(index, cfg, pairs_dirs=pairs or (), exclude_queries=excluded,
                       feedback_db=db if feedback else None)  # fmt: skip
    finally:
        index.close()
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    origins = ", ".join(f"{k} {v}" for k, v in sorted(report.by_origin.items()))
    out.print(f"trained {report.out} on {report.pairs} pairs ({origins}; "
              f"{report.with_negative} with a hard negative) in {report.seconds:.0f} s "
              f"on {report.device} ({report.pairs_per_s:.1f} pairs/s)")  # fmt: skip
    err.print(f"use it: embedding.model_path = \"{report.out}\", then evidex index reembed "
              f"--model {report.out}")  # fmt: skip


@command(train_app, "reranker")
def train_reranker(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the reranker folder is written.")],
    store: StoreOpt = None,
    pairs: PairsOpt = None,
    feedback: FeedbackOpt = False,
    exclude_queries: ExcludeOpt = None,
    base: Annotated[
        Path | None,
        typer.Option(help="Checkpoint folder to start from (default: the packaged MiniLM)."),
    ] = None,
    layers: Annotated[
        int | None,
        typer.Option(min=1, help="Keep only the first N layers (a faster reranker on a CPU)."),
    ] = None,
    negatives: Annotated[
        int, typer.Option(min=1, help="Hard negatives per query, from its first-stage hits.")
    ] = 3,
    epochs: Annotated[float, typer.Option(help="Passes over the examples.")] = 1.0,
    batch_size: Annotated[int, typer.Option(min=1, help="(query, passage) pairs per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-5,
    max_pairs: Annotated[int, typer.Option(min=1, help="Most training queries.")] = 20_000,
    max_length: Annotated[
        int, typer.Option(help="Tokens of query and passage read together (32-512).")
    ] = 256,
    teacher: Annotated[
        bool,
        typer.Option(
            "--teacher",
            help="Label pairs with the served LLM's relevance grades (llm.kind = 'openai').",
        ),
    ] = False,
    teacher_max: Annotated[
        int, typer.Option(min=1, help="Most (query, passage) pairs the teacher labels.")
    ] = 2_000,
    min_documents: Annotated[int, typer.Option(help="Fewest usable documents to train on.")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a cross-encoder reranker on the store's own documents (titles, inverse-cloze
    sentences) with negatives from each query's first-stage hits, plus supervised pairs,
    clinicians' feedback and a served LLM's relevance grades when given."""
    from rl_training.auxiliary.reranker import RerankerConfig, train

    settings = load(config, store)
    cfg = RerankerConfig(out=out_dir, base=base, layers=layers, negatives=negatives,
                         candidates=settings.search.rerank.candidates, epochs=epochs,
                         batch_size=batch_size, lr=lr, max_pairs=max_pairs,
                         max_length=max_length, teacher=teacher, teacher_max=teacher_max,
                         min_documents=min_documents, device=device)  # fmt: skip
    chat = None
    if teacher:
        from answer.llm import OpenAIChat
        from retrieval.errors import ConfigError

        if settings.llm.kind != "openai":
            raise ConfigError(
                "--teacher needs a served LLM (the embedded SmolLM2 is too small to grade "
                "relevance): set llm.kind = 'openai' and llm.base_url"
            )
        chat = OpenAIChat(settings.llm)
    index = open_index(settings, store, create=False)
    try:
        db = settings.chat.feedback_db or Path(settings.data_dir) / "feedback.sqlite"
        report = train(index, cfg, pairs_dirs=pairs or (), feedback_db=db if feedback else None,
                       exclude_queries=_excluded(exclude_queries), teacher=chat)  # fmt: skip
    finally:
        index.close()
        if chat is not None:
            chat.close()
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    origins = ", ".join(f"{k} {v}" for k, v in sorted(report.by_origin.items()))
    taught = (f"; {report.teacher_labelled} labelled by the teacher, {report.teacher_failed} "
              "failed" if teacher else "")  # fmt: skip
    out.print(f"trained {report.out} ({report.layers} layers) on {report.examples} examples of "
              f"{report.queries} queries ({origins}{taught}) in {report.seconds:.0f} s on "
              f"{report.device} ({report.pairs_per_s:.1f} pairs/s); reranking "
              f"{report.latency_passages} passages takes {report.latency_ms:.0f} ms")  # fmt: skip
    out.print(f"{report.held_out} held-out queries, MRR of their document among the first "
              f"stage's candidates: {report.first_stage_mrr:.3f} as searched, "
              f"{report.reranker_mrr:.3f} by the reranker alone, {report.blended_mrr:.3f} with "
              f"the best blend (weight {report.weight})")  # fmt: skip
    if report.weight == 0:
        err.print("[yellow]the reranker did not improve on the first stage for held-out queries: "
                  "configured, it would only add latency. Train on more (--pairs, --feedback, "
                  "more documents, a GPU)[/]")  # fmt: skip
        return
    err.print(f'use it: search.rerank.kind = "cross-encoder", search.rerank.model_path = '
              f'"{report.out}" (its weight {report.weight} is read from the folder; ask uses it, '
              "search with --rerank)")  # fmt: skip


def _excluded(queries: Path | None) -> list[str]:
    if queries is None:
        return []
    from retrieval.evaluation import read_queries

    return list(read_queries(queries))


@command(index_app, "reembed")
def index_reembed(
    model: Annotated[Path, typer.Option(help="The sentence-transformers model folder.")],
    store: StoreOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write a new store here (default: replace the store, the "
            "old one kept as <store>.before-reembed).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(help="Chunks embedded per batch.")] = 256,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rebuild the store's vectors with another model (resumable; the store is untouched until
    the new vectors are complete)."""
    from ingest.reembed import reembed

    report = reembed(load(config, store), model, store, out_dir, batch=batch)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    out.print(f"re-embedded {report.points:,} chunks of {report.store} with {report.model} "
              f"({report.embedded:,} embedded, {report.already_done:,} already done) in "
              f"{report.seconds:.0f} s")  # fmt: skip
    if report.backup:
        err.print(f"the old store is kept at {report.backup}")
    err.print(f'search it with embedding.model_path = "{model}"')
