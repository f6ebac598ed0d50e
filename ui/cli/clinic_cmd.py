"""The clinicians' side: ``evidex demo`` (the main job), ``evidex chat``, ``evidex users`` and
``evidex feedback``."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from retrieval.errors import EvidexError
from ui.cli import render
from ui.cli.app import (
    EXIT_USAGE,
    ConfigOpt,
    StoreOpt,
    app,
    command,
    err,
    feedback_app,
    load,
    open_index,
    out,
    users_app,
)

SAMPLE_QUESTION = "Does aspirin reduce the risk of cardiovascular events?"
OFFLINE_HELP = (
    "Without internet, pass a local corpus instead, for example:\n"
    "  bash scripts/run.sh ../shared/data/pubmedqa/beir_dev/corpus.jsonl\n"
    "  (or, once installed: evidex demo ../shared/data/pubmedqa/beir_dev/corpus.jsonl)\n"
    "(a BEIR corpus.jsonl, PubMed XML or MEDLINE files, PMC .nxml, or guideline "
    "JSON/HTML/Markdown/PDF files or folders)."
)


def _say(text: str) -> None:
    err.print(text, highlight=False, soft_wrap=True)


def pubmed_based(corpus: Path) -> bool:
    """Whether the demo takes a BEIR corpus's ids as PMIDs: a BEIR corpus whose path names
    PubMed (``.../pubmedqa/beir_dev/corpus.jsonl``).

    >>> pubmed_based(Path("data/pubmedqa/beir_dev/corpus.jsonl"))
    True
    >>> pubmed_based(Path("data/scifact/corpus.jsonl"))
    False
    """
    from ingest.sources.files import detect_kind

    named = any("pubmed" in part.lower() for part in Path(corpus).parts)
    return named and (not Path(corpus).exists() or detect_kind(Path(corpus)) == "beir")


def _ingest_for_demo(settings: Any, corpus: Path | None, topic: str | None, store: Any) -> Any:
    """The demo's corpus (or a topic pulled live from PubMed) into the index."""
    from ingest.pipeline import ingest_paths, run_ingest
    from ingest.sources.entrez import fetch_records

    index = open_index(settings, store, create=True)
    try:
        if corpus is not None:
            err.print(f"ingesting {corpus} into {index.where}")
            pmid_ids = pubmed_based(corpus)
            if pmid_ids:
                err.print(
                    "  (a BEIR corpus under a PubMed-named folder: its _id values are taken as "
                    "PMIDs; evidex ingest beir --pmid-ids does the same)"
                )
            return ingest_paths([corpus], index, desc="ingest", pmid_ids=pmid_ids)
        q = topic or settings.entrez.default_topic
        err.print(f"pulling PubMed abstracts for {q!r} (up to {settings.entrez.max_records})")
        pulled = iter(fetch_records(q, settings.entrez, settings.data_dir))
        first = next(pulled, None)  # reach PubMed (or fail) before the model loads
        return run_ingest(itertools.chain([first] if first is not None else [], pulled), index)
    finally:
        index.close()


@command(app, "demo")
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
    from answer import Assistant
    from ingest.sources.entrez import EntrezUnavailable
    from ui.chat_launch import launch_chat

    settings = load(config, store)
    try:
        report = _ingest_for_demo(settings, corpus, topic, store)
    except EntrezUnavailable as exc:
        err.print(f"[bold red]PubMed is not reachable[/] ({escape(str(exc))}).", highlight=False)
        err.print(OFFLINE_HELP, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    data = report.as_dict()
    err.print(
        f"indexed {data['documents']} documents ({data['chunks']} new chunks, "
        f"{data['unchanged']} unchanged, {data['skipped']} skipped) in {data['seconds']}s"
    )
    render.problems(report.problems, 10)
    with Assistant(settings, store=store) as assistant:

        def answer(q: str) -> None:
            out.rule(f"[bold]{escape(q)}")
            try:
                render.answer(assistant.ask(q), reasoning=False)
            except EvidexError as exc:  # one bad question does not end the session
                err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)

        answer(question)
        keep_asking = sys.stdin.isatty() if interactive is None else interactive
        while keep_asking and not chat:
            try:
                q = input("\nquestion (empty to quit)> ").strip()
            except EOFError:
                break
            if not q:
                break
            answer(q)
    if chat:
        host, port = settings.chat.host, settings.chat.port
        raise typer.Exit(launch_chat(settings, config, store, host, port, browser=True, say=_say))


@command(app, "chat")
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
    from ui.chat_launch import launch_chat

    settings = load(config, store)
    code = launch_chat(settings, config, store, host or settings.chat.host,
                       port or settings.chat.port, browser=browser, say=_say)  # fmt: skip
    raise typer.Exit(code)


def _users(config: Path | None) -> Any:
    from ui.auth import UserStore

    settings = load(config)
    return UserStore(settings.chat.users_file or settings.data_dir / "users.json")


@command(users_app, "add")
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
    users = _users(config)
    users.add(name, password)
    err.print(f"user {name} saved in {users.path}")


@command(users_app, "list")
def users_list(config: ConfigOpt = None) -> None:
    """Names of the chat users."""
    for n in _users(config).names():
        out.print(n)


@command(feedback_app, "export")
def feedback_export(
    out_file: Annotated[Path, typer.Option("--out", help="Preference pairs (JSONL).")],
    config: ConfigOpt = None,
) -> None:
    """Write preference pairs (prompt, chosen, rejected) from the chat's feedback."""
    from ui.feedback import export_pairs

    settings = load(config)
    n = export_pairs(settings.chat.feedback_db or settings.data_dir / "feedback.sqlite", out_file)
    err.print(f"wrote {n} preference pairs to {out_file}")
