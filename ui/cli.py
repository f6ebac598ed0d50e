"""The ``evidex`` command line."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="evidex",
    no_args_is_help=True,
    add_completion=False,
    help="evidex: evidence-based medical search with cited PubMed and guideline sources.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
ingest_app = typer.Typer(no_args_is_help=True, help="Ingest a corpus into the index.")
index_app = typer.Typer(no_args_is_help=True, help="Inspect the index.")
config_app = typer.Typer(no_args_is_help=True, help="Show the resolved settings.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure evidex on your own data.")
train_app = typer.Typer(no_args_is_help=True, help="Training data and jobs (rl_training).")
app.add_typer(ingest_app, name="ingest")
app.add_typer(index_app, name="index")
app.add_typer(config_app, name="config")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("evidex")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Index folder (default: <data_dir>/index from settings)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (default: $EVIDEX_CONFIG or ./evidex.toml)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]

T = TypeVar("T")
Kind = Literal["pubmed", "pmc", "guidelines", "beir"]


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")
    ] = 0,
) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )
    for noisy in ("sentence_transformers", "transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body; expected failures become one clear line and exit code 1."""
    from ingest.records import InputError
    from retrieval.embedders import EmbedderError
    from retrieval.settings import SettingsError
    from retrieval.stores.base import StoreError

    try:
        return fn()
    except (InputError, StoreError, SettingsError, EmbedderError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: re-run the same command to resume[/]")
        raise typer.Exit(130) from None


def _settings(config: Path | None, store: Path | None = None) -> Any:
    from retrieval.settings import load_settings

    settings = load_settings(config)
    if store is not None and str(store) != ":memory:":
        settings.store.path = store
    return settings


def _index(settings: Any, store: Path | None, *, create: bool) -> Any:
    from retrieval.index import Index

    return Index(
        settings, store if store is not None and str(store) == ":memory:" else None, create=create
    )


def _report(report: Any, as_json: bool, store_path: str) -> None:
    data = report.as_dict()
    if as_json:
        out.print_json(json.dumps({**data, "store": store_path}))
    else:
        t = Table(title="ingestion report", show_header=False)
        for key in (
            "documents",
            "written",
            "replaced",
            "unchanged",
            "chunks",
            "deleted",
            "skipped",
            "seconds",
            "docs_per_s",
        ):
            t.add_row(key.replace("_", "/"), str(data[key]))
        t.add_row("store", store_path)
        out.print(t)
        for p in report.problems[:20]:
            err.print(f"[yellow]skipped[/] {p}", highlight=False)
        if len(report.problems) > 20:
            err.print(f"[yellow]... and {len(report.problems) - 20} more skipped inputs[/]")
    if report.skipped:
        raise typer.Exit(EXIT_SKIPPED)


def _run_files(
    kind: Kind,
    paths: list[Path],
    config: Path | None,
    store: Path | None,
    as_json: bool,
    batch_docs: int | None,
) -> None:
    from ingest.pipeline import run_ingest
    from ingest.sources.files import expand, records

    def body() -> Any:
        settings = _settings(config, store)
        files = expand(kind, paths)
        index = _index(settings, store, create=True)
        try:
            return run_ingest(
                records(kind, files),
                index,
                batch_docs=batch_docs,
                desc=f"ingest {kind}",
            ), str(settings.store_path)
        finally:
            index.close()

    report, where = _guard(body)
    _report(report, as_json, where)


PathsArg = Annotated[list[Path], typer.Argument(help="Files or folders.", show_default=False)]
BatchOpt = Annotated[
    int | None, typer.Option("--batch-docs", min=1, help="Documents per write batch.")
]


def _file_command(kind: Kind, help_text: str) -> None:
    """Register ``evidex ingest <kind> PATHS...`` (the file-based sources share one shape)."""

    def command(
        paths: PathsArg,
        store: StoreOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
        batch_docs: BatchOpt = None,
    ) -> None:
        _run_files(kind, paths, config, store, as_json, batch_docs)

    command.__doc__ = help_text
    ingest_app.command(kind)(command)


for _kind, _help in (
    ("pubmed", "PubMed XML (efetch sets, baseline/update .xml.gz) or MEDLINE text files."),
    ("pmc", "PMC Open Access full text (JATS .nxml)."),
    ("guidelines", "Guidelines: USPSTF JSON, MedQuAD (.jsonl[.gz], .xml), HTML, Markdown, PDF."),
    ("beir", "A BEIR corpus.jsonl (or a BEIR dataset folder holding one)."),
):
    _file_command(_kind, _help)  # type: ignore[arg-type]


@ingest_app.command("entrez")
def ingest_entrez(
    query: Annotated[
        str, typer.Argument(help="PubMed query, e.g. 'hypertension[mh] AND 2020:2024[dp]'.")
    ],
    max_records: Annotated[int | None, typer.Option(min=1, help="Most records to fetch.")] = None,
    email: Annotated[str | None, typer.Option(help="Contact e-mail for NCBI.")] = None,
    api_key: Annotated[str | None, typer.Option(help="NCBI API key (10 requests/s).")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Live PubMed through E-utilities (resumable: re-run the same command to continue)."""
    from ingest.pipeline import run_ingest
    from ingest.sources.entrez import fetch_records

    def body() -> Any:
        settings = _settings(config, store)
        if email:
            settings.entrez.email = email
        if api_key:
            settings.entrez.api_key = api_key
        index = _index(settings, store, create=True)
        try:
            recs = fetch_records(query, settings.entrez, settings.data_dir, max_records=max_records)
            return run_ingest(recs, index, desc="ingest entrez"), str(settings.store_path)
        finally:
            index.close()

    report, where = _guard(body)
    _report(report, as_json, where)


@index_app.command("stats")
def index_stats(store: StoreOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Documents and chunks per source, and the store's embedding model."""

    def body() -> dict[str, Any]:
        settings = _settings(config, store)
        index = _index(settings, store, create=False)
        try:
            stats: dict[str, Any] = index.stats()
        finally:
            index.close()
        stats["store"] = str(settings.store_path)
        return stats

    stats = _guard(body)
    if as_json:
        out.print_json(json.dumps(stats))
        return
    t = Table(title=f"index at {stats['store']}")
    t.add_column("source")
    t.add_column("documents", justify="right")
    t.add_column("chunks", justify="right")
    for src, row in stats["sources"].items():
        t.add_row(src, str(row["documents"]), str(row["chunks"]))
    t.add_row("[b]total", f"[b]{stats['documents']}", f"[b]{stats['chunks']}")
    out.print(t)
    out.print(
        f"embedding model: {stats['embedding_model']} ({stats['dim']}-d); "
        f"sparse: {stats['sparse_model']}"
    )


def _print_hits(hits: Iterable[Any], as_json: bool, question: str, why: bool = False) -> None:
    hits = list(hits)
    if as_json:
        out.print_json(
            json.dumps({"query": question, "results": [h.model_dump(mode="json") for h in hits]})
        )
        return
    if not hits:
        out.print("no matching passages")
        return
    for rank, h in enumerate(hits, 1):
        ident = f"PMID {h.pmid}" if h.pmid else h.doc_id
        meta = " · ".join(str(x) for x in (ident, h.year, h.evidence_level.replace("_", " ")) if x)
        out.print(
            f"[bold]{rank}.[/] [cyan]{h.title or '(untitled)'}[/]  [dim]{meta} · "
            f"score {h.score:.4f}[/]",
            highlight=False,
        )
        text = h.text if len(h.text) <= 400 else h.text[:400] + " …"
        out.print(f"   {text}", highlight=False)
        if h.url:
            out.print(f"   [link={h.url}]{h.url}[/link]", highlight=False)
        if why:
            parts = ", ".join(f"{k} {v:.4g}" for k, v in h.score_parts.items())
            out.print(f"   [dim]why: {parts}[/]", highlight=False)


ListOpt = list[str] | None
# The filters `evidex search` and `evidex ask` share.
SourceOpt = Annotated[ListOpt, typer.Option(help="Only these sources (pubmed, pmc, ...).")]
YearFromOpt = Annotated[int | None, typer.Option(help="Published in or after.")]
YearToOpt = Annotated[int | None, typer.Option(help="Published in or before.")]
EvidenceOpt = Annotated[
    ListOpt, typer.Option(help="Only these evidence levels, e.g. systematic_review.")
]


@app.command("search")
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
    language: Annotated[ListOpt, typer.Option(help="Language code, e.g. eng.")] = None,
    mesh: Annotated[ListOpt, typer.Option(help="MeSH term.")] = None,
    body: Annotated[ListOpt, typer.Option("--body", help="Guideline body, e.g. USPSTF.")] = None,
    age: Annotated[
        float | None, typer.Option(help="Patient age: drop guidelines for other ages.")
    ] = None,
    sex: Annotated[
        str | None, typer.Option(help="Patient sex (female/male): drop other-sex guidelines.")
    ] = None,
    why: Annotated[bool, typer.Option(help="Show each hit's score parts.")] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top passages for a question, with PMIDs, titles, scores and why they rank there."""
    import pydantic

    from retrieval.filters import SearchFilters

    if mode is not None and mode not in ("dense", "sparse", "hybrid"):
        err.print(f"[bold red]error:[/] --mode must be dense, sparse or hybrid, not {mode!r}")
        raise typer.Exit(EXIT_USAGE)
    try:
        filters = SearchFilters.model_validate(
            {
                "year_from": year_from,
                "year_to": year_to,
                "sources": source or (),
                "evidence_levels": evidence or (),
                "publication_types": publication_type or (),
                "languages": language or (),
                "mesh_terms": mesh or (),
                "bodies": body or (),
                "patient_age": age,
                "patient_sex": sex,
            }
        )
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        err.print(f"[bold red]error:[/] bad filter: {problems}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None

    def run() -> list[Any]:
        settings = _settings(config, store)
        index = _index(settings, store, create=False)
        try:
            hits: list[Any] = index.search(question, k=k, mode=mode, filters=filters)
            return hits
        finally:
            index.close()

    _print_hits(_guard(run), as_json, question, why=why)


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the resolved settings as JSON (secrets masked)."""
    settings = _guard(lambda: _settings(config))
    out.print_json(settings.model_dump_json())


@app.command("ask")
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
    reasoning: Annotated[
        bool, typer.Option(help="Also show a reasoning model's <think> text.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question with verified citations (or say the evidence is insufficient)."""
    from answer import AnswerError, Assistant
    from answer.patient import PatientError, load_patient

    filters = {
        k: v
        for k, v in {
            "year_from": year_from,
            "year_to": year_to,
            "sources": tuple(source or ()),
            "evidence_levels": tuple(evidence or ()),
        }.items()
        if v not in (None, ())
    }
    try:
        pat = load_patient(patient) if patient is not None else None
    except PatientError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None

    def run() -> Any:
        settings = _settings(config, store)
        if reasoning:
            settings.answer.show_reasoning = True
        with Assistant(settings, store=store) as assistant:
            return assistant.ask(question, patient=pat, filters=filters or None)

    try:
        answer = _guard(run)
    except AnswerError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        data = answer.model_dump(mode="json")
        data["references"] = [
            {**r, "label": ref.label()}
            for r, ref in zip(data["references"], answer.references, strict=True)
        ]
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    _print_answer(answer, reasoning)


def _print_answer(answer: Any, reasoning: bool) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    style = "yellow" if answer.abstained else "cyan" if answer.degraded else "green"
    title = (
        "Insufficient evidence"
        if answer.abstained
        else "Top evidence (no synthesis)"
        if answer.degraded
        else "Answer"
    )
    if reasoning and answer.reasoning:
        out.print(
            Panel(escape(answer.reasoning), title="Reasoning", border_style="dim"), soft_wrap=False
        )
    out.print(Panel(escape(answer.text), title=title, border_style=style), soft_wrap=False)
    refs = answer.cited_references or list(answer.references)
    if refs:
        out.print("[bold]References[/]" if answer.cited_references else "[bold]Sources reviewed[/]")
        for r in refs:
            bits = [b for b in (r.title or r.doc_id, r.journal, str(r.year or "")) if b]
            out.print(
                f"  [{r.marker}] {escape('. '.join(bits))}. {r.label()}. "
                f"[dim]{r.evidence_level.replace('_', ' ')}[/] {r.url or ''}",
                highlight=False,
            )
    for c in answer.citations:
        if c.status == "unsupported":
            out.print(f"  [yellow]citation [{c.marker}] {c.status}[/]: {escape(c.sentence)}")
    for w in answer.warnings:
        out.print(f"[yellow]note:[/] {escape(w)}", highlight=False)
    if answer.removed:
        out.print(f"[dim]{len(answer.removed)} unsupported sentence(s) removed.[/]")
    out.print(f"[bold]{escape(answer.notice)}[/]")


SAMPLE_QUESTION = "Does aspirin reduce the risk of cardiovascular events?"


@app.command("demo")
def demo(
    corpus: Annotated[
        Path | None,
        typer.Argument(
            help="A corpus to ingest: BEIR corpus.jsonl, PubMed XML/MEDLINE, PMC .nxml or "
            "guideline files. Without it, a topic's abstracts are pulled live from PubMed."
        ),
    ] = None,
    topic: Annotated[str | None, typer.Option(help="PubMed topic when no corpus is given.")] = None,
    question: Annotated[str, typer.Option(help="The first question to answer.")] = SAMPLE_QUESTION,
    interactive: Annotated[
        bool | None,
        typer.Option(help="Keep asking for questions (default: when stdin is a terminal)."),
    ] = None,
    chat: Annotated[
        bool,
        typer.Option("--chat/--no-chat", help="After the first answer, open the clinicians' chat."),
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The main job: ingest a corpus, then answer questions about it with cited sources."""
    from ingest.pipeline import run_ingest
    from ingest.sources.entrez import EntrezUnavailable, fetch_records
    from ingest.sources.files import detect_kind, expand, records

    settings = _guard(lambda: _settings(config, store))

    def body() -> Any:
        index = _index(settings, store, create=True)
        try:
            if corpus is not None:
                kind = detect_kind(corpus) if corpus.exists() else "beir"
                files = expand(kind, [corpus])
                err.print(f"ingesting {corpus} as {kind} into {settings.store_path}")
                recs: Any = records(kind, files)
            else:
                q = topic or settings.entrez.default_topic
                err.print(
                    f"pulling PubMed abstracts for {q!r} (up to {settings.entrez.max_records})"
                )
                recs = fetch_records(q, settings.entrez, settings.data_dir)
            return run_ingest(recs, index, desc="ingest")
        except EntrezUnavailable as exc:
            return exc
        finally:
            index.close()

    report = _guard(body)
    if isinstance(report, EntrezUnavailable):
        err.print(
            f"[bold red]PubMed is not reachable[/] ({report}).\n"
            "Without internet, pass a local corpus instead, for example:\n"
            "  bash scripts/run.sh ../shared/data/pubmedqa/beir_dev/corpus.jsonl\n"
            "  (or, once installed: evidex demo ../shared/data/pubmedqa/beir_dev/corpus.jsonl)\n"
            "(a BEIR corpus.jsonl, PubMed XML or MEDLINE files, PMC .nxml, or guideline "
            "JSON/HTML/Markdown/PDF files or folders).",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE)
    data = report.as_dict()
    err.print(
        f"indexed {data['documents']} documents ({data['chunks']} new chunks, "
        f"{data['unchanged']} unchanged, {data['skipped']} skipped) in {data['seconds']}s"
    )
    for p in report.problems[:10]:
        err.print(f"[yellow]skipped[/] {p}", highlight=False)

    from answer import AnswerError, Assistant

    try:
        assistant = _guard(lambda: Assistant(settings, store=store))
    except AnswerError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_ERROR) from None

    def ask(q: str) -> None:
        out.rule(f"[bold]{escape(q)}")
        try:
            answer = _guard(lambda: assistant.ask(q))
        except AnswerError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            return
        _print_answer(answer, reasoning=False)

    try:
        ask(question)
        if chat:
            assistant.close()
            _launch_chat(settings, config, store, settings.chat.host, settings.chat.port, True)
            return
        if interactive is None:
            interactive = sys.stdin.isatty()
        while interactive:
            try:
                q = input("\nquestion (empty to quit)> ").strip()
            except EOFError:
                break
            if not q:
                break
            ask(q)
    finally:
        assistant.close()


def _open_when_up(url: str, timeout_s: float = 120) -> None:
    """Open a browser tab once the chat answers its health check."""
    import time
    import webbrowser

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                webbrowser.open(url)
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)


def _launch_chat(
    settings: Any, config: Path | None, store: Path | None, host: str, port: int, browser: bool
) -> None:
    """Run the Streamlit chat in the foreground until Ctrl-C."""
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec("streamlit") is None:
        err.print(
            "[bold red]error:[/] the chat needs Streamlit: bash scripts/setup.sh ui "
            "(or pip install -e '.[ui]')"
        )
        raise typer.Exit(EXIT_ERROR)
    from ui.auth import UserStore, ensure_first_user

    if settings.chat.login == "local":
        users = UserStore(settings.chat.users_file or settings.data_dir / "users.json")
        password = _guard(lambda: ensure_first_user(users))
        if password:
            err.print(
                f"created the first chat user, shown once:\n  user: admin\n  password: "
                f"{password}\n(stored hashed in {users.path}; add users with evidex users add "
                "NAME)",
                highlight=False,
                soft_wrap=True,
            )
    env = dict(os.environ)
    if config is not None:
        env["EVIDEX_CONFIG"] = str(Path(config).resolve())
    if store is not None:
        env["EVIDEX_STORE__PATH"] = str(Path(store).resolve())
    app_file = Path(__file__).with_name("chat_app.py")
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app_file),
        "--server.address", host, "--server.port", str(port),
        # Always headless: otherwise Streamlit asks for an e-mail address on first run
        # (reading stdin, which ends the job when there is none).
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    url = f"http://{host}:{port}"
    err.print(f"evidex chat on {url}  (Ctrl-C stops it)")
    if browser:
        threading.Thread(target=_open_when_up, args=(url,), daemon=True).start()
    try:
        raise typer.Exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command("chat")
def chat_command(
    host: Annotated[str | None, typer.Option(help="Address (default chat.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default chat.port, 8501).")
    ] = None,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open a browser tab.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The clinicians' chat (Streamlit) over the configured index and model."""
    settings = _guard(lambda: _settings(config, store))
    _launch_chat(
        settings, config, store, host or settings.chat.host, port or settings.chat.port, browser
    )


users_app = typer.Typer(no_args_is_help=True, help="Chat users (local users file).")
feedback_app = typer.Typer(no_args_is_help=True, help="Clinicians' feedback on answers.")
app.add_typer(users_app, name="users")
app.add_typer(feedback_app, name="feedback")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="EVIDEX_NEW_PASSWORD",
            help="Asked for when not given (never put it on the command line).",
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Create a chat user, or reset a user's password."""
    from ui.auth import UserStore

    settings = _guard(lambda: _settings(config))
    users = UserStore(settings.chat.users_file or settings.data_dir / "users.json")
    _guard(lambda: users.add(name, password))
    err.print(f"user {name} saved in {users.path}")


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """Names of the chat users."""
    from ui.auth import UserStore

    settings = _guard(lambda: _settings(config))
    for n in _guard(
        lambda: UserStore(settings.chat.users_file or settings.data_dir / "users.json").names()
    ):
        out.print(n)


@feedback_app.command("export")
def feedback_export(
    out_file: Annotated[Path, typer.Option("--out", help="Preference pairs (JSONL).")],
    config: ConfigOpt = None,
) -> None:
    """Write preference pairs (prompt, chosen, rejected) from the chat's feedback."""
    from ui.feedback import export_pairs

    settings = _guard(lambda: _settings(config))
    db = settings.chat.feedback_db or settings.data_dir / "feedback.sqlite"
    n = _guard(lambda: export_pairs(db, out_file))
    err.print(f"wrote {n} preference pairs to {out_file}")


@app.command("serve-search")
def serve_search(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8765,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve POST /search, POST /retrieve (Search-R1 shape) and GET /health over HTTP."""
    import uvicorn

    from retrieval.search import Searcher
    from retrieval.service import create_app

    def body() -> Any:
        settings = _settings(config, store)
        searcher = Searcher(settings)
        searcher.index.embedder  # load the model before the first request  # noqa: B018
        return searcher

    searcher = _guard(body)
    err.print(
        f"evidex search service on http://{host}:{port} (store {searcher.settings.store_path})"
    )
    try:
        uvicorn.run(create_app(searcher), host=host, port=port, log_level="warning")
    finally:
        searcher.close()


@eval_app.command("retrieval")
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
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall@10, nDCG@10, MRR@100 and latency of the configured search on a BEIR dataset."""
    import tempfile

    from ingest.pipeline import run_ingest
    from ingest.sources.files import detect_kind, expand, records
    from retrieval.evaluation import evaluate, read_qrels, read_queries

    def body() -> dict[str, Any]:
        settings = _settings(config, store)
        if store is None:
            settings.store.path = Path(tempfile.mkdtemp(prefix="evidex-eval-")) / "index"
        qs = read_queries(queries)
        judged = read_qrels(qrels)
        if limit:
            judged = dict(list(judged.items())[:limit])
        index = _index(settings, store, create=True)
        try:
            for path in [corpus, *(extra or [])]:
                kind = detect_kind(path)
                rep = run_ingest(
                    records(kind, expand(kind, [path])), index, desc=f"ingest {path.name}"
                )
                if rep.skipped:
                    for p in rep.problems[:5]:
                        err.print(f"[yellow]skipped[/] {p}", highlight=False)
            methods: dict[str, Any] = {
                "evidex": lambda q: index.search(q, k=100, max_per_doc=1),
            }
            if baselines:
                for name, mode in (("bm25", "sparse"), ("dense", "dense"), ("hybrid", "hybrid")):
                    methods[name] = (
                        lambda m: (
                            lambda q: index.search(
                                q,
                                k=100,
                                mode=m,
                                rerank=False,
                                ranking=False,
                                max_per_doc=1,
                                fusion="rrf",
                            )
                        )
                    )(mode)
            results = {}
            from tqdm import tqdm

            for name, fn in methods.items():
                with tqdm(total=len(judged), desc=f"eval {name}", disable=None) as bar:
                    results[name] = evaluate(fn, qs, judged, progress=bar.update).as_dict()
            return results
        finally:
            index.close()

    results = _guard(body)
    if as_json:
        out.print_json(json.dumps(results))
        return
    t = Table(title=f"retrieval on {qrels}")
    for col in ("method", "recall@10", "ndcg@10", "mrr@100", "p50_ms", "p95_ms", "queries"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for name, r in results.items():
        t.add_row(
            name,
            *(
                str(r[c])
                for c in ("recall@10", "ndcg@10", "mrr@100", "p50_ms", "p95_ms", "queries")
            ),
        )
    out.print(t)


@eval_app.command("qa")
def eval_qa(
    benchmark: Annotated[
        str,
        typer.Option(help="medqa, medmcqa, mmlu, pubmedqa, medcalc, cmmlu or cmexam."),
    ],
    model: Annotated[
        str,
        typer.Option(
            help="'embedded' (SmolLM2), an OpenAI-compatible endpoint http://HOST:PORT/v1, a "
            ".gguf file, or a checkpoint folder (vLLM offline, GPU)."
        ),
    ],
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
    from tqdm import tqdm

    from planner.chat import ChatError
    from rl_training.eval import benchmarks, harness
    from rl_training.eval.models import load_model

    def body() -> Any:
        rows = benchmarks.load(benchmark, input)
        cfg = harness.EvalConfig(
            benchmark=benchmark,
            model=model,
            rag=rag,
            k=k,
            concurrency=concurrency,
            max_tokens=max_tokens,
            limit=limit,
        )
        searcher = None
        try:
            chat = load_model(model, name=model_name, max_tokens=max_tokens)
            if rag:
                from retrieval.search import Searcher

                searcher = Searcher(_settings(config, store))
                if searcher.index.store.count() == 0:
                    raise ValueError(
                        f"--rag: the index at {searcher.settings.store.path} is empty: ingest a "
                        "corpus first (evidex ingest files PATH)"
                    )
            n = min(len(rows), limit or len(rows))
            with tqdm(total=n, desc=f"eval {benchmark}", disable=None) as bar:
                summary = harness.run(rows, chat, cfg, out_dir, searcher, progress=bar.update)
        except ChatError as exc:
            raise ValueError(str(exc)) from None
        finally:
            if searcher is not None:
                searcher.close()
        all_runs = harness.load_summaries(out_dir)
        png = harness.bar_chart(all_runs, out_dir / "accuracy.png")
        return summary, all_runs, png

    summary, all_runs, png = _guard(body)
    if summary.errors:
        err.print(
            f"[yellow]{summary.errors} item(s) failed at the model and were not scored: re-run "
            "the same command to retry them[/]"
        )
    if as_json:
        out.print_json(json.dumps({**summary.__dict__, "chart": str(png)}))
        return
    t = Table(title=f"evidex eval qa ({out_dir})")
    for col in ("benchmark", "model", "rag", "items", "accuracy %", "mean score %"):
        t.add_column(col, justify="left" if col in ("benchmark", "model") else "right")
    for s in all_runs:
        t.add_row(
            s.benchmark,
            s.model,
            "yes" if s.rag else "no",
            f"{s.items}/{s.total}",
            f"{100 * s.accuracy:.1f}",
            f"{100 * s.mean_score:.1f}",
        )
    out.print(t)
    where = harness.results_path(out_dir, harness.EvalConfig(benchmark, model, rag))
    err.print(f"results in {where}; chart {png}")


@train_app.command("export")
def train_export(
    task: Annotated[
        str,
        typer.Option(
            help="medcalc, mcq (MIRAGE file), pubmedqa, cmexam or cmmlu (a CSV or a folder)."
        ),
    ],
    input: Annotated[Path, typer.Option("--input", help="The benchmark file to convert.")],
    out: Annotated[Path, typer.Option(help="FILE.parquet (verl RL schema) or FILE.jsonl (SFT).")],
    split: Annotated[str, typer.Option(help="Split name stored in extra_info.")] = "train",
    agent: Annotated[
        bool,
        typer.Option(
            help="Search-augmented rows for verl's tool agent (S4), with the search tool."
        ),
    ] = False,
) -> None:
    """Convert a benchmark file into training records scored by rl_training.rewards."""
    from rl_training.data.export import export

    n = _guard(lambda: export(task, input, out, split, agent))  # type: ignore[arg-type]
    err.print(f"wrote {n} rows to {out}")


@train_app.command("curate")
def train_curate(
    input: Annotated[Path, typer.Argument(help="Chat records, JSONL (e.g. from train export).")],
    out: Annotated[Path, typer.Option(help="Where the kept records go (JSONL).")],
    check_format: Annotated[
        bool, typer.Option("--format/--no-format", help="One <think> block, then the answer.")
    ] = True,
    repetition_n: Annotated[int, typer.Option(min=1, help="n of the n-gram filter.")] = 4,
    repetition_threshold: Annotated[
        float, typer.Option(min=0, max=1, help="Most repeated n-grams allowed (1 = off).")
    ] = 0.3,
    correctness: Annotated[
        bool, typer.Option(help="Drop verifiable records the rule rewards score wrong.")
    ] = True,
    reward_model: Annotated[
        Path | None,
        typer.Option(help="Sequence-classification reward model folder for unverifiable items."),
    ] = None,
    vrm_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible judge for the verifier reward (unverifiable items)."),
    ] = None,
    vrm_model: Annotated[str, typer.Option(help="Judge model name.")] = "default",
    threshold: Annotated[
        float | None, typer.Option(help="Keep reward-model scores at or above this.")
    ] = None,
    top_fraction: Annotated[
        float | None, typer.Option(min=0, max=1, help="Or keep the best fraction.")
    ] = None,
) -> None:
    """Filter SFT records step by step and report what each step dropped and why."""
    from rl_training.data import filters

    def body() -> list[Any]:
        if not input.is_file():
            raise ValueError(f"input file {input} does not exist")
        records: list[Any] = []
        with open(input, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{input}:{n}: not JSON ({exc.msg})") from None
        reports = []
        if check_format:
            records, rep = filters.format_filter(records)
            reports.append(rep)
        if repetition_threshold < 1:
            records, rep = filters.repetition_filter(records, repetition_n, repetition_threshold)
            reports.append(rep)
        if correctness:
            records, rep = filters.correctness_filter(records)
            reports.append(rep)
        if reward_model or vrm_url:
            if reward_model and vrm_url:
                raise ValueError("give --reward-model or --vrm-url, not both")
            scorer: Any
            if reward_model:
                from rl_training.data.reward_model import HFRewardModel

                scorer = HFRewardModel(reward_model)
            else:
                from rl_training.rewards.vrm import VerifierRewardModel, VRMConfig

                judge = VerifierRewardModel(
                    VRMConfig(base_url=str(vrm_url), model=vrm_model, cache_dir=out.parent)
                )
                scorer = judge.record_scorer()
            records, rep = filters.reward_model_filter(
                records, scorer, threshold=threshold, top_fraction=top_fraction
            )
            reports.append(rep)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        return reports

    reports = _guard(body)
    for rep in reports:
        err.print(str(rep), highlight=False)
    err.print(f"kept {reports[-1].kept if reports else 'all'} records in {out}")


def _train(
    kind: str,
    engine: str,
    stage: str,
    model: Path,
    data: list[Path],
    val: list[Path] | None,
    out_dir: Path,
    n_gpus: int,
    nnodes: int,
    judge_url: str | None,
    search_url: str | None,
    overrides: list[str] | None,
    dry_run: bool,
    store: Path | None = None,
    config: Path | None = None,
    max_steps: int = 100,
    cpu: bool = False,
    protocol: str = "tools",
) -> None:
    import subprocess

    if engine not in ("verl", "trl"):
        err.print(f"[bold red]error:[/] --engine {engine}: use verl or trl")
        raise typer.Exit(EXIT_USAGE)
    if (kind == "sft") != (stage == "s1"):
        err.print(
            f"[bold red]error:[/] stage {stage} is not {kind}: s1 is SFT (evidex train sft); "
            "s2, s3 and s4 are GRPO (evidex train grpo)"
        )
        raise typer.Exit(EXIT_USAGE)
    if engine == "trl":
        _train_trl(stage, model, data, out_dir, judge_url, search_url, store, config, max_steps,
                   cpu, dry_run, protocol)  # fmt: skip
        return
    from rl_training.train import verl_launch

    def body() -> Any:
        run = verl_launch.plan(
            stage,  # type: ignore[arg-type]
            model,
            data,
            out_dir,
            val or (),
            n_gpus=n_gpus,
            nnodes=nnodes,
            judge_url=judge_url,
            search_url=search_url,
            extra=overrides or (),
        )
        return run, verl_launch.write(run)

    run, config_file = _guard(body)
    for note in run.notes:
        err.print(note, highlight=False)
    err.print(
        f"resolved {stage} config written to {config_file} (launch: {run.out_dir / 'launch.sh'})"
    )
    if dry_run:
        return
    raise typer.Exit(subprocess.call(run.command))


TrainModel = Annotated[Path, typer.Option(help="Base model: a Hugging Face checkpoint folder.")]
TrainData = Annotated[
    list[Path], typer.Option("--data", help="Training file(s) from evidex train export/curate.")
]
TrainVal = Annotated[list[Path] | None, typer.Option("--val", help="Validation file(s).")]
TrainOut = Annotated[
    Path, typer.Option("--out", help="Run folder (config, launch script, checkpoints).")
]
TrainEngine = Annotated[str, typer.Option(help="verl (multi-GPU, Ray) or trl (one GPU / CPU).")]
TrainSet = Annotated[
    list[str] | None, typer.Option("--set", help="Extra verl override key=value (repeatable).")
]
DryRun = Annotated[bool, typer.Option(help="Resolve and validate only; launch nothing.")]


def _train_trl(
    stage: str,
    model: Path,
    data: list[Path],
    out_dir: Path,
    judge_url: str | None,
    search_url: str | None,
    store: Path | None,
    config: Path | None,
    max_steps: int,
    cpu: bool,
    dry_run: bool,
    protocol: str = "tools",
) -> None:
    """The local trainer (TRL): one GPU, or --cpu for a smoke run."""
    from rl_training.train import trl_local

    def body() -> Any:
        rows = trl_local.read_rows(data)
        if dry_run:
            return len(rows)
        search: Any = None
        searcher: Any = None
        # Question rows need search; diagnosis rows get it as an extra tool when asked for.
        questions = any(not str(r["data_source"]).endswith("diagnosis") for r in rows)
        if stage == "s4" and search_url:
            from rl_training.envs.base import HTTPBackend

            search = HTTPBackend(search_url)
        elif stage == "s4" and (questions or store is not None or config is not None):
            from retrieval.search import Searcher
            from rl_training.envs.base import SearcherBackend

            searcher = Searcher(_settings(config, store))
            search = SearcherBackend(searcher)
        try:
            trl_local.run_stage(stage, model, rows, out_dir, max_steps=max_steps, search=search,
                                judge_url=judge_url, use_cpu=cpu, protocol=protocol)  # fmt: skip
        finally:
            if searcher is not None:
                searcher.close()
        return len(rows)

    n = _guard(body)
    if dry_run:
        err.print(f"{n} rows read from {', '.join(map(str, data))}; nothing trained (--dry-run)")
    else:
        err.print(f"trained {stage} on {n} rows: {out_dir}/metrics.jsonl, {out_dir}/curves.png")


TrainSteps = Annotated[int, typer.Option(min=1, help="trl: optimizer steps.")]
TrainCpu = Annotated[bool, typer.Option("--cpu", help="trl: run on CPU (a smoke run).")]


@train_app.command("sft")
def train_sft(
    model: TrainModel,
    data: TrainData,
    out_dir: TrainOut,
    engine: TrainEngine = "verl",
    stage: Annotated[str, typer.Option(help="s1 (the SFT stage).")] = "s1",
    val: TrainVal = None,
    n_gpus: Annotated[int, typer.Option(min=1, help="GPUs per node.")] = 8,
    nnodes: Annotated[int, typer.Option(min=1, help="Nodes.")] = 1,
    overrides: TrainSet = None,
    dry_run: DryRun = False,
    max_steps: TrainSteps = 100,
    cpu: TrainCpu = False,
) -> None:
    """S1 SFT (AdamW, lr 1e-5, 500 warm-up steps, cosine to 10%, 2 epochs, 16K context)."""
    _train("sft", engine, stage, model, data, val, out_dir, n_gpus, nnodes, None, None,
           overrides, dry_run, max_steps=max_steps, cpu=cpu)  # fmt: skip


@train_app.command("grpo")
def train_grpo(
    model: TrainModel,
    data: TrainData,
    out_dir: TrainOut,
    stage: Annotated[
        str,
        typer.Option(help="s2 (rules), s3 (verifier RM) or s4 (search and diagnostic chain)."),
    ],
    engine: TrainEngine = "verl",
    val: TrainVal = None,
    n_gpus: Annotated[int, typer.Option(min=1, help="GPUs per node.")] = 8,
    nnodes: Annotated[int, typer.Option(min=1, help="Nodes.")] = 1,
    judge_url: Annotated[
        str | None,
        typer.Option(
            help="s3: the verifier's OpenAI-compatible endpoint; s4 (optional): it scores the "
            "answers and diagnoses instead of the rules."
        ),
    ] = None,
    search_url: Annotated[
        str | None, typer.Option(help="s4: evidex serve-search URL the rollouts reach.")
    ] = None,
    overrides: TrainSet = None,
    dry_run: DryRun = False,
    max_steps: TrainSteps = 100,
    cpu: TrainCpu = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="trl s4: tools (tool calls through TRL's environment_factory; needs a "
            "tool-calling chat template) or tags (Search-R1 text tags, any model)."
        ),
    ] = "tools",
) -> None:
    """GRPO stages (128 prompts x 12 rollouts per step, the 8K/16K cosine length penalty)."""
    if protocol not in ("tools", "tags"):
        err.print(f"[bold red]error:[/] --protocol {protocol}: use tools or tags")
        raise typer.Exit(EXIT_USAGE)
    _train("grpo", engine, stage, model, data, val, out_dir, n_gpus, nnodes, judge_url,
           search_url, overrides, dry_run, store=store, config=config, max_steps=max_steps,
           cpu=cpu, protocol=protocol)  # fmt: skip


@train_app.command("plot")
def train_plot(
    run: Annotated[Path, typer.Argument(help="A run folder, or its metrics .jsonl file.")],
    out_png: Annotated[
        Path | None, typer.Option("--out", help="PNG to write (default: RUN/curves.png).")
    ] = None,
) -> None:
    """Reward, response length and loss over steps of a training run, as a PNG."""
    from rl_training.train.metrics import plot

    metrics = run / "metrics.jsonl" if run.is_dir() else run
    png = out_png or metrics.parent / "curves.png"

    def body() -> dict[str, str | None]:
        if not metrics.is_file():
            raise ValueError(f"no metrics at {metrics}: the run has not logged a step yet")
        return plot(metrics, png)

    used = _guard(body)
    for panel, key in used.items():
        err.print(f"{panel}: {key or 'not logged'}", highlight=False)
    err.print(f"wrote {png}")


@train_app.command("merge")
def train_merge(
    models: Annotated[
        list[str], typer.Argument(help="Two or more Hugging Face checkpoint folders.")
    ],
    out: Annotated[Path, typer.Option(help="New folder for the merged checkpoint.")],
    weights: Annotated[
        str | None,
        typer.Option(help="One weight per model: --weights 0.5 0.5 (or 0.5,0.5). Default: equal."),
    ] = None,
) -> None:
    """Linear merge of checkpoints, streamed tensor by tensor (the report's 1:1 merge)."""
    from tqdm import tqdm

    from rl_training.train.merge import MergeError, merge, weight_map

    def is_number(x: str) -> bool:
        try:
            float(x)
        except ValueError:
            return False
        return not Path(x).exists()

    # "--weights 0.5 0.5": the second number arrives as a positional argument.
    paths = [Path(m) for m in models if not is_number(m)]
    ws = [float(x) for x in (weights or "").replace(",", " ").split()]
    ws += [float(m) for m in models if is_number(m)]
    if not ws:
        ws = [1 / len(paths)] * len(paths) if paths else []

    def body() -> dict[str, Any]:
        try:
            n = len(weight_map(paths[0])) if paths else 0
            with tqdm(total=n, desc="merge", unit="tensor", disable=None) as bar:
                return merge(paths, ws, out, progress=bar.update)
        except MergeError as exc:
            raise ValueError(str(exc)) from None

    report = _guard(body)
    err.print(
        f"merged {report['tensors']} tensors from {len(paths)} checkpoints with weights "
        f"{report['weights']} into {out} ({report['shards']} shard(s); tokenizer from "
        f"{report['tokenizer_from']})"
    )


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
