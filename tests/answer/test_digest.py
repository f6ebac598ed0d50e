"""The evidence digest: the sentence scorer with the real MiniLM, and whole answers on real
PubMedQA abstracts (the default embedded setup answers with a digest, never a model)."""

from __future__ import annotations

import json

import pytest

from answer import REVIEW_NOTICE, Assistant
from answer.digest import build, choose, score_sentence, sentences_of, verbatim
from answer.types import DIGEST_LABEL, SOURCES_SAY_LABEL
from planner.chat import ChatError
from planner.types import Subtask
from retrieval.settings import DigestSettings
from retrieval.types import ScoredPassage
from tests.answer_fixture import INJECTION, AnswerIndex
from tests.conftest import shared_path
from tests.scripted_chat import ScriptedChat

CFG = DigestSettings()


def _p(i: int, text: str, *, n_chunks: int | None = 1, level: str = "other",
       year: int | None = 2015) -> ScoredPassage:  # fmt: skip
    return ScoredPassage(chunk_id=f"c{i}", doc_id=f"pmid:{i}", pmid=str(i), text=text,
                         source="pubmed", score=1.0, chunk_index=0, n_chunks=n_chunks,
                         evidence_level=level, year=year)  # fmt: skip


ABSTRACT = (
    "Statins are widely prescribed to older adults. We aimed to determine whether statin "
    "therapy reduces the risk of a first stroke in adults over 75 years. A total of 4,120 "
    "adults were enrolled from 12 centres. Stroke occurred in 3.1% of the statin group and "
    "4.4% of the placebo group (p = 0.02). Statin therapy reduced the risk of a first stroke "
    "in adults over 75 years."
)
QUESTION = "Do statins reduce the risk of a first stroke in adults over 75?"


def test_the_conclusion_is_quoted_first_and_the_aim_never(minilm) -> None:
    quotes = choose(QUESTION, [(1, _p(1, ABSTRACT), ABSTRACT)], minilm, CFG)
    assert [q.sentence for q in quotes] == [
        "Statin therapy reduced the risk of a first stroke in adults over 75 years.",
        "Stroke occurred in 3.1% of the statin group and 4.4% of the placebo group (p = 0.02).",
    ]
    assert quotes[0].role == "conclusion"  # by its place: the abstract's last sentence
    # the aim restates the question almost word for word: by similarity alone it wins
    cut = ABSTRACT.rsplit(" Statin therapy reduced", 1)[0]
    flat = DigestSettings(conclusion_weight=0, result_weight=0, background_weight=0)
    alone = choose(QUESTION, [(1, _p(1, cut), cut)], minilm, flat)
    assert any(q.sentence.startswith("We aimed to determine") for q in alone)
    scored = choose(QUESTION, [(1, _p(1, cut), cut)], minilm, CFG)
    assert scored[0].sentence.startswith("Stroke occurred in 3.1%")
    assert not any(q.sentence.startswith("We aimed") for q in scored)


def test_section_labels_beat_position(minilm) -> None:
    text = (
        "CONCLUSIONS: Statin therapy reduced the risk of a first stroke in adults over 75.\n"
        "METHODS: We enrolled adults over 75 years at 12 centres to study stroke risk."
    )
    sents = sentences_of(1, _p(1, text), text)
    assert [(s.role, s.from_end) for s in sents] == [("conclusion", 1), ("background", 0)]
    quotes = choose(QUESTION, [(1, _p(1, text), text)], minilm, CFG)
    assert quotes[0].sentence.startswith("Statin therapy reduced")
    assert all(not q.sentence.startswith("We enrolled") for q in quotes)


def test_the_place_of_a_sentence_counts_only_at_the_documents_end() -> None:
    text = "One thing was seen here today. Another thing was seen here today."
    first_chunk = sentences_of(1, _p(1, text, n_chunks=3), text)
    assert [s.from_end for s in first_chunk] == [None, None]  # the document goes on
    whole = sentences_of(1, _p(1, text), text)
    assert [s.from_end for s in whole] == [1, 0]
    assert score_sentence(whole[1], CFG) > score_sentence(first_chunk[1], CFG)


def test_near_duplicates_caps_order_and_notes(minilm) -> None:
    rct = ("Statin therapy reduced the risk of a first stroke in adults over 75 years. "
           "Muscle pain was reported by 2% of patients.")  # fmt: skip
    dup = "Statin therapy reduced the risk of a first stroke in adults over 75 years."
    srcs = [(1, _p(1, dup, level="other"), dup, {"s1"}, 0.7),
            (2, _p(2, rct, level="randomized_controlled_trial"), rct, {"s1"}, 0.69)]  # fmt: skip
    out = build([Subtask(id="s1", question=QUESTION, queries=(QUESTION,))], srcs, minilm, CFG)
    assert out is not None
    lines = out.text.splitlines()
    assert lines[0] == DIGEST_LABEL
    # the RCT comes first (evidence level), and source 1 only repeats it: not quoted again
    assert lines[1].startswith("- “Statin therapy reduced") and "[2]" in lines[1]
    assert "randomized controlled trial, 2015, PubMed PMID 2" in lines[1]
    assert [c.marker for c in out.citations] == [2] * len(out.citations)
    assert all(verbatim(c.sentence, c.text) for c in out.citations)
    one = DigestSettings(sentences_per_source=1)
    assert len(build([Subtask(id="s1", question=QUESTION, queries=(QUESTION,))], srcs, minilm,
                     one).citations) == 1  # type: ignore[union-attr]  # fmt: skip


def test_off_topic_sources_are_not_padded_in(minilm) -> None:
    other = "Vitamin D supplements did not change bone density in young athletes at all."
    srcs = [(1, _p(1, ABSTRACT), ABSTRACT, {"s1"}, 0.8), (2, _p(2, other), other, {"s1"}, 0.35)]
    out = build([Subtask(id="s1", question=QUESTION, queries=(QUESTION,))], srcs, minilm, CFG)
    assert out is not None and {c.marker for c in out.citations} == {1}


def test_bad_input_gives_no_digest_and_withheld_text_is_never_quoted(minilm) -> None:
    sub = [Subtask(id="s1", question=QUESTION, queries=(QUESTION,))]
    tiny = "Yes. No. Maybe so. See above."
    assert build(sub, [(1, _p(1, tiny), tiny, {"s1"}, 0.9)], minilm, CFG) is None
    assert build(sub, [], minilm, CFG) is None
    shown = "[sentence withheld: it addressed instructions to the assistant] Statins help a lot."
    out = choose(QUESTION, [(1, _p(1, f"{INJECTION} Statins help a lot."), shown)], minilm, CFG)
    assert all("withheld" not in q.sentence for q in out)
    # a "quote" not in its passage is never shown, whatever the shown text says
    assert choose(QUESTION, [(1, _p(1, "Other text."), ABSTRACT)], minilm, CFG) == []


# -- whole answers on real data ----------------------------------------------------------


def test_default_embedded_setup_answers_with_a_digest(answer_index: AnswerIndex) -> None:
    with Assistant(answer_index.settings()) as a:
        assert a.digest_only
        ans = a.ask(answer_index.question)
    assert ans.digest and not ans.abstained and not ans.degraded
    assert "chat" not in ans.models  # the embedded model is not even loaded
    assert ans.text.startswith(DIGEST_LABEL) and ans.notice == REVIEW_NOTICE
    own = [c for c in ans.citations if c.doc_id == f"pmid:{answer_index.pmid}"]
    assert own, ans.text
    for c in ans.citations:
        assert verbatim(c.sentence, c.text) and c.status == "verified"
        ref = ans.references[c.marker - 1]
        assert ref.cited and ref.chunk_id == c.chunk_id
        assert f"“{c.sentence}” [{c.marker}]" in ans.text
    # PubMedQA has no titles: the first words stand in, marked
    ref = ans.references[own[0].marker - 1]
    assert ref.title_from_text and ref.title.endswith("…") and "untitled" in ref.shown_title()
    assert "untitled" in ans.render()


def test_digest_on_real_pubmedqa_cites_own_abstract_and_its_conclusion(
    answer_index: AnswerIndex,
) -> None:
    """20 PubMedQA questions over the answer index (40 abstracts, the USPSTF guidelines): the
    question's own abstract is cited, the quoted sentence of it is from its CONCLUSIONS (which
    the corpus does not label)."""
    corpus = shared_path("pubmedqa", "beir_dev", "corpus.jsonl").read_text().splitlines()[:40]
    ids = [json.loads(x)["_id"] for x in corpus]
    dev = json.loads(shared_path("pubmedqa", "pqal_dev.json").read_text())
    conclusions = {}
    for line in shared_path("pubmedqa", "abstracts.jsonl").open():
        rec = json.loads(line)
        conclusions[rec["pmid"]] = " ".join(
            s["text"] for s in rec["sections"] if s["label"].startswith("CONCLU")
        )
    settings = answer_index.settings(answer={"mode": "digest"})
    asked = [p for p in ids if p in dev][:20]
    cited = concl = 0
    with Assistant(settings) as a:
        for pmid in asked:
            ans = a.ask(dev[pmid]["QUESTION"])
            assert ans.digest and not ans.abstained, dev[pmid]["QUESTION"]
            assert all(verbatim(c.sentence, c.text) for c in ans.citations)
            own = [c for c in ans.citations if c.doc_id == f"pmid:{pmid}"]
            cited += bool(own)
            concl += any(" ".join(c.sentence.split()) in " ".join(conclusions[pmid].split())
                         for c in own)  # fmt: skip
    # the similarity-only choice (the old fallback) quotes a conclusion about half the time
    assert len(asked) == 20 and cited >= 18 and concl >= 15, (cited, concl, len(asked))


def test_model_down_and_served_abstention(answer_index: AnswerIndex) -> None:
    with Assistant(answer_index.settings(), chat=ScriptedChat(ChatError("cannot reach"))) as a:
        ans = a.ask(answer_index.question)
    assert ans.digest and ans.degraded and not ans.abstained
    assert any("cannot reach" in w and "digest" in w for w in ans.warnings)
    # a served model whose sentences all fail verification: it abstains, and shows the digest
    with Assistant(
        answer_index.settings(), chat=ScriptedChat("The moon is made of cheese [1].")
    ) as a:
        ans = a.ask(answer_index.question)
    assert ans.abstained and not ans.digest and not ans.citations
    assert ans.sources_say is not None and ans.sources_say.citations
    assert all(verbatim(c.sentence, c.text) for c in ans.sources_say.citations)
    assert f"{SOURCES_SAY_LABEL}:" in ans.render() and DIGEST_LABEL not in ans.sources_say.text


@pytest.mark.parametrize("mode", ["digest", "synthesize"])
def test_mode_setting_wins_over_the_model(answer_index: AnswerIndex, mode: str) -> None:
    chat = ScriptedChat("Nothing supported here [1].")
    with Assistant(answer_index.settings(answer={"mode": mode}), chat=chat) as a:
        ans = a.ask(answer_index.question)
    assert ans.digest is (mode == "digest")
    # a digest never asks the model to write the answer (only, served, for the consensus)
    generated = [m for m in chat.sent if m[0].content.startswith("You are evidex")]
    assert (generated == []) is (mode == "digest")
