"""PMC Open Access full text in JATS XML (``.nxml``), keeping the section structure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from ingest.evidence import evidence_level
from ingest.records import Problem, Record
from retrieval.errors import InputError
from retrieval.types import Document, Section, Source

_SKIP = {
    "table-wrap",
    "fig",
    "ref-list",
    "supplementary-material",
    "disp-formula",
    "table",
    "graphic",
    "media",
}


def _text(el: Any) -> str:
    if el is None:
        return ""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node.tag, str) and etree.QName(node).localname in _SKIP:
            if node.tail:
                parts.append(node.tail)
            return
        if node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
        if node is not el and node.tail:
            parts.append(node.tail)

    walk(el)
    return " ".join("".join(parts).split())


def _paragraphs(sec: Any) -> str:
    return "\n".join(t for t in (_text(p) for p in sec.findall("p")) if t)


def _sections(parent: Any, path: tuple[str, ...]) -> Iterator[Section]:
    own = _paragraphs(parent)
    if own:
        yield Section(title=" > ".join(path), text=own)
    for sec in parent.findall("sec"):
        title = _text(sec.find("title"))
        yield from _sections(sec, (*path, title) if title else path)


def article_to_document(root: Any) -> Document:
    """Convert a JATS ``<article>`` element."""
    meta = root.find("front/article-meta")
    if meta is None:
        raise InputError("no <front><article-meta>: not a JATS article")
    ids = {a.get("pub-id-type"): _text(a) for a in meta.findall("article-id")}
    pmcid = ids.get("pmc") or ids.get("pmcid")
    if pmcid and not pmcid.upper().startswith("PMC"):
        pmcid = f"PMC{pmcid}"
    pmid, doi = ids.get("pmid"), ids.get("doi")
    key = pmcid or (f"pmid{pmid}" if pmid else None) or (f"doi:{doi}" if doi else None)
    if key is None:
        raise InputError("article has no pmc, pmid or doi id")
    title = _text(meta.find("title-group/article-title"))
    journal = _text(root.find("front/journal-meta/journal-title-group/journal-title")) or _text(
        root.find("front/journal-meta/journal-title")
    )
    year = None
    pub_date = None
    for pd in meta.findall("pub-date"):
        y = _text(pd.find("year"))
        if y.isdigit():
            year = int(y)
            mo, d = _text(pd.find("month")), _text(pd.find("day"))
            pub_date = (
                y
                + (f"-{int(mo):02d}" if mo.isdigit() else "")
                + (f"-{int(d):02d}" if mo.isdigit() and d.isdigit() else "")
            )
            break
    authors = []
    for c in meta.findall("contrib-group/contrib"):
        if c.get("contrib-type", "author") != "author":
            continue
        sur, given = _text(c.find("name/surname")), _text(c.find("name/given-names"))
        name = " ".join(x for x in (sur, given) if x) or _text(c.find("collab"))
        if name:
            authors.append(name)
    sections: list[Section] = []
    abstract = meta.find("abstract")
    if abstract is not None:
        for s in _sections(abstract, ("Abstract",)):
            sections.append(s)
    body = root.find("body")
    if body is not None:
        sections.extend(_sections(body, ()))
    if not sections:
        raise InputError(f"{key}: no abstract or body text")
    article_type = root.get("article-type") or ""
    subjects = tuple(_text(s) for s in meta.findall("article-categories//subject"))
    pub_types = tuple(t for t in (article_type, *subjects) if t)
    keywords = tuple(_text(k) for k in meta.findall("kwd-group/kwd") if _text(k))
    lang = root.get("{http://www.w3.org/XML/1998/namespace}lang")
    return Document(
        doc_id=f"pmc:{pmcid}" if pmcid else f"pmc:{key}",
        source=Source.PMC,
        title=title,
        sections=tuple(sections),
        pmid=pmid,
        doi=doi,
        pmcid=pmcid,
        journal=journal or None,
        pub_date=pub_date,
        year=year,
        authors=tuple(authors),
        language=lang,
        publication_types=pub_types,
        mesh_terms=keywords,
        url=f"https://www.ncbi.nlm.nih.gov/pmc/articles/{pmcid}/"
        if pmcid
        else (f"https://doi.org/{doi}" if doi else None),
        evidence_level=evidence_level(pub_types, title),
    )


def _parser() -> Any:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, load_dtd=False)


def parse_file(path: Path) -> Iterator[Record]:
    """Parse one JATS file (one article, or an efetch ``pmc-articleset``)."""
    if path.stat().st_size == 0:
        yield Problem(str(path), "", "empty file")
        return
    try:
        tree = etree.parse(str(path), _parser())
    except etree.XMLSyntaxError as exc:
        yield Problem(str(path), f"line {exc.lineno}", f"malformed XML: {exc.msg}")
        return
    yield from _articles(tree.getroot(), str(path))


def parse_bytes(data: bytes, origin: str) -> Iterator[Record]:
    """Parse a JATS reply (an efetch ``db=pmc`` ``pmc-articleset``); ``origin`` names it in
    problems."""
    if not data.strip():
        yield Problem(origin, "", "empty reply")
        return
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        yield Problem(origin, f"line {exc.lineno}", f"malformed XML: {exc.msg}")
        return
    yield from _articles(root, origin)


def has_body(doc: Document) -> bool:
    """Whether a parsed PMC article carries body text (not just its abstract)."""
    return any(not s.title.startswith("Abstract") for s in doc.sections)


def _articles(root: Any, where: str) -> Iterator[Record]:
    for el in root.iter():  # drop namespaces on tags so paths stay simple
        if isinstance(el.tag, str) and el.tag.startswith("{") and "mml" not in el.tag:
            el.tag = etree.QName(el).localname
    articles = [root] if root.tag == "article" else root.findall(".//article")
    if not articles:
        yield Problem(where, "", f"no <article> element (root is <{root.tag}>)")
        return
    for i, art in enumerate(articles, 1):
        try:
            yield article_to_document(art)
        except ValueError as exc:
            yield Problem(where, f"article {i}", str(exc))
