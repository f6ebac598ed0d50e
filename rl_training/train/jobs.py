"""``evidex train sft|grpo``: one job description (:class:`TrainArgs`) and one entry point
(:func:`train`) that hands it to verl (multi-GPU, Ray; launched as a subprocess) or to TRL
(the local trainer, in process).

>>> TrainArgs(kind="sft", stage="s2", model=Path("m"), data=[Path("d")], out_dir=Path("o"))
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
retrieval.errors.UsageError: stage s2 is not sft: s1 is SFT (evidex train sft); s2, s3 and s4 ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import UsageError
from rl_training.train.trl_config import LocalGRPOConfig

log = logging.getLogger(__name__)

Engine = Literal["verl", "trl"]


@dataclass(frozen=True)
class TrainArgs:
    """One training job, as the command line describes it."""

    kind: Literal["sft", "grpo"]
    """``sft`` (stage s1) or ``grpo`` (s2, s3, s4)."""
    stage: str
    model: Path
    """The base model: a Hugging Face checkpoint folder."""
    data: Sequence[Path]
    """Training files from ``evidex train export`` / ``curate``."""
    out_dir: Path
    """The run folder (config, launch script, metrics, checkpoints)."""
    engine: str = "verl"
    """``verl`` or ``trl``."""
    val: Sequence[Path] = ()
    """verl: validation files."""
    n_gpus: int = 8
    """verl: GPUs per node."""
    nnodes: int = 1
    """verl: nodes."""
    judge_url: str | None = None
    reward_model: Path | None = None
    """The verifier's OpenAI-compatible endpoint (s3; optional in s4)."""
    search_url: str | None = None
    """s4: the ``evidex serve-search`` URL the rollouts reach."""
    overrides: Sequence[str] = ()
    """verl: extra Hydra overrides ``key=value``."""
    dry_run: bool = False
    """Resolve and validate only; train nothing."""
    max_steps: int = LocalGRPOConfig.default("max_steps")
    """trl: optimizer steps."""
    cpu: bool = False
    """trl: run on CPU (a smoke run)."""
    protocol: str = "tools"
    """trl s4: ``tools`` (environment_factory) or ``tags`` (Search-R1 text tags)."""
    want_index: bool = False
    """trl s4: an index was named (``--store``/``--config``), so diagnosis rows search too."""
    settings: Callable[[], Any] | None = field(default=None, compare=False)
    """trl s4: loads the settings of the index to search in process."""

    def __post_init__(self) -> None:
        if self.engine not in ("verl", "trl"):
            raise UsageError(f"--engine {self.engine}: use verl or trl")
        if (self.kind == "sft") != (self.stage == "s1"):
            raise UsageError(
                f"stage {self.stage} is not {self.kind}: s1 is SFT (evidex train sft); "
                "s2, s3 and s4 are GRPO (evidex train grpo)"
            )
        if self.protocol not in ("tools", "tags"):
            raise UsageError(f"--protocol {self.protocol}: use tools or tags")


@dataclass
class TrainResult:
    """What :func:`train` did."""

    engine: Engine
    stage: str
    rows: int = 0
    """trl: rows read."""
    config_file: Path | None = None
    """verl: the resolved config written next to the run."""
    launch_script: Path | None = None
    """verl: the launch script."""
    exit_code: int = 0
    """verl: the launched job's exit status (0 for a dry run)."""
    notes: list[str] = field(default_factory=list)
    trained: bool = False


def train(args: TrainArgs) -> TrainResult:
    """Run (or with ``dry_run`` only resolve) the job ``args`` describes."""
    if args.engine == "trl":
        return _train_trl(args)
    if args.reward_model is not None:
        raise UsageError(
            "--reward-model scores s3 on --engine trl; on verl, s3 is scored by the verifier "
            "(--judge-url)"
        )
    import subprocess

    from rl_training.train import verl_launch

    run = verl_launch.plan(
        args.stage,  # type: ignore[arg-type]
        args.model,
        args.data,
        args.out_dir,
        args.val,
        n_gpus=args.n_gpus,
        nnodes=args.nnodes,
        judge_url=args.judge_url,
        search_url=args.search_url,
        extra=args.overrides,
    )
    config_file = verl_launch.write(run)
    result = TrainResult(
        "verl",
        args.stage,
        config_file=config_file,
        launch_script=run.out_dir / "launch.sh",
        notes=list(run.notes),
    )
    if not args.dry_run:
        result.exit_code = subprocess.call(run.command)
        result.trained = result.exit_code == 0
    return result


def _train_trl(args: TrainArgs) -> TrainResult:
    from rl_training.train.trl_stages import open_search, read_rows, run_stage

    rows = read_rows(args.data)
    result = TrainResult("trl", args.stage, rows=len(rows))
    if args.dry_run:
        return result
    config = LocalGRPOConfig(
        output_dir=args.out_dir,
        max_steps=args.max_steps,
        use_cpu=args.cpu,
        protocol=args.protocol,  # type: ignore[arg-type]
        judge_url=args.judge_url,
        reward_model=args.reward_model,
    )
    with open_search(args.stage, rows, search_url=args.search_url, settings=args.settings,
                     want_index=args.want_index) as search:  # fmt: skip
        run_stage(args.stage, args.model, rows, config, search=search)
    result.trained = True
    return result
