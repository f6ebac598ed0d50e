"""The evidence digest: an answer made of the sources' own sentences, when no model synthesizes.

For each subtask of the plan, the sentences of its top sources that answer the question are
quoted verbatim, each with its ``[n]`` citation and the source's study design, year and
identifier; conclusions come first, then results. Sentences are chosen by a question-aware
scorer (:func:`score_sentence`): the embedding similarity of the sentence to the question,
plus the sentence's role in its abstract, read from the section label when the passage has one
(``CONCLUSIONS: ...``), otherwise from cue words ("In conclusion", "these findings suggest",
"we aimed to") and its place in the document (an abstract ends with its conclusion). At most a
few sentences per source, no near-duplicates, sources ordered by evidence level and relevance.

A quote is a citation by construction, and :func:`verbatim` still checks that each one occurs
word for word in its passage: a sentence that does not (text withheld as instruction-like, a
bug) is never shown.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from answer.injection import addressed_to_model
from answer.types import DIGEST_LABEL, DIGEST_LABEL_ZH, Citation, Digest
from answer.verify import split_sentences
from planner.types import Subtask
from retrieval.chinese import overlap, terms
from retrieval.embedders import Embedder
from retrieval.ranking import evidence_score
from retrieval.settings import DigestSettings
from retrieval.types import ScoredPassage

Role = str
"""'conclusion', 'result', 'background' (aims, methods) or 'other'."""

_LABEL = re.compile(r"^([A-Z][A-Z &/,()-]{2,60}):\s+")
_CONCLUSION_LABEL = re.compile(
    r"CONCLU|INTERPRETATION|IMPLICATION|SUMMARY|RECOMMENDATION|KEY POINTS|MAIN POINTS|"
    r"PRACTICE POINTS|SIGNIFICANCE|DISCUSSION"
)
_RESULT_LABEL = re.compile(r"RESULT|FINDING|OUTCOME")
_BACKGROUND_LABEL = re.compile(
    r"BACKGROUND|INTRODUCTION|OBJECTIVE|\bAIMS?\b|PURPOSE|CONTEXT|RATIONALE|HYPOTHES|"
    r"METHOD|DESIGN|SETTING|PATIENT|PARTICIPANT|SUBJECT|INTERVENTION|MATERIAL|MEASURE|"
    r"PROCEDURE|STUDY"
)
_CONCLUSION_CUE = re.compile(
    r"^(in conclusion|in summary|to conclude|to summari[sz]e|overall|taken together|"
    r"collectively|altogether|thus|therefore|hence|consequently)\b|"
    r"\b(we conclude|conclusions?\b|(these|our|the) (findings|results|data|observations|"
    r"analyses) (suggest|indicate|show|demonstrate|support|confirm|imply|highlight|provide)|"
    r"(this|the present|our|the current) (study|trial|analysis|review|work) (suggests|shows|"
    r"indicates|demonstrates|confirms|found|provides|supports)|(is|are|was|were) associated with|"
    r"(is|are|was|were) (not )?(effective|safe|useful|beneficial|feasible|superior|inferior|"
    r"recommended)|should (be|not)|may be (considered|used|an? )|recommends?\b)",
    re.IGNORECASE,
)
_RESULT_CUE = re.compile(
    r"\b(p\s*[<=>≤]\s*0?\.\d|95\s*%|\bci\b|odds ratio|hazard ratio|relative risk|"
    r"\b(or|hr|rr|aor|ahr)\s*[=:(]|significant(ly)?|no (significant )?difference|"
    r"(increased|decreased|reduced|improved|higher|lower) (than|in|the|by|from)|\d+(\.\d+)?\s?%)",
    re.IGNORECASE,
)
_BACKGROUND_CUE = re.compile(
    r"^(the |our |a |an )?(main |primary |principal )?(aims?|purposes?|objectives?|goals?|"
    r"intent|hypothes[ie]s)\b.{0,40}\b(of|was|were|is|are)\b|"
    r"^to (evaluate|assess|determine|investigate|examine|compare|describe|explore|identify|"
    r"analy[sz]e|test|establish|review|report|estimate|measure|characteri[sz]e|quantify|"
    r"clarify|elucidate|study|ascertain|define|develop|validate)\b|"
    r"^(we|this (study|trial|analysis|review|paper|report)|the (present|current) (study|trial|"
    r"analysis)|our (study|trial))\b.{0,40}\b(aim|aimed|aims|sought|seek|seeks|set out|designed|"
    r"hypothesi[sz]ed|evaluated|evaluates|assessed|assesses|investigated|investigates|examined|"
    r"examines|compared|compares|reviewed|analy[sz]ed|studied|surveyed|recruited|enrolled|"
    r"conducted|performed|describe|describes|report on|explored|explores|focused)\b|"
    r"\b(were|was) (enrolled|included|recruited|randomi[sz]ed|reviewed|collected|obtained|"
    r"divided|allocated|stratified|selected|surveyed|interviewed|invited)\b|"
    r"\b(retrospective(ly)?|prospective(ly)?) (review|chart|cohort|study|analysis)\b.{0,40}"
    r"\b(was|were) (performed|conducted|undertaken)|"
    r"^(data|records|charts|medical records) (were|was) (collected|obtained|reviewed|extracted)|"
    r"\b(little|few|limited|no|scarce) (is|are|data|studies|evidence|information|research)\b"
    r".{0,30}\b(known|exist|available|reported|published|on|about|regarding)\b|"
    r"\b(remains?|is|are) (unclear|unknown|controversial|uncertain|poorly understood|debated)\b"
    r"(?!.{0,40}\b(we found|our (results|findings)))",
    re.IGNORECASE,
)
_BOILERPLATE = re.compile(
    r"^(key ?words?|mesh|medical subject headings|abbreviations?|trial registration|"
    r"clinical ?trials?\.gov|registration|funding|copyright|conflicts? of interest|"
    r"disclosures?|level of evidence|this article is protected|\(?c\)|©)\b",
    re.IGNORECASE,
)
_WORDS = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff]")

DESIGNS = {
    "practice_guideline": "guideline",
    "systematic_review": "systematic review",
    "randomized_controlled_trial": "randomized controlled trial",
    "clinical_study": "clinical study",
    "review": "narrative review",
    "case_report": "case report",
    "other": "design not classified",
}
DESIGNS_ZH = {
    "practice_guideline": "指南",
    "systematic_review": "系统综述",
    "randomized_controlled_trial": "随机对照试验",
    "clinical_study": "临床研究",
    "review": "综述",
    "case_report": "病例报告",
    "other": "研究设计未分类",
}


TAIL_PRIOR = (1.0, 0.6, 0.25)
"""How likely an unlabelled abstract's last, second-last and third-last sentences are its
conclusion (structured or not, an abstract ends with its conclusion, in one to three
sentences)."""

HEAD_SHARE = 0.2
"""An unlabelled sentence in the first fifth of its document is taken for background."""


@dataclass(frozen=True)
class Sentence:
    """One candidate sentence of one source, with its scoring parts."""

    marker: int
    text: str
    cue: Role
    """The role its own words suggest (:func:`role_of_text`)."""
    label: Role | None
    """The role of its section label; None when unlabelled."""
    position: float
    """Relative position in the document: 0 first, 1 last."""
    from_end: int | None
    """Sentences after it in the document (0: the last); None when the passage does not
    reach the document's end."""
    similarity: float = 0.0

    @property
    def role(self) -> Role:
        """'conclusion', 'result', 'background' or 'other': the label's, else the cue's,
        else the place's.

        >>> Sentence(1, "x", "other", None, 1.0, 0).role
        'conclusion'
        >>> Sentence(1, "x", "result", "conclusion", 1.0, 0).role
        'conclusion'
        """
        if self.label not in (None, "other"):
            return "background" if self.cue == "background" else str(self.label)
        if self.cue == "background":
            return "background"
        tail = self.from_end is not None and self.from_end < len(TAIL_PRIOR)
        if self.cue == "conclusion" or (tail and TAIL_PRIOR[self.from_end or 0] >= 0.5):
            return "conclusion"
        if self.cue == "result":
            return "result"
        return "background" if self.position <= HEAD_SHARE else "other"


def _norm(text: str) -> str:
    return " ".join(text.split())


def verbatim(quote: str, passage: str) -> bool:
    """Whether ``quote`` occurs word for word in ``passage`` (whitespace aside).

    >>> verbatim("Aspirin  lowered risk.", "Methods were X. Aspirin lowered\\nrisk. End.")
    True
    >>> verbatim("Aspirin raised risk.", "Aspirin lowered risk.")
    False
    """
    q = _norm(quote)
    return bool(q) and q in _norm(passage)


def _words(text: str) -> int:
    return len(_CJK.findall(text)) // 2 + len(_WORDS.findall(_CJK.sub(" ", text)))


def role_of_label(label: str) -> Role:
    """The role of a section label.

    >>> [role_of_label(x) for x in ("CONCLUSIONS", "RESULTS", "PATIENTS AND METHODS", "")]
    ['conclusion', 'result', 'background', 'other']
    >>> role_of_label("METHODS AND RESULTS")
    'result'
    """
    label = label.upper()
    if not label:
        return "other"
    if _CONCLUSION_LABEL.search(label):
        return "conclusion"
    if _RESULT_LABEL.search(label):
        return "result"
    if _BACKGROUND_LABEL.search(label):
        return "background"
    return "other"


def role_of_text(sentence: str) -> Role:
    """The role of an unlabelled sentence, from its cue words.

    >>> role_of_text("In conclusion, aspirin did not prevent stroke.")
    'conclusion'
    >>> role_of_text("We aimed to evaluate whether aspirin prevents stroke.")
    'background'
    >>> role_of_text("Stroke occurred in 4.1% vs 5.3% (p = 0.02).")
    'result'
    >>> role_of_text("Aspirin is widely used.")
    'other'
    """
    if sentence.rstrip().endswith("?") or _BACKGROUND_CUE.search(sentence):
        return "background"
    if _CONCLUSION_CUE.search(sentence):
        return "conclusion"
    if _RESULT_CUE.search(sentence):
        return "result"
    return "other"


def sentences_of(marker: int, passage: ScoredPassage, text: str) -> list[Sentence]:
    """The sentences of one source's shown ``text``, each with its cue, its section label's
    role and its place in the whole document, label prefixes stripped.

    >>> p = ScoredPassage(chunk_id="c", doc_id="d", text="", source="pubmed", score=1.0,
    ...                   chunk_index=1, n_chunks=2)
    >>> [(s.text, s.role, s.from_end)
    ...  for s in sentences_of(1, p, "RESULTS: A fell by 5%. CONCLUSIONS: B works.")]
    [('A fell by 5%.', 'result', 1), ('B works.', 'conclusion', 0)]
    """
    out: list[tuple[str, Role, Role | None]] = []
    # a passage's sections are "LABEL: text" pieces, one per line (or run together when the
    # shown text was normalized); split at each label
    for piece in re.split(r"(?:^|\s)(?=[A-Z][A-Z &/,()-]{2,60}:\s)", text):
        piece = piece.strip()
        if not piece:
            continue
        m = _LABEL.match(piece)
        label = role_of_label(m.group(1)) if m else None
        body = piece[m.end() :] if m else piece
        out.extend(
            (sent, role_of_text(sent), label)
            for sent in split_sentences(body)
            if not _BOILERPLATE.match(sent)
        )
    n = len(out)
    start = passage.chunk_index or 0
    span = len(passage.merged_chunk_ids) or 1
    total = passage.n_chunks
    at_end = total is not None and start + span >= total
    denom = max(total or (start + span), 1)
    sentences = []
    for j, (sent, cue, label) in enumerate(out):
        place = min(1.0, (start + span * (j + 1) / n) / denom)
        sentences.append(Sentence(marker, sent, cue, label, place, n - 1 - j if at_end else None))
    return sentences


def score_sentence(s: Sentence, settings: DigestSettings) -> float:
    """The sentence's score: its similarity to the question plus the weight of its role.
    A section label gives the role outright; an unlabelled sentence is a conclusion by its
    cue words or by its place at the end of the abstract (:data:`TAIL_PRIOR`), whichever is
    stronger.

    >>> cfg = DigestSettings()
    >>> middle = Sentence(1, "x", "other", None, 0.5, 5, similarity=0.5)
    >>> last = Sentence(1, "x", "other", None, 1.0, 0, similarity=0.5)
    >>> aim = Sentence(1, "x", "background", None, 0.1, 9, similarity=0.5)
    >>> score_sentence(last, cfg) > score_sentence(middle, cfg) > score_sentence(aim, cfg)
    True
    """
    w_c, w_r, w_b = settings.conclusion_weight, settings.result_weight, settings.background_weight
    if s.label not in (None, "other") or s.cue == "background":
        bonus = {"conclusion": w_c, "result": w_r, "background": -w_b}.get(s.role, 0.0)
        return round(s.similarity + bonus, 4)
    tail = TAIL_PRIOR[s.from_end] if s.from_end is not None and s.from_end < 3 else 0.0
    strength = max(tail, 0.6 if s.cue == "conclusion" else 0.0)
    bonus = w_c * strength
    if s.cue == "result":
        bonus = max(bonus, w_r)
    elif strength == 0 and s.position <= HEAD_SHARE:
        bonus = -w_b / 2
    return round(s.similarity + bonus, 4)


@dataclass(frozen=True)
class Quote:
    """A chosen sentence: what the digest quotes, and why."""

    marker: int
    sentence: str
    role: Role
    score: float
    subtask: str


def _design(p: ScoredPassage, lang: str = "en") -> str:
    names = DESIGNS_ZH if lang == "zh" else DESIGNS
    return names.get(p.evidence_level, p.evidence_level.replace("_", " "))


def source_note(p: ScoredPassage, lang: str = "en") -> str:
    """Study design, year and source of a quote (in Chinese for a Chinese question).

    >>> p = ScoredPassage(chunk_id="c", doc_id="pmid:1", pmid="1", text="t", source="pubmed",
    ...                   score=1.0, year=2019, evidence_level="randomized_controlled_trial")
    >>> source_note(p), source_note(p, "zh")
    ('randomized controlled trial, 2019, PubMed PMID 1', '随机对照试验，2019，PubMed PMID 1')
    """
    where = (
        f"PubMed PMID {p.pmid}"
        if p.pmid
        else f"DOI {p.doi}"
        if p.doi
        else f"{p.source}: {p.heading()[0][:80] or p.doc_id}"
    )
    if p.grade:
        where += f"，推荐等级 {p.grade}" if lang == "zh" else f", grade {p.grade}"
    sep = "，" if lang == "zh" else ", "
    return sep.join(x for x in (_design(p, lang), str(p.year or ""), where) if x)


def choose(
    question: str,
    sources: Sequence[tuple[int, ScoredPassage, str]],
    embedder: Embedder,
    settings: DigestSettings,
    *,
    subtask: str = "",
    taken: list[np.ndarray] | None = None,
    lexical: bool = False,
) -> list[Quote]:
    """The quotes for one question from its ``(marker, passage, shown text)`` sources, in the
    order given (best first); ``taken`` holds the vectors of sentences already quoted (for
    near-duplicates across subtasks) and is extended. ``lexical``: the embedding model cannot
    read the question's language (Chinese with an English-only model), so a sentence's
    similarity is the share of the question's words it contains, and near-duplicates are
    sentences with the same words."""
    taken = taken if taken is not None else []
    cands: list[Sentence] = []
    for marker, p, text in sources:
        sents = [
            s
            for s in sentences_of(marker, p, text)
            if _words(s.text) >= settings.min_words
            and verbatim(s.text, p.text)
            and not s.text.startswith("[sentence withheld")
            and not addressed_to_model(s.text)
        ]
        cands.extend(sents)
    if not cands:
        return []
    q = np.asarray(embedder.embed_query(question))
    vecs = np.asarray(embedder.embed_documents([s.text for s in cands]))
    by_marker: dict[int, list[tuple[Sentence, np.ndarray]]] = {}
    for s, v in zip(cands, vecs, strict=True):
        sim = overlap(question, s.text) if lexical else float(v @ q)
        if lexical:  # a one-hot of the sentence's words: equal words, dot product 1
            v = _word_vector(s.text)
        by_marker.setdefault(s.marker, []).append((replace(s, similarity=sim), v))
    out: list[Quote] = []
    for marker, _p, _text in sources:
        items = by_marker.get(marker, [])
        if not items:
            continue
        scored = [(score_sentence(s, settings), s, v) for s, v in items]
        scored = [
            t
            for t in scored
            if t[1].similarity >= settings.min_similarity
            # an aim or a method restates the question, it does not answer it (quoted only
            # when roles are switched off: background_weight = 0)
            and (t[1].role != "background" or not settings.background_weight)
        ]
        if not scored:
            continue
        scored.sort(key=lambda t: -t[0])
        picked: list[tuple[float, Sentence]] = []
        for sc, s, v in scored:
            if len(picked) >= settings.sentences_per_source:
                break
            if picked and (
                s.similarity < picked[0][1].similarity - settings.second_margin
                or s.role not in ("conclusion", "result")
            ):
                continue
            if any(float(v @ t) >= settings.duplicate_similarity for t in taken):
                continue
            picked.append((sc, s))
            taken.append(v)
        order = {"conclusion": 0, "result": 1}
        picked.sort(key=lambda t: (order.get(t[1].role, 2), -t[0]))
        out.extend(Quote(marker, s.text, s.role, sc, subtask) for sc, s in picked)
    return out


def _word_vector(text: str, dim: int = 4096) -> np.ndarray:
    """A unit vector of the hashed words of ``text`` (near-duplicates by words)."""
    v = np.zeros(dim)
    for w in terms(text):
        v[int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % dim] = 1.0
    n = np.linalg.norm(v)
    return v / n if n else v


def build(
    subtasks: Sequence[Subtask],
    sources: Sequence[tuple[int, ScoredPassage, str, set[str], float]],
    embedder: Embedder,
    settings: DigestSettings,
    *,
    label: str | None = None,
    lexical: bool = False,
    language: str = "en",
) -> Digest | None:
    """The digest over ``(marker, passage, shown text, subtask ids, relevance)`` sources; one
    group per subtask (a heading when there are several), each source quoted under the first
    subtask it serves; None when no source has a sentence worth quoting. ``language``: the
    question's ('zh': the label and source notes in Chinese)."""
    if label is None:
        label = DIGEST_LABEL_ZH if language == "zh" else DIGEST_LABEL
    groups: list[tuple[Subtask, list[tuple[int, ScoredPassage, str]]]] = []
    used: set[int] = set()
    if sources:
        floor = max(s[4] for s in sources) - settings.relevance_margin
        sources = [s for s in sources if s[4] >= floor]
    for sub in subtasks:
        mine = [s for s in sources if sub.id in s[3] and s[0] not in used]
        if not mine and len(subtasks) == 1:
            mine = [s for s in sources if s[0] not in used]
        mine = sorted(mine, key=lambda s: -s[4])[: settings.max_sources]
        mine.sort(key=lambda s: (-evidence_score(s[1].evidence_level), -s[4]))
        used.update(s[0] for s in mine)
        groups.append((sub, [(m, p, t) for m, p, t, _, _ in mine]))
    taken: list[np.ndarray] = []
    by_marker = {s[0]: s[1] for s in sources}
    lines = [label]
    citations: list[Citation] = []
    for sub, srcs in groups:
        quotes = choose(sub.question, srcs, embedder, settings, subtask=sub.id, taken=taken,
                        lexical=lexical)  # fmt: skip
        if not quotes:
            continue
        if len(groups) > 1:
            lines.append(f"{sub.question}")
        for qt in quotes:
            p = by_marker[qt.marker]
            note = source_note(p, language)
            lines.append(f"- “{qt.sentence}” [{qt.marker}] （{note}）" if language == "zh"
                         else f"- “{qt.sentence}” [{qt.marker}] ({note})")  # fmt: skip
            citations.append(Citation.of(qt.marker, p, qt.sentence, 1.0, evidence=qt.sentence))
    if not citations:
        return None
    return Digest(text="\n".join(lines), citations=tuple(citations))
