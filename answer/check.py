"""Check: every sentence of a generated answer against the sources it cites.

:func:`check_citations` splits the model's text into sentences, drops the ones that claim
nothing (questions, list debris, repeats), asks the verifier whether each cited source
supports its sentence, attributes an uncited sentence to the source that supports it (status
``added``), and removes (or, with ``verify.unsupported = "flag"``, flags) the rest. A
citation to a source that was not retrieved cannot survive. The result is a
:class:`CitationCheck`; when nothing is supported the answer abstains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from answer.compose import Sources
from answer.injection import about_the_rules
from answer.types import Citation, CitationStatus, RemovedClaim
from answer.verify import Verifier, content_words, parse_markers, split_sentences
from retrieval.settings import VerifySettings

Key = tuple[int, int]  # (sentence index, source marker)
_ENDS_A_SENTENCE = re.compile(r"[.!?。](\s*\[[\d,\s–-]+\])*$")


@dataclass
class CitationCheck:
    """The verified answer: the kept sentences with their citations, and what was removed."""

    sentences: list[str] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    removed: list[RemovedClaim] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def supported(self) -> bool:
        """Whether any citation survived as support (flagged ones do not count)."""
        return any(c.status != "unsupported" for c in self.citations)


def claims(
    text: str, cut: bool = False
) -> tuple[list[str], list[tuple[str, list[int]]], list[RemovedClaim]]:
    """The sentences of ``text``, each parsed into (clean text, markers); sentences that claim
    nothing become ``("", [])`` and are reported as removed. ``cut``: the model stopped at
    its token limit, so an unfinished last sentence is dropped.

    >>> sents, parsed, removed = claims("Aspirin cuts stroke risk [1]. Why? Aspirin cuts "
    ...                                 "stroke risk [2].")
    >>> [p[0] for p in parsed], [r.reason for r in removed]
    (['Aspirin cuts stroke risk.', '', ''], ['not a statement', 'repeats an earlier sentence'])
    """
    sentences = split_sentences(text)
    if cut and sentences and not _ENDS_A_SENTENCE.search(sentences[-1]):
        sentences = sentences[:-1]
    parsed = [parse_markers(s) for s in sentences]
    removed: list[RemovedClaim] = []
    seen: set[str] = set()
    for i, (clean, markers) in enumerate(parsed):  # questions and list debris claim nothing
        key = " ".join(content_words(clean))
        if clean and key in seen:
            removed.append(RemovedClaim(sentence=sentences[i], reason="repeats an earlier "
                                        "sentence", markers=tuple(markers)))  # fmt: skip
            parsed[i] = ("", [])
            continue
        seen.add(key)
        if clean and about_the_rules(clean):  # never a finding, whatever it cites
            why = "about how the answer is made, not the evidence"
            removed.append(RemovedClaim(sentence=sentences[i], reason=why, markers=tuple(markers)))
            parsed[i] = ("", [])
            continue
        question = clean.endswith(("?", "？"))
        if clean and (question or len(content_words(clean)) < 3):
            if question or content_words(clean):
                removed.append(RemovedClaim(sentence=sentences[i], reason="not a statement",
                                            markers=tuple(markers)))  # fmt: skip
            parsed[i] = ("", [])
    return sentences, parsed, removed


def _attribute(
    parsed: Sequence[tuple[str, list[int]]],
    uncited: Sequence[int],
    sources: Sources,
    verifier: Verifier,
) -> dict[int, tuple[int, Any]]:
    """For each uncited sentence, the source that supports it best, if any does."""
    n = len(sources.passages)
    judged = verifier.judge([(parsed[i][0], text) for i in uncited for text in sources.shown])
    out: dict[int, tuple[int, Any]] = {}
    for j, i in enumerate(uncited):
        row = judged[j * n : (j + 1) * n]
        best = max(range(n), key=lambda m: row[m].score)
        if row[best].supported:
            out[i] = (best + 1, row[best])
    return out


def _why_removed(markers: Sequence[int], n: int) -> str:
    if not markers:
        return "no citation and no retrieved source supports it"
    if all(not 1 <= m <= n for m in markers):
        return "cites a source that was not retrieved"
    return "the cited source does not support it"


def _with_markers(clean: str, good: Sequence[int]) -> str:
    """The sentence, tidied, with its surviving markers before the final stop."""
    body = clean.strip().lstrip(":;,.-–•* ").rstrip()
    end = body[-1] if body and body[-1] in ".!?。！？" else ""
    body = body[:-1] if end else body
    return f"{body} {''.join(f'[{m}]' for m in good)}{end or '.'}"


def check_citations(
    text: str, sources: Sources, verifier: Verifier, vs: VerifySettings, *, cut: bool = False
) -> CitationCheck:
    """Verify the citations of a generated answer (see the module doc)."""
    n = len(sources.passages)
    sentences, parsed, removed = claims(text, cut)
    keys: list[Key] = [(i, m) for i, (_, markers) in enumerate(parsed) for m in markers
                       if 1 <= m <= n]  # fmt: skip
    pairs = [(parsed[i][0], sources.shown[m - 1]) for i, m in keys]
    verdicts = dict(zip(keys, verifier.judge(pairs), strict=True))

    def supported(i: int, m: int) -> bool:
        return (i, m) in verdicts and verdicts[(i, m)].supported

    uncited = [i for i, (clean, markers) in enumerate(parsed)
               if clean and not any(supported(i, m) for m in markers)]  # fmt: skip
    attributed: dict[int, tuple[int, Any]] = {}
    if vs.attribute_uncited and uncited:
        attributed = _attribute(parsed, uncited, sources, verifier)
    out = CitationCheck(removed=removed)
    for i, (clean, markers) in enumerate(parsed):
        if not clean:
            continue
        good = [m for m in markers if supported(i, m)]
        bad = [m for m in markers if m not in good]
        status: CitationStatus = "verified"
        if not good and i in attributed:
            m, verdict = attributed[i]
            verdicts[(i, m)] = verdict
            good, status = [m], "added"
        if not good:
            unchecked = [verdicts[(i, m)].unchecked for m in markers
                         if (i, m) in verdicts and verdicts[(i, m)].unchecked]  # fmt: skip
            if vs.unsupported == "flag" and markers and all(1 <= m <= n for m in markers):
                good, status = list(markers), "unsupported"
            else:
                why = unchecked[0] if unchecked else _why_removed(markers, n)
                out.removed.append(
                    RemovedClaim(sentence=sentences[i], reason=why, markers=tuple(markers))
                )
                continue
        if bad:
            reason = (
                "citation dropped: the source does not support the sentence"
                if any(1 <= m <= n for m in bad)
                else "citation dropped: no such source"
            )
            out.removed.append(
                RemovedClaim(sentence=sentences[i], reason=reason, markers=tuple(bad))
            )
        out.sentences.append(_with_markers(clean, good))
        for m in good:
            v, p = verdicts[(i, m)], sources.passages[m - 1]
            ok: CitationStatus = (
                "unsupported" if status == "verified" and not v.supported else status
            )
            out.citations.append(Citation.of(m, p, clean, v.score, ok, v.evidence))
    return out
