"""Benchmarks, run by hand; each appends a dated section to ``bench/results/<name>.md``."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def append_results(name: str, title: str, text: str) -> Path:
    """Append ``text`` to ``bench/results/<name>.md``, starting the file with ``title`` and
    the script that writes it when it is new."""
    out = RESULTS / f"{name}.md"
    if not out.exists():
        out.write_text(f"# {title}\n\nWritten by `bench/{name}.py`.\n", encoding="utf-8")
    with out.open("a", encoding="utf-8") as fh:
        fh.write(text)
    return out
