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

ENV = SearchEnvConfig(k=1, max_passage_chars=160, max_turns=3)


def _warm_up(model_dir: Path, prompt: list[dict[str, str]], make_env: Any, out: Path) -> Path:
    """Teach the random model the protocol on two trajectories (answers yes / no)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    head = chat_ids(tok, prompt)
    batches = []
    for answer in ("yes", "no"):
        env = make_env(prompt)
        env.reset()
        first = "<think> need evidence </think><search> tailored mammography </search>"
        obs = env.step(first).observation
        parts = [(first, 1), (obs, 0), (f"<think> ok </think><answer> {answer} </answer>", 1)]
        ids, labels = list(head), [-100] * len(head)
        for text, learn in parts:
            seg = tok.encode(text, add_special_tokens=False)
            ids += seg
            labels += seg if learn else [-100] * len(seg)
        batches.append((torch.tensor([ids]), torch.tensor([labels])))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for step in range(300):
        ids, labels = batches[step % 2]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


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
