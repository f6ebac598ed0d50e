"""The WiNGPT-3.0 stages as verl runs: config overlays, composition with verl's own Hydra
configs, validation with verl's own checks, and the launch command.

Stages:

- ``s1`` SFT (verl's SFT trainer, ``torchrun -m verl.trainer.sft_trainer``): AdamW, lr 1e-5,
  500 warm-up steps, cosine decay to 10%, 2 epochs, 16K context.
- ``s2`` GRPO with the rule rewards and the cosine length penalty (8K threshold, 16K max).
- ``s3`` GRPO with the verifier reward model (a judge served over HTTP) and the length penalty.
- ``s4`` search-augmented clinical-reasoning GRPO: verl's tool agent with evidex's search and
  exam-request tools, rule/VRM rewards.

GRPO stages use the report's 128 prompts per step and 12 rollouts per prompt. Values the
report does not state (actor learning rate 1e-6, KL loss 0.001, clip ratios) are ordinary
GRPO defaults; every value can be overridden with ``--set key=value``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import ConfigError, InputError
from retrieval.jsonl import iter_jsonl

Stage = Literal["s1", "s2", "s3", "s4"]

LENGTH_PENALTY = [
    "reward.reward_manager.source=importlib",
    "reward.reward_manager.name=LengthPenaltyRewardManager",
    "reward.reward_manager.module.path=pkg://rl_training.rewards.verl_manager",
    "+reward.reward_kwargs.length_penalty.threshold=8192",
    "+reward.reward_kwargs.length_penalty.max_length=16384",
    "+reward.reward_kwargs.length_penalty.max_penalty=0.5",
    "+reward.reward_kwargs.length_penalty.penalize_wrong=false",
]
GRPO = [
    "algorithm.adv_estimator=grpo",
    "algorithm.use_kl_in_reward=false",
    "data.train_batch_size=128",
    "data.max_prompt_length=4096",
    "data.max_response_length=16384",
    "data.filter_overlong_prompts=true",
    "data.truncation=error",
    "actor_rollout_ref.rollout.n=12",
    "actor_rollout_ref.rollout.name=vllm",
    "actor_rollout_ref.rollout.temperature=1.0",
    "actor_rollout_ref.actor.optim.lr=1e-6",
    "actor_rollout_ref.actor.ppo_mini_batch_size=32",
    "actor_rollout_ref.actor.use_dynamic_bsz=true",
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576",
    "actor_rollout_ref.actor.use_kl_loss=true",
    "actor_rollout_ref.actor.kl_loss_coef=0.001",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
    "actor_rollout_ref.actor.entropy_coeff=0",
    "actor_rollout_ref.model.enable_gradient_checkpointing=true",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    "reward.custom_reward_function.path=pkg://rl_training.rewards.scoring",
    "reward.custom_reward_function.name=compute_score",
    "trainer.critic_warmup=0",
    "trainer.logger=[console,file]",
    "trainer.save_freq=50",
    "trainer.test_freq=25",
    "trainer.total_epochs=1",
]
VRM_REWARD = [  # later overrides of a key win: this replaces GRPO's rule reward
    "reward.custom_reward_function.path=pkg://rl_training.rewards.vrm",
    "reward.custom_reward_function.name=compute_score",
]
MIXED_REWARD = [  # s3: rule rows keep the rule reward, style-model rows go to the verifier
    "reward.custom_reward_function.path=pkg://rl_training.rewards.dispatch",
    "reward.custom_reward_function.name=compute_score",
]
STAGE_OVERRIDES: dict[str, list[str]] = {
    "s2": [*GRPO, *LENGTH_PENALTY],
    "s3": [*GRPO, *LENGTH_PENALTY, *MIXED_REWARD],
    "s4": [
        *GRPO,
        *LENGTH_PENALTY,
        "actor_rollout_ref.rollout.mode=async",
        "actor_rollout_ref.rollout.multi_turn.enable=true",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=8",
        "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=2048",
        "actor_rollout_ref.rollout.multi_turn.format=hermes",
        "actor_rollout_ref.rollout.agent.default_agent_loop=tool_agent",
    ],
}
SFT = [
    "optim.lr=1e-5",
    "optim.lr_warmup_steps=500",
    "optim.lr_scheduler_type=cosine",
    "optim.min_lr_ratio=0.1",
    "optim.weight_decay=0.01",
    "trainer.total_epochs=2",
    "data.max_length=16384",
    "data.truncation=right",
    "data.messages_key=messages",
    "data.train_batch_size=256",
    "data.micro_batch_size_per_gpu=1",
    "data.use_dynamic_bsz=true",
    "data.max_token_len_per_gpu=16384",
    "trainer.logger=[console,file]",
]


@dataclass
class Run:
    """One resolved run: the overrides verl gets, the composed config, the command."""

    stage: str
    overrides: list[str]
    config: Any
    command: list[str]
    out_dir: Path
    notes: list[str] = field(default_factory=list)


def _config_dir() -> str:
    import verl.trainer.config as cfg

    return str(Path(cfg.__file__).parent)


def compose(config_name: str, overrides: Sequence[str]) -> Any:
    """verl's own Hydra config ``config_name`` with ``overrides`` applied."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=_config_dir(), version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def plan(
    stage: Stage,
    model: Path,
    train_files: Sequence[Path],
    out_dir: Path,
    val_files: Sequence[Path] = (),
    n_gpus: int = 8,
    nnodes: int = 1,
    judge_url: str | None = None,
    search_url: str | None = None,
    extra: Sequence[str] = (),
) -> Run:
    """Resolve and validate a stage; nothing is launched."""
    from omegaconf import OmegaConf

    if stage not in ("s1", "s2", "s3", "s4"):
        raise ConfigError(f"unknown stage {stage!r}: s1 (SFT), s2, s3 or s4 (GRPO)")
    for f in [*train_files, *val_files]:
        if not Path(f).is_file():
            raise ConfigError(f"data file {f} does not exist (write it with evidex train export)")
    out_dir = out_dir.resolve()
    notes: list[str] = []
    if stage == "s1":  # verl's SFT trainer reads parquet with a messages column
        train_files = [_sft_parquet(Path(f), out_dir, notes) for f in train_files]
        val_files = [_sft_parquet(Path(f), out_dir, notes) for f in val_files]
    elif any(Path(f).suffix != ".parquet" for f in train_files):
        raise ConfigError("GRPO stages read verl's RL parquet: evidex train export --out X.parquet")
    files = "[" + ",".join(str(Path(f).resolve()) for f in train_files) + "]"
    vals = "[" + ",".join(str(Path(f).resolve()) for f in (val_files or train_files)) + "]"
    if stage == "s1":
        overrides = [
            *SFT,
            f"model.path={model}",
            f"data.train_files={files}",
            f"data.val_files={vals}",
            f"trainer.default_local_dir={out_dir / 'checkpoints'}",
            "trainer.project_name=evidex",
            "trainer.experiment_name=s1-sft",
            f"trainer.n_gpus_per_node={n_gpus}",
            f"trainer.nnodes={nnodes}",
            *extra,
        ]
        cfg = compose("sft_trainer_engine", overrides)
        _validate_sft(cfg)
        command = ["torchrun", f"--nnodes={nnodes}", f"--nproc_per_node={n_gpus}",
                   "-m", "verl.trainer.sft_trainer", *overrides]  # fmt: skip
    else:
        overrides = [
            *STAGE_OVERRIDES[stage],
            f"actor_rollout_ref.model.path={model}",
            f"data.train_files={files}",
            f"data.val_files={vals}",
            f"trainer.default_local_dir={out_dir / 'checkpoints'}",
            "trainer.project_name=evidex",
            f"trainer.experiment_name={stage}-grpo",
            f"trainer.n_gpus_per_node={n_gpus}",
            f"trainer.nnodes={nnodes}",
        ]
        if stage == "s3":
            if not judge_url:
                raise ConfigError(
                    "stage s3 scores with the verifier reward model: give --judge-url (an "
                    "OpenAI-compatible endpoint serving the judge, e.g. vllm serve)"
                )
            overrides.append(f"+reward.custom_reward_function.reward_kwargs.base_url={judge_url}")
        if stage == "s4":
            if not search_url:
                raise ConfigError(
                    "stage s4 searches evidex: give --search-url (evidex serve-search on a host "
                    "the rollout workers reach)"
                )
            from rl_training.train.verl_tools import tool_config

            tools = tool_config(out_dir / "tools.yaml", retrieval_url=search_url, exams=True)
            overrides.append(f"actor_rollout_ref.rollout.multi_turn.tool_config_path={tools}")
            notes.append(f"tool config: {tools}")
            if judge_url:  # the verifier scores answers and diagnoses instead of the rules
                overrides += [
                    *VRM_REWARD,
                    f"+reward.custom_reward_function.reward_kwargs.base_url={judge_url}",
                ]
                notes.append(f"s4 rewards: the verifier at {judge_url}")
        overrides += list(extra)
        cfg = compose("ppo_trainer", overrides)
        _validate_ppo(cfg)
        command = [sys.executable, "-m", "verl.trainer.main_ppo", *overrides]
    OmegaConf.resolve(cfg)
    return Run(stage, overrides, cfg, command, out_dir, notes)


def _sft_parquet(path: Path, out_dir: Path, notes: list[str]) -> Path:
    """SFT chat records (JSONL from evidex train export / curate) as a messages parquet."""
    if path.suffix == ".parquet":
        return path

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for n, rec in iter_jsonl(path):
        if not isinstance(rec.get("messages"), list):
            raise InputError(f"{path}:{n}: not a chat record with messages")
        rows.append(
            {"messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]}
        )
    out = out_dir / f"{path.stem}.sft.parquet"
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    notes.append(f"{path} -> {out} ({len(rows)} conversations)")
    return out


def _validate_sft(cfg: Any) -> None:
    from verl.utils.config import omega_conf_to_dataclass

    try:
        omega_conf_to_dataclass(cfg.optim)
        omega_conf_to_dataclass(cfg.checkpoint)
    except (AssertionError, ValueError, TypeError) as exc:
        raise ConfigError(f"verl rejects this SFT configuration: {exc}") from None


def _validate_ppo(cfg: Any) -> None:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:
        validate_config(
            cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg)
        )
    except (AssertionError, ValueError) as exc:
        raise ConfigError(f"verl rejects this configuration: {exc}") from None


def write(run: Run) -> Path:
    """Write the fully resolved config, the overrides and the command next to the run."""
    from omegaconf import OmegaConf

    run.out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(run.config, run.out_dir / "config.yaml")
    (run.out_dir / "overrides.txt").write_text("\n".join(run.overrides) + "\n")
    metrics = run.out_dir / "metrics.jsonl"
    script = (
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        f"# verl's file logger writes one JSON line per step here (evidex train plot reads it)\n"
        f"export VERL_FILE_LOGGER_PATH={shlex.quote(str(metrics))}\n"
        + shlex.join(run.command)
        + "\n"
    )
    (run.out_dir / "launch.sh").write_text(script)
    (run.out_dir / "launch.sh").chmod(0o755)
    return run.out_dir / "config.yaml"
