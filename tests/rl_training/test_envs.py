"""The environments on real parts: the search environment over a real evidex index (in
process and through the search service's /retrieve), with the inserted text masked in real
tokens; the diagnostic chain on the real AgentClinic cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_training.envs.base import HTTPBackend, SearcherBackend
from rl_training.envs.diagnosis import DiagnosisEnv, _norm, load_cases, normalize_diagnosis
from rl_training.envs.search import INVALID, SearchEnv, SearchEnvConfig
from tests.answer_fixture import AnswerIndex
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def searcher(answer_index: AnswerIndex):  # type: ignore[no-untyped-def]
    from retrieval.search import Searcher

    with Searcher(answer_index.settings()) as s:
        yield s


def test_search_episode_rewards_answer_and_format_and_masks_retrieved_text(
    searcher, answer_index: AnswerIndex, tiny_lm: Path
) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    env = SearchEnv(
        SearcherBackend(searcher), answer_index.question, "yes", "evidex/pubmedqa",
        config=SearchEnvConfig(k=2),
    )  # fmt: skip
    prompt = env.reset()
    assert answer_index.question in prompt and "<search>" in prompt
    r1 = env.step(
        "<think>I need evidence.</think><search>tailored mammography HMO women</search> junk"
    )
    assert not r1.done and r1.observation.count("Doc ") == 2
    assert "<information>" in r1.observation and f"PMID {answer_index.pmid}" in r1.observation
    assert " junk" not in env.trajectory.model_text  # text after the closing tag is dropped
    r2 = env.step("<think>The trial says so.</think><answer> yes </answer>")
    assert r2.done and r2.info["task_reward"] == 1.0 and r2.info["format_reward"] == 1.0
    assert r2.reward == pytest.approx(1.2) and r2.info["searches"] == 1
    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    ids, mask = env.trajectory.tokens_and_mask(tok)
    obs_ids = tok.encode(r1.observation, add_special_tokens=False)
    assert len(ids) == len(mask) and mask.count(0) == len(obs_ids)  # exactly the retrieved text
    first_zero = mask.index(0)
    assert ids[first_zero : first_zero + len(obs_ids)] == obs_ids
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == env.trajectory.model_text


def test_search_episode_invalid_actions_turn_limit_and_wrong_answer(searcher) -> None:  # type: ignore[no-untyped-def]
    env = SearchEnv(
        SearcherBackend(searcher),
        "Q?",
        "no",
        "evidex/pubmedqa",
        config=SearchEnvConfig(max_turns=2),
    )
    env.reset()
    r = env.step("I think the answer is no.")
    assert r.observation == INVALID and not r.done
    r = env.step("<think>x</think><search>aspirin</search>")
    assert r.done and r.reward == 0.0 and r.info["ended"] == "turn limit"
    with pytest.raises(RuntimeError, match="reset"):
        env.step("<answer>no</answer>")
    env.reset()
    r = env.step("<think>guess</think><answer>yes</answer>")
    assert r.done and r.info["task_reward"] == 0.0 and r.reward == pytest.approx(0.2)
    env.reset()
    r = env.step("<answer>no</answer>")  # right, but no <think>: the format reward is 0
    assert r.info["task_reward"] == 1.0 and r.info["format_reward"] == 0.0


def test_search_through_the_search_service(searcher, answer_index: AnswerIndex) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from retrieval.service import create_app

    client = TestClient(create_app(searcher))
    backend = HTTPBackend("http://testserver", client=client)
    docs = backend(answer_index.question, 3)
    assert len(docs) == 3 and docs[0].text and not docs[0].text.startswith('"')
    env = SearchEnv(backend, answer_index.question, "yes", "evidex/pubmedqa")
    env.reset()
    obs = env.step(f"<think>t</think><search>{answer_index.question}</search>").observation
    assert f"PMID {answer_index.pmid}" in obs


@pytest.fixture(scope="module")
def cases():  # type: ignore[no-untyped-def]
    return load_cases(shared_path("cases", "agentclinic_medqa.jsonl"))


def test_cases_withhold_exams_and_tests(cases) -> None:  # type: ignore[no-untyped-def]
    assert len(cases) == 107
    first = cases[0]
    assert "35-year-old female" in first.summary and "double vision" in first.summary.lower()
    assert "ptosis" not in first.summary and "Acetylcholine" not in first.summary  # withheld
    assert first.diagnosis == "Myasthenia gravis"


def test_every_finding_of_every_case_can_be_requested_by_name(cases) -> None:  # type: ignore[no-untyped-def]
    generic = {"findings", "result", "results", "value", "level"}
    for c in cases:
        for path, value in c.findings:
            parts = path[-2:] if path[-1].lower() in generic or len(path) < 3 else path[-1:]
            name = " ".join(_norm(x) for x in parts)
            assert (path, value) in c.lookup(name), (c.diagnosis, path)


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("vitals", {"Temperature", "Blood_Pressure", "Heart_Rate", "Respiratory_Rate"}),
        ("BP", {"Blood_Pressure"}),
        ("neuro exam", {"Cranial_Nerves", "Motor_Strength", "Reflexes", "Sensation"}),
        ("EMG", {"Findings"}),
        ("CT of the chest", {"Findings"}),
        ("ACETYLCHOLINE receptor antibody", {"Acetylcholine_Receptor_Antibodies"}),
        ("MRI brain", set()),
        ("CBC", set()),
    ],
)
def test_requests_match_robustly(cases, request_text: str, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    assert {p[-1] for p, _ in cases[0].lookup(request_text)} == expected


def test_diagnostic_episode(cases, searcher) -> None:  # type: ignore[no-untyped-def]
    case = cases[0]
    env = DiagnosisEnv(case, search=SearcherBackend(searcher))
    prompt = env.reset()
    assert "Initial consultation" in prompt and "<search>" in prompt and case.objective in prompt
    r = env.step(
        "<think>Fatigable weakness.</think><request>acetylcholine receptor antibodies</request>"
    )
    assert "Present (elevated)" in r.observation and not r.done
    r = env.step("<request>unobtainium scan</request>")
    assert "not available" in r.observation
    r = env.step("<search>myasthenia gravis ptosis</search>")
    assert "<information>" in r.observation
    r = env.step("<think>Classic picture.</think> \\boxed{myasthenia gravis}")
    assert r.done and r.reward == 1.0 and r.info["requests"] == 2 and r.info["judge"] == "exact"
    ids_mask = env.trajectory.tokens_and_mask(
        type("T", (), {"encode": lambda self, t, add_special_tokens=False: list(t)})()
    )
    assert 0 in ids_mask[1] and 1 in ids_mask[1]
    env.reset()
    assert env.step("\\boxed{Lambert-Eaton syndrome}").reward == 0.0
    seen: list[tuple[str, str]] = []

    def judge(summary: str, reference: str, predicted: str, process: str) -> float:
        seen.append((reference, predicted, process))
        return 1.0

    env = DiagnosisEnv(case, judge=judge)
    env.reset()
    env.step("<think>ptosis</think><request>neurological examination</request>")
    assert env.step("\\boxed{MG (autoimmune)}").reward == 1.0
    ((reference, predicted, process),) = seen
    assert (reference, predicted) == ("Myasthenia gravis", "MG (autoimmune)")
    # the judge sees the diagnostic process: the reasoning, the request and its findings
    assert process.startswith("<think>ptosis</think><request>neurological examination")
    assert "<result>" in process and process.endswith("\\boxed{MG (autoimmune)}")
    assert normalize_diagnosis("The myasthenia gravis.") == "myasthenia gravis"
