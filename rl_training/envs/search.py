"""Search-augmented QA with the Search-R1 protocol.

The model reasons in ``<think>...</think>``, may call ``<search>query</search>`` and receives
``<information>...</information>`` with the top-k passages from evidex retrieval, and ends with
``<answer>...</answer>``. Turns and the response budget are bounded; an action that is neither
a search nor an answer gets a corrective observation. The reward at the end is the task reward
of part 1 (:func:`rl_training.rewards.compute_score` on the answer, or any scorer such as the
VRM) plus ``format_weight`` times the search-format reward.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retrieval.errors import StateError
from rl_training.envs.base import DocSearch, StepResult, Trajectory, format_docs
from rl_training.rewards.search_format import answer_of, search_format_reward

INSTRUCTIONS = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. After reasoning, if you lack knowledge, you can call "
    "a search engine by <search> query </search>, and it will return the top searched results "
    "between <information> and </information>. You can search as many times as you want. If "
    "you find no further external knowledge needed, you can directly provide the answer inside "
    "<answer> and </answer>, without detailed illustrations. For example, <answer> yes </answer>."
)
INVALID = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer "
    "between <answer> and </answer>. Let me try again.\n"
)
_SEARCH = re.compile(r"<search>(.*?)</search>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)

TaskScorer = Callable[[str, str, Any, Mapping[str, Any]], float]


def rule_score(data_source: str, answer: str, ground_truth: Any, extra: Mapping[str, Any]) -> float:
    """The part-1 rule reward of the answer text (boxed or bare)."""
    from rl_training.rewards import compute_score

    text = answer if "\\boxed" in answer else f"\\boxed{{{answer}}}"
    return float(compute_score(data_source, text, ground_truth, extra)["score"])


@dataclass
class SearchEnvConfig:
    k: int = 3
    """Passages per search."""
    max_turns: int = 4
    """Model actions per episode (searches plus the answer)."""
    max_passage_chars: int = 600
    format_weight: float = 0.2
    """Weight of the format reward added to the task reward."""


@dataclass
class SearchEnv:
    """One episode over one question (create one per rollout)."""

    search: DocSearch
    question: str
    ground_truth: Any
    data_source: str
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    config: SearchEnvConfig = field(default_factory=SearchEnvConfig)
    scorer: TaskScorer = rule_score
    trajectory: Trajectory = field(default_factory=Trajectory)
    turns: int = 0
    searches: list[str] = field(default_factory=list)
    done: bool = False

    def reset(self) -> str:
        """The user prompt of the episode."""
        self.trajectory, self.turns, self.searches, self.done = Trajectory(), 0, [], False
        return f"{INSTRUCTIONS} Question: {self.question}\n"

    def _information(self, query: str) -> str:
        body = format_docs(self.search(query, self.config.k), self.config.max_passage_chars)
        return f"\n\n<information>{body}</information>\n\n"

    def step(self, action: str) -> StepResult:
        """Apply the model's next action (text up to and including its closing tag)."""
        if self.done:
            raise StateError("the episode is over: call reset()")
        self.turns += 1
        # Only what comes before the first closing tag counts; the rest is discarded, as
        # Search-R1 stops generation at </search> or </answer>.
        cut = re.search(r"</search>|</answer>", action)
        action = action[: cut.end()] if cut else action
        self.trajectory.add(action, by_model=True)
        answer = _ANSWER.search(action)
        search = _SEARCH.search(action)
        if answer and (not search or answer.start() > search.start()):
            return self._finish("answer")
        if self.turns >= self.config.max_turns:
            return self._finish("turn limit")
        if search and search.group(1).strip():
            query = search.group(1).strip()
            self.searches.append(query)
            obs = self._information(query)
        else:
            obs = INVALID
        self.trajectory.add(obs, by_model=False)
        return StepResult(obs, done=False, info={"turn": self.turns})

    def _finish(self, why: str) -> StepResult:
        self.done = True
        text = self.trajectory.text
        answer = answer_of(text) if why == "answer" else None
        task = (
            self.scorer(self.data_source, answer, self.ground_truth, self.extra_info)
            if answer
            else 0.0
        )
        fmt = search_format_reward(text)
        reward = task + self.config.format_weight * fmt
        info = {
            "ended": why,
            "task_reward": task,
            "format_reward": fmt,
            "searches": len(self.searches),
            "answer": answer,
        }
        return StepResult("", done=True, reward=reward, info=info)
