"""The cosine length penalty of the WiNGPT-3.0 report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrieval.errors import ConfigError


def cosine_length_penalty(
    num_tokens: int, threshold: int = 8192, max_length: int = 16384, max_penalty: float = 0.5
) -> float:
    """The (positive) amount subtracted from a reward for a long response.

    No penalty up to ``threshold`` tokens; beyond it a cosine ramp reaches ``max_penalty`` at
    ``max_length`` and stays there::

        t = clip((num_tokens - threshold) / (max_length - threshold), 0, 1)
        penalty = max_penalty * (1 - cos(pi * t)) / 2

    >>> cosine_length_penalty(100), cosine_length_penalty(8192)
    (0.0, 0.0)
    >>> round(cosine_length_penalty(12288), 6)
    0.25
    >>> cosine_length_penalty(16384), cosine_length_penalty(40000)
    (0.5, 0.5)
    """
    if max_length <= threshold:
        raise ConfigError(f"max_length {max_length} must exceed threshold {threshold}")
    t = min(1.0, max(0.0, (num_tokens - threshold) / (max_length - threshold)))
    return max_penalty * (1 - math.cos(math.pi * t)) / 2


@dataclass(frozen=True)
class LengthPenaltyConfig:
    """The cosine length penalty's settings (report: 8K threshold, 16K maximum, 0.5)."""

    threshold: int = 8192
    max_length: int = 16384
    max_penalty: float = 0.5
    penalize_wrong: bool = False
    """Also penalize wrong answers (score <= 0). The report penalizes only correct responses
    beyond the threshold: a wrong one keeps its score (the default)."""

    def __post_init__(self) -> None:
        if self.max_length <= self.threshold:
            raise ConfigError(
                f"max_length {self.max_length} must exceed threshold {self.threshold}"
            )
        if self.max_penalty < 0:
            raise ConfigError(f"max_penalty must be >= 0, got {self.max_penalty}")

    def apply(self, score: float, num_tokens: int) -> tuple[float, float]:
        """(reward, penalty) for a task score and a response length in tokens.

        >>> LengthPenaltyConfig().apply(1.0, 12288)
        (0.75, 0.25)
        >>> LengthPenaltyConfig().apply(1.0, 8000), LengthPenaltyConfig().apply(0.0, 16384)
        ((1.0, 0.0), (0.0, 0.0))
        >>> LengthPenaltyConfig(penalize_wrong=True).apply(0.0, 16384)
        (-0.5, 0.5)
        """
        if score <= 0 and not self.penalize_wrong:
            return score, 0.0
        penalty = cosine_length_penalty(
            num_tokens, self.threshold, self.max_length, self.max_penalty
        )
        return round(score - penalty, 12), round(penalty, 12)


class LengthPenalizedReward:
    """TRL reward function: the rule reward (:func:`rl_training.rewards.compute_score`) minus
    the cosine length penalty. Pass an instance in ``GRPOTrainer(reward_funcs=[...])``; the
    dataset is the one ``evidex train export`` writes (columns ``data_source``,
    ``reward_model``, ``extra_info``). TRL gives token ids, so lengths are exact."""

    __name__ = "evidex_length_penalized"

    def __init__(self, config: LengthPenaltyConfig | None = None) -> None:
        self.config = config or LengthPenaltyConfig()

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        data_source: Sequence[str],
        reward_model: Sequence[Mapping[str, Any]],
        extra_info: Sequence[Mapping[str, Any] | None] | None = None,
        log_metric: Any = None,
        **_: Any,
    ) -> list[float]:
        from rl_training.rewards.scoring import compute_score

        infos = extra_info or [None] * len(completions)
        out, penalties = [], []
        for comp, ids, src, rm, info in zip(
            completions, completion_ids, data_source, reward_model, infos, strict=True
        ):
            text = comp[-1]["content"] if isinstance(comp, list) else str(comp)
            score = compute_score(src, text, rm["ground_truth"], info)["score"]
            reward, penalty = self.config.apply(score, len(ids))
            out.append(reward)
            penalties.append(penalty)
        if callable(log_metric) and penalties:
            log_metric("length_penalty", sum(penalties) / len(penalties))
        return out
