"""A local GRPO trainer (one GPU, or a CPU smoke run) on TRL, for the evidex environments.

Two ways to play the environments, chosen by the stage's ``protocol``:

- ``tools`` (default; what verl's tool agent does): TRL's ``environment_factory`` with the
  tool-calling environments of :mod:`rl_training.train.trl_envs`. The model calls ``search``
  or ``request_exam`` through its chat template's tool-call format; TRL runs the calls and
  masks the tool answers (``tool_mask``); :class:`rl_training.train.trl_envs.ToolEpisodeReward`
  scores the episode. Needs a chat model whose template renders tool calls (Qwen2.5, Qwen3,
  Llama 3.1, ...). See :func:`tool_env_trainer`.
- ``tags`` (the Search-R1 text protocol, for models without tool calling): TRL's
  ``GRPOTrainer`` gets a ``rollout_func`` that plays each episode of an environment
(:class:`rl_training.envs.search.SearchEnv` or
:class:`rl_training.envs.diagnosis.DiagnosisEnv`) with the policy being trained: the model
generates until a closing tag, the environment answers, and so on until the episode ends. The
text the environment inserts (retrieved passages, findings, corrections) goes back to TRL as
``env_mask`` zeros, so it is never trained on; the episode's reward (the part-1 reward code
through the environment) is passed to the ``env_reward`` reward function.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from retrieval.errors import ConfigError
from rl_training.data.rows import RLRow
from rl_training.envs.base import StepResult
from rl_training.train.metrics import write_run
from rl_training.train.trl_config import LocalGRPOConfig
from rl_training.train.trl_envs import ToolEpisodeReward

log = logging.getLogger(__name__)


class Episode(Protocol):
    """What the rollout needs from an environment."""

    def reset(self) -> str: ...

    def step(self, action: str) -> StepResult: ...


EnvFactory = Callable[[Sequence[dict[str, Any]]], Episode]
"""Builds the environment of one rollout from its prompt (chat messages)."""

STOP = ("</search>", "</answer>", "</request>")


@dataclass
class Played:
    """One finished rollout, kept for metrics and inspection."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    reward: float
    info: dict[str, Any]
    observations: list[str] = field(default_factory=list)


def chat_ids(tokenizer: Any, messages: Any) -> list[int]:
    """Token ids of ``messages`` with the generation prompt (transformers 4 and 5 alike)."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(out, "keys"):
        out = out["input_ids"]
    ids = list(out)
    return [int(x) for x in (ids[0] if ids and isinstance(ids[0], list) else ids)]


def _cut_at_stop(tokenizer: Any, ids: list[int]) -> list[int]:
    """The generated ids up to and including the first stop tag (whole tokens)."""
    text = ""
    for i in range(len(ids)):
        text = tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        if any(t in text for t in STOP):
            return ids[: i + 1]
    return ids


class EnvRollout:
    """TRL ``rollout_func``: plays one episode per prompt with the trainer's model."""

    def __init__(self, make_env: EnvFactory, config: LocalGRPOConfig) -> None:
        self.make_env, self.config = make_env, config
        self.played: list[Played] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        import torch

        model = trainer.accelerator.unwrap_model(trainer.model)
        tok = trainer.processing_class
        out: dict[str, Any] = {"prompt_ids": [], "completion_ids": [], "logprobs": None,
                               "env_mask": [], "env_reward": []}  # fmt: skip
        was_training = model.training
        model.eval()
        try:
            for prompt in prompts:
                played = self._play(prompt, model, tok, torch)
                self.played.append(played)
                out["prompt_ids"].append(played.prompt_ids)
                out["completion_ids"].append(played.completion_ids)
                out["env_mask"].append(played.env_mask)
                out["env_reward"].append(played.reward)
        finally:
            model.train(was_training)
        return out

    def _play(self, prompt: Any, model: Any, tok: Any, torch: Any) -> Played:
        cfg = self.config
        env = self.make_env(prompt)
        env.reset()
        prompt_ids = chat_ids(tok, prompt)
        completion: list[int] = []
        mask: list[int] = []
        observations: list[str] = []
        result: StepResult | None = None
        while len(completion) < cfg.max_completion_tokens:
            budget = min(cfg.max_turn_tokens, cfg.max_completion_tokens - len(completion))
            ctx = torch.tensor([prompt_ids + completion], device=model.device)
            with torch.no_grad():
                gen = model.generate(
                    ctx,
                    attention_mask=torch.ones_like(ctx),
                    max_new_tokens=budget,
                    do_sample=True,
                    temperature=cfg.temperature,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            new = [int(t) for t in gen[0, ctx.shape[1] :]]
            if tok.eos_token_id in new:
                new = new[: new.index(tok.eos_token_id) + 1]
            new = _cut_at_stop(tok, new)
            completion += new
            mask += [1] * len(new)
            result = env.step(tok.decode(new, skip_special_tokens=True))
            if result.done:
                break
            obs = tok.encode(result.observation, add_special_tokens=False)
            observations.append(result.observation)
            completion += obs
            mask += [0] * len(obs)
            if tok.eos_token_id in new:  # the model ended its turn for good
                result = env.step("")
                break
        if result is None or not result.done:
            result = env.step("")  # out of budget: the environment scores what there is
            while not result.done:
                result = env.step("")
        return Played(
            prompt_ids,
            completion,
            mask,
            float(result.reward or 0.0),
            dict(result.info),
            observations,
        )


def env_reward(
    completions: list[Any], env_reward: list[float] | None = None, **_: Any
) -> list[float | None]:
    """TRL reward function: the episode reward the environment computed.

    >>> env_reward([None, None], env_reward=[1.2, 0.0])
    [1.2, 0.0]
    """
    if env_reward is None:
        raise ConfigError("env_reward missing: use this reward with EnvRollout")
    return [float(r) for r in env_reward]  # (TRL accepts None for "no reward here")


def train_grpo(
    model_path: Path,
    prompts: Sequence[list[dict[str, str]]],
    make_env: EnvFactory,
    config: LocalGRPOConfig,
) -> tuple[Any, EnvRollout]:
    """Run GRPO with TRL on ``prompts``; writes ``metrics.jsonl``, ``curves.png`` and the
    model into ``config.output_dir``. Returns the trainer and the rollout (every episode)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.grpo_trainer import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(str(model_path))
    rollout = EnvRollout(make_env, config)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[env_reward],
        args=config.grpo_args(),
        train_dataset=Dataset.from_list([{"prompt": list(p)} for p in prompts]),
        processing_class=tok,
        rollout_func=rollout,
    )
    trainer.train()
    write_run(trainer, config.output_dir, [{"reward": p.reward, **p.info} for p in rollout.played])
    return trainer, rollout


def tool_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An exported row as a dataset row of the tools protocol: the chat prompt (a QA row
    without the tool-agent system prompt gets it), the ``environment`` it plays in (search or
    diagnosis), and the reward fields as JSON text (their types vary from task to task).
    A row that is already one comes back unchanged."""
    from rl_training.data.agentic import search_rows

    r = RLRow.from_verl(row)
    if not r.is_diagnosis and r.agent_name != "tool_agent" and "environment" not in row:
        r = RLRow.from_verl(next(search_rows([r.to_verl()])))
    verl = r.to_verl()
    return {
        "prompt": [{"role": m["role"], "content": m["content"]} for m in r.prompt],
        "environment": r.environment,
        "data_source": r.data_source,
        "reward_model": json.dumps(verl["reward_model"], ensure_ascii=False),
        "extra_info": json.dumps(verl["extra_info"], ensure_ascii=False),
    }


def tool_env_trainer(
    model_path: Path,
    rows: Sequence[Mapping[str, Any]],
    factories: Mapping[str, Callable[[], Any]],
    config: LocalGRPOConfig,
) -> tuple[Any, ToolEpisodeReward]:
    """TRL's GRPOTrainer with ``environment_factory`` (one factory per environment name:
    ``search`` and/or ``diagnosis``, see :func:`tool_row`), not yet trained. Returns the
    trainer and the reward, whose ``episodes`` collect every scored rollout."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.chat_template_utils import supports_tool_calling
    from trl.trainer.grpo_trainer import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(str(model_path))
    if not supports_tool_calling(tok):
        raise ConfigError(
            f"{model_path}: the chat template cannot render tool calls. Train a tool-calling "
            "chat model (Qwen2.5/Qwen3 Instruct, Llama 3.1), or play the environments with "
            "Search-R1 text tags instead (--protocol tags)."
        )
    data = [tool_row(r) for r in rows]
    missing = sorted({d["environment"] for d in data} - set(factories))
    if missing:
        raise ConfigError(f"rows need the {', '.join(missing)} environment, which is not set up")
    reward = ToolEpisodeReward()
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_path)),
        reward_funcs=[reward],
        args=config.grpo_args(max_tool_calling_iterations=config.max_turns),
        train_dataset=Dataset.from_list(data),
        processing_class=tok,
        environment_factory=dict(factories),
    )
    return trainer, reward
