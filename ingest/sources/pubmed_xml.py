"""PubMed XML: efetch ``PubmedArticleSet`` and annual baseline/update files (old and new DTDs).

Streamed with ``lxml.etree.iterparse``: each article is converted and then cleared, so
memory stays flat on a 30,000-article baseline file. ``DeleteCitation`` blocks become
:class:`~ingest.records.Deletion` records.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lxml import etree

from ingest import notices
from ingest.evidence import evidence_level
from ingest.records import Deletion, Problem, Record
from retrieval.errors import InputError
from retrieval.types import Document, Section, Source

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_TAGS = ("PubmedArticle", "MedlineCitation", "DeleteCitation", "PubmedBookArticle")


def _text(el: Any) -> str:
    if el is None:
        return ""
    return " ".join("".join(el.itertext()).split())


def _find_text(el: Any, path: str) -> str:
    return _text(el.find(path)) if el is not None else ""


def _pub_date(article: Any, citation: Any) -> tuple[str | None, int | None]:
    pd = article.find("Journal/JournalIssue/PubDate") if article is not None else None
    if pd is None and article is not None:
        pd = article.find("ArticleDate")
    if pd is None:
        return None, None
    year = _find_text(pd, "Year")
    if year:
        month = _find_text(pd, "Month")
        day = _find_text(pd, "Day")
        mnum = (
            _MONTHS.get(month[:3].lower())
            if month and not month.isdigit()
            else (int(month) if month.isdigit() else None)
        )
        if mnum and day.isdigit():
            return f"{year}-{mnum:02d}-{int(day):02d}", int(year)
        if mnum:
            return f"{year}-{mnum:02d}", int(year)
        return year, int(year)
    medline = _find_text(pd, "MedlineDate")
    m = re.search(r"(1[89]|20)\d{2}", medline)
    return (medline or None), (int(m.group(0)) if m else None)


def pubmed_document(
    pmid: str,
    title: str,
    sections: list[Section],
    publication_types: tuple[str, ...],
    **metadata: Any,
) -> Document:
    """A PubMed Document, shared by the XML and MEDLINE parsers: id, URL and evidence level
    follow from the PMID and publication types; a title-only citation is indexed by its title.

    Raises ValueError when there is neither title nor abstract text.
    """
    if not sections and title:
        sections = [Section(title="", text=title)]
    if not sections:
        raise InputError(f"PMID {pmid} has neither title nor abstract text")
    return Document(
        doc_id=f"pmid:{pmid}",
        source=Source.PUBMED,
        title=title,
        sections=tuple(sections),
        pmid=pmid,
        publication_types=publication_types,
        url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
        evidence_level=evidence_level(publication_types, title),
        **metadata,
    )


def citation_to_document(citation: Any, pubmed_data: Any = None) -> Document:
    """Convert a ``MedlineCitation`` element (and its ``PubmedData`` sibling) to a Document.

    Raises ValueError when the citation has no PMID or no text at all.
    """
    pmid = _find_text(citation, "PMID")
    if not pmid:
        raise InputError("citation without a PMID")
    article = citation.find("Article")
    title = _find_text(article, "ArticleTitle") or _find_text(article, "VernacularTitle")
    if title.startswith("[") and title.endswith("]."):  # translated titles are bracketed
        title = title[1:-2] + "."
    sections: list[Section] = []
    if article is not None:
        for ab in article.findall("Abstract/AbstractText"):
            text = _text(ab)
            if text:
                label = (ab.get("Label") or "").strip()
                sections.append(Section(title=label, text=text))
    doi = pmcid = None
    if article is not None:
        for eid in article.findall("ELocationID"):
            if eid.get("EIdType") == "doi":
                doi = _text(eid)
    if pubmed_data is not None:
        for aid in pubmed_data.findall("ArticleIdList/ArticleId"):
            kind = aid.get("IdType")
            if kind == "doi" and not doi:
                doi = _text(aid)
            elif kind == "pmc":
                pmcid = _text(aid)
    authors = []
    if article is not None:
        for au in article.findall("AuthorList/Author"):
            name = " ".join(
                x
                for x in (
                    _find_text(au, "LastName"),
                    _find_text(au, "ForeName") or _find_text(au, "Initials"),
                )
                if x
            ) or _find_text(au, "CollectiveName")
            if name:
                authors.append(name)
    pub_types = (
        tuple(_text(p) for p in article.findall("PublicationTypeList/PublicationType"))
        if article is not None
        else ()
    )
    mesh = tuple(_text(d) for d in citation.findall("MeshHeadingList/MeshHeading/DescriptorName"))
    pub_date, year = _pub_date(article, citation)
    language = _find_text(article, "Language") or None
    extra = notices.notice_fields(pub_types, notices.from_xml(citation))
    return pubmed_document(
        pmid,
        title,
        sections,
        pub_types,
        doi=doi,
        pmcid=pmcid,
        journal=_find_text(article, "Journal/Title")
        or _find_text(citation, "MedlineJournalInfo/MedlineTA")
        or None,
        pub_date=pub_date,
        year=year,
        authors=tuple(authors),
        language=language,
        mesh_terms=mesh,
        extra=extra,
    )


def _open(path: Path) -> Any:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def parse_stream(stream: IO[bytes], origin: str) -> Iterator[Record]:
    """Parse a PubMed XML byte stream; errors become Problems naming ``origin``."""
    n = 0
    context = etree.iterparse(
        stream,
        events=("end",),
        tag=_TAGS,
        huge_tree=True,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
    )
    try:
        for _event, el in context:
            tag = el.tag
            parent = el.getparent()
            if tag == "MedlineCitation" and parent is not None and parent.tag == "PubmedArticle":
                continue  # handled with its PubmedArticle
            n += 1
            try:
                if tag == "DeleteCitation":
                    ids = tuple(f"pmid:{_text(p)}" for p in el.findall("PMID") if _text(p))
                    yield Deletion(ids, origin)
                elif tag == "PubmedBookArticle":
                    yield Problem(
                        origin,
                        f"record {n} (line {el.sourceline})",
                        "PubmedBookArticle (book chapter) is not indexed",
                    )
                elif tag == "PubmedArticle":
                    yield citation_to_document(el.find("MedlineCitation"), el.find("PubmedData"))
                else:
                    yield citation_to_document(el)
            except ValueError as exc:
                yield Problem(origin, f"record {n} (line {el.sourceline})", str(exc))
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del el.getparent()[0]
    except etree.XMLSyntaxError as exc:
        yield Problem(
            origin, f"line {exc.lineno}", f"malformed or truncated XML after {n} records: {exc.msg}"
        )
        return
    except (OSError, EOFError) as exc:  # truncated gzip
        yield Problem(origin, "", f"cannot read past record {n}: {exc}")
        return
    if n == 0:
        yield Problem(origin, "", "no PubmedArticle, MedlineCitation or DeleteCitation found")


def parse_file(path: Path) -> Iterator[Record]:
    """Parse one ``.xml`` or ``.xml.gz`` PubMed file."""
    try:
        if path.stat().st_size == 0:
            yield Problem(str(path), "", "empty file")
            return
        with _open(path) as stream:
            yield from parse_stream(stream, str(path))
    except OSError as exc:
        yield Problem(str(path), "", f"cannot read file: {exc}")
