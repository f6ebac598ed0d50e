"""The ``evidex`` Typer app, its command groups, the shared options, and the one place where
evidex's errors become one line and an exit code.

Every command module registers on these groups with :func:`command`, whose wrapper catches
:class:`retrieval.errors.EvidexError` alone: its message is printed as one line and the
command exits with the error's ``exit_code`` (1, or 2 for usage errors). Any other exception
is a bug and keeps its traceback. Heavy libraries are imported inside the commands, so
``evidex --help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from retrieval.errors import EvidexError

app = typer.Typer(
    name="evidex",
    no_args_is_help=True,
    add_completion=False,
    help="evidex: evidence-based medical search with cited PubMed and guideline sources.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
ingest_app = typer.Typer(no_args_is_help=True, help="Ingest a corpus into the index.")
index_app = typer.Typer(no_args_is_help=True, help="Inspect and maintain the index.")
config_app = typer.Typer(no_args_is_help=True, help="Show the resolved settings.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure evidex on your own data.")
train_app = typer.Typer(no_args_is_help=True, help="Training data and jobs (rl_training).")
users_app = typer.Typer(no_args_is_help=True, help="Chat users (local users file).")
feedback_app = typer.Typer(no_args_is_help=True, help="Clinicians' feedback on answers.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys of the search service.")
sync_app = typer.Typer(no_args_is_help=True, help="Keep the index in sync with its source.")
for _group, _name in ((ingest_app, "ingest"), (index_app, "index"), (config_app, "config"),
                      (eval_app, "eval"), (train_app, "train"), (users_app, "users"),
                      (feedback_app, "feedback"), (keys_app, "keys"),
                      (sync_app, "sync")):  # fmt: skip
    app.add_typer(_group, name=_name)

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

F = TypeVar("F", bound=Callable[..., Any])


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
    from retrieval.privacy import install_log_redaction

    install_log_redaction()  # identifiers that slip into a log line are masked
    os.umask(0o077)  # what evidex writes (index, jobs, logs, exports) is private to its user


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``error: message`` on stderr; returns the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def guarded(fn: F) -> F:
    """Run a command: an :class:`EvidexError` becomes one line and its exit code; Ctrl-C
    says how to resume. Anything else is a bug and shows its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EvidexError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted: re-run the same command to resume[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def command(group: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a :func:`guarded` command on ``group`` (``@command(app, "search")``)."""

    def register(fn: F) -> F:
        group.command(name, **kwargs)(guarded(fn))
        return fn

    return register


def load(config: Path | None, store: Path | None = None) -> Any:
    """The settings of ``--config``, with ``--store`` as the store folder."""
    from retrieval.settings import load_settings

    settings = load_settings(config)
    if store is not None and str(store) != ":memory:":
        settings.store.path = store
    return settings


def open_index(settings: Any, store: Path | None, *, create: bool) -> Any:
    """The index of ``settings`` (``--store :memory:`` for a throw-away one)."""
    from retrieval.index import Index

    memory = store if store is not None and str(store) == ":memory:" else None
    return Index(settings, memory, create=create)
