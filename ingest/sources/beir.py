"""A generic BEIR-format ``corpus.jsonl`` (``_id, title, text, metadata``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.evidence import evidence_level
from ingest.records import Problem, Record
from ingest.sources.guidelines import parse_jsonl
from retrieval.errors import InputError
from retrieval.types import Document, Section, Source


def beir_to_document(rec: dict[str, Any], pmid_ids: bool = False) -> Document:
    """Convert one corpus line.

    Only a source that is PubMed makes a PubMed link: the ``_id`` is taken as a PMID when
    ``pmid_ids`` says the corpus is PubMed-based (PubMedQA, BioASQ, ...), and a record may give
    its own ``metadata.pmid``. Any other id, numeric or not, stays a plain corpus id.

    >>> rec = {"_id": "123", "title": "T", "text": "Body.", "metadata": {"year": "2011"}}
    >>> d = beir_to_document(rec, pmid_ids=True)
    >>> (d.doc_id, d.pmid, d.year, d.url)
    ('pmid:123', '123', 2011, 'https://pubmed.ncbi.nlm.nih.gov/123/')
    >>> d = beir_to_document(rec)
    >>> (d.doc_id, d.pmid, d.url)
    ('beir:123', None, None)
    """
    for key in ("title", "text"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise InputError(f"'{key}' must be a string, not {type(rec[key]).__name__}")
    if not isinstance(rec.get("_id"), str | int) or isinstance(rec.get("_id"), bool):
        raise InputError("line without a string '_id'")
    cid = str(rec.get("_id") or "").strip()
    if not cid:
        raise InputError("line without '_id'")
    title = " ".join(str(rec.get("title") or "").split())
    text = str(rec.get("text") or "").strip()
    if not text and not title:
        raise InputError(f"document {cid!r} has no text")
    meta = rec.get("metadata") or {}
    if not isinstance(meta, dict):
        meta = {}
    year_raw = str(meta.get("year") or "")
    m = re.search(r"(1[89]|20)\d{2}", year_raw)
    stated = str(meta.get("pmid") or "").strip()
    pmid = stated if stated.isdigit() else cid if pmid_ids and cid.isdigit() else None
    if pmid_ids and pmid is None:
        raise InputError(f"_id {cid[:40]!r} is not a PMID (the corpus was declared PubMed-based)")
    pub_types = tuple(str(x) for x in meta.get("publication_types") or ())
    mesh = meta.get("meshes") or meta.get("mesh_terms") or ()
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()] or [title]
    return Document(
        doc_id=f"pmid:{pmid}" if pmid else f"beir:{cid}",
        source=Source.BEIR,
        title=title,
        sections=tuple(Section(title="", text=p) for p in paragraphs),
        pmid=pmid,
        year=int(m.group(0)) if m else None,
        mesh_terms=tuple(str(x) for x in mesh) if isinstance(mesh, list) else (),
        publication_types=pub_types,
        url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/" if pmid else _url(meta.get("url")),
        evidence_level=evidence_level(pub_types, title),
        extra={"corpus_id": cid},
    )


def _url(value: Any) -> str | None:
    """A corpus-supplied link, kept only when it is an http(s) URL.

    >>> _url("https://example.org/a"), _url("javascript:alert(1)"), _url(3)
    ('https://example.org/a', None, None)
    """
    return value if isinstance(value, str) and re.match(r"https?://\S+$", value) else None


def corpus_file(path: Path) -> Path:
    """``corpus.jsonl`` itself, or the one inside a BEIR dataset folder."""
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).is_file():
                return path / name
    return path


def parse_file(path: Path, pmid_ids: bool = False) -> Iterator[Record]:
    corpus = corpus_file(path)
    if corpus.is_dir():
        yield Problem(
            str(path),
            "",
            "a BEIR dataset folder needs corpus.jsonl (or corpus.jsonl.gz) in it; none found",
        )
        return
    yield from parse_jsonl(corpus, lambda rec: beir_to_document(rec, pmid_ids))
