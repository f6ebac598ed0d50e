"""What the chat shows, as plain functions of an :class:`answer.Answer` (no Streamlit here,
so the rules are unit-tested directly): linked citation markers, evidence badges, reference
titles and the look of insufficient-evidence answers."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from answer.types import Answer, Citation, Reference

BADGES = {
    "practice_guideline": ("Guideline", "green"),
    "systematic_review": ("Systematic review", "green"),
    "randomized_controlled_trial": ("RCT", "blue"),
    "clinical_study": ("Clinical study", "blue"),
    "review": ("Review", "orange"),
    "case_report": ("Case report", "orange"),
    "other": ("Other", "gray"),
}


def badge(level: str, lang: str = "en") -> str:
    """Streamlit markdown for an evidence-level badge.

    >>> badge("randomized_controlled_trial"), badge("randomized_controlled_trial", "zh")
    (':blue-badge[RCT]', ':blue-badge[随机对照试验]')
    >>> badge("unknown")
    ':gray-badge[unknown]'
    """
    from ui.i18n import BADGES_ZH

    label, color = BADGES.get(level, (level, "gray"))
    return f":{color}-badge[{BADGES_ZH.get(level, label) if lang == 'zh' else label}]"


STANCE_BADGES = {
    "supports": ("supports", "green"),
    "contradicts": ("contradicts", "red"),
    "mixed": ("mixed", "orange"),
    "does_not_address": ("does not address", "gray"),
}


def stance_badge(stance: str, lang: str = "en") -> str:
    """A source's stance on the question as a badge.

    >>> stance_badge("contradicts"), stance_badge("contradicts", "zh")
    (':red-badge[contradicts]', ':red-badge[反对]')
    """
    from ui.i18n import STANCES_ZH

    label, color = STANCE_BADGES.get(stance, (stance, "gray"))
    return f":{color}-badge[{STANCES_ZH.get(stance, label) if lang == 'zh' else label}]"


def link_markers(text: str, markers: Sequence[int]) -> str:
    """Inline ``[n]`` markers as links to their reference card (anchors ``#ref-n``); markers
    with no reference stay plain text.

    >>> link_markers("Aspirin helps [1][3].", [1])
    'Aspirin helps [\\\\[1\\\\]](#ref-1)[3].'
    """
    known = set(markers)

    def sub(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return f"[\\[{n}\\]](#ref-{n})" if n in known else m.group(0)

    return re.sub(r"\[(\d{1,3})\]", sub, text)


def reference_title(ref: Reference) -> str:
    """``[n] Title — Journal, Year`` (what an expander shows); an untitled document's first
    words are marked as such.

    >>> r = Reference(marker=2, doc_id="pmid:1", chunk_id="c", title="Aspirin trial",
    ...               journal="Lancet", year=2019, source="pubmed", evidence_level="review")
    >>> reference_title(r)
    '[2] Aspirin trial — Lancet, 2019'
    """
    where = ", ".join(str(x) for x in (ref.journal, ref.year) if x)
    title = ref.shown_title()
    return f"[{ref.marker}] {title}{f' — {where}' if where else ''}"


def digest_markdown(text: str, markers: Sequence[int]) -> str:
    r"""A digest as markdown: its label in italics, subtask headings in bold, one list item
    per quote, markers linked.

    >>> print(digest_markdown("Evidence digest: quoted.\n- “A fell.” [1] (RCT, 2020)", [1]))
    *Evidence digest: quoted.*
    <BLANKLINE>
    - “A fell.” [\[1\]](#ref-1) (RCT, 2020)
    """
    out = []
    for i, line in enumerate(text.splitlines()):
        if line.startswith("- "):
            out.append(link_markers(line, markers))
        elif i == 0 and line.startswith(("Evidence digest", "What the sources say", "证据摘要")):
            out += [f"*{line}*", ""]
        elif line.strip():
            out += ["", f"**{line}**", ""]
    return "\n".join(out)


def reference_link(ref: Reference) -> str | None:
    """Where a clinician opens the source: its URL, else PubMed, else the DOI."""
    if ref.url:
        return ref.url
    if ref.pmid:
        return f"https://pubmed.ncbi.nlm.nih.gov/{ref.pmid}/"
    if ref.doi:
        return f"https://doi.org/{ref.doi}"
    return None


def citations_by_marker(answer: Answer) -> dict[int, list[Citation]]:
    out: dict[int, list[Citation]] = {}
    for c in answer.citations:
        out.setdefault(c.marker, []).append(c)
    return out


def removed_markers(answer: Answer) -> set[int]:
    """Markers that only appeared in sentences removed as unsupported."""
    kept = {c.marker for c in answer.citations if c.status != "unsupported"}
    gone = {m for r in answer.removed for m in r.markers}
    return gone - kept


def kind(answer: Answer) -> str:
    """'insufficient' (abstained), 'digest' (the sources quoted, no model synthesis: the
    embedded default or answer.mode 'digest'), 'degraded' (a digest because the model was
    unavailable) or 'answer'."""
    if answer.abstained:
        return "insufficient"
    if answer.degraded:
        return "degraded"
    return "digest" if answer.digest else "answer"


def filters_from(values: Mapping[str, Any]) -> dict[str, Any]:
    """Sidebar values as ``SearchFilters`` fields (empty ones left out).

    >>> filters_from({"years": (2010, 2024), "year_bounds": (1950, 2026),
    ...               "evidence_levels": ["review"], "sources": [], "languages": []})
    {'year_from': 2010, 'year_to': 2024, 'evidence_levels': ('review',)}
    """
    out: dict[str, Any] = {}
    lo, hi = values.get("years") or (None, None)
    bounds = values.get("year_bounds") or (None, None)
    if lo is not None and lo != bounds[0]:
        out["year_from"] = lo
    if hi is not None and hi != bounds[1]:
        out["year_to"] = hi
    for key in ("evidence_levels", "sources", "languages"):
        if values.get(key):
            out[key] = tuple(values[key])
    return out
