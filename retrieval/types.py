"""Small frozen types exchanged between stages.

``Document`` comes out of a parser, ``Chunk`` goes into the index, ``ScoredPassage`` comes
out of a search. They are pydantic models (frozen, unknown fields rejected) so that they
serialize to Qdrant payloads and JSON without loose dicts crossing package boundaries.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from retrieval.chinese import has_cjk
from retrieval.errors import InputError


class EvidenceLevel(StrEnum):
    """Evidence level of a source, best first (the order is used for ranking)."""

    GUIDELINE = "practice_guideline"
    SYSTEMATIC_REVIEW = "systematic_review"
    RCT = "randomized_controlled_trial"
    CLINICAL_STUDY = "clinical_study"
    REVIEW = "review"
    CASE_REPORT = "case_report"
    OTHER = "other"

    @property
    def rank(self) -> int:
        """0 for the strongest evidence, 6 for ``other``."""
        return list(EvidenceLevel).index(self)


GRADES = ("A", "B", "C", "D", "I")
"""USPSTF grades; GRADE's strengths are also accepted (:data:`GRADE_STRENGTHS`)."""
GRADE_STRENGTHS = ("strong", "conditional", "weak", "good practice statement")


def parse_grade(value: str) -> str:
    """A recommendation grade, normalized: USPSTF A/B/C/D/I (upper case) or a GRADE
    strength (lower case); a clear error otherwise.

    >>> parse_grade(" b "), parse_grade("Grade A"), parse_grade("Strong")
    ('B', 'A', 'strong')
    >>> parse_grade("Z")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    retrieval.errors.InputError: unknown grade 'Z': use A, B, C, D or I (USPSTF) or ...
    """
    v = " ".join(str(value).split())
    bare = v.upper().removeprefix("GRADE ").strip()
    if bare in GRADES:
        return bare
    if v.lower() in GRADE_STRENGTHS:
        return v.lower()
    raise InputError(
        f"unknown grade {value!r}: use {', '.join(GRADES[:-1])} or {GRADES[-1]} (USPSTF) or "
        f"{', '.join(GRADE_STRENGTHS)} (GRADE)"
    )


class Source(StrEnum):
    """Where a document came from."""

    PUBMED = "pubmed"
    PMC = "pmc"
    GUIDELINE = "guideline"
    MEDQUAD = "medquad"
    BEIR = "beir"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Section(_Frozen):
    """One titled part of a document (an abstract section, a guideline heading, a PDF page)."""

    title: str = Field("", description="Section label, e.g. 'METHODS'; empty when unlabeled.")
    text: str = Field(description="Plain text of the section.")
    page: int | None = Field(None, description="1-based page number for PDF sources.")


class Document(_Frozen):
    """A parsed source document before chunking."""

    doc_id: str = Field(description="Stable id, prefixed by kind: 'pmid:123', 'pmc:PMC1', ...")
    source: Source = Field(description="The corpus the document came from.")
    title: str = Field("", description="Title; may be empty (e.g. BEIR corpora without titles).")
    sections: tuple[Section, ...] = Field(description="Text in reading order.")
    pmid: str | None = Field(None, description="PubMed id.")
    doi: str | None = Field(None, description="DOI.")
    pmcid: str | None = Field(None, description="PubMed Central id, 'PMC...'.")
    journal: str | None = Field(None, description="Journal title.")
    pub_date: str | None = Field(None, description="Publication date as printed (ISO if full).")
    year: int | None = Field(None, description="Publication year.")
    authors: tuple[str, ...] = Field((), description="Author names, 'Last First'.")
    language: str | None = Field(None, description="Language code, e.g. 'eng'.")
    publication_types: tuple[str, ...] = Field((), description="PubMed publication types.")
    mesh_terms: tuple[str, ...] = Field((), description="MeSH descriptor names.")
    url: str | None = Field(None, description="Where a reader can open the source.")
    evidence_level: EvidenceLevel = Field(EvidenceLevel.OTHER, description="Derived level.")
    extra: dict[str, str | int | float | bool | list[str] | list[dict[str, str]] | None] = Field(
        default_factory=dict,
        description="Source-specific metadata kept for filters (guideline grade, ages, sex; "
        "PubMed's notices: status, retracted, notices).",
    )

    @property
    def text(self) -> str:
        """All section texts joined by blank lines."""
        return "\n\n".join(s.text for s in self.sections)

    def content_hash(self) -> str:
        """A digest of everything that ends up in the index for this document.

        Same input gives the same hash; any change to text or metadata changes it.
        """
        data = self.model_dump(mode="json")
        raw = json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(raw).hexdigest()[:32]


class Chunk(_Frozen):
    """A piece of a document sized for the embedding model, as stored in the index."""

    chunk_id: str = Field(description="Deterministic UUID derived from document and content.")
    doc_id: str = Field(description="The document this chunk belongs to.")
    index: int = Field(description="0-based position of the chunk within its document.")
    n_chunks: int = Field(description="How many chunks the document has.")
    text: str = Field(description="The chunk body (without the title prefix).")
    section: str = Field("", description="Section label(s) the chunk covers.")
    page: int | None = Field(None, description="PDF page the chunk starts on.")
    embed_text: str = Field(description="The exact text given to the embedding model.")
    n_tokens: int = Field(description="Length of embed_text in the embedding model's tokens.")
    content_hash: str = Field(description="Content hash of the whole document.")


class Notice(_Frozen):
    """A PubMed notice on a record: a retraction, an erratum, an expression of concern."""

    kind: str = Field(description="RetractionIn, RetractionOf, ErratumIn, ExpressionOfConcernIn…")
    pmid: str = Field("", description="The notice's PMID (or the record's it is about).")
    source: str = Field("", description="Where the notice was published, as PubMed cites it.")

    def label(self) -> str:
        """``Retraction in PMID 33333333 (Lancet. 2020;395:1820)``.

        >>> Notice(kind="RetractionIn", pmid="1", source="Lancet. 2020").label()
        'Retraction in PMID 1 (Lancet. 2020)'
        """
        words = {"RetractionIn": "Retraction in", "RetractionOf": "Retraction of",
                 "ErratumIn": "Erratum in", "ErratumFor": "Erratum for",
                 "ExpressionOfConcernIn": "Expression of concern in",
                 "ExpressionOfConcernFor": "Expression of concern for",
                 "UpdateIn": "Updated in", "UpdateOf": "Update of"}  # fmt: skip
        where = f" ({self.source})" if self.source else ""
        return f"{words.get(self.kind, self.kind)} PMID {self.pmid or '?'}{where}"


class ScoredPassage(_Frozen):
    """A search hit: a chunk with its document's metadata and its score."""

    chunk_id: str = Field(description="Id of the matched chunk.")
    doc_id: str = Field(description="Id of its document.")
    text: str = Field(description="Chunk text.")
    title: str = Field("", description="Document title.")
    section: str = Field("", description="Section label(s).")
    source: str = Field(description="Corpus name.")
    score: float = Field(description="Final score, higher is better.")
    score_parts: dict[str, float] = Field(
        default_factory=dict, description="Named score components (dense, sparse, fused, ...)."
    )
    pmid: str | None = Field(None, description="PubMed id, if any.")
    doi: str | None = Field(None, description="DOI, if any.")
    year: int | None = Field(None, description="Publication year.")
    journal: str | None = Field(None, description="Journal.")
    url: str | None = Field(None, description="Link to the source.")
    evidence_level: str = Field(EvidenceLevel.OTHER.value, description="Evidence level.")
    chunk_index: int | None = Field(None, description="Position of the chunk in its document.")
    merged_chunk_ids: tuple[str, ...] = Field(
        (), description="Neighbouring chunks of the same document merged into this passage."
    )
    status: str = Field(
        "current",
        description="PubMed's notices on the record: current, retracted, concern (an "
        "expression of concern), corrected (an erratum or update) or notice (it is one).",
    )
    retracted: bool = Field(False, description="The record is retracted: never cite it.")
    notices: tuple[Notice, ...] = Field((), description="The notices, with PMID and source.")
    n_chunks: int | None = Field(None, description="How many chunks its document has.")
    lead: str = Field(
        "",
        description="The first words of the document's text, stored for documents without a "
        "title (PubMedQA, many BEIR corpora): they stand in for the title, marked as such.",
    )
    pmcid: str | None = Field(None, description="PubMed Central id, if any.")
    grade: str | None = Field(
        None, description="Guideline recommendation grade (USPSTF A/B/C/D/I ...), if any."
    )
    language: str | None = Field(
        None, description="Its document's language ('eng', 'chi'; stated or detected)."
    )

    def heading(self) -> tuple[str, bool]:
        """The title, or the document's first words when it has none, and whether it is the
        latter.

        >>> ScoredPassage(chunk_id="c", doc_id="d", text="t", source="x", score=1.0,
        ...               lead="Programmed cell death is").heading()
        ('Programmed cell death is …', True)
        """
        if self.title:
            return self.title, False
        if self.lead:
            return f"{self.lead} …", True
        return "", False


LEAD_WORDS = 12
"""How many of an untitled document's first words stand in for its title."""
LEAD_CHARS_CJK = 30
"""... and how many characters of Chinese text, which has no spaces between words."""


def lead_of(doc: Document) -> str:
    """The first words of an untitled document (empty when it has a title).

    >>> d = Document(doc_id="x", source="beir", sections=(Section(text="One two three."),))
    >>> lead_of(d)
    'One two three.'
    >>> len(lead_of(d.model_copy(update={"sections": (Section(text="高血压" * 40),)})))
    30
    """
    if doc.title.strip():
        return ""
    for sec in doc.sections:
        words = sec.text.split()
        if words:
            lead = " ".join(words[:LEAD_WORDS])
            return lead[:LEAD_CHARS_CJK] if has_cjk(lead[:LEAD_CHARS_CJK]) else lead
    return ""


class SourceCount(_Frozen):
    """Documents and chunks of one source in the index."""

    documents: int = Field(ge=0, description="Documents (counted by their first chunk).")
    chunks: int = Field(ge=0, description="Chunks (points) stored.")


class IndexStats(_Frozen):
    """What an index holds: ``Index.stats()``, ``evidex index stats --json``."""

    documents: int = Field(ge=0, description="Documents in the index.")
    chunks: int = Field(ge=0, description="Chunks (points) in the index.")
    sources: dict[str, SourceCount] = Field(
        default_factory=dict, description="Per source, by source name."
    )
    embedding_model: str | None = Field(None, description="Dense model the store was built with.")
    dim: int | None = Field(None, description="Dense vector dimension.")
    sparse_model: str | None = Field(None, description="Sparse model (BM25, BGE-M3).")
    store: str = Field("", description="Where the index lives (a folder or a URL).")
