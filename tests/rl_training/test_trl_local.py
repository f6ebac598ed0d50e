"""The local trainer: TRL's GRPOTrainer runs two steps on CPU on a tiny Qwen2 model built
in-process, playing the search environment against a real evidex index. The model first
learns (a few hundred plain SFT steps) to issue a search, so that rollouts really retrieve;
the test then checks that parameters changed, that rewards came from the real reward code
through the environment, and that the retrieved tokens were masked out of the loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[train]')")

from rl_training.envs.base import SearcherBackend
from rl_training.envs.search import SearchEnv, SearchEnvConfig
from rl_training.train.trl_local import LocalGRPOConfig, chat_ids, train_grpo
from tests.answer_fixture import AnswerIndex
from tests.tiny_lm import fit_segments

ENV = SearchEnvConfig(k=1, max_passage_chars=160, max_turns=3)


def _warm_up(model_dir: Path, prompt: list[dict[str, str]], make_env: Any, out: Path) -> Path:
    """Teach the random model the protocol on two trajectories (answers yes / no)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    head = chat_ids(tok, prompt)
    batches: list[tuple[list[int], list[tuple[str, int]]]] = []
    for answer in ("yes", "no"):
        env = make_env(prompt)
        env.reset()
        first = "<think> need evidence </think><search> tailored mammography </search>"
        obs = env.step(first).observation
        parts = [(first, 1), (obs, 0), (f"<think> ok </think><answer> {answer} </answer>", 1)]
        batches.append((head, parts))
    return fit_segments(model, tok, batches, 300, out)


def test_two_grpo_steps_with_the_search_environment(
    tiny_lm: Path, answer_index: AnswerIndex, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    from retrieval.search import Searcher

    with Searcher(answer_index.settings()) as searcher:
        backend = SearcherBackend(searcher)

        def make_env(prompt: Any) -> SearchEnv:
            return SearchEnv(backend, answer_index.question, "yes", "evidex/pubmedqa", config=ENV)

        prompt = [{"role": "user", "content": make_env(None).reset()}]
        warm = _warm_up(tiny_lm, prompt, make_env, tmp_path / "warm")
        before = load_file(str(warm / "model.safetensors"))
        cfg = LocalGRPOConfig(
            output_dir=tmp_path / "run", max_steps=2, num_generations=4, learning_rate=1e-3,
            max_turn_tokens=40, max_completion_tokens=320,
        )  # fmt: skip
        trainer, rollout = train_grpo(warm, [prompt], make_env, cfg)

    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before if k in after)
    played = rollout.played
    assert len(played) >= 8  # 2 steps x 4 generations
    searched = [p for p in played if p.info.get("searches")]
    assert searched, "the warmed-up model should search"
    tok = trainer.processing_class
    for p in searched:
        assert len(p.env_mask) == len(p.completion_ids)
        masked = tok.decode(
            [t for t, m in zip(p.completion_ids, p.env_mask, strict=True) if m == 0]
        )
        assert "<information>" in masked and "Doc 1(Title:" in masked  # the retrieved text
        kept = tok.decode([t for t, m in zip(p.completion_ids, p.env_mask, strict=True) if m == 1])
        assert "<information>" not in kept
    # rewards: the real reward code through the environment (task + 0.2 x format)
    for p in played:
        expected = p.info["task_reward"] + 0.2 * p.info["format_reward"]
        assert p.reward == pytest.approx(expected)
    assert {p.info["task_reward"] for p in played} <= {0.0, 1.0}
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_single_turn_stages_on_trl(tiny_lm: Path, tmp_path: Path) -> None:
    """s2: TRL's own generation scored by the length-penalized rule reward; s1: TRL's SFT."""
    import json

    from rl_training.data.export import export
    from rl_training.train.trl_config import LocalGRPOConfig
    from rl_training.train.trl_stages import read_rows, run_stage
    from tests.conftest import shared_path

    rl = tmp_path / "rl.jsonl"
    export("pubmedqa", shared_path("pubmedqa", "pqal_dev.json"), rl)
    lines = rl.read_text(encoding="utf-8").split("\n")[:4]
    short = []
    for line in lines:
        rec = json.loads(line)
        rec["prompt"][-1]["content"] = rec["extra_info"]["question"] + " Answer in \\boxed{}."
        rec["messages"] = [*rec["prompt"], {"role": "assistant", "content": "\\boxed{yes}"}]
        short.append(json.dumps(rec))
    rl.write_text("\n".join(short) + "\n", encoding="utf-8")
    data = read_rows([rl])
    grpo = run_stage("s2", tiny_lm, data, LocalGRPOConfig(
        tmp_path / "s2", max_steps=1, num_generations=2, max_completion_tokens=16,
        learning_rate=1e-3, use_cpu=True))  # fmt: skip
    logged = [h for h in grpo.state.log_history if "reward" in h]
    assert logged and "rewards/evidex_length_penalized/mean" in logged[0]
    assert (tmp_path / "s2" / "curves.png").is_file() and (tmp_path / "s2" / "model").is_dir()
    sft = run_stage("s1", tiny_lm, data, LocalGRPOConfig(
        tmp_path / "s1", max_steps=2, max_completion_tokens=128, learning_rate=1e-3,
        use_cpu=True))  # fmt: skip
    assert any("loss" in h for h in sft.state.log_history)
    example = sft.train_dataset[0]  # the loss covers the response only
    learned = [t for t in example["labels"] if t != -100]
    assert 0 < len(learned) < len(example["input_ids"])
    assert sft.processing_class.decode(learned).startswith("\\boxed{yes}")
    assert (tmp_path / "s1" / "metrics.jsonl").read_text().strip()


def test_trl_engine_on_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rl_training.data.export import export
    from tests.conftest import shared_path
    from ui.cli import app

    rows = tmp_path / "rows.parquet"
    export("pubmedqa", shared_path("pubmedqa", "pqal_dev.json"), rows)
    res = CliRunner().invoke(app, ["train", "grpo", "--engine", "trl", "--stage", "s2", "--model",
                                   str(tmp_path), "--data", str(rows), "--out", str(tmp_path / "o"),
                                   "--dry-run"])  # fmt: skip
    assert res.exit_code == 0 and "500 rows read" in res.stderr
    args = ["train", "grpo", "--engine", "jax", "--stage", "s2", "--model", "m",
            "--data", str(rows), "--out", str(tmp_path / "p")]  # fmt: skip
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 2 and "use verl or trl" in bad.stderr


def test_diagnostic_environment_through_the_trl_loop(tiny_lm: Path, tmp_path: Path) -> None:
    """The untrained model never asks or diagnoses: every turn it gets the corrective message,
    which is masked; the episode ends at the turn limit with reward 0 and no requests."""
    import json

    from rl_training.data.export import export
    from rl_training.train.trl_config import LocalGRPOConfig
    from rl_training.train.trl_stages import read_rows, run_stage
    from tests.conftest import shared_path

    cases = tmp_path / "cases.jsonl"
    lines = shared_path("cases", "agentclinic_medqa.jsonl").read_text().splitlines()[:2]
    cases.write_text("\n".join(lines) + "\n")
    rows = tmp_path / "cases.parquet"
    export("diagnosis", cases, rows)
    data = read_rows([rows])
    assert len(data) == 2
    trainer = run_stage("s4", tiny_lm, data, LocalGRPOConfig(
        tmp_path / "run", max_steps=1, num_generations=2, max_completion_tokens=160,
        learning_rate=1e-3, use_cpu=True, protocol="tags"))  # fmt: skip
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert logged and logged[0]["reward"] == 0.0
    assert (tmp_path / "run" / "curves.png").is_file()
    episodes = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(e)["requests"] for e in episodes] == [0, 0]
    tok = trainer.processing_class
    for played in trainer.evidex_rollout.played:
        assert played.reward == 0.0 and played.info["requests"] == 0
        inserted = tok.decode([t for t, m in zip(played.completion_ids, played.env_mask,
                                                 strict=True) if m == 0])  # fmt: skip
        assert inserted.count("Request an examination or test") == len(played.observations) > 0


def test_one_source_of_defaults_for_the_local_trainer(tmp_path: Path) -> None:
    from retrieval.errors import ConfigError
    from rl_training.train.jobs import TrainArgs
    from rl_training.train.trl_config import LocalGRPOConfig

    cfg = LocalGRPOConfig(output_dir=tmp_path)
    args = TrainArgs(kind="grpo", stage="s2", model=tmp_path, data=[tmp_path], out_dir=tmp_path)
    assert args.max_steps == cfg.max_steps == 100
    grpo = cfg.grpo_args()
    assert grpo.learning_rate == cfg.learning_rate == 1e-6
    assert grpo.max_completion_length == cfg.max_completion_tokens == 1024
    assert grpo.per_device_train_batch_size == cfg.num_generations * cfg.prompts_per_step
    sft = cfg.sft_args()
    assert sft.max_length == cfg.max_completion_tokens and sft.max_steps == cfg.max_steps
    with pytest.raises(ConfigError, match="max_steps must be a whole number of at least 1, got 0"):
        LocalGRPOConfig(output_dir=tmp_path, max_steps=0)
    with pytest.raises(ConfigError, match="protocol must be tools or tags, got 'xml'"):
        LocalGRPOConfig(output_dir=tmp_path, protocol="xml")  # type: ignore[arg-type]
