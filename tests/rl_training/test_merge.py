"""Merging real (tiny, random) Qwen2 checkpoints: exact weighted averages over sharded
safetensors, differing vocabularies, the tokenizer copied, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from rl_training.train.merge import MergeError, merge, weight_map
from ui.cli import app


def _tiny(out: Path, seed: int, vocab: int = 300, hidden: int = 32, shard: str = "20KB") -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out), max_shard_size=shard)
    return out


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name, file in weight_map(path).items():
        with safe_open(str(file), framework="pt") as fh:
            out[name] = fh.get_tensor(name)
    return out


def test_merge_is_the_exact_weighted_average(tmp_path: Path, tiny_lm: Path) -> None:
    a, b = _tiny(tmp_path / "a", 1), _tiny(tmp_path / "b", 2)
    assert (a / "model.safetensors.index.json").is_file()  # sharded input
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (a / f).write_bytes((tiny_lm / f).read_bytes())
    out = tmp_path / "merged"
    rep = merge([a, b], [0.3, 0.7], out, max_shard_bytes=30_000)
    ta, tb, tm = _tensors(a), _tensors(b), _tensors(out)
    assert set(tm) == set(ta) and rep.shards > 1
    for name in ta:
        expected = (0.3 * ta[name].float() + 0.7 * tb[name].float()).to(ta[name].dtype)
        assert torch.equal(tm[name], expected), name
    assert "tokenizer.json" in rep.copied and (out / "tokenizer.json").is_file()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))  # a loadable checkpoint
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 300)


def test_differing_vocab_sizes_keep_the_first_models_vocabulary(tmp_path: Path) -> None:
    a, b = _tiny(tmp_path / "a", 1, vocab=320), _tiny(tmp_path / "b", 2, vocab=300)
    out = tmp_path / "m"
    merge([a, b], [0.5, 0.5], out)
    ta, tb, tm = _tensors(a), _tensors(b), _tensors(out)
    emb = "model.embed_tokens.weight"
    assert tm[emb].shape == (320, 32)
    assert torch.allclose(tm[emb][:300], 0.5 * ta[emb][:300] + 0.5 * tb[emb], atol=1e-6)
    assert torch.equal(tm[emb][300:], ta[emb][300:])  # rows only the first model has
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 320


def test_incompatible_checkpoints_are_refused(tmp_path: Path) -> None:
    a, wide = _tiny(tmp_path / "a", 1), _tiny(tmp_path / "w", 2, hidden=64)
    with pytest.raises(MergeError, match=r"hidden_size differs: 32 .* 64"):
        merge([a, wide], [0.5, 0.5], tmp_path / "x")
    with pytest.raises(MergeError, match="2 checkpoints but 3 weights"):
        merge([a, a], [0.2, 0.3, 0.5], tmp_path / "x")
    with pytest.raises(MergeError, match=r"no config\.json"):
        merge([a, tmp_path], [0.5, 0.5], tmp_path / "x")


def test_merge_command(tmp_path: Path) -> None:
    a, b = _tiny(tmp_path / "a", 1, shard="1GB"), _tiny(tmp_path / "b", 2, shard="1GB")
    out = tmp_path / "c"
    res = CliRunner().invoke(
        app, ["train", "merge", str(a), str(b), "--weights", "0.5", "0.5", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "merged" in res.stderr and (out / "model.safetensors").is_file()
    ta, tb, tm = _tensors(a), _tensors(b), _tensors(out)
    name = "lm_head.weight"
    assert torch.equal(
        tm[name], (0.5 * ta[name].float() + 0.5 * tb[name].float()).to(ta[name].dtype)
    )
    again = CliRunner().invoke(app, ["train", "merge", str(a), str(b), "--out", str(out)])
    assert again.exit_code == 1 and "not empty" in again.stderr
