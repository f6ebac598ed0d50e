"""PubMed's notices on a record: retractions, errata, expressions of concern, updates.

PubMed links a retracted article to its retraction notice both ways: the article gets the
publication type "Retracted Publication" and a ``CommentsCorrections`` entry with
``RefType="RetractionIn"`` (MEDLINE: ``RIN``); the notice gets "Retraction of Publication" and
``RetractionOf`` (``ROF``). Errata (``ErratumIn``, ``EIN``), expressions of concern
(``ExpressionOfConcernIn``, ``ECI``) and updates (``UpdateIn``, ``UIN``) work alike. The
parsers call :func:`notice_fields` and keep the result in ``Document.extra``, from where the
index stores ``status`` (filterable) and the notices with each chunk.

>>> fields = notice_fields(("Journal Article", "Retracted Publication"),
...                        [("RetractionIn", "33333333", "Lancet. 2020;395(10240):1820")])
>>> fields["retracted"], fields["status"], fields["notices"][0]["pmid"]
(True, 'retracted', '33333333')
>>> notice_fields(("Journal Article",), [])
{}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# CommentsCorrections RefType -> MEDLINE field
REF_TYPES = {
    "RetractionIn": "RIN",
    "RetractionOf": "ROF",
    "ErratumIn": "EIN",
    "ErratumFor": "EFR",
    "ExpressionOfConcernIn": "ECI",
    "ExpressionOfConcernFor": "ECF",
    "UpdateIn": "UIN",
    "UpdateOf": "UOF",
}
MEDLINE_FIELDS = {v: k for k, v in REF_TYPES.items()}
RETRACTED_TYPES = frozenset({"Retracted Publication"})
NOTICE_TYPES = frozenset(
    {"Retraction of Publication", "Expression of Concern", "Published Erratum"}
)

RawNotice = tuple[str, str, str]  # (kind, PMID, source)


def status(publication_types: Sequence[str], kinds: Iterable[str]) -> str:
    """``retracted``, ``concern`` (an expression of concern), ``corrected`` (an erratum or
    update), ``notice`` (the record is itself a notice) or ``current``.

    >>> status(["Journal Article"], ["ErratumIn"]), status(["Retraction of Publication"], [])
    ('corrected', 'notice')
    """
    kinds = set(kinds)
    if RETRACTED_TYPES & set(publication_types) or "RetractionIn" in kinds:
        return "retracted"
    if "ExpressionOfConcernIn" in kinds:
        return "concern"
    if NOTICE_TYPES & set(publication_types):
        return "notice"
    if kinds & {"ErratumIn", "UpdateIn"}:
        return "corrected"
    return "current"


def notice_fields(publication_types: Sequence[str], notices: Sequence[RawNotice]) -> dict[str, Any]:
    """The ``Document.extra`` entries for a record's notices (nothing for an ordinary record,
    so its content hash is unchanged)."""
    kept = [(k, p, s) for k, p, s in notices if k in REF_TYPES]
    state = status(publication_types, (k for k, _, _ in kept))
    if state == "current":
        return {}
    return {
        "status": state,
        "retracted": state == "retracted",
        "notices": [{"kind": k, "pmid": p, "source": s} for k, p, s in kept],
    }


def from_xml(citation: Any) -> list[RawNotice]:
    """The notices of a ``MedlineCitation`` element."""
    out: list[RawNotice] = []
    for cc in citation.findall("CommentsCorrectionsList/CommentsCorrections"):
        kind = cc.get("RefType") or ""
        if kind in REF_TYPES:
            pmid = " ".join("".join(cc.findtext("PMID") or "").split())
            source = " ".join("".join(cc.findtext("RefSource") or "").split())
            out.append((kind, pmid, source))
    return out


_PMID = re.compile(r"PMID:\s*(\d+)")


def from_medline(record: Mapping[str, Any]) -> list[RawNotice]:
    """The notices of a MEDLINE record (``RIN - Lancet. 2020;395:1820. PMID: 33333333``).

    >>> from_medline({"RIN": ["Lancet. 2020;395:1820. PMID: 33333333"]})
    [('RetractionIn', '33333333', 'Lancet. 2020;395:1820.')]
    """
    out: list[RawNotice] = []
    for field, kind in MEDLINE_FIELDS.items():
        values = record.get(field) or []
        for v in [values] if isinstance(values, str) else values:
            m = _PMID.search(v)
            source = _PMID.sub("", v).strip()
            out.append((kind, m.group(1) if m else "", source))
    return out
