"""The local trainer's settings: one dataclass, one set of defaults (TRL's style: help text per
field, ``__post_init__`` checks that quote the bad values).

``evidex train sft|grpo --engine trl`` builds it from its options; the Python API
(:func:`rl_training.train.trl_stages.run_stage`, :func:`rl_training.train.trl_local.train_grpo`)
takes it as is. TRL's own ``GRPOConfig`` / ``SFTConfig`` are made from it.

>>> LocalGRPOConfig(output_dir="run").learning_rate
1e-06
>>> LocalGRPOConfig(output_dir="run", num_generations=1)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
retrieval.errors.ConfigError: num_generations must be at least 2 (GRPO compares ...), got 1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import ConfigError

Protocol = Literal["tools", "tags"]
STAGES = ("s1", "s2", "s3", "s4")


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class LocalGRPOConfig:
    """Settings of one local (TRL) training stage."""

    output_dir: Path = field(metadata={"help": "Run folder: metrics, curves, episodes, model."})
    max_steps: int = _help("Optimizer steps.", 100)
    num_generations: int = _help("Rollouts per prompt (GRPO's group size).", 4)
    learning_rate: float = _help("AdamW learning rate.", 1e-6)
    beta: float = _help("KL coefficient against the reference model (0: no reference).", 0.0)
    temperature: float = _help("Sampling temperature of the rollouts.", 1.0)
    max_turn_tokens: int = _help(
        "tags protocol: new tokens per model turn (a turn also ends at a closing tag).", 48
    )
    max_completion_tokens: int = _help(
        "Tokens per completion: model and environment tokens per episode; s1: the most "
        "tokens of an SFT example.",
        1024,
    )
    prompts_per_step: int = _help(
        "Prompts per optimizer step (each gets num_generations rollouts).", 1
    )
    max_turns: int = _help("tools protocol: tool-calling rounds per episode.", 8)
    sft_batch_size: int = _help("s1: examples per device batch.", 2)
    seed: int = _help("Random seed.", 0)
    use_cpu: bool = _help("Train on CPU (a smoke run); otherwise the GPU when there is one.", False)
    logging_steps: int = _help("Log metrics every this many steps.", 1)
    protocol: Protocol = _help(  # noqa: RUF009 (a dataclass field with help text)
        "s4: tools (tool calls through TRL's environment_factory; needs a tool-calling chat "
        "template) or tags (Search-R1 text tags, any model).",
        "tools",
    )
    judge_url: str | None = _help(
        "The verifier's OpenAI-compatible endpoint: s3's reward; in s4 it scores the answers "
        "and diagnoses instead of the rules.",
        None,
    )

    reward_model: Path | None = _help(  # noqa: RUF009 (a dataclass field with help text)
        "s3: a preference reward model folder (evidex train rm) that scores the open-ended "
        "rows instead of the verifier; verifiable rows keep the rule reward.",
        None,
    )

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        for name in ("max_steps", "max_turn_tokens", "max_completion_tokens", "prompts_per_step",
                     "max_turns", "sft_batch_size", "logging_steps"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.num_generations < 2:
            raise ConfigError(
                "num_generations must be at least 2 (GRPO compares rollouts of one prompt), "
                f"got {self.num_generations!r}"
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta!r}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature!r}")
        if self.protocol not in ("tools", "tags"):
            raise ConfigError(f"protocol must be tools or tags, got {self.protocol!r}")

    @classmethod
    def default(cls, name: str) -> Any:
        """A field's default (the command line's options take theirs from here).

        >>> LocalGRPOConfig.default("max_steps")
        100
        """
        return cls.__dataclass_fields__[name].default

    def grpo_args(self, **extra: Any) -> Any:
        """TRL's ``GRPOConfig`` for this run."""
        from trl.trainer.grpo_config import GRPOConfig

        return GRPOConfig(
            **self._common(),
            per_device_train_batch_size=self.num_generations * self.prompts_per_step,
            num_generations=self.num_generations,
            beta=self.beta,
            temperature=self.temperature,
            max_completion_length=self.max_completion_tokens,
            **extra,
        )

    def sft_args(self) -> Any:
        """TRL's ``SFTConfig`` for stage s1."""
        from trl.trainer.sft_config import SFTConfig

        return SFTConfig(
            **self._common(),
            per_device_train_batch_size=self.sft_batch_size,
            max_length=self.max_completion_tokens,
        )

    def _common(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "max_steps": self.max_steps,
            "learning_rate": self.learning_rate,
            "logging_steps": self.logging_steps,
            "save_strategy": "no",
            "report_to": [],
            "seed": self.seed,
            "use_cpu": self.use_cpu,
            "bf16": False,
        }
