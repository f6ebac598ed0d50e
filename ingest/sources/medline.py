"""MEDLINE text format (``PMID-``, ``TI  -``, ``AB  -`` ...), parsed with ``Bio.Medline``."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from Bio import Medline

from ingest import notices
from ingest.records import Problem, Record, read_text
from ingest.sources.pubmed_xml import pubmed_document
from retrieval.errors import InputError
from retrieval.types import Document, Section

# Structured abstracts are flattened in MEDLINE text: "BACKGROUND: ... METHODS: ...".
_LABEL = re.compile(r"(?:(?<=^)|(?<=[.!?]\s))([A-Z][A-Z ,&/-]{2,40}):\s")


def split_structured(abstract: str) -> list[Section]:
    """Split a flattened structured abstract on its upper-case labels.

    >>> [s.title for s in split_structured("BACKGROUND: A. METHODS: B. RESULTS: C.")]
    ['BACKGROUND', 'METHODS', 'RESULTS']
    >>> split_structured("Plain text only.")[0].title
    ''
    """
    abstract = " ".join(abstract.split())
    marks = list(_LABEL.finditer(abstract))
    if not marks or marks[0].start() != 0:
        return [Section(title="", text=abstract)] if abstract else []
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(abstract)
        text = abstract[m.end() : end].strip()
        if text:
            out.append(Section(title=m.group(1).strip(), text=text))
    return out


def _first(rec: dict[str, Any], key: str) -> str | None:
    v = rec.get(key)
    if isinstance(v, list):
        return v[0] if v else None
    return v or None


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return list(value) if isinstance(value, list) else [value]


def record_to_document(rec: dict[str, Any]) -> Document:
    """Convert one ``Bio.Medline`` record."""
    pmid = _first(rec, "PMID")
    if not pmid:
        raise InputError("record without PMID (is this a MEDLINE-format file?)")
    title = " ".join((_first(rec, "TI") or "").split())
    ids = _as_list(rec.get("AID")) + _as_list(rec.get("LID"))
    doi = next((x[:-5].strip() for x in ids if x.endswith("[doi]")), None)
    dp = _first(rec, "DP")
    m = re.search(r"(1[89]|20)\d{2}", dp or "")
    return pubmed_document(
        pmid,
        title,
        split_structured(_first(rec, "AB") or ""),
        tuple(rec.get("PT", [])),
        doi=doi,
        pmcid=_first(rec, "PMC"),
        journal=_first(rec, "JT") or _first(rec, "TA"),
        pub_date=dp,
        year=int(m.group(0)) if m else None,
        authors=tuple(rec.get("FAU") or rec.get("AU") or ()),
        language=_first(rec, "LA"),
        mesh_terms=tuple(dict.fromkeys(h.split("/")[0].lstrip("*") for h in rec.get("MH", []))),
        extra=notices.notice_fields(tuple(rec.get("PT", [])), notices.from_medline(rec)),
    )


def parse_file(path: Path) -> Iterator[Record]:
    """Parse a MEDLINE-format text file."""
    text = read_text(path)
    if isinstance(text, Problem):
        yield text
        return
    n = 0
    for n, rec in enumerate(Medline.parse(io.StringIO(text)), 1):  # type: ignore[no-untyped-call]
        try:
            yield record_to_document(dict(rec))
        except ValueError as exc:
            yield Problem(str(path), f"record {n}", str(exc))
    if n == 0:
        yield Problem(str(path), "", "no MEDLINE records (expected lines like 'PMID- 123')")
