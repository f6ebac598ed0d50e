"""``evidex ingest pubmed|pmc|guidelines|beir|entrez`` and ``evidex index stats``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ui.cli import render
from ui.cli.app import (
    EXIT_SKIPPED,
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    command,
    index_app,
    ingest_app,
    load,
    open_index,
)

PathsArg = Annotated[list[Path], typer.Argument(help="Files or folders.", show_default=False)]
BatchOpt = Annotated[
    int | None, typer.Option("--batch-docs", min=1, help="Documents per write batch.")
]
EngineOpt = Annotated[
    str, typer.Option(help="'local' (one process, the default) or 'ray' (Ray Data).")
]
AddressOpt = Annotated[
    str | None,
    typer.Option(help="With --engine ray: join this Ray cluster (auto or HOST:PORT); "
                      "default: start a local one."),
]  # fmt: skip
ParseOpt = Annotated[int, typer.Option(min=1, help="With --engine ray: parse tasks at once.")]
ActorsOpt = Annotated[
    int, typer.Option(min=1, help="With --engine ray: embedding actors (one model load each).")
]
GpusOpt = Annotated[
    float, typer.Option(min=0, help="With --engine ray: GPUs per embedding actor (0: CPU).")
]
RayBatchOpt = Annotated[
    int, typer.Option(min=1, help="With --engine ray: documents per embedding batch.")
]
WritersOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="With --engine ray and a Qdrant server: writer actors writing in parallel (the "
        "embedded store takes one writer).",
    ),
]
FILE_KINDS = {
    "pubmed": "PubMed XML (efetch sets, baseline/update .xml.gz) or MEDLINE text files.",
    "pmc": "PMC Open Access full text (JATS .nxml).",
    "guidelines": "Guidelines: USPSTF JSON, MedQuAD (.jsonl[.gz], .xml), HTML, Markdown, PDF.",
    "beir": "A BEIR corpus.jsonl (or a BEIR dataset folder holding one).",
}


def _finish(report: Any, as_json: bool, where: str) -> None:
    render.ingest_report(report, as_json, where)
    if report.skipped:
        raise typer.Exit(EXIT_SKIPPED)


def _ingest(paths: Any, kind: str, store: Any, config: Any, as_json: bool, batch_docs: Any,
            engine: dict[str, Any], **options: Any) -> None:  # fmt: skip
    """Open the index, ingest ``paths`` of ``kind`` (``options`` go to ``ingest_paths``) with
    the chosen engine, print the report; exit 3 when something was skipped."""
    from ingest.pipeline import ingest_paths
    from retrieval.errors import UsageError

    name = engine.pop("engine")
    if name not in ("local", "ray"):
        raise UsageError(f"--engine must be 'local' or 'ray', not {name!r}")
    index = open_index(load(config, store), store, create=True)
    try:
        if name == "ray":
            from ingest.ray_engine import ingest_ray

            report = ingest_ray(paths, index, kind, pmid_ids=bool(options.get("pmid_ids")),
                                evidence_level=options.get("evidence_level"),
                                **engine)  # fmt: skip
        else:
            report = ingest_paths(paths, index, kind, batch_docs=batch_docs, **options)
    finally:
        index.close()
    _finish(report, as_json, index.where)


def _engine(values: dict[str, Any]) -> dict[str, Any]:
    """The engine options of a command's arguments."""
    keys = (
        "engine",
        "address",
        "parse_workers",
        "embed_actors",
        "gpus_per_actor",
        "batch_size",
        "writers",
    )
    return {k: values[k] for k in keys}


def _file_command(kind: str, help_text: str) -> None:
    """Register ``evidex ingest <kind> PATHS...`` (the file-based sources share one shape)."""

    def ingest_files(
        paths: PathsArg,
        store: StoreOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
        batch_docs: BatchOpt = None,
        engine: EngineOpt = "local",
        address: AddressOpt = None,
        parse_workers: ParseOpt = 2,
        embed_actors: ActorsOpt = 1,
        gpus_per_actor: GpusOpt = 0.0,
        batch_size: RayBatchOpt = 512,
        writers: WritersOpt = 1,
    ) -> None:
        _ingest(paths, kind, store, config, as_json, batch_docs, _engine(locals()))

    ingest_files.__doc__ = help_text
    command(ingest_app, kind)(ingest_files)


for _kind, _help in FILE_KINDS.items():
    if _kind not in ("guidelines", "beir"):
        _file_command(_kind, _help)


@command(ingest_app, "beir")
def ingest_beir(
    paths: PathsArg,
    pmid_ids: Annotated[
        bool,
        typer.Option(
            "--pmid-ids",
            help="The corpus is PubMed-based (PubMedQA, BioASQ, ...): its _id values are PMIDs "
            "and link to PubMed. Without it only records with metadata.pmid link to PubMed.",
        ),
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    batch_docs: BatchOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    parse_workers: ParseOpt = 2,
    embed_actors: ActorsOpt = 1,
    gpus_per_actor: GpusOpt = 0.0,
    batch_size: RayBatchOpt = 512,
    writers: WritersOpt = 1,
) -> None:
    """A BEIR corpus.jsonl (or a BEIR dataset folder holding one)."""
    _ingest(paths, "beir", store, config, as_json, batch_docs, _engine(locals()),
            pmid_ids=pmid_ids)  # fmt: skip


@command(ingest_app, "guidelines")
def ingest_guidelines(
    paths: PathsArg,
    evidence_level: Annotated[
        str | None,
        typer.Option(
            "--evidence-level",
            help="Evidence level of the HTML, Markdown and PDF files that declare none "
            "(practice_guideline, systematic_review, review, other, ...). Without it they are "
            "'other'; USPSTF and MedQuAD keep their own.",
        ),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    batch_docs: BatchOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    parse_workers: ParseOpt = 2,
    embed_actors: ActorsOpt = 1,
    gpus_per_actor: GpusOpt = 0.0,
    batch_size: RayBatchOpt = 512,
    writers: WritersOpt = 1,
) -> None:
    """Guidelines: USPSTF JSON, MedQuAD (.jsonl[.gz], .xml), HTML, Markdown, PDF."""
    from ingest.evidence import parse_level
    from retrieval.errors import InputError, UsageError

    try:
        level = parse_level(evidence_level) if evidence_level is not None else None
    except InputError as exc:
        raise UsageError(f"--evidence-level: {exc}") from None
    _ingest(paths, "guidelines", store, config, as_json, batch_docs, _engine(locals()),
            evidence_level=level)  # fmt: skip


@command(ingest_app, "entrez")
def ingest_entrez(
    query: Annotated[
        str, typer.Argument(help="PubMed query, e.g. 'hypertension[mh] AND 2020:2024[dp]'.")
    ],
    max_records: Annotated[int | None, typer.Option(min=1, help="Most records to fetch.")] = None,
    email: Annotated[str | None, typer.Option(help="Contact e-mail for NCBI.")] = None,
    api_key: Annotated[str | None, typer.Option(help="NCBI API key (10 requests/s).")] = None,
    full_text: Annotated[
        bool,
        typer.Option(
            "--full-text",
            help="Also fetch the PMC full text of records in the open-access subset, merged "
            "into the PubMed record.",
        ),
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Live PubMed through E-utilities (resumable: re-run the same command to continue)."""
    from ingest.pipeline import run_ingest
    from ingest.sources.entrez import fetch_records

    settings = load(config, store)
    if email:
        settings.entrez.email = email
    if api_key:
        settings.entrez.api_key = api_key
    if full_text:
        settings.entrez.full_text = True
    index = open_index(settings, store, create=True)
    try:
        recs = fetch_records(query, settings.entrez, settings.data_dir, max_records=max_records)
        report = run_ingest(recs, index, desc="ingest entrez")
    finally:
        index.close()
    _finish(report, as_json, index.where)


@command(index_app, "stats")
def index_stats(store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Documents and chunks per source, and the store's embedding model."""
    index = open_index(load(config, store), store, create=False)
    try:
        stats = index.stats()
    finally:
        index.close()
    render.index_stats(stats, as_json)
