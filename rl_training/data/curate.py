"""The curation chain of ``evidex train curate``: format, repetition, correctness and reward-model
filters run in order over SFT records, each step reporting what it dropped and why.

>>> records = [{"messages": [{"role": "user", "content": "Q"},
...             {"role": "assistant", "content": "<think>Checked.</think>\\\\boxed{A}"}]},
...            {"messages": [{"role": "user", "content": "Q"},
...             {"role": "assistant", "content": "A"}]}]
>>> result = curate(records, CurationConfig(correctness=False))
>>> len(result.kept), [str(r) for r in result.reports][0]
(1, 'format: kept 1; dropped no well-formed think block 1')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import UsageError
from retrieval.jsonl import read_jsonl, write_jsonl
from rl_training.data import filters
from rl_training.data.filters import Record, StepReport


@dataclass(frozen=True)
class CurationConfig:
    """Which steps run, and their parameters."""

    check_format: bool = True
    """Keep records with one well-formed ``<think>`` block, then the answer."""
    repetition_n: int = 4
    """n of the n-gram repetition filter."""
    repetition_threshold: float = 0.3
    """Most repeated n-grams allowed (1 turns the filter off)."""
    correctness: bool = True
    """Drop verifiable records that the rule rewards score wrong."""
    reward_model: Path | None = None
    """A sequence-classification reward model folder that scores unverifiable items."""
    vrm_url: str | None = None
    """Or an OpenAI-compatible judge for the verifier reward."""
    vrm_model: str = "default"
    """The judge's model name."""
    threshold: float | None = None
    """Keep reward-model scores at or above this ..."""
    top_fraction: float | None = None
    """... or keep the best fraction."""
    cache_dir: Path | None = None
    """Where the judge caches its verdicts (default: beside the output)."""

    def __post_init__(self) -> None:
        if self.reward_model and self.vrm_url:
            raise UsageError("give --reward-model or --vrm-url, not both")
        if self.repetition_n < 1:
            raise UsageError(f"repetition_n must be at least 1, got {self.repetition_n!r}")
        if not 0 <= self.repetition_threshold <= 1:
            raise UsageError(
                f"repetition_threshold must be within [0, 1], got {self.repetition_threshold!r}"
            )


@dataclass
class CurationResult:
    """The kept records and one report per step that ran."""

    kept: list[Record]
    reports: list[StepReport] = field(default_factory=list)


def _scorer(config: CurationConfig) -> Any:
    if config.reward_model:
        from rl_training.data.reward_model import HFRewardModel

        return HFRewardModel(config.reward_model)
    from rl_training.rewards.vrm import VerifierRewardModel, VRMConfig

    judge = VerifierRewardModel(
        VRMConfig(base_url=str(config.vrm_url), model=config.vrm_model, cache_dir=config.cache_dir)
    )
    return judge.record_scorer()


def curate(records: Sequence[Record], config: CurationConfig | None = None) -> CurationResult:
    """Run the configured steps in order over ``records``."""
    config = config or CurationConfig()
    kept = list(records)
    reports: list[StepReport] = []
    if config.check_format:
        kept, rep = filters.format_filter(kept)
        reports.append(rep)
    if config.repetition_threshold < 1:
        kept, rep = filters.repetition_filter(
            kept, config.repetition_n, config.repetition_threshold
        )
        reports.append(rep)
    if config.correctness:
        kept, rep = filters.correctness_filter(kept)
        reports.append(rep)
    if config.reward_model or config.vrm_url:
        kept, rep = filters.reward_model_filter(
            kept, _scorer(config), threshold=config.threshold, top_fraction=config.top_fraction
        )
        reports.append(rep)
    return CurationResult(kept, reports)


def curate_file(source: Path, out: Path, config: CurationConfig | None = None) -> CurationResult:
    """:func:`curate` from one JSONL file into another."""
    config = config or CurationConfig()
    if config.vrm_url and config.cache_dir is None:
        from dataclasses import replace

        config = replace(config, cache_dir=out.parent)
    result = curate(read_jsonl(source), config)
    write_jsonl(out, result.kept)
    return result
