from pathlib import Path

import pytest

from answer.verify import NliVerifier, SimilarityVerifier, parse_markers, split_sentences
from retrieval.settings import VerifySettings
from tests.conftest import build_tiny_model

PASSAGE = (
    "In this randomized trial of 1,200 adults with hypertension, chlorthalidone lowered "
    "systolic blood pressure by 11 mmHg compared with placebo. Adverse events were rare. "
    "Hypokalemia occurred in 4% of participants."
)


def test_similarity_verifier_on_the_real_model(minilm) -> None:
    v = SimilarityVerifier(minilm)
    claims = [
        "Chlorthalidone lowered systolic blood pressure by 11 mmHg versus placebo.",  # restated
        # reworded
        "Chlorthalidone reduces systolic pressure compared with placebo in hypertension.",
        "Chlorthalidone lowered systolic blood pressure by 25 mmHg versus placebo.",  # wrong number
        "Metformin is the first-line therapy for type 2 diabetes.",  # unrelated
    ]
    out = v.judge([(c, PASSAGE) for c in claims])
    assert [j.supported for j in out] == [True, True, False, False]
    assert "11 mmHg" in out[0].evidence
    assert out[3].score < out[0].score


def test_sentences_and_markers() -> None:
    assert split_sentences("") == []
    assert parse_markers("No markers.") == ("No markers.", [])
    text = "Risk fell (HR 0.8) [1]. Bleeding rose [2,3]. [4]"
    sents = split_sentences(text)
    assert [parse_markers(s)[1] for s in sents] == [[1], [2, 3, 4]]


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("models") / "tiny-nli"
    return build_tiny_model(
        out, BertForSequenceClassification, BertConfig, num_labels=3,
        id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
        label2id={"contradiction": 0, "entailment": 1, "neutral": 2},
    )  # fmt: skip


def test_nli_verifier_reads_the_entailment_probability(tiny_nli: Path) -> None:
    v = NliVerifier(VerifySettings(kind="nli", model_path=tiny_nli, min_entailment=0.0))
    out = v.judge([("claim one", PASSAGE), ("claim two", PASSAGE)])
    assert len(out) == 2 and all(0.0 <= j.score <= 1.0 and j.supported for j in out)
    strict = NliVerifier(VerifySettings(kind="nli", model_path=tiny_nli, min_entailment=1.0))
    assert not any(j.supported for j in strict.judge([("claim", PASSAGE)]))


def test_nli_verifier_needs_an_entailment_label(tmp_path: Path) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    path = build_tiny_model(tmp_path / "m", BertForSequenceClassification, BertConfig, num_labels=2)
    with pytest.raises(ValueError, match="entailment"):
        NliVerifier(VerifySettings(kind="nli", model_path=path))
