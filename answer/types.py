"""What an answer is made of: numbered sources, citations, references and the answer itself."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planner.types import Plan
from retrieval.types import Notice, ScoredPassage

REVIEW_NOTICE = (
    "Decision support only: a licensed clinician must review this answer and its sources "
    "before acting on it."
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reference(_Frozen):
    """A numbered source as listed under the answer."""

    marker: int = Field(ge=1, description="The number used in [n] citations.")
    doc_id: str = Field(description="evidex document id, e.g. 'pmid:123'.")
    chunk_id: str = Field(description="The passage's chunk id.")
    title: str = Field("", description="Document title.")
    journal: str | None = Field(None, description="Journal.")
    year: int | None = Field(None, description="Publication year.")
    pmid: str | None = Field(None, description="PubMed id.")
    doi: str | None = Field(None, description="DOI.")
    url: str | None = Field(None, description="Where to open it (PubMed, DOI or guideline).")
    source: str = Field(description="Corpus: pubmed, pmc, guideline, ...")
    section: str = Field("", description="Section of the passage.")
    evidence_level: str = Field(description="Evidence level of the document.")
    cited: bool = Field(False, description="Whether the final answer cites it.")
    status: str = Field("current", description="PubMed's notices: current, retracted, ...")
    retracted: bool = Field(False, description="A retracted record (never cited).")
    notices: tuple[Notice, ...] = Field((), description="Retractions, errata, concerns.")
    title_from_text: bool = Field(
        False,
        description="The document has no title: ``title`` holds the first words of its text.",
    )
    pmcid: str | None = Field(None, description="PubMed Central id (full text), if any.")
    grade: str | None = Field(None, description="Guideline recommendation grade, if any.")

    @classmethod
    def of(cls, marker: int, p: ScoredPassage, *, cited: bool = False) -> Reference:
        """The reference numbered ``marker`` for passage ``p``."""
        title, from_text = p.heading()
        return cls(marker=marker, doc_id=p.doc_id, chunk_id=p.chunk_id, title=title,
                   journal=p.journal, year=p.year, pmid=p.pmid, doi=p.doi,
                   url=p.url or (f"https://doi.org/{p.doi}" if p.doi else None),
                   source=p.source, section=p.section, evidence_level=p.evidence_level,
                   cited=cited, status=p.status, retracted=p.retracted, notices=p.notices,
                   title_from_text=from_text, pmcid=p.pmcid, grade=p.grade)  # fmt: skip

    def shown_title(self) -> str:
        """The title as shown, marked when it is the document's first words.

        >>> Reference(marker=1, doc_id="pmid:1", chunk_id="c", title="Aspirin was given …",
        ...           source="beir", evidence_level="other", title_from_text=True).shown_title()
        '“Aspirin was given …” (untitled: first words of the text)'
        """
        if self.title_from_text:
            return f"“{self.title}” (untitled: first words of the text)"
        return self.title or self.doc_id

    def label(self) -> str:
        """'PMID 123', 'DOI ...', or the document id."""
        if self.pmid:
            return f"PMID {self.pmid}"
        if self.doi:
            return f"DOI {self.doi}"
        return self.doc_id


CitationStatus = Literal["verified", "added", "unsupported"]


class Citation(_Frozen):
    """One [n] marker on one sentence of the answer, and whether the passage supports it."""

    marker: int = Field(ge=1, description="Number of the cited source.")
    doc_id: str = Field(description="Cited document.")
    chunk_id: str = Field(description="Cited passage.")
    text: str = Field(description="The cited passage's text.")
    sentence: str = Field(description="The answer sentence that carries the citation.")
    support: float = Field(description="Support score from the verifier (0-1).")
    status: CitationStatus = Field(
        description="'verified': the passage supports the sentence; 'added': the model gave "
        "no citation and the verifier attributed this supporting source; 'unsupported': kept "
        "but flagged (verify.unsupported = 'flag')."
    )
    evidence: str = Field("", description="The passage sentence that best supports the claim.")

    @classmethod
    def of(
        cls,
        marker: int,
        passage: ScoredPassage,
        sentence: str,
        support: float,
        status: CitationStatus = "verified",
        evidence: str = "",
    ) -> Citation:
        """The citation of ``passage`` (source ``marker``) on ``sentence``."""
        return cls(marker=marker, doc_id=passage.doc_id, chunk_id=passage.chunk_id,
                   text=passage.text, sentence=sentence, support=support,
                   status=status, evidence=evidence)  # fmt: skip


class RemovedClaim(_Frozen):
    """A sentence taken out of the answer, and why."""

    sentence: str = Field(description="The sentence as generated.")
    reason: str = Field(description="Why it was removed.")
    markers: tuple[int, ...] = Field((), description="The citations it carried.")


class Usage(_Frozen):
    """Tokens spent by one stage."""

    stage: str = Field(description="'plan', 'follow_up', 'generate' or 'verify'.")
    model: str = Field(description="Model name.")
    prompt_tokens: int = Field(0, description="Tokens read.")
    completion_tokens: int = Field(0, description="Tokens written.")


STANCES = ("supports", "contradicts", "mixed", "does_not_address")
Stance = Literal["supports", "contradicts", "mixed", "does_not_address"]


class SourceStance(_Frozen):
    """What one cited source finds about the question."""

    marker: int = Field(ge=1, description="The source's number.")
    doc_id: str = Field(description="The source's document.")
    stance: Stance = Field(description="supports, contradicts, mixed or does_not_address.")


class Consensus(_Frozen):
    """The cited sources' stances on the question (with a served model), or why there is
    none."""

    available: bool = Field(description="Whether stances were judged.")
    stances: tuple[SourceStance, ...] = Field((), description="One per judged source.")
    summary: str = Field("", description="The tally, and the disagreement when there is one.")
    contradiction: bool = Field(False, description="Some sources support, others contradict.")
    note: str = Field("", description="Why there is no consensus (offline, model failed).")


class Digest(_Frozen):
    """An evidence digest: the sources' sentences quoted verbatim, each with its citation."""

    text: str = Field(description="The digest with inline [n] citations.")
    citations: tuple[Citation, ...] = Field((), description="One per quoted sentence.")


DIGEST_LABEL = (
    "Evidence digest: sentences quoted verbatim from the sources, without a model's synthesis."
)
DIGEST_LABEL_ZH = "证据摘要：逐字摘自来源的句子，未经模型综合。"
"""The digest's label for a Chinese question."""
SOURCES_SAY_LABEL = "What the sources say"


class Answer(_Frozen):
    """A cited answer, or an abstention, with everything needed to check it."""

    answer_id: str = Field(description="Unique id of this answer.")
    created_at: str = Field(description="UTC time, ISO 8601.")
    question: str = Field(description="The question as asked.")
    text: str = Field(description="The answer with inline [n] citations (verified).")
    raw_text: str = Field("", description="The model's text before verification.")
    reasoning: str = Field("", description="The model's <think> text, when kept.")
    abstained: bool = Field(description="True when the evidence was insufficient to answer.")
    abstain_reason: str = Field("", description="Why it abstained.")
    degraded: bool = Field(
        False, description="True when no synthesis was generated: the text lists top evidence."
    )
    digest: bool = Field(
        False,
        description="True when the text is an evidence digest (quoted sentences, no model "
        "synthesis): answer.mode 'digest', the embedded default, or a failed model.",
    )
    sources_say: Digest | None = Field(
        None,
        description="Under an abstention: the digest of the closest relevant sources, shown "
        "as 'what the sources say' (it answers nothing itself).",
    )
    left_out: tuple[ScoredPassage, ...] = Field(
        (),
        description="Retrieved records left out because they are retracted (with their "
        "notices), one per document (answer.exclude_retracted).",
    )
    consensus: Consensus | None = Field(
        None, description="The cited sources' stances on the question and their tally."
    )
    warnings: tuple[str, ...] = Field((), description="What went wrong or was flagged.")
    citations: tuple[Citation, ...] = Field((), description="Citations in the final text.")
    removed: tuple[RemovedClaim, ...] = Field((), description="Sentences taken out.")
    references: tuple[Reference, ...] = Field((), description="The numbered sources.")
    passages: tuple[ScoredPassage, ...] = Field(
        (), description="The passages behind the references, same order, with score parts."
    )
    plan: Plan | None = Field(None, description="How the question was searched.")
    patient_context: bool = Field(False, description="Whether patient context was used.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage time.")
    usage: tuple[Usage, ...] = Field((), description="Tokens per stage.")
    models: dict[str, str] = Field(
        default_factory=dict, description="Models used: chat, embedding, verifier."
    )
    settings_hash: str = Field(description="Hash of the settings that produced the answer.")
    notice: str = Field(REVIEW_NOTICE, description="Shown with every answer.")

    @property
    def cited_references(self) -> list[Reference]:
        return [r for r in self.references if r.cited]

    def render(self) -> str:
        """Plain text: answer, references and the notice."""
        lines = []
        if self.consensus is not None:
            lines += [self.consensus.summary or self.consensus.note, ""]
        lines += [self.text, ""]
        if self.sources_say is not None:
            lines += [f"{SOURCES_SAY_LABEL}:", self.sources_say.text, ""]
        refs = self.cited_references or list(self.references)
        if refs:
            lines.append("References" if self.cited_references else "Sources reviewed")
            for r in refs:
                bits = [r.shown_title()]
                if r.journal:
                    bits.append(r.journal)
                if r.year:
                    bits.append(str(r.year))
                lines.append(
                    f"[{r.marker}] {'. '.join(bits)}. {r.label()}. {r.url or ''} "
                    f"(evidence: {r.evidence_level.replace('_', ' ')}"
                    f"{f'; grade {r.grade}' if r.grade else ''})"
                    f"{' RETRACTED' if r.retracted else ''}".replace("  ", " ")
                )
        lines += ["", self.notice]
        return "\n".join(lines)
