"""What a parser yields besides documents: deletions and problems with their location."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from retrieval.errors import InputError as InputError
from retrieval.types import Document


@dataclass(frozen=True)
class Deletion:
    """Documents the source says to remove (e.g. a PubMed ``DeleteCitation``)."""

    doc_ids: tuple[str, ...]
    origin: str


@dataclass(frozen=True)
class Problem:
    """Input that could not be used: reported, skipped, and the job goes on."""

    path: str
    where: str
    message: str

    def __str__(self) -> str:
        loc = f"{self.path}:{self.where}" if self.where else self.path
        return f"{loc}: {self.message}"


Record = Union[Document, Deletion, Problem]  # noqa: UP007 - a runtime alias
Records = Iterator[Record]


def read_text(path: Path) -> str | Problem:
    """The file's text as UTF-8 (BOM allowed), or a Problem naming the bad byte offset."""
    import gzip

    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        return Problem(str(path), "", f"cannot read file: {exc}")
    if not raw.strip():
        return Problem(str(path), "", "empty file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return Problem(
            str(path),
            f"line {line}",
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert the file to UTF-8",
        )
