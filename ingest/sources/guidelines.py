"""Guideline corpora: USPSTF JSON, MedQuAD (jsonl / XML), HTML, Markdown and PDF documents.

HTML and Markdown are cut at their headings with llama-index's node parsers; PDF text is
extracted page by page with pypdf, keeping page numbers for citations.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup

from ingest.records import Problem, Record, read_text
from retrieval.errors import InputError
from retrieval.types import Document, EvidenceLevel, Section, Source

log = logging.getLogger(__name__)

USPSTF_URL = "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation-topics"


def _html_to_text(html: str | None) -> str:
    if not html:
        return ""
    text = BeautifulSoup(html, "html.parser").get_text(" ")
    return " ".join(text.replace("\xa0", " ").split())


def _sex(value: str | None) -> str:
    v = (value or "").strip().lower()
    if v in {"female", "women", "woman", "f"}:
        return "female"
    if v in {"male", "men", "man", "m"}:
        return "male"
    return "all"


def uspstf_to_document(rec: dict[str, Any]) -> Document:
    """One USPSTF ``specificRecommendations`` entry; grade, ages and sex kept for filters."""
    rid = rec.get("id")
    title = " ".join(str(rec.get("title") or "").split())
    if rid is None or not title:
        raise InputError("recommendation without id or title")
    sections = [
        Section(title=t, text=x)
        for t, x in (
            ("Recommendation", _html_to_text(rec.get("text"))),
            ("Service frequency", _html_to_text(rec.get("servFreq"))),
            ("Risk assessment", _html_to_text(rec.get("riskText"))),
        )
        if x
    ]
    if not sections:
        raise InputError(f"recommendation {rid} has no text")
    ages = rec.get("ageRange") or [None, None]
    extra: dict[str, str | int | float | bool | list[str] | None] = {
        "body": "USPSTF",
        "grade": str(rec.get("grade") or "") or None,
        "sex": _sex(rec.get("sex") or rec.get("gender")),
        "age_min": float(ages[0]) if ages and ages[0] is not None else None,
        "age_max": float(ages[1]) if len(ages) > 1 and ages[1] is not None else None,
    }
    return Document(
        doc_id=f"uspstf:{rid}",
        source=Source.GUIDELINE,
        title=title,
        sections=tuple(sections),
        journal="U.S. Preventive Services Task Force",
        url=USPSTF_URL,
        evidence_level=EvidenceLevel.GUIDELINE,
        language="eng",
        extra=extra,
        publication_types=("Practice Guideline",),
    )


def parse_uspstf(path: Path) -> Iterator[Record]:
    text = read_text(path)
    if isinstance(text, Problem):
        yield text
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Problem(str(path), f"line {exc.lineno}", f"invalid JSON: {exc.msg}")
        return
    recs = data.get("specificRecommendations") if isinstance(data, dict) else data
    if not isinstance(recs, list):
        yield Problem(str(path), "", "expected a USPSTF file with 'specificRecommendations'")
        return
    for i, rec in enumerate(recs):
        try:
            yield uspstf_to_document(rec)
        except (ValueError, TypeError, AttributeError) as exc:
            yield Problem(str(path), f"record {i + 1}", str(exc))


def medquad_to_document(rec: dict[str, Any]) -> Document:
    """One MedQuAD question/answer pair (consumer health information from NIH/CDC sites)."""
    qid = str(rec.get("qid") or rec.get("id") or "").strip()
    question = " ".join(str(rec.get("question") or "").split())
    answer = " ".join(str(rec.get("answer") or "").split())
    if not qid:
        raise InputError("record without qid")
    if not answer:
        raise InputError(f"MedQuAD {qid} has no answer text")
    org = str(rec.get("source") or "") or None
    return Document(
        doc_id=f"medquad:{qid}",
        source=Source.MEDQUAD,
        title=question,
        sections=(Section(title="Answer", text=answer),),
        journal=org,
        url=rec.get("url") or None,
        language="eng",
        evidence_level=EvidenceLevel.OTHER,
        extra={"qtype": rec.get("qtype"), "focus": rec.get("focus"), "body": org},
    )


def jsonl_to_document(rec: dict[str, Any]) -> Document:
    r"""One line of a guideline JSONL file: a MedQuAD pair (``question``/``answer``), or a
    guideline or textbook record ``{id, title, text | sections[{title, text}]}`` with optional
    ``language``, ``url`` (http(s) only), ``body``, ``year``, ``evidence_level``, ``grade``.

    >>> d = jsonl_to_document({"id": "htn-1", "title": "高血压", "body": "中华医学会",
    ...     "sections": [{"title": "治疗", "text": "血压目标为130/80 mmHg。"}]})
    >>> (d.doc_id, d.title, d.sections[0].title, d.extra["body"], d.url)
    ('guideline:jsonl:htn-1', '高血压', '治疗', '中华医学会', None)
    """
    if "answer" in rec or "question" in rec:
        return medquad_to_document(rec)
    from ingest.evidence import parse_grade, parse_level

    rid = str(rec.get("id") or rec.get("_id") or "").strip()
    if not rid:
        raise InputError("record without 'id' (or a MedQuAD 'question' and 'answer')")
    raw = rec.get("sections")
    if raw is None:
        raw = [{"title": "", "text": rec.get("text")}]
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise InputError(f"{rid[:60]}: 'sections' must be a list of {{title, text}} objects")
    sections = []
    for x in raw:
        if x.get("text") is not None and not isinstance(x.get("text"), str):
            raise InputError(f"{rid[:60]}: a section's 'text' must be a string")
        text = " ".join(str(x.get("text") or "").split())
        if text:
            sections.append(Section(title=" ".join(str(x.get("title") or "").split()), text=text))
    if not sections:
        raise InputError(f"{rid[:60]} has no text")
    level = parse_level(str(rec["evidence_level"])) if rec.get("evidence_level") else None
    m = re.search(r"(1[89]|20)\d{2}", str(rec.get("year") or ""))
    url = rec.get("url")
    return Document(
        doc_id=f"guideline:jsonl:{rid}",
        source=Source.GUIDELINE,
        title=" ".join(str(rec.get("title") or "").split()) or rid,
        sections=tuple(sections),
        language=str(rec["language"]) if rec.get("language") else None,
        url=url if isinstance(url, str) and re.match(r"https?://\S+$", url) else None,
        year=int(m.group(0)) if m else None,
        evidence_level=level or EvidenceLevel.OTHER,
        extra={
            "body": str(rec.get("body") or "") or None,
            "grade": parse_grade(str(rec["grade"])) if rec.get("grade") else None,
            **({"evidence_level_from": "file"} if level else {}),
        },
        publication_types=("Practice Guideline",) if level is EvidenceLevel.GUIDELINE else (),
    )


def parse_jsonl(path: Path, convert: Any) -> Iterator[Record]:
    """JSON Lines (optionally gzipped); a bad line is reported with its number and skipped."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    n = 0
    try:
        with opener(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8-sig"))
                except UnicodeDecodeError as exc:
                    yield Problem(str(path), f"line {n}", f"not UTF-8 at byte {exc.start}")
                    continue
                except json.JSONDecodeError as exc:
                    yield Problem(str(path), f"line {n}", f"invalid JSON: {exc.msg}")
                    continue
                if not isinstance(rec, dict):
                    yield Problem(str(path), f"line {n}", "expected a JSON object")
                    continue
                try:
                    yield convert(rec)
                except (ValueError, TypeError) as exc:
                    yield Problem(str(path), f"line {n}", str(exc))
    except (OSError, EOFError) as exc:
        yield Problem(str(path), f"line {n + 1}", f"cannot read (truncated?): {exc}")
        return
    if n == 0:
        yield Problem(str(path), "", "empty file")


def parse_medquad_xml(path: Path) -> Iterator[Record]:
    """A MedQuAD XML document: ``<Document url=..><Focus/><QAPairs><QAPair>...``."""
    from lxml import etree

    try:
        root = etree.parse(
            str(path), etree.XMLParser(resolve_entities=False, no_network=True)
        ).getroot()
    except etree.XMLSyntaxError as exc:
        yield Problem(str(path), f"line {exc.lineno}", f"malformed XML: {exc.msg}")
        return
    doc_id, url = path.stem, root.get("url")  # ids repeat across MedQuAD folders
    focus = " ".join("".join(root.findtext("Focus") or "").split())
    org = root.get("source")
    n = 0
    for n, qa in enumerate(root.iter("QAPair"), 1):
        q = qa.find("Question")
        try:
            yield medquad_to_document(
                {
                    "qid": f"{doc_id}_{qa.get('pid') or n}",
                    "question": q.text if q is not None else "",
                    "answer": "".join(qa.find("Answer").itertext())
                    if qa.find("Answer") is not None
                    else "",
                    "qtype": q.get("qtype") if q is not None else None,
                    "focus": focus,
                    "source": org,
                    "url": url,
                }
            )
        except ValueError as exc:
            yield Problem(str(path), f"QAPair {n}", str(exc))
    if n == 0:
        yield Problem(str(path), "", "no <QAPair> elements")


def _doc_id(kind: str, path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"guideline:{kind}:{path.stem}-{digest}"


META_KEYS = ("evidence_level", "grade", "body", "title", "year", "language")
"""What a guideline file may declare about itself: Markdown front matter (``key: value``
lines between ``---``), HTML ``<meta name=... content=...>`` (``evidence-level``,
``grade``, ``body`` or ``dc.publisher``, ``dc.date``, ``dc.language``; ``<html lang>``),
PDF document info (``/EvidenceLevel``,
``/Grade``, ``/Body``)."""


def _meta_key(name: str) -> str | None:
    n = name.strip().lower().replace("-", "_").replace(" ", "_")
    n = n.removeprefix("citation_").removeprefix("dc.").removeprefix("/")
    aliases = {"evidencelevel": "evidence_level", "level": "evidence_level",
               "publisher": "body", "organization": "body", "date": "year"}  # fmt: skip
    n = aliases.get(n, n)
    return n if n in META_KEYS else None


def _guideline(
    path: Path, kind: str, title: str, sections: list[Section], meta: dict[str, str] | None = None
) -> Document:
    """A guideline-like file. Its evidence level is what the file declares (else 'other': an
    HTML, Markdown or PDF file is not a guideline by being one; ``evidex ingest guidelines
    --evidence-level`` sets it for the files that declare none)."""
    from ingest.evidence import parse_grade, parse_level

    meta = meta or {}
    level, grade = EvidenceLevel.OTHER, None
    extra: dict[str, str | int | float | bool | list[str] | None] = {
        "body": meta.get("body") or None,
        "file": path.name,
    }
    if meta.get("evidence_level"):
        try:
            level = parse_level(meta["evidence_level"])
            extra["evidence_level_from"] = "file"
        except InputError as exc:
            log.warning("%s: %s; its evidence level is 'other'", path, exc)
    if meta.get("grade"):
        try:
            grade = parse_grade(meta["grade"])
        except InputError as exc:
            log.warning("%s: %s; no grade stored", path, exc)
    extra["grade"] = grade
    m = re.search(r"(1[89]|20)\d{2}", meta.get("year") or "")
    return Document(
        doc_id=_doc_id(kind, path),
        source=Source.GUIDELINE,
        title=meta.get("title") or title or path.stem,
        sections=tuple(sections),
        evidence_level=level,
        year=int(m.group(0)) if m else None,
        language=meta.get("language") or None,
        url=path.resolve().as_uri(),
        extra=extra,
        publication_types=("Practice Guideline",) if level is EvidenceLevel.GUIDELINE else (),
    )


def with_level(doc: Document, level: EvidenceLevel) -> Document:
    """``doc`` with the command's evidence level, unless its file declared one."""
    if doc.extra.get("evidence_level_from") == "file" or level is doc.evidence_level:
        return doc
    return doc.model_copy(
        update={
            "evidence_level": level,
            "extra": {**doc.extra, "evidence_level_from": "command"},
            "publication_types": ("Practice Guideline",) if level is EvidenceLevel.GUIDELINE
            else (),
        }
    )  # fmt: skip


_FRONT = re.compile(r"\A\ufeff?---[ \t]*\n(.*?)\n---[ \t]*\n", re.DOTALL)


def front_matter(text: str) -> tuple[dict[str, str], str]:
    r"""A Markdown file's ``key: value`` front matter and the text after it.

    >>> front_matter("---\nevidence-level: guideline\ngrade: B\n---\n# T\nBody")
    ({'evidence_level': 'guideline', 'grade': 'B'}, '# T\nBody')
    """
    m = _FRONT.match(text)
    if not m:
        return {}, text
    meta: dict[str, str] = {}
    for line in m.group(1).splitlines():
        key, sep, value = line.partition(":")
        k = _meta_key(key) if sep else None
        if k:
            meta[k] = value.strip().strip("\"'")
    return meta, text[m.end() :]


def parse_markdown(path: Path) -> Iterator[Record]:
    """Markdown cut at its headings (llama-index ``MarkdownNodeParser``)."""
    from llama_index.core import Document as LIDocument
    from llama_index.core.node_parser import MarkdownNodeParser

    text = read_text(path)
    if isinstance(text, Problem):
        yield text
        return
    meta, text = front_matter(text)
    nodes = MarkdownNodeParser().get_nodes_from_documents([LIDocument(text=text)])
    title = ""
    sections: list[Section] = []
    for node in nodes:
        body = node.get_content()
        lines = body.splitlines()
        heading = ""
        if lines and lines[0].startswith("#"):
            heading = lines[0].lstrip("#").strip()
            body = "\n".join(lines[1:])
            if not title and lines[0].startswith("# "):
                title = heading
        path_meta = str(node.metadata.get("header_path", "")).strip("/")
        label = " > ".join(p for p in [*path_meta.split("/"), heading] if p and p != title)
        body = " ".join(body.split())
        if body:
            sections.append(Section(title=label, text=body))
    if not sections:
        yield Problem(str(path), "", "no text")
        return
    yield _guideline(path, "md", title, sections, meta)


_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def parse_html(path: Path) -> Iterator[Record]:
    """HTML cut at its headings (llama-index ``HTMLNodeParser`` over headings and blocks)."""
    from llama_index.core import Document as LIDocument
    from llama_index.core.node_parser import HTMLNodeParser

    text = read_text(path)
    if isinstance(text, Problem):
        yield text
        return
    tags = [*sorted(_HEADINGS), "p", "li", "td", "th", "pre", "blockquote", "dd", "dt"]
    nodes = HTMLNodeParser(tags=tags).get_nodes_from_documents([LIDocument(text=text)])
    soup = BeautifulSoup(text, "html.parser")
    title = " ".join(soup.title.get_text().split()) if soup.title else ""
    meta: dict[str, str] = {}
    if soup.html is not None and soup.html.get("lang"):
        meta["language"] = str(soup.html.get("lang"))
    for el in soup.find_all("meta"):
        k = _meta_key(str(el.get("name") or el.get("property") or ""))
        if k and el.get("content"):
            meta.setdefault(k, " ".join(str(el.get("content")).split()))
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    current: list[str] = []

    def flush() -> None:
        body = " ".join(" ".join(current).split())
        if body:
            sections.append(Section(title=" > ".join(h for _, h in stack), text=body))
        current.clear()

    for node in nodes:
        tag = str(node.metadata.get("tag", ""))
        content = " ".join(node.get_content().split())
        if not content:
            continue
        if tag in _HEADINGS:
            flush()
            level = int(tag[1])
            if not title and level == 1:
                title = content
            while stack and stack[-1][0] >= level:
                stack.pop()
            if not (level == 1 and content == title):
                stack.append((level, content))
        else:
            current.append(content)
    flush()
    if not sections:
        yield Problem(str(path), "", "no text in HTML")
        return
    yield _guideline(path, "html", title, sections, meta)


def parse_pdf(path: Path) -> Iterator[Record]:
    """PDF text, one section per page, with page numbers (pypdf)."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if path.stat().st_size == 0:
        yield Problem(str(path), "", "empty file")
        return
    try:
        reader = PdfReader(str(path))
        sections = []
        for i, page in enumerate(reader.pages, 1):
            try:
                body = " ".join((page.extract_text() or "").split())
            except Exception as exc:  # pypdf raises many kinds on broken pages
                yield Problem(str(path), f"page {i}", f"cannot extract text: {exc}")
                continue
            if body:
                sections.append(Section(title=f"Page {i}", text=body, page=i))
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
        meta = {}
        for key, value in (reader.metadata or {}).items():
            k = _meta_key(str(key))
            if k and k != "title" and value:
                meta[k] = str(value)
    except (PdfReadError, OSError, ValueError) as exc:
        yield Problem(str(path), "", f"unreadable PDF: {exc}")
        return
    if not sections:
        yield Problem(str(path), "", "no extractable text (a scanned PDF needs OCR first)")
        return
    yield _guideline(path, "pdf", str(meta_title).strip(), sections, meta)
