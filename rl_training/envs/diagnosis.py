r"""The diagnostic chain (WiNGPT-3.0 section 4.3) on OSCE-style cases.

The model sees the initial consultation (demographics, complaint, history, symptoms, past,
social and systems history); examination findings and test results are withheld. It requests
them by name with ``<request>name</request>``; the environment answers with the matching
findings from the case, or says they are not available, until the model gives its final
diagnosis in ``\boxed{}``. ``<search>query</search>`` consults the knowledge base when a search
backend is given. The reward compares the diagnosis with the case's: a verifier (the VRM) when
one is configured, else normalized exact match. The number of requests is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import InputError, StateError
from retrieval.jsonl import iter_jsonl
from rl_training.envs.base import DocSearch, StepResult, Trajectory, format_docs
from rl_training.rewards.extract import last_boxed

WITHHELD = ("Physical_Examination_Findings", "Test_Results")

# Common names clinicians use for the keys found in the cases.
SYNONYMS = {
    "cbc": "complete blood count",
    "fbc": "complete blood count",
    "full blood count": "complete blood count",
    "bmp": "basic metabolic panel",
    "cmp": "comprehensive metabolic panel",
    "lfts": "liver function tests",
    "lft": "liver function tests",
    "ecg": "electrocardiogram",
    "ekg": "electrocardiogram",
    "emg": "electromyography",
    "eeg": "electroencephalogram",
    "cxr": "chest x ray",
    "xray": "x ray",
    "x-ray": "x ray",
    "ct": "ct",
    "mri": "mri",
    "us": "ultrasound",
    "ultrasonography": "ultrasound",
    "abg": "arterial blood gas",
    "ua": "urinalysis",
    "urine test": "urinalysis",
    "vitals": "vital signs",
    "bp": "blood pressure",
    "hr": "heart rate",
    "temp": "temperature",
    "labs": "laboratory blood",
    "lab": "laboratory",
    "blood work": "laboratory blood",
    "bloodwork": "laboratory blood",
    "physical exam": "physical examination findings",
    "physical examination": "physical examination findings",
    "neuro exam": "neurological examination",
    "neurologic exam": "neurological examination",
    "imaging": "imaging",
}
_STOP = set(
    "test tests the a an of and for findings level levels exam examination results result "
    "please check order".split()
)


def _norm(text: str) -> str:
    """Lowercase words of a name ('Chest_CT' -> 'chest ct').

    >>> _norm("Acetylcholine_Receptor_Antibodies"), _norm("X-Ray of the chest")
    ('acetylcholine receptor antibodies', 'x ray of the chest')
    """
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = re.sub(r"[_\-/(),.:]+", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def _expand(name: str) -> str:
    words = _norm(name)
    for short, long in sorted(SYNONYMS.items(), key=lambda kv: -len(kv[0])):
        words = re.sub(rf"\b{re.escape(short)}\b", long, words)
    return words


def _stem(word: str) -> str:
    word = word.rstrip("s")
    return word[:-2] if word.endswith("ical") else word  # neurological ~ neurologic


def _tokens(text: str) -> set[str]:
    return {_stem(w) for w in _expand(text).split() if w not in _STOP}


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(node, list):
        yield path, "; ".join(str(x) for x in node)
    else:
        yield path, str(node)


@dataclass(frozen=True)
class Case:
    """One clinical case, split into what the model sees and what it must ask for."""

    summary: str
    findings: tuple[tuple[tuple[str, ...], str], ...]
    """Withheld findings as (path of names, value)."""
    diagnosis: str
    objective: str = ""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Case:
        osce = record.get("OSCE_Examination", record)
        actor = osce.get("Patient_Actor", {})
        lines = []
        for key, value in actor.items():
            if isinstance(value, Mapping):
                value = "; ".join(
                    f"{_norm(k)}: {', '.join(v) if isinstance(v, list) else v}"
                    for k, v in value.items()
                )
            lines.append(f"{_norm(key).capitalize()}: {value}")
        findings = tuple(
            (path, value) for key in WITHHELD for path, value in _leaves(osce.get(key, {}), (key,))
        )
        return cls(
            summary="\n".join(lines),
            findings=findings,
            diagnosis=str(osce.get("Correct_Diagnosis", "")),
            objective=str(osce.get("Objective_for_Doctor", "")),
        )

    def lookup(self, request: str) -> list[tuple[tuple[str, ...], str]]:
        """The findings a request names: the best-matching node and everything under it.

        Names match on their words after synonyms ('CBC', 'EKG', 'CT chest', 'labs'), case
        and plurals aside; a part of a name ('antibodies') finds it. The nodes whose path
        covers the request best win, then those whose own name was asked for most fully (so
        'vitals' returns all vital signs and 'blood pressure' only that); ties all return.
        """
        want = _tokens(request)
        if not want:
            return []
        best: tuple[float, float] = (0.5, 0.0)  # at least half the request must match
        chosen: list[tuple[str, ...]] = []
        nodes = dict.fromkeys(  # ordered as in the case
            path[:i] for path, _ in self.findings for i in range(1, len(path) + 1)
        )
        for node in nodes:
            covered = len(want & _tokens(" ".join(node))) / len(want)
            own = _tokens(node[-1])
            precision = len(want & own) / len(own) if own else 0.0
            score = (covered, precision)
            if score > best:
                best, chosen = score, [node]
            elif score == best and chosen:
                chosen.append(node)
        # Equally good nodes are all returned (e.g. 'WBC' in the blood count and the
        # urinalysis), each labelled with its path; a node inside another chosen one adds
        # nothing.
        out = []
        for p, v in self.findings:
            if any(p[: len(c)] == c for c in chosen):
                out.append((p, v))
        return out

    def answer(self, request: str) -> tuple[str, bool]:
        """What the environment agent says to a request, and whether anything matched."""
        found = self.lookup(request) if request.strip() else []
        if not found:
            return f"{request.strip() or 'That'}: not available for this patient.", False
        return "\n".join(f"{' > '.join(_norm(x) for x in p[1:])}: {v}" for p, v in found), True


def load_cases(path: Path) -> list[Case]:
    """The cases of a JSONL file (AgentClinic's OSCE layout); a bad line names its number."""
    cases = []
    for n, record in iter_jsonl(path):
        try:
            cases.append(Case.from_record(record))
        except (AttributeError, TypeError) as exc:
            raise InputError(f"{path}:{n}: not a case record ({exc})") from None
    return cases


def normalize_diagnosis(text: str) -> str:
    """Lowercase words without punctuation or leading articles.

    >>> normalize_diagnosis("The Myasthenia gravis.")
    'myasthenia gravis'
    >>> normalize_diagnosis("Guillain-Barré syndrome")
    'guillain barré syndrome'
    """
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    while words and words[0] in {"the", "a", "an"}:
        words.pop(0)
    return " ".join(words)


Judge = Callable[[str, str, str, str], float]
"""(case summary, reference diagnosis, predicted diagnosis, the diagnostic process) -> 0 or 1.
The process is the consultation as it went: the model's turns (its reasoning included), the
examinations it requested and their findings (see :func:`show_process`)."""

INSTRUCTIONS = (
    "You are the doctor in a clinical consultation. The initial summary is below; examination "
    "findings and test results are withheld. Request one examination or test at a time with "
    "<request>name</request> (for example <request>complete blood count</request>); "
    "{search}give your final diagnosis as \\boxed{{diagnosis}} when you are confident. Request "
    "only what you need."
)


def score_diagnosis(
    case: Case, diagnosis: str | None, judge: Judge | None = None, process: str = ""
) -> float:
    """The reward of a final diagnosis: the judge's verdict on the diagnostic process and its
    conclusion against the case's diagnosis, or normalized exact match without a judge; 0 for
    no diagnosis."""
    if diagnosis is None:
        return 0.0
    if judge is not None:
        return float(judge(case.summary, case.diagnosis, diagnosis, process))
    return float(normalize_diagnosis(diagnosis) == normalize_diagnosis(case.diagnosis))


@dataclass
class DiagnosisEnvConfig:
    max_turns: int = 10
    search_k: int = 3


@dataclass
class DiagnosisEnv:
    """One consultation over one case (create one per rollout)."""

    case: Case
    search: DocSearch | None = None
    judge: Judge | None = None
    config: DiagnosisEnvConfig = field(default_factory=DiagnosisEnvConfig)
    trajectory: Trajectory = field(default_factory=Trajectory)
    requests: list[str] = field(default_factory=list)
    turns: int = 0
    done: bool = False

    def reset(self) -> str:
        self.trajectory, self.requests, self.turns, self.done = Trajectory(), [], 0, False
        search = "search medical knowledge with <search>query</search>; " if self.search else ""
        head = INSTRUCTIONS.format(search=search)
        objective = f"\nTask: {self.case.objective}" if self.case.objective else ""
        return f"{head}{objective}\n\nInitial consultation:\n{self.case.summary}\n"

    def step(self, action: str) -> StepResult:
        if self.done:
            raise StateError("the episode is over: call reset()")
        self.turns += 1
        self.trajectory.add(action, by_model=True)
        diagnosis = last_boxed(action)
        if diagnosis:
            return self._finish(diagnosis)
        if self.turns >= self.config.max_turns:
            return self._finish(None)
        req = re.search(r"<request>(.*?)</request>", action, re.S)
        srch = re.search(r"<search>(.*?)</search>", action, re.S)
        if req and req.group(1).strip():
            name = req.group(1).strip()
            self.requests.append(name)
            body, _ = self.case.answer(name)
            obs = f"\n<result>\n{body}\n</result>\n"
        elif srch and srch.group(1).strip() and self.search is not None:
            docs = self.search(srch.group(1).strip(), self.config.search_k)
            obs = f"\n<information>{format_docs(docs, 500)}</information>\n"
        else:
            obs = (
                "\nRequest an examination or test with <request>name</request>, or give the "
                "final diagnosis as \\boxed{diagnosis}.\n"
            )
        self.trajectory.add(obs, by_model=False)
        return StepResult(obs, done=False, info={"turn": self.turns})

    def _finish(self, diagnosis: str | None) -> StepResult:
        self.done = True
        score = score_diagnosis(self.case, diagnosis, self.judge, self.trajectory.text)
        info = {
            "diagnosis": diagnosis,
            "correct": self.case.diagnosis,
            "requests": len(self.requests),
            "requested": list(self.requests),
            "judge": "vrm" if self.judge else "exact",
        }
        return StepResult("", done=True, reward=score, info=info)


DIAGNOSIS_QUESTION = (
    "{summary}\n\nRequest the examinations and tests you need, then give the most likely "
    "diagnosis. (Judge the logical completeness of the diagnostic process and the accuracy of "
    "the conclusion.)"
)


def show_process(process: str, diagnosis: str) -> str:
    r"""The predicted answer the verifier sees in S4: the diagnostic process (the requests, the
    findings and the reasoning, which is kept visible here) and the final diagnosis.

    >>> print(show_process("<think>ptosis</think><request>ice pack</request>", "Myasthenia"))
    Diagnostic process:
    [reasoning] ptosis [/reasoning]<request>ice pack</request>
    <BLANKLINE>
    Final diagnosis: \boxed{Myasthenia}
    """
    visible = process.replace("<think>", "[reasoning] ").replace("</think>", " [/reasoning]")
    body = visible.strip() or "(no examinations requested)"
    return f"Diagnostic process:\n{body}\n\nFinal diagnosis: \\boxed{{{diagnosis}}}"


def vrm_judge(vrm: Any) -> Judge:
    """A judge from :class:`rl_training.rewards.vrm.VerifierRewardModel` that sees the whole
    diagnostic process, as the report's S4 verifier judges "the logical completeness of the
    diagnostic process and the accuracy of conclusions"."""

    def judge(summary: str, reference: str, predicted: str, process: str = "") -> float:
        question = DIAGNOSIS_QUESTION.format(summary=summary)
        return float(vrm.score(question, reference, show_process(process, predicted)).score)

    return judge
