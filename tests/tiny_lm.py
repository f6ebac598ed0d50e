"""A tiny causal language model for training tests: a byte-level BPE tokenizer trained
in-process on real abstracts (lossless decoding, a Qwen-style chat template) and a 2-layer
Qwen2 model with random weights. Built once per test session (see ``tiny_lm`` in conftest)."""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus(shared: Path, n: int = 300) -> list[str]:
    texts = [
        "<think> reasoning </think> \\boxed{A} \\boxed{B} <search> query </search> "
        "<information> Doc 1 </information> <answer> yes no maybe </answer>"
    ]
    path = shared / "pubmedqa" / "abstracts.jsonl"
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for _, line in zip(range(n), fh, strict=False):
                rec = json.loads(line)
                texts.append(" ".join(s["text"] for s in rec["sections"]))
    return texts


def build_tiny_lm(out: Path, shared: Path, vocab_size: int = 1024) -> Path:
    """Save a tokenizer and a tiny random Qwen2ForCausalLM to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(shared), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    cfg = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out))
    fast.save_pretrained(str(out))
    return out
