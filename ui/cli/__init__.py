"""The ``evidex`` command line: thin commands over the library, split by domain.

- :mod:`ui.cli.app`: the Typer app and its groups, the shared options, and the one place
  where an :class:`retrieval.errors.EvidexError` becomes one line and an exit code;
- :mod:`ui.cli.render`: how typed results print (tables, panels, JSON);
- :mod:`ui.cli.ingest_cmd`: ``ingest pubmed|pmc|guidelines|beir|entrez``, ``index stats``;
- :mod:`ui.cli.query_cmd`: ``search``, ``ask``, ``config show``;
- :mod:`ui.cli.service_cmd`: ``serve``, ``serve-search``, ``keys new``;
- :mod:`ui.cli.clinic_cmd`: ``demo`` (the main job), ``chat``, ``users``, ``feedback``;
- :mod:`ui.cli.eval_cmd`: ``eval retrieval``, ``eval qa``;
- :mod:`ui.cli.train_cmd`: ``train export|curate|sft|grpo|plot|merge``;
- :mod:`ui.cli.engine_cmd`: the data engine's ``train distill|trace|select``;
- :mod:`ui.cli.models_cmd`: the auxiliary models' ``train rm``, ``eval rm``;
- :mod:`ui.cli.ranking_cmd`: learned ranking's ``train retriever|reranker``, ``index reembed``;
- :mod:`ui.cli.sync_cmd`: ``sync pubmed`` (baseline and update files, in order);
- :mod:`ui.cli.scale_cmd`: ``index create`` (a cluster's layout), ``index plan`` (its size).

Each command parses its options, calls one library function and prints its typed result.
"""

from __future__ import annotations

from ui.cli import (
    clinic_cmd,
    engine_cmd,
    eval_cmd,
    ingest_cmd,
    models_cmd,
    query_cmd,
    ranking_cmd,
    scale_cmd,
    service_cmd,
    sync_cmd,
    train_cmd,
)
from ui.cli.app import app

__all__ = ["app", "main"]
_COMMANDS = (
    clinic_cmd,
    engine_cmd,
    eval_cmd,
    ingest_cmd,
    models_cmd,
    query_cmd,
    ranking_cmd,
    scale_cmd,
    service_cmd,
    sync_cmd,
    train_cmd,
)  # registered on import


def main() -> None:
    """Console entry point."""
    app()
