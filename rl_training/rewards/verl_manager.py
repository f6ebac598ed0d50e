"""verl reward manager with the cosine length penalty (needs verl: the ``train`` extra).

verl's reward *function* never sees token counts, so the penalty lives in a reward manager,
which does. Load it with verl's importlib source::

    reward.reward_manager.source=importlib
    reward.reward_manager.name=LengthPenaltyRewardManager
    reward.reward_manager.module.path=pkg://rl_training.rewards.verl_manager
    +reward.reward_kwargs.length_penalty.threshold=8192
    +reward.reward_kwargs.length_penalty.max_length=16384
    +reward.reward_kwargs.length_penalty.max_penalty=0.5
    +reward.reward_kwargs.length_penalty.penalize_wrong=false

The task score comes from the configured ``custom_reward_function`` (default:
:func:`rl_training.rewards.compute_score`).
"""

from __future__ import annotations

import inspect
from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from retrieval.errors import ConfigError
from rl_training.rewards.length import LengthPenaltyConfig
from rl_training.rewards.scoring import compute_score as evidex_compute_score


class LengthPenaltyRewardManager(RewardManagerBase):
    """The task reward minus the cosine length penalty of the response's token count."""

    def __init__(
        self,
        config: Any,
        tokenizer: Any,
        compute_score: Any = None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
    ) -> None:
        super().__init__(config, tokenizer, compute_score)
        self.tok: Any = tokenizer
        self.score_fn: Any = compute_score or evidex_compute_score
        self.compute_score = self.score_fn
        self.is_async = inspect.iscoroutinefunction(self.score_fn)
        kwargs = dict((config.reward.get("reward_kwargs") or {}).get("length_penalty") or {})
        unknown = set(kwargs) - set(LengthPenaltyConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown reward_kwargs.length_penalty settings {sorted(unknown)}: use "
                f"{sorted(LengthPenaltyConfig.__dataclass_fields__)}"
            )
        self.penalty = LengthPenaltyConfig(**kwargs)
        self.reward_router_address = reward_router_address
        self.reward_model_tokenizer = reward_model_tokenizer

    async def run_single(self, data: DataProto) -> dict[str, Any]:
        item = data[-1:][0]
        response_ids = item.batch["responses"]
        length = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        text = await self.loop.run_in_executor(
            None, lambda: self.tok.decode(response_ids[:length], skip_special_tokens=True)
        )
        kwargs: dict[str, Any] = {
            "data_source": item.non_tensor_batch["data_source"],
            "solution_str": text,
            "ground_truth": item.non_tensor_batch["reward_model"]["ground_truth"],
            "extra_info": item.non_tensor_batch.get("extra_info", {}),
        }
        if self.reward_router_address is not None:
            kwargs["reward_router_address"] = self.reward_router_address
            kwargs["reward_model_tokenizer"] = self.reward_model_tokenizer
        if self.is_async:
            result = await self.score_fn(**kwargs)
        else:
            result = await self.loop.run_in_executor(None, lambda: self.score_fn(**kwargs))
        info = dict(result) if isinstance(result, dict) else {"acc": result}
        score = float(result["score"] if isinstance(result, dict) else result)
        reward, penalty = self.penalty.apply(score, length)
        info.update(task_score=score, length_penalty=penalty, response_tokens=length)
        info.pop("score", None)
        return {"reward_score": reward, "reward_extra_info": info}
