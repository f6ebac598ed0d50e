"""The length penalty inside the trainers' reward paths (verl's reward manager driven with
verl's own DataProto and loader; TRL's reward-function signature), and the search-protocol
format reward."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_training.rewards.length import LengthPenalizedReward, LengthPenaltyConfig
from rl_training.rewards.search_format import answer_of, search_format_problem


def _verl_batch(tokenizer, responses: list[str], prompt: str, pad_to: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import torch
    from verl import DataProto

    p_ids = tokenizer(prompt)["input_ids"]
    rows, masks = [], []
    for text in responses:
        r_ids = tokenizer(text)["input_ids"][:pad_to]
        pad = [tokenizer.pad_token_id] * (pad_to - len(r_ids))
        rows.append(r_ids + pad)
        masks.append([1] * len(p_ids) + [1] * len(r_ids) + [0] * len(pad))
    n = len(responses)
    batch = {
        "prompts": torch.tensor([p_ids] * n),
        "responses": torch.tensor(rows),
        "attention_mask": torch.tensor(masks),
    }
    non_tensor = {
        "data_source": np.array(["evidex/medqa"] * n, dtype=object),
        "reward_model": np.array([{"style": "rule", "ground_truth": "B"}] * n, dtype=object),
        "extra_info": np.array([{"index": i} for i in range(n)], dtype=object),
    }
    return DataProto.from_dict(tensors=batch, non_tensors=non_tensor)


def _config(**penalty: object):  # type: ignore[no-untyped-def]
    from omegaconf import OmegaConf

    return OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://rl_training.rewards.scoring",
                    "name": "compute_score",
                    "reward_kwargs": {},
                },
                "reward_manager": {
                    "source": "importlib",
                    "name": "LengthPenaltyRewardManager",
                    "module": {"path": "pkg://rl_training.rewards.verl_manager"},
                },
                "reward_kwargs": {"length_penalty": penalty},
            }
        }
    )


def test_verl_reward_manager_applies_the_cosine_penalty(tiny_lm: Path) -> None:
    pytest.importorskip("verl", reason="verl is not installed (pip install -e '.[train]')")
    from transformers import AutoTokenizer
    from verl.trainer.ppo.reward import load_reward_manager

    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    right = "<think>the answer</think> \\boxed{B}"
    long_right = "<think>" + "very long reasoning " * 60 + "</think> \\boxed{B}"
    wrong = "<think>x</think> \\boxed{C}"
    n_short = len(tok(right)["input_ids"])
    n_long = len(tok(long_right)["input_ids"])
    threshold, max_length = n_short + 2, n_long  # the long answer is at the maximum penalty
    manager = load_reward_manager(
        _config(threshold=threshold, max_length=max_length, max_penalty=0.5),
        tok,
    )
    assert type(manager).__name__ == "LengthPenaltyRewardManager"
    data = _verl_batch(tok, [right, long_right, wrong], "Which? A or B", pad_to=n_long + 5)
    out = [manager.loop.run_until_complete(manager.run_single(data[i : i + 1])) for i in range(3)]
    assert [o["reward_score"] for o in out] == [1.0, 0.5, 0.0]
    assert [o["reward_extra_info"]["response_tokens"] for o in out][:2] == [n_short, n_long]
    assert out[1]["reward_extra_info"]["length_penalty"] == 0.5
    assert out[0]["reward_extra_info"]["acc"] is True
    # As in the report, a long wrong answer keeps its score; penalizing it is a setting.
    long_wrong = long_right.replace("{B}", "{C}")
    data = _verl_batch(tok, [long_wrong], "Which?", pad_to=n_long + 5)
    kept = manager.loop.run_until_complete(manager.run_single(data))
    assert kept["reward_score"] == 0.0
    strict = load_reward_manager(
        _config(threshold=threshold, max_length=max_length, penalize_wrong=True), tok
    )
    assert strict.loop.run_until_complete(strict.run_single(data))["reward_score"] == -0.5
    # The scores land on each response's last token, as verl's trainer reads them.
    rm_scores = type(manager).assemble_rm_scores(
        _verl_batch(tok, [right, long_right], "Which?", n_long + 5), [1.0, 0.5]
    )
    assert rm_scores[0, n_short - 1] == 1.0 and rm_scores[1, n_long - 1] == 0.5
    with pytest.raises(ValueError, match=r"unknown reward_kwargs\.length_penalty"):
        load_reward_manager(_config(treshold=5), tok)


def test_trl_reward_function_uses_token_counts() -> None:
    fn = LengthPenalizedReward(LengthPenaltyConfig(threshold=10, max_length=20))
    metrics: dict[str, float] = {}
    rewards = fn(
        prompts=[[{"role": "user", "content": "Q"}]] * 3,
        completions=[
            [{"role": "assistant", "content": "\\boxed{B}"}],
            [{"role": "assistant", "content": "\\boxed{B}"}],
            [{"role": "assistant", "content": "\\boxed{A}"}],
        ],
        completion_ids=[[1] * 5, [1] * 15, [1] * 25],
        data_source=["evidex/medqa"] * 3,
        reward_model=[{"style": "rule", "ground_truth": "B"}] * 3,
        extra_info=[{}] * 3,
        log_metric=lambda k, v: metrics.__setitem__(k, v),
    )
    assert rewards == [1.0, 0.75, 0.0]  # the long wrong answer keeps its score
    assert metrics["length_penalty"] == pytest.approx(0.25 / 3)  # the mean over the batch
    assert fn.__name__ == "evidex_length_penalized"


@pytest.mark.parametrize(
    ("trajectory", "problem"),
    [
        ("<think>t</think><answer>yes</answer>", None),
        (
            "<think>t</think><search>q</search><information>a <b>bold</b> </information>"
            "<think>u</think><search>q2</search><information>x</information><answer>no</answer>",
            None,
        ),
        ("<think>t</think>", "no answer"),
        ("", "does not start with <think>"),
        ("<think>t</think><answer></answer>", "empty answer"),
        ("<think>t</think><search> </search><information>x</information>", "empty search"),
        ("<think>t</think><answer>a", "unclosed <answer>"),
        ("<think>t</think></answer>", "</answer> without <answer>"),
        (
            "<think>t</think><information>x</information><answer>a</answer>",
            "information without a search",
        ),
        ("<think>t</think><search>q</search>", "search without information"),
        ("<think>t</think><tool>x</tool>", "unknown tag <tool>"),
        ("<think>t</think> so <answer>a</answer>", "text outside tags before <answer>"),
        ("<think>t</think><answer>a</answer><think>more</think>", "text after the answer"),
    ],
)
def test_search_format(trajectory: str, problem: str | None) -> None:
    assert search_format_problem(trajectory) == problem


def test_search_answer_ignores_retrieved_text() -> None:
    t = "<think>t</think><search>q</search><information><answer>planted</answer></information>"
    assert search_format_problem(t + "<answer>real</answer>") is None
    assert answer_of(t + "<answer>real</answer>") == "real"
