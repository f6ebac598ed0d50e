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

from rl_training.envs.base import StepResult
from rl_training.train.trl_envs import ToolEpisodeReward, json_field

log = logging.getLogger(__name__)


class Episode(Protocol):
    """What the rollout needs from an environment."""

    def reset(self) -> str: ...

    def step(self, action: str) -> StepResult: ...


EnvFactory = Callable[[Sequence[dict[str, Any]]], Episode]
"""Builds the environment of one rollout from its prompt (chat messages)."""

STOP = ("</search>", "</answer>", "</request>")


@dataclass
class LocalGRPOConfig:
    """The local trainer's settings (TRL ``GRPOConfig`` gets the training ones)."""

    output_dir: Path
    max_steps: int = 2
    num_generations: int = 4
    learning_rate: float = 1e-5
    beta: float = 0.0
    temperature: float = 1.0
    max_turn_tokens: int = 48
    """New tokens per model turn (a turn also ends at a closing tag)."""
    max_completion_tokens: int = 512
    """Model and environment tokens per episode."""
    prompts_per_step: int = 1
    """Prompts per optimizer step (each gets ``num_generations`` rollouts)."""
    max_turns: int = 8
    """tools protocol: tool-calling rounds per episode."""
    seed: int = 0
    use_cpu: bool = True
    logging_steps: int = 1


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
        raise ValueError("env_reward missing: use this reward with EnvRollout")
    return [float(r) for r in env_reward]  # (TRL accepts None for "no reward here")


def _grpo_args(config: LocalGRPOConfig, **extra: Any) -> Any:
    """TRL's GRPOConfig for a local run."""
    from trl.trainer.grpo_config import GRPOConfig

    return GRPOConfig(
        output_dir=str(config.output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.num_generations * config.prompts_per_step,
        num_generations=config.num_generations,
        learning_rate=config.learning_rate,
        beta=config.beta,
        temperature=config.temperature,
        max_completion_length=config.max_completion_tokens,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        use_cpu=config.use_cpu,
        bf16=False,
        **extra,
    )


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
        args=_grpo_args(config),
        train_dataset=Dataset.from_list([{"prompt": list(p)} for p in prompts]),
        processing_class=tok,
        rollout_func=rollout,
    )
    trainer.train()
    _finish(trainer, config.output_dir, [{"reward": p.reward, **p.info} for p in rollout.played])
    return trainer, rollout


def tool_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An exported row as a dataset row of the tools protocol: the chat prompt (a QA row
    without the tool-agent system prompt gets it), the ``environment`` it plays in (search or
    diagnosis), and the reward fields as JSON text (their types vary from task to task).
    A row that is already one comes back unchanged."""
    from rl_training.data.agentic import search_rows

    row = {
        **row,
        "reward_model": json_field(row["reward_model"]),
        "extra_info": json_field(row.get("extra_info")) or {},
    }
    diagnosis = str(row["data_source"]).endswith("diagnosis")
    if not diagnosis and row.get("agent_name") != "tool_agent" and "environment" not in row:
        row = next(search_rows([row]))
    return {
        "prompt": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
        "environment": "diagnosis" if diagnosis else "search",
        "data_source": row["data_source"],
        "reward_model": json.dumps(row["reward_model"], ensure_ascii=False),
        "extra_info": json.dumps(row.get("extra_info") or {}, ensure_ascii=False),
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
        raise ValueError(
            f"{model_path}: the chat template cannot render tool calls. Train a tool-calling "
            "chat model (Qwen2.5/Qwen3 Instruct, Llama 3.1), or play the environments with "
            "Search-R1 text tags instead (--protocol tags)."
        )
    data = [tool_row(r) for r in rows]
    missing = sorted({d["environment"] for d in data} - set(factories))
    if missing:
        raise ValueError(f"rows need the {', '.join(missing)} environment, which is not set up")
    reward = ToolEpisodeReward()
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model_path)),
        reward_funcs=[reward],
        args=_grpo_args(config, max_tool_calling_iterations=config.max_turns),
        train_dataset=Dataset.from_list(data),
        processing_class=tok,
        environment_factory=dict(factories),
    )
    return trainer, reward


# -- the command line's TRL engine --------------------------------------------------------


def read_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Rows of exported parquet or JSONL files."""
    rows: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(p).to_pylist()
        else:
            with open(p, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError:
                            raise ValueError(f"{p}:{n}: not JSON") from None
    if not rows:
        raise ValueError(f"no rows in {', '.join(map(str, paths))}")
    return rows


def sft_example(record: Mapping[str, Any], n: int = 0) -> dict[str, Any]:
    """An SFT chat record as TRL's prompt-completion example, so the loss covers only the
    response (as verl's SFT trainer masks all but the assistant turns): the prompt is every
    message before the first assistant turn.

    >>> sft_example({"messages": [{"role": "user", "content": "Q"},
    ...                           {"role": "assistant", "content": "A"}]})["completion"]
    [{'role': 'assistant', 'content': 'A'}]
    """
    messages = record.get("messages")
    if not messages:
        raise ValueError(
            f"record {n}: s1 (SFT) needs chat records with messages: evidex train export --out "
            "X.jsonl"
        )
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if not first:
        raise ValueError(f"record {n}: no assistant turn after the prompt to learn from")
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"prompt": plain[:first], "completion": plain[first:]}


def _finish(trainer: Any, out: Path, episodes: Sequence[Mapping[str, Any]] = ()) -> None:
    """Write the run's metrics, its curves, its episodes (environment runs) and the trained
    model into ``out``."""
    from rl_training.train.metrics import plot

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for rec in trainer.state.log_history:
            fh.write(json.dumps(rec) + "\n")
    if episodes:
        with open(out / "episodes.jsonl", "w", encoding="utf-8") as fh:
            for ep in episodes:
                fh.write(json.dumps(ep, ensure_ascii=False, default=str) + "\n")
    trainer.save_model(str(out / "model"))
    plot(out / "metrics.jsonl", out / "curves.png")


def run_stage(
    stage: str,
    model: Path,
    rows: Sequence[dict[str, Any]],
    out: Path,
    *,
    max_steps: int = 100,
    num_generations: int = 4,
    max_completion_tokens: int = 1024,
    learning_rate: float = 1e-6,
    search: Any = None,
    judge_url: str | None = None,
    use_cpu: bool = False,
    protocol: str = "tools",
) -> Any:
    """One stage on TRL: s1 SFT, s2 GRPO with the length-penalized rule reward, s3 GRPO with
    the verifier reward, s4 GRPO in the search or diagnostic environment (``protocol``:
    ``tools`` through TRL's environment_factory, or ``tags`` for Search-R1 text tags).
    ``judge_url`` (the verifier) scores s3, and in s4 the answers and diagnoses; without it
    s4 uses the rule reward and normalized exact match. ``rows``: see :func:`read_rows`."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    common: dict[str, Any] = {
        "output_dir": str(out),
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": use_cpu,
        "bf16": False,
    }
    if stage == "s1":
        from trl.trainer.sft_config import SFTConfig
        from trl.trainer.sft_trainer import SFTTrainer

        ds = Dataset.from_list([sft_example(r, n) for n, r in enumerate(rows, 1)])
        sft = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(str(model)),
            args=SFTConfig(
                **common, per_device_train_batch_size=2, max_length=max_completion_tokens
            ),
            train_dataset=ds,
            processing_class=tok,
        )
        sft.train()
        _finish(sft, out)
        return sft
    if stage == "s4":
        cfg = LocalGRPOConfig(
            output_dir=out, max_steps=max_steps, num_generations=num_generations,
            learning_rate=learning_rate, max_completion_tokens=max_completion_tokens,
            use_cpu=use_cpu,
        )  # fmt: skip
        return _run_s4(rows, model, cfg, protocol, search, judge_url)
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    from rl_training.rewards.length import LengthPenalizedReward

    reward: Any = LengthPenalizedReward()
    if stage == "s3":
        if not judge_url:
            raise ValueError("s3 needs --judge-url (the verifier's OpenAI-compatible endpoint)")
        from rl_training.rewards import vrm

        def vrm_reward(
            completions: list[Any],
            reward_model: list[dict[str, Any]],
            data_source: list[str],
            extra_info: list[dict[str, Any]],
            **_: Any,
        ) -> list[float | None]:
            out_scores: list[float | None] = []
            for c, rm, src, info in zip(
                completions, reward_model, data_source, extra_info, strict=True
            ):
                text = c[-1]["content"] if isinstance(c, list) else str(c)
                out_scores.append(
                    vrm.compute_score(src, text, rm["ground_truth"], info, base_url=judge_url)[
                        "score"
                    ]
                )
            return out_scores

        reward = vrm_reward
    elif stage != "s2":
        raise ValueError(f"unknown stage {stage!r}: s1, s2, s3 or s4")
    keep = ("prompt", "data_source", "reward_model", "extra_info")
    ds = Dataset.from_list([{k: r[k] for k in keep} for r in rows])
    grpo = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(str(model)),
        reward_funcs=[reward],
        args=GRPOConfig(
            **common,
            per_device_train_batch_size=num_generations,
            num_generations=num_generations,
            max_completion_length=max_completion_tokens,
        ),
        train_dataset=ds,
        processing_class=tok,
    )
    grpo.train()
    _finish(grpo, out)
    return grpo


def _run_s4(
    rows: Sequence[dict[str, Any]],
    model: Path,
    cfg: LocalGRPOConfig,
    protocol: str,
    search: Any,
    judge_url: str | None,
) -> Any:
    """S4: search-augmented QA rows and diagnostic-chain rows, played with ``protocol``."""
    from rl_training.envs.diagnosis import Case, DiagnosisEnv, vrm_judge
    from rl_training.envs.search import SearchEnv, TaskScorer, rule_score
    from rl_training.train import trl_envs

    if protocol not in ("tools", "tags"):
        raise ValueError(f"unknown protocol {protocol!r}: tools or tags")
    judge = None
    scorer: TaskScorer = rule_score
    if judge_url:
        from rl_training.rewards import vrm

        judge = vrm_judge(vrm.judge_for(judge_url))  # the same shared judge as vrm_score

        def vrm_score(source: str, text: str, truth: Any, info: Mapping[str, Any]) -> float:
            return float(vrm.compute_score(source, text, truth, info, base_url=judge_url)["score"])

        scorer = vrm_score

    kinds = {"diagnosis" if r["data_source"].endswith("diagnosis") else "search" for r in rows}
    if "search" in kinds and search is None:
        raise ValueError("s4 question rows need the search backend: --search-url or --store")
    if protocol == "tools":
        tool_cfg = trl_envs.ToolEnvConfig()
        factories: dict[str, Callable[[], Any]] = {}
        if "search" in kinds:
            factories["search"] = lambda: trl_envs.SearchToolEnv(search, tool_cfg, scorer)
        if "diagnosis" in kinds:
            factories["diagnosis"] = (
                (lambda: trl_envs.DiagnosisSearchToolEnv(judge, tool_cfg, search))
                if search is not None
                else (lambda: trl_envs.DiagnosisToolEnv(judge, tool_cfg))
            )
        trainer, reward = tool_env_trainer(model, rows, factories, cfg)
        trainer.train()
        _finish(trainer, cfg.output_dir, reward.episodes)
        trainer.evidex_episodes = reward.episodes  # every scored episode, for inspection
        return trainer

    envs: dict[str, Callable[[], Episode]] = {}
    prompts = []

    def diagnosis(case: Case) -> Callable[[], Episode]:
        return lambda: DiagnosisEnv(case, search=search, judge=judge)

    def qa(row: dict[str, Any]) -> Callable[[], Episode]:
        info = row["extra_info"]
        question = str(info.get("question") or row["prompt"][-1]["content"])
        truth, source = row["reward_model"]["ground_truth"], row["data_source"]
        return lambda: SearchEnv(search, question, truth, source, info, scorer=scorer)

    for r in rows:
        make: Callable[[], Episode]
        if r["data_source"].endswith("diagnosis"):
            kwargs = r["extra_info"]["tools_kwargs"]["request_exam"]["create_kwargs"]
            make = diagnosis(Case.from_record(json.loads(kwargs["case_json"])))
        else:
            make = qa(r)
        text = make().reset()
        envs[text] = make
        prompts.append([{"role": "user", "content": text}])
    trainer, rollout = train_grpo(model, prompts, lambda p: envs[p[-1]["content"]](), cfg)
    trainer.evidex_rollout = rollout  # the played episodes, for inspection
    return trainer
