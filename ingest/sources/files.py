"""Which parser reads which file: by the ingest kind, then by extension and content."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from ingest.records import InputError, Problem, Record
from ingest.sources import beir, guidelines, medline, pmc, pubmed_xml

Kind = Literal["pubmed", "pmc", "guidelines", "beir"]
KINDS: tuple[Kind, ...] = ("pubmed", "pmc", "guidelines", "beir")
Parser = Callable[[Path], Iterator[Record]]

_PATTERNS: dict[str, tuple[str, ...]] = {
    "pubmed": ("*.xml", "*.xml.gz", "*.txt", "*.medline", "*.nbib"),
    "pmc": ("*.nxml", "*.xml"),
    "guidelines": (
        "*.json",
        "*.jsonl",
        "*.jsonl.gz",
        "*.xml",
        "*.html",
        "*.htm",
        "*.md",
        "*.markdown",
        "*.pdf",
    ),
    "beir": ("corpus.jsonl", "corpus.jsonl.gz"),
}


def _sniff_xml(path: Path) -> bool:
    import gzip

    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    except (OSError, EOFError):
        return path.name.endswith((".xml", ".xml.gz"))
    return head.startswith(b"<")


def parser_for(kind: Kind, path: Path, pmid_ids: bool = False) -> Parser | None:
    """The parser for ``path`` under ``kind``, or None if the file does not belong to it.
    ``pmid_ids``: a BEIR corpus whose ``_id`` values are PubMed PMIDs."""
    name = path.name.lower()
    if kind == "pubmed":
        return pubmed_xml.parse_file if _sniff_xml(path) else medline.parse_file
    if kind == "pmc":
        return pmc.parse_file
    if kind == "beir":
        return lambda p: beir.parse_file(p, pmid_ids)
    if name.endswith(".json"):
        return guidelines.parse_uspstf
    if name.endswith((".jsonl", ".jsonl.gz")):
        return lambda p: guidelines.parse_jsonl(p, guidelines.jsonl_to_document)
    if name.endswith(".xml"):
        return guidelines.parse_medquad_xml
    if name.endswith((".html", ".htm")):
        return guidelines.parse_html
    if name.endswith((".md", ".markdown")):
        return guidelines.parse_markdown
    if name.endswith(".pdf"):
        return guidelines.parse_pdf
    return None


def expand(kind: Kind, paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus the matching files inside named folders (sorted).

    A path that does not exist is an :class:`InputError` naming it.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(f"{p} does not exist")
        if p.is_dir():
            if kind == "beir":
                out.append(beir.corpus_file(p))
                continue
            found = sorted({f for pat in _PATTERNS[kind] for f in p.rglob(pat) if f.is_file()})
            if not found:
                raise InputError(f"{p} holds no {kind} files ({', '.join(_PATTERNS[kind])})")
            out.extend(found)
        else:
            out.append(p)
    return out


def _decode_errors() -> tuple[type[BaseException], ...]:
    from lxml import etree

    errors: list[type[BaseException]] = [zlib.error, EOFError, OSError, ValueError, etree.Error]
    try:
        from pypdf.errors import PyPdfError

        errors.append(PyPdfError)
    except ImportError:  # pragma: no cover - pypdf is a core dependency
        pass
    return tuple(errors)


DECODE_ERRORS = _decode_errors()
"""What one file's bytes can raise while it is read and parsed (gzip/zlib, truncation,
encodings, XML, JSON, PDF); each becomes that file's reported problem."""


def records(kind: Kind, files: Iterable[Path], *, pmid_ids: bool = False) -> Iterator[Record]:
    """All records of all files, with unreadable files reported as Problems. ``pmid_ids``:
    the BEIR corpus is PubMed-based, its ``_id`` values are PMIDs (linked to PubMed)."""
    for f in files:
        try:
            parser = parser_for(
                kind, f, pmid_ids
            )  # (it may read the file's start to tell its type)
            if parser is None:
                yield Problem(str(f), "", f"not a {kind} file type")
                continue
            yield from parser(f)
        except DECODE_ERRORS as exc:  # any decoding error is this file's, never the batch's
            yield Problem(str(f), "", f"cannot decode the file ({_what(exc)}): {exc}")


def _what(exc: BaseException) -> str:
    """What kind of decoding failed, in a reader's words.

    >>> _what(zlib.error("invalid block type")), _what(EOFError())
    ('corrupt compressed data', 'the file ends too early (truncated?)')
    """
    if isinstance(exc, zlib.error) or type(exc).__name__ == "BadGzipFile":
        return "corrupt compressed data"
    if isinstance(exc, EOFError):
        return "the file ends too early (truncated?)"
    if isinstance(exc, UnicodeDecodeError):
        return "not valid text in its encoding"
    return type(exc).__name__


def detect_kind(path: Path) -> Kind:
    """Guess the kind of a corpus path for the main job (``evidex demo PATH``)."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        if beir.corpus_file(p) != p:
            return "beir"
        if any(p.rglob("*.nxml")):
            return "pmc"
        if any(p.rglob("*.xml.gz")) or any(p.rglob("*.xml")):
            return "pubmed"
        return "guidelines"
    if name.startswith("corpus.jsonl"):
        return "beir"
    if name.endswith(".nxml"):
        return "pmc"
    if name.endswith((".xml.gz", ".xml", ".txt", ".medline", ".nbib")):
        return "pubmed"
    if name.endswith(".jsonl"):
        with open(p, "rb") as fh:
            first = fh.readline()
        return "beir" if b'"_id"' in first else "guidelines"
    return "guidelines"
