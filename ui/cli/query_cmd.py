"""``evidex search``, ``evidex ask`` and ``evidex config show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from retrieval.errors import ConfigError, UsageError
from ui.cli import render
from ui.cli.app import (
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    app,
    command,
    config_app,
    err,
    load,
    open_index,
    out,
)

ListOpt = list[str] | None
# The filters `evidex search` and `evidex ask` share.
SourceOpt = Annotated[ListOpt, typer.Option(help="Only these sources (pubmed, pmc, ...).")]
YearFromOpt = Annotated[int | None, typer.Option(help="Published in or after.")]
YearToOpt = Annotated[int | None, typer.Option(help="Published in or before.")]
EvidenceOpt = Annotated[
    ListOpt, typer.Option(help="Only these evidence levels, e.g. systematic_review.")
]
GradeOpt = Annotated[
    ListOpt,
    typer.Option(
        "--grade",
        help="Only guidelines with this recommendation grade (USPSTF A, B, C, D, I; GRADE "
        "strong, conditional, weak); repeat for several.",
    ),
]


def search_filters(**values: Any) -> Any:
    """:class:`retrieval.filters.SearchFilters` from option values; a bad one is a usage
    error naming the option."""
    import pydantic

    from retrieval.filters import SearchFilters

    given = {k: v for k, v in values.items() if v not in (None, [], ())}
    if not given:
        return None
    try:
        return SearchFilters.model_validate(given)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"bad filter: {problems}") from None


@command(app, "search")
def search(
    question: Annotated[str, typer.Argument(help="A clinical question or search terms.")],
    k: Annotated[
        int | None, typer.Option("-k", "--top", min=1, max=1000, help="Passages to show.")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="dense, sparse or hybrid.")] = None,
    source: SourceOpt = None,
    year_from: YearFromOpt = None,
    year_to: YearToOpt = None,
    evidence: EvidenceOpt = None,
    publication_type: Annotated[ListOpt, typer.Option(help="PubMed publication type.")] = None,
    language: Annotated[
        ListOpt, typer.Option(help="Document language: eng, chi, or en, zh, English, Chinese.")
    ] = None,
    mesh: Annotated[ListOpt, typer.Option(help="MeSH term.")] = None,
    body: Annotated[ListOpt, typer.Option("--body", help="Guideline body, e.g. USPSTF.")] = None,
    age: Annotated[
        float | None, typer.Option(help="Patient age: drop guidelines for other ages.")
    ] = None,
    sex: Annotated[
        str | None, typer.Option(help="Patient sex (female/male): drop other-sex guidelines.")
    ] = None,
    exclude_retracted: Annotated[
        bool, typer.Option("--exclude-retracted", help="Drop retracted records.")
    ] = False,
    grade: GradeOpt = None,
    why: Annotated[bool, typer.Option(help="Show each hit's score parts.")] = False,
    rerank: Annotated[
        bool,
        typer.Option(
            "--rerank", help="Let the configured reranker read the top hits (slower; ask does)."
        ),
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top passages for a question, with PMIDs, titles, scores and why they rank there."""
    if mode is not None and mode not in ("dense", "sparse", "hybrid"):
        raise UsageError(f"--mode must be dense, sparse or hybrid, not {mode!r}")
    filters = search_filters(
        year_from=year_from, year_to=year_to, sources=source, evidence_levels=evidence,
        publication_types=publication_type, languages=language, mesh_terms=mesh, bodies=body,
        patient_age=age, patient_sex=sex, exclude_retracted=exclude_retracted or None,
        grades=grade,
    )  # fmt: skip
    from retrieval.ranking import check_query

    settings = load(config, store)
    question = check_query(question, settings.search.max_query_chars)  # before the store opens
    index = open_index(settings, store, create=False)
    try:
        note = index.language_note(question)
        if note and not as_json:
            err.print(f"note: {note}", highlight=False, markup=False)
        if rerank and index.reranker is None:
            raise ConfigError(
                "--rerank needs a reranker: set search.rerank.kind and search.rerank.model_path "
                "(evidex train reranker makes one)"
            )
        found = index.search(question, k=k, mode=mode, filters=filters, rerank=rerank)
    finally:
        index.close()
    render.hits(found, as_json, question, why=why)


@command(config_app, "show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the resolved settings as JSON (secrets masked)."""
    out.print_json(load(config).model_dump_json())


@command(app, "ask")
def ask(
    question: Annotated[str, typer.Argument(help="A clinical question (English or Chinese).")],
    patient: Annotated[
        Path | None,
        typer.Option(help="Patient context: a JSON record or a FHIR R4 Bundle (.json)."),
    ] = None,
    source: SourceOpt = None,
    year_from: YearFromOpt = None,
    year_to: YearToOpt = None,
    evidence: EvidenceOpt = None,
    grade: GradeOpt = None,
    reasoning: Annotated[
        bool, typer.Option(help="Also show a reasoning model's <think> text.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question with verified citations (or say the evidence is insufficient)."""
    from answer import Assistant
    from answer.patient import load_patient

    filters = search_filters(year_from=year_from, year_to=year_to, sources=source,
                             evidence_levels=evidence, grades=grade)  # fmt: skip
    pat = load_patient(patient) if patient is not None else None
    settings = load(config, store)
    settings.answer.show_reasoning = settings.answer.show_reasoning or reasoning
    with Assistant(settings, store=store) as assistant:
        result = assistant.ask(question, patient=pat, filters=filters)
    if as_json:
        render.answer_json(result)
    else:
        render.answer(result, reasoning)
