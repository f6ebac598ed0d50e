"""A preference reward model (``evidex train rm``) as a GRPO reward: open-ended rows are
scored by the model, squashed to 0-1 with a sigmoid; verifiable rows keep their rule reward
(the :mod:`rl_training.rewards.dispatch` split). TRL's reward-function signature."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rl_training.rewards import dispatch, scoring


def squash(score: float) -> float:
    """A reward model's logit as a 0-1 reward.

    >>> squash(0.0), round(squash(4.0), 3)
    (0.5, 0.982)
    """
    return 1.0 / (1.0 + math.exp(-score))


class PreferenceReward:
    """Scores TRL completions with a reward-model folder (one output)."""

    __name__ = "preference_rm"

    def __init__(self, path: Path, *, max_length: int = 1024, device: str = "cpu") -> None:
        from rl_training.data.reward_model import HFRewardModel

        self.model = HFRewardModel(path, device=device, max_length=max_length)

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        reward_model: Sequence[Mapping[str, Any]],
        data_source: Sequence[str],
        extra_info: Sequence[Mapping[str, Any]],
        **_: Any,
    ) -> list[float]:
        out: list[float | None] = [None] * len(completions)
        records, where = [], []
        for i, (p, c, rm, src, info) in enumerate(
            zip(prompts, completions, reward_model, data_source, extra_info, strict=True)
        ):
            text = c[-1]["content"] if isinstance(c, list) else str(c)
            if rm.get("style") != "model" and dispatch.is_rule_task(src):
                out[i] = scoring.compute_score(src, text, rm["ground_truth"], info)["score"]
                continue
            msgs = list(p) if isinstance(p, list) else [{"role": "user", "content": str(p)}]
            records.append({"messages": [*msgs, {"role": "assistant", "content": text}]})
            where.append(i)
        for i, score in zip(where, self.model(records) if records else [], strict=True):
            out[i] = squash(score)
        return [float(x) for x in out]  # type: ignore[arg-type]
