"""The two environments as TRL ``environment_factory`` environments (tool calling).

TRL's ``GRPOTrainer(environment_factory=...)`` makes one instance per rollout, calls
``reset(**row)`` with the dataset row before each episode, offers the instance's public methods
to the model as tools (rendered by the chat template from their signatures and docstrings),
runs the model's parsed tool calls, and gives the tool answers ``tool_mask`` 0 so they are
never trained on. The tools here are those of the verl tool agent
(:mod:`rl_training.train.verl_tools`) with the same names and arguments, so the rows of
``evidex train export --agent`` train on either engine:

- :class:`SearchToolEnv`: ``search(query)`` over evidex retrieval, for search-augmented QA;
- :class:`DiagnosisToolEnv`: ``request_exam(name)`` on the row's case (the diagnostic chain),
  and :class:`DiagnosisSearchToolEnv` adds knowledge-base ``search``.

TRL's ``get_reward`` cannot see the final answer, so the episode is scored by
:class:`ToolEpisodeReward`, a reward function that TRL hands each rollout's environment: the
task reward of part 1 (rule or verifier) on the final ``\\boxed{}`` answer plus
``format_weight`` times :func:`rl_training.rewards.search_format.tool_call_reward`. Public
methods are tools, so the environments keep everything else private.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrieval.errors import InputError, StateError
from rl_training.data.rows import RLRow, json_field
from rl_training.envs.base import DocSearch, format_docs
from rl_training.envs.diagnosis import Case, Judge, score_diagnosis
from rl_training.envs.search import TaskScorer, rule_score
from rl_training.rewards.extract import last_boxed, strip_reasoning
from rl_training.rewards.search_format import tool_call_problem

log = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, Any]]


@dataclass
class ToolEnvConfig:
    """Budgets and reward weights of the tool-calling environments."""

    k: int = 3
    """Passages per search."""
    max_passage_chars: int = 600
    """Characters of each passage shown."""
    max_calls: int = 8
    """Tool calls per episode; later calls are told to answer now."""
    format_weight: float = 0.2
    """Weight of the tool-call format reward added to the task reward (search QA)."""


def transcript(messages: Messages) -> str:
    """The episode after its prompt as text: the model's turns (reasoning included), its tool
    calls and the tools' answers, for a verifier that judges the process.

    >>> print(transcript([{"role": "user", "content": "Q"},
    ...     {"role": "assistant", "content": "", "tool_calls": [{"function": {
    ...         "name": "request_exam", "arguments": {"name": "CBC"}}}]},
    ...     {"role": "tool", "content": "WBC 12"}, {"role": "assistant", "content": "B"}]))
    request_exam({"name": "CBC"})
    result: WBC 12
    B
    """
    lines = []
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            if m.get("content"):
                lines.append(str(m["content"]))
            for call in m.get("tool_calls") or []:
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
                lines.append(f"{fn.get('name')}({text})")
        elif role == "tool":
            lines.append(f"result: {m.get('content')}")
    return "\n".join(lines)


def final_text(messages: Messages) -> str:
    """The content of the episode's last assistant turn ('' when there is none).

    >>> final_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"},
    ...             {"role": "assistant", "content": "\\\\boxed{B}"}])
    '\\\\boxed{B}'
    """
    for m in reversed(messages):
        if m.get("role") == "assistant":
            return str(m.get("content") or "")
    return ""


class _Episode:
    """State shared by the environments: the call budget and the episode's log."""

    def __init__(self, config: ToolEnvConfig | None) -> None:
        self._config = config or ToolEnvConfig()
        self._calls: list[tuple[str, str]] = []

    def _over_budget(self, tool: str, argument: str) -> str | None:
        self._calls.append((tool, argument))
        if len(self._calls) > self._config.max_calls:
            return (
                f"Tool call limit ({self._config.max_calls}) reached: give your final answer "
                "now as \\boxed{...}."
            )
        return None

    def _score(self, messages: Messages) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError


class _SearchTool(_Episode):
    """The ``search`` tool, over ``self._backend``."""

    _backend: DocSearch | None

    def search(self, query: str) -> str:
        """Search PubMed abstracts and clinical guidelines for evidence.

        Args:
            query: What to look up, in a few keywords.

        Returns:
            The top passages, numbered, each with its title.
        """
        query = str(query).strip()
        stop = self._over_budget("search", query)
        if stop:
            return stop
        if not query:
            return "Give a non-empty search query, for example: search(query='aspirin stroke')."
        if self._backend is None:
            return "Knowledge-base search is not available here."
        try:
            docs = self._backend(query, self._config.k)
        except Exception as exc:  # the episode goes on; the model sees why
            log.warning("search failed for a rollout: %s", exc)
            return f"Search failed: {exc}"
        return format_docs(docs, self._config.max_passage_chars)


class SearchToolEnv(_SearchTool):
    """Search-augmented QA: the question is in the row's prompt; ``search`` retrieves."""

    def __init__(
        self,
        backend: DocSearch,
        config: ToolEnvConfig | None = None,
        scorer: TaskScorer = rule_score,
    ) -> None:
        super().__init__(config)
        self._backend: DocSearch | None = backend
        self._scorer = scorer
        self._row: dict[str, Any] = {}

    def reset(self, **row: Any) -> None:
        """Start an episode on a dataset row (its prompt already holds the question)."""
        rm = json_field(row.get("reward_model")) or {}
        if "ground_truth" not in rm or not row.get("data_source"):
            raise InputError(
                "a search row needs data_source and reward_model.ground_truth "
                "(rows from evidex train export)"
            )
        self._row = {
            "data_source": str(row["data_source"]),
            "ground_truth": rm["ground_truth"],
            "extra_info": json_field(row.get("extra_info")) or {},
        }
        self._calls = []

    def _score(self, messages: Messages) -> tuple[float, dict[str, Any]]:
        text = strip_reasoning(final_text(messages))
        answer = last_boxed(text)
        r = self._row
        task = (
            float(self._scorer(r["data_source"], text, r["ground_truth"], r["extra_info"]))
            if answer is not None
            else 0.0
        )
        problem = tool_call_problem(messages)
        fmt = 0.0 if problem else 1.0
        searches = [q for tool, q in self._calls if tool == "search"]
        info = {
            "task_reward": task,
            "format_reward": fmt,
            "format_problem": problem,
            "answer": answer,
            "searches": len(searches),
            "queries": searches,
        }
        return task + self._config.format_weight * fmt, info


class DiagnosisToolEnv(_Episode):
    """The diagnostic chain: the row's prompt holds the initial consultation; examinations and
    tests come from the case through ``request_exam``. Reward: the verifier ``judge`` against
    the case's diagnosis, or normalized exact match without one."""

    def __init__(
        self,
        judge: Judge | None = None,
        config: ToolEnvConfig | None = None,
        backend: DocSearch | None = None,
    ) -> None:
        super().__init__(config)
        self._judge = judge
        self._backend = backend
        self._case: Case | None = None

    def reset(self, **row: Any) -> None:
        """Start a consultation on a row of ``evidex train export diagnosis --agent``."""
        info = json_field(row.get("extra_info")) or {}
        record = RLRow(row.get("data_source") or "diagnosis", (), None, extra_info=info)
        self._case = Case.from_record(record.case_record())
        self._calls = []

    def request_exam(self, name: str) -> str:
        """Request one physical examination or test for the patient by name.

        Args:
            name: The examination or test, for example "complete blood count".

        Returns:
            Its findings, or a note that it is not available.
        """
        if self._case is None:
            raise StateError("reset() was not called")
        stop = self._over_budget("request_exam", str(name).strip())
        if stop:
            return stop
        text, _ = self._case.answer(str(name))
        return text

    def _score(self, messages: Messages) -> tuple[float, dict[str, Any]]:
        if self._case is None:
            raise StateError("reset() was not called")
        diagnosis = last_boxed(strip_reasoning(final_text(messages)))
        score = score_diagnosis(self._case, diagnosis, self._judge, transcript(messages))
        requested = [n for tool, n in self._calls if tool == "request_exam"]
        info = {
            "task_reward": score,
            "format_problem": tool_call_problem(messages),
            "diagnosis": diagnosis,
            "correct": self._case.diagnosis,
            "requests": len(requested),
            "requested": requested,
            "searches": sum(tool == "search" for tool, _ in self._calls),
            "judge": "vrm" if self._judge else "exact",
        }
        return score, info


class DiagnosisSearchToolEnv(DiagnosisToolEnv, _SearchTool):
    """The diagnostic chain with knowledge-base search as a second tool."""


class ToolEpisodeReward:
    """TRL reward function for ``environment_factory`` runs: each rollout's environment scores
    its episode (the completion's messages). Every scored episode is kept in ``episodes`` and
    the means of tool calls and task reward are logged as ``env/...`` metrics."""

    __name__ = "evidex_env"

    def __init__(self) -> None:
        self.episodes: list[dict[str, Any]] = []

    def __call__(
        self,
        completions: list[Any],
        environments: Sequence[Any] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        if environments is None:
            raise InputError("no environments: use this reward with environment_factory")
        rewards: list[float | None] = []
        scored = []
        for completion, env in zip(completions, environments, strict=True):
            messages = (
                completion
                if isinstance(completion, list)
                else [{"role": "assistant", "content": str(completion)}]
            )
            reward, info = env._score(messages)
            info = {"env": type(env).__name__, "reward": reward, **info}
            scored.append(info)
            rewards.append(reward)
        self.episodes += scored
        if log_metric is not None and scored:
            n = len(scored)
            log_metric("env/task_reward", sum(s["task_reward"] for s in scored) / n)
            log_metric("env/searches", sum(s.get("searches", 0) for s in scored) / n)
            diag = [s for s in scored if "requests" in s]
            if diag:
                log_metric("env/exam_requests", sum(s["requests"] for s in diag) / len(diag))
        return rewards
