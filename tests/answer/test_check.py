"""Check: citations against their sources, with a scripted verifier (the rules exactly)."""

from __future__ import annotations

from collections.abc import Sequence

from answer.check import check_citations, claims
from answer.compose import Sources
from answer.verify import Judgement
from retrieval.settings import VerifySettings
from retrieval.types import ScoredPassage


class KeywordVerifier:
    """Supports a claim when the passage contains the claim's first word (lower-cased)."""

    name = "keyword"

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        out = []
        for claim, passage in pairs:
            ok = claim.split()[0].lower() in passage.lower()
            out.append(Judgement(ok, 0.9 if ok else 0.1, passage if ok else ""))
        return out


SOURCES = Sources.of(
    [ScoredPassage(chunk_id=f"c{i}", doc_id=f"pmid:{i}", text=t, source="pubmed", score=1.0)
     for i, t in enumerate(["Aspirin lowers stroke risk.", "Statins lower cholesterol."], 1)],
    1000,
)  # fmt: skip


def test_verified_added_and_removed() -> None:
    text = (
        "Aspirin lowers the stroke risk in adults [1]. "  # verified
        "Statins lower cholesterol levels in adults. "  # uncited: attributed to [2]
        "Warfarin prevents emboli in most patients [1]. "  # unsupported: removed
        "Heparin also helps a great many people [7]. "  # only a source that does not exist
        "Aspirin is cheap and widely available [9]."  # a bad marker, but [1] supports it
    )
    checked = check_citations(text, SOURCES, KeywordVerifier(), VerifySettings())
    assert [(c.marker, c.status) for c in checked.citations] == [
        (1, "verified"), (2, "added"), (1, "added")
    ]  # fmt: skip
    assert checked.supported and checked.text == (
        "Aspirin lowers the stroke risk in adults [1]. Statins lower cholesterol levels in "
        "adults [2]. Aspirin is cheap and widely available [1]."
    )
    reasons = {r.sentence.split()[0]: r.reason for r in checked.removed}
    assert reasons == {"Warfarin": "the cited source does not support it",
                       "Heparin": "cites a source that was not retrieved",
                       "Aspirin": "citation dropped: no such source"}  # fmt: skip


def test_flag_mode_keeps_an_unsupported_sentence_flagged() -> None:
    checked = check_citations("Warfarin prevents emboli in most patients [1].", SOURCES,
                              KeywordVerifier(), VerifySettings(unsupported="flag"))  # fmt: skip
    assert [(c.marker, c.status) for c in checked.citations] == [(1, "unsupported")]
    assert not checked.supported  # a flag is no support: the answer abstains


def test_a_cut_answer_drops_its_unfinished_sentence() -> None:
    text = "Aspirin lowers stroke risk in adults [1]. Statins lower the"
    assert len(claims(text, cut=True)[0]) == 1 and len(claims(text)[0]) == 2
    checked = check_citations(text, SOURCES, KeywordVerifier(), VerifySettings(), cut=True)
    assert checked.text == "Aspirin lowers stroke risk in adults [1]."
