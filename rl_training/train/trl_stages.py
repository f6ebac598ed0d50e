"""The report's stages on TRL (``evidex train sft|grpo --engine trl``): s1 SFT, s2 GRPO with the
length-penalized rule reward, s3 GRPO with the verifier reward, s4 GRPO in the search and
diagnostic environments (played as tool calls or Search-R1 tags, see
:mod:`rl_training.train.trl_local`).

>>> sft_example({"messages": [{"role": "user", "content": "Q"},
...                           {"role": "assistant", "content": "A"}]})["completion"]
[{'role': 'assistant', 'content': 'A'}]
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import ConfigError, InputError
from rl_training.data.rows import RLRow, environments, read_rows
from rl_training.train.metrics import write_run
from rl_training.train.trl_config import STAGES, LocalGRPOConfig

log = logging.getLogger(__name__)

__all__ = ["open_search", "read_rows", "run_stage", "sft_example"]


def sft_example(record: Mapping[str, Any], n: int = 0) -> dict[str, Any]:
    """An SFT chat record as TRL's prompt-completion example, so the loss covers only the
    response (as verl's SFT trainer masks all but the assistant turns): the prompt is every
    message before the first assistant turn."""
    messages = record.get("messages")
    if not messages:
        raise InputError(
            f"record {n}: s1 (SFT) needs chat records with messages: evidex train export --out "
            "X.jsonl"
        )
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    if not first:
        raise InputError(f"record {n}: no assistant turn after the prompt to learn from")
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"prompt": plain[:first], "completion": plain[first:]}


@contextlib.contextmanager
def open_search(
    stage: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    search_url: str | None = None,
    settings: Callable[[], Any] | None = None,
    want_index: bool = False,
) -> Iterator[Any]:
    """The search backend s4 plays with, closed afterwards: the search service at
    ``search_url``, else an in-process searcher over the index of ``settings()`` when the
    rows hold questions (diagnosis rows get search as an extra tool only when ``want_index``,
    i.e. an index was named). Other stages, and diagnosis-only rows, get ``None``."""
    if stage != "s4":
        yield None
        return
    if search_url:
        from rl_training.envs.base import HTTPBackend

        yield HTTPBackend(search_url)
        return
    if "search" not in environments(rows) and not want_index:
        yield None
        return
    from retrieval.search import Searcher
    from retrieval.settings import load_settings
    from rl_training.envs.base import SearcherBackend

    with Searcher(settings() if settings else load_settings()) as searcher:
        yield SearcherBackend(searcher)


def run_stage(
    stage: str,
    model: Path,
    rows: Sequence[Mapping[str, Any]],
    config: LocalGRPOConfig,
    *,
    search: Any = None,
) -> Any:
    """Run one stage on TRL and write the run into ``config.output_dir``; returns the trainer.

    ``config.judge_url`` (the verifier) scores s3, and in s4 the answers and diagnoses;
    without it s4 uses the rule reward and normalized exact match. ``search`` is s4's search
    backend (see :func:`open_search`). ``rows``: see :func:`rl_training.data.rows.read_rows`.
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}: s1, s2, s3 or s4")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if stage == "s4":
        return _run_s4(rows, model, config, search)
    from datasets import Dataset

    tok = AutoTokenizer.from_pretrained(str(model))
    if stage == "s1":
        from trl.trainer.sft_trainer import SFTTrainer

        ds = Dataset.from_list([sft_example(r, n) for n, r in enumerate(rows, 1)])
        trainer: Any = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(str(model)),
            args=config.sft_args(),
            train_dataset=ds,
            processing_class=tok,
        )
    else:
        from trl.trainer.grpo_trainer import GRPOTrainer

        typed = [RLRow.from_verl(r, n) for n, r in enumerate(rows, 1)]
        trainer = GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(str(model)),
            reward_funcs=[_reward(stage, config.judge_url, config.reward_model)],
            args=config.grpo_args(),
            train_dataset=Dataset.from_list([_grpo_example(r) for r in typed]),
            processing_class=tok,
        )
    trainer.train()
    write_run(trainer, config.output_dir)
    return trainer


def _grpo_example(row: RLRow) -> dict[str, Any]:
    verl = row.to_verl()
    return {k: verl[k] for k in ("prompt", "data_source", "reward_model", "extra_info")}


def _reward(stage: str, judge_url: str | None, reward_model: Path | None = None) -> Any:
    """s2: the length-penalized rule reward; s3: the verifier reward model (or a preference
    reward model folder) for open-ended rows, the rule reward for verifiable ones
    (:mod:`rl_training.rewards.dispatch`)."""
    from rl_training.rewards.length import LengthPenalizedReward

    if stage == "s2":
        return LengthPenalizedReward()
    if reward_model is not None:
        from rl_training.rewards.preference import PreferenceReward

        return PreferenceReward(reward_model)
    if not judge_url:
        raise ConfigError(
            "s3 needs --judge-url (the verifier's OpenAI-compatible endpoint) or "
            "--reward-model (a preference reward model folder from evidex train rm)"
        )
    from rl_training.rewards import dispatch

    def vrm_reward(
        completions: list[Any],
        reward_model: list[dict[str, Any]],
        data_source: list[str],
        extra_info: list[dict[str, Any]],
        **_: Any,
    ) -> list[float | None]:
        out: list[float | None] = []
        for c, rm, src, info in zip(completions, reward_model, data_source, extra_info,
                                    strict=True):  # fmt: skip
            text = c[-1]["content"] if isinstance(c, list) else str(c)
            score = dispatch.compute_score(src, text, rm["ground_truth"], info,
                                           style=rm.get("style"), base_url=judge_url)  # fmt: skip
            out.append(score["score"])
        return out

    return vrm_reward


def _run_s4(
    rows: Sequence[Mapping[str, Any]], model: Path, cfg: LocalGRPOConfig, search: Any
) -> Any:
    """S4: search-augmented QA rows and diagnostic-chain rows, played with ``cfg.protocol``."""
    from rl_training.envs.diagnosis import Case, DiagnosisEnv, vrm_judge
    from rl_training.envs.search import SearchEnv, TaskScorer, rule_score
    from rl_training.train import trl_envs
    from rl_training.train.trl_local import Episode, tool_env_trainer, train_grpo

    judge = None
    scorer: TaskScorer = rule_score
    judge_url = cfg.judge_url
    if judge_url:
        from rl_training.rewards import vrm

        judge = vrm_judge(vrm.judge_for(judge_url))  # the same shared judge as vrm_score

        def vrm_score(source: str, text: str, truth: Any, info: Mapping[str, Any]) -> float:
            return float(vrm.compute_score(source, text, truth, info, base_url=judge_url)["score"])

        scorer = vrm_score

    kinds = environments(rows)
    if "search" in kinds and search is None:
        raise ConfigError("s4 question rows need the search backend: --search-url or --store")
    if cfg.protocol == "tools":
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
        write_run(trainer, cfg.output_dir, reward.episodes)
        trainer.evidex_episodes = reward.episodes  # every scored episode, for inspection
        return trainer

    envs: dict[str, Callable[[], Episode]] = {}
    prompts = []

    def diagnosis(case: Case) -> Callable[[], Episode]:
        return lambda: DiagnosisEnv(case, search=search, judge=judge)

    def qa(row: RLRow) -> Callable[[], Episode]:
        return lambda: SearchEnv(search, row.question, row.ground_truth, row.data_source,
                                 dict(row.extra_info), scorer=scorer)  # fmt: skip

    for n, raw in enumerate(rows, 1):
        row = RLRow.from_verl(raw, n)
        make = diagnosis(Case.from_record(row.case_record())) if row.is_diagnosis else qa(row)
        text = make().reset()
        envs[text] = make
        prompts.append([{"role": "user", "content": text}])
    trainer, rollout = train_grpo(model, prompts, lambda p: envs[p[-1]["content"]](), cfg)
    trainer.evidex_rollout = rollout  # the played episodes, for inspection
    return trainer
