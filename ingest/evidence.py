"""Evidence level of a document, from its publication types (or title as a fallback)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from retrieval.errors import InputError
from retrieval.types import GRADES, EvidenceLevel, parse_grade

__all__ = ["GRADES", "evidence_level", "parse_grade", "parse_level"]

# Checked in order: the strongest design a document declares wins.
_RULES: tuple[tuple[EvidenceLevel, tuple[str, ...]], ...] = (
    (
        EvidenceLevel.GUIDELINE,
        ("practice guideline", "guideline", "consensus development conference"),
    ),
    (
        EvidenceLevel.SYSTEMATIC_REVIEW,
        ("systematic review", "meta-analysis", "network meta-analysis"),
    ),
    (
        EvidenceLevel.RCT,
        ("randomized controlled trial", "pragmatic clinical trial", "equivalence trial"),
    ),
    (
        EvidenceLevel.CLINICAL_STUDY,
        (
            "clinical trial",
            "controlled clinical trial",
            "observational study",
            "comparative study",
            "multicenter study",
            "evaluation study",
            "validation study",
            "clinical study",
            "adaptive clinical trial",
            "twin study",
        ),
    ),
    (EvidenceLevel.REVIEW, ("review", "review-article", "scoping review")),
    (EvidenceLevel.CASE_REPORT, ("case reports", "case report", "case-report")),
)

_TITLE_RULES: tuple[tuple[EvidenceLevel, re.Pattern[str]], ...] = (
    (
        EvidenceLevel.GUIDELINE,
        re.compile(r"\b(guideline|recommendation statement|consensus statement)s?\b", re.I),
    ),
    (
        EvidenceLevel.SYSTEMATIC_REVIEW,
        re.compile(r"\b(systematic review|meta-?analys[ie]s)\b", re.I),
    ),
    (EvidenceLevel.RCT, re.compile(r"\brandomi[sz]ed\b.*\b(trial|study)\b|\bRCT\b", re.I)),
    (EvidenceLevel.CASE_REPORT, re.compile(r"\bcase report\b|\ba case of\b", re.I)),
    (EvidenceLevel.REVIEW, re.compile(r"\b(a )?review\b", re.I)),
)


def evidence_level(publication_types: Iterable[str] = (), title: str = "") -> EvidenceLevel:
    """Classify a document.

    >>> evidence_level(["Journal Article", "Randomized Controlled Trial"])
    <EvidenceLevel.RCT: 'randomized_controlled_trial'>
    >>> evidence_level(["Review", "Meta-Analysis"]).value
    'systematic_review'
    >>> evidence_level([], "Aspirin for primary prevention: a randomized controlled trial").value
    'randomized_controlled_trial'
    >>> evidence_level(["Journal Article"]).value
    'other'
    >>> evidence_level(["Clinical Trial, Phase III"]).value
    'clinical_study'
    """
    # "Clinical Trial, Phase III" counts as "clinical trial"
    types = {t.split(",")[0].strip().lower() for t in publication_types if t}
    for level, names in _RULES:
        if types.intersection(names):
            return level
    if title:
        for level, pattern in _TITLE_RULES:
            if pattern.search(title):
                return level
    return EvidenceLevel.OTHER


_LEVEL_WORDS = {
    "guideline": EvidenceLevel.GUIDELINE,
    "practice guideline": EvidenceLevel.GUIDELINE,
    "clinical practice guideline": EvidenceLevel.GUIDELINE,
    "recommendation": EvidenceLevel.GUIDELINE,
    "systematic review": EvidenceLevel.SYSTEMATIC_REVIEW,
    "meta-analysis": EvidenceLevel.SYSTEMATIC_REVIEW,
    "rct": EvidenceLevel.RCT,
    "randomized controlled trial": EvidenceLevel.RCT,
    "clinical study": EvidenceLevel.CLINICAL_STUDY,
    "clinical trial": EvidenceLevel.CLINICAL_STUDY,
    "review": EvidenceLevel.REVIEW,
    "case report": EvidenceLevel.CASE_REPORT,
    "other": EvidenceLevel.OTHER,
}


def parse_level(value: str) -> EvidenceLevel:
    """An evidence level by its name or a common synonym; a clear error otherwise.

    >>> parse_level("Practice Guideline").value, parse_level("randomized_controlled_trial").value
    ('practice_guideline', 'randomized_controlled_trial')
    >>> parse_level("folklore")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    retrieval.errors.InputError: unknown evidence level 'folklore': use one of ...
    """
    v = " ".join(str(value).replace("_", " ").replace("-", " ").lower().split())
    for level in EvidenceLevel:
        if v == level.value.replace("_", " "):
            return level
    found = _LEVEL_WORDS.get(v) or _LEVEL_WORDS.get(v.replace("meta analysis", "meta-analysis"))
    if found is None:
        raise InputError(
            f"unknown evidence level {value!r}: use one of "
            f"{', '.join(x.value for x in EvidenceLevel)} (or guideline, rct, systematic review, "
            "...)"
        )
    return found
