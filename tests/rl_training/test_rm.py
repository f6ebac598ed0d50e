"""The preference reward model: pair readers (evidex, HelpSteer3, INF-ORM, chat feedback) with
bad lines reported, and real training on CPU with the packaged MiniLM on MedQuAD pairs (the
question's own answer against another topic's), measured on topics unseen in training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval.errors import ConfigError, InputError
from rl_training.auxiliary.pairs import medquad_pairs, read_pairs, topics, write_pairs
from rl_training.auxiliary.rm import RMConfig, evaluate_rm
from tests.conftest import shared_path
from ui.cli import app
from ui.feedback import preference_pairs

runner = CliRunner()


def test_readers_and_bad_lines(tmp_path: Path) -> None:
    row = {"question": "Does aspirin prevent stroke?", "answer": "Yes, always.", "rating": -1,
           "correction": "Only in some patients [1].", "answer_id": "a1",
           "settings_hash": "h"}  # fmt: skip
    feedback = next(preference_pairs([row]))
    rows = [
        {"prompt": "Q1?", "chosen": "good", "rejected": "bad"},
        {"prompt": "Q2?", "chosen": "good", "rejected": "bad", "magnitude": 3},
        {"context": [{"role": "user", "content": "Q3?"}], "response1": "r1", "response2": "r2",
         "overall_preference": -2},
        {"context": [{"role": "user", "content": "Q4?"}], "response1": "r1", "response2": "r2",
         "overall_preference": 0},  # a tie: no preference, skipped silently
        {"chosen": [{"role": "user", "content": "Q5?"}, {"role": "assistant", "content": "c"}],
         "rejected": [{"role": "user", "content": "Q5?"}, {"role": "assistant", "content": "r"}],
         "magnitude": 1.5},  # INF-ORM: the prompt inside the conversations
        feedback,
        {"prompt": "Q?", "chosen": "", "rejected": "bad"},
        {"prompt": "Q?", "chosen": "same", "rejected": "same"},
        {"prompt": "Q?", "chosen": "a", "rejected": "b", "magnitude": -1},
        {"prompt": "Q?", "chosen": "a", "rejected": "b", "magnitude": "big"},
        {"question": "Q?", "answer": "A"},
    ]  # fmt: skip
    f = tmp_path / "pairs.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    pairs, problems = read_pairs(f)
    assert [p.magnitude for p in pairs] == [1.0, 3.0, 2.0, 1.5, 1.0]
    assert (pairs[2].chosen, pairs[2].rejected) == ("r1", "r2")  # negative prefers response1
    assert pairs[3].prompt == (("user", "Q5?"),) and pairs[3].chosen == "c"
    assert pairs[4].chosen == "Only in some patients [1]." and pairs[4].rejected == "Yes, always."
    assert [(p.where.rsplit(":", 1)[1], p.message.split(" ")[0]) for p in problems] == [
        ("7", "the"), ("8", "chosen"), ("9", "magnitude"), ("10", "magnitude"), ("11", "not"),
        ("12", "invalid")]  # fmt: skip
    assert "is not positive" in problems[2].message and "not a number" in problems[3].message
    with pytest.raises(InputError, match="no usable preference pair"):
        (tmp_path / "bad.jsonl").write_text('{"prompt": "Q", "chosen": "x", "rejected": "x"}\n')
        read_pairs(tmp_path / "bad.jsonl")
    with pytest.raises(InputError, match="no such file"):
        read_pairs(tmp_path / "nowhere.jsonl")


def test_config_checks(tmp_path: Path) -> None:
    from retrieval.embedders import default_model_path

    base = default_model_path()
    with pytest.raises(ConfigError, match="'hinge'"):
        RMConfig(model=base, out=tmp_path, loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="epochs"):
        RMConfig(model=base, out=tmp_path, epochs=0)
    with pytest.raises(InputError, match="not a Hugging Face checkpoint"):
        RMConfig(model=tmp_path, out=tmp_path / "o")


def test_train_rm_on_medquad_learns_held_out_topics(tmp_path: Path) -> None:
    """Own answer vs another topic's: learnable from MiniLM in about a minute on CPU."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from retrieval.embedders import default_model_path

    mq = shared_path("guidelines", "medquad", "medquad_answered.jsonl.gz")
    held = set(topics(mq)[::5])  # every fifth topic never seen in training
    train = list(medquad_pairs(mq, 96, seed=0, exclude=held))
    test = list(medquad_pairs(mq, 40, seed=1, focus=held))
    assert not {p.source for p in train} & {p.source for p in test}
    write_pairs(train, tmp_path / "train.jsonl")
    write_pairs(test, tmp_path / "test.jsonl")
    # the untrained model: MiniLM with a fresh one-output head (seed 0, as training starts)
    base = default_model_path()
    torch.manual_seed(0)
    untrained = tmp_path / "untrained"
    AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1).save_pretrained(
        str(untrained))  # fmt: skip
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(untrained))
    before = evaluate_rm(untrained, test, max_length=96)

    res = runner.invoke(app, ["train", "rm", "--data", str(tmp_path / "train.jsonl"),
                              "--model", str(base), "--out", str(tmp_path / "rm"), "--epochs",
                              "1", "--lr", "1e-4", "--max-length", "96", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["pairs"] == 96 and report["steps"] == 12 and report["loss"] == "scaled-bt"
    args = ["eval", "rm", "--model", str(tmp_path / "rm"), "--data", str(tmp_path / "test.jsonl")]
    res = runner.invoke(app, [*args, "--max-length", "96", "--json"])
    assert res.exit_code == 0, res.output
    after = json.loads(res.stdout)
    assert after["pairs"] == 40
    assert after["accuracy"] >= 0.8 and after["accuracy"] > before.accuracy + 0.2, (before, after)
    # the model plugs into curation as it is: its own answers score above mismatched ones
    from rl_training.data.reward_model import HFRewardModel

    rm = HFRewardModel(tmp_path / "rm", max_length=96)
    p = test[0]
    own, other = rm([{"messages": p.messages(p.chosen)}, {"messages": p.messages(p.rejected)}])
    assert own > other
    # ... and into GRPO's s3 as the reward of open-ended rows (verifiable rows keep the rules)
    from rl_training.rewards.preference import PreferenceReward
    from rl_training.train.trl_stages import _reward

    reward = _reward("s3", None, tmp_path / "rm")
    assert isinstance(reward, PreferenceReward)
    prompt = [{"role": "user", "content": p.prompt[0][1]}]
    scores = reward(
        prompts=[prompt, prompt, [{"role": "user", "content": "Which? A or B"}]],
        completions=[[{"role": "assistant", "content": p.chosen}],
                     [{"role": "assistant", "content": p.rejected}],
                     [{"role": "assistant", "content": "\\boxed{B}"}]],
        reward_model=[{"style": "model", "ground_truth": p.chosen},
                      {"style": "model", "ground_truth": p.chosen},
                      {"style": "rule", "ground_truth": "B"}],
        data_source=["evidex/medquad", "evidex/medquad", "evidex/medqa"],
        extra_info=[{}, {}, {}],
    )  # fmt: skip
    assert scores[0] > 0.5 and scores[1] < scores[0] and scores[2] == 1.0
    # bad input on the command line: one clear line, exit 1
    res = runner.invoke(app, ["train", "rm", "--data", str(tmp_path / "none.jsonl"), "--model",
                              str(base), "--out", str(tmp_path / "x")])  # fmt: skip
    assert res.exit_code == 1 and "no such file" in res.stderr and "Traceback" not in res.output


def test_reward_model_is_refused_on_verl(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    res = runner.invoke(app, ["train", "grpo", "--engine", "verl", "--stage", "s3", "--model",
                              str(tmp_path), "--data", str(data), "--out", str(tmp_path / "run"),
                              "--reward-model", str(tmp_path), "--dry-run"])  # fmt: skip
    assert res.exit_code == 2 and "--engine trl" in res.stderr
