"""A tiny causal language model for training tests: a byte-level BPE tokenizer trained
in-process on real abstracts (lossless decoding, a Qwen-style chat template) and a 2-layer
Qwen2 model with random weights. Built once per test session (see ``tiny_lm`` in conftest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def build_tiny_lm(out: Path, shared: Path, vocab_size: int = 1024, **shape: int) -> Path:
    """Save a tokenizer and a tiny random Qwen2ForCausalLM to ``out``; ``shape`` overrides
    the model's sizes (``hidden_size``, ``num_hidden_layers``, ...)."""
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
    sizes: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        **shape,
    }
    cfg = Qwen2Config(
        vocab_size=len(fast),
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        **sizes,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(str(out))
    fast.save_pretrained(str(out))
    return out


def teach_tool_calls(
    model_dir: Path,
    episodes: list[tuple[list[dict[str, Any]], list[Any], dict[str, Any], str]],
    out: Path,
    steps_each: int = 120,
) -> Path:
    """Teach a model, by plain SFT under Qwen2.5's chat template (saved with it to ``out``),
    to make one tool call and then answer, on each (prompt, tools, call, answer): the tool
    calls of the GRPO tests and benchmark then really happen."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.chat_template_utils import qwen2_5_chat_template

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.chat_template = qwen2_5_chat_template
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    batches: list[tuple[list[int], list[tuple[str, int]]]] = []
    for prompt, tools, call, answer in episodes:
        result = tools[0](**call["function"]["arguments"])
        conv = [*prompt, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "name": call["function"]["name"], "content": result},
                {"role": "assistant", "content": answer}]  # fmt: skip
        full = tok.apply_chat_template(conv, tools=tools, tokenize=False)
        head = tok.apply_chat_template(prompt, tools=tools, add_generation_prompt=True,
                                       tokenize=False)  # fmt: skip
        assert full.startswith(head)
        first_end = full.index("<|im_end|>", len(head)) + len("<|im_end|>")
        answer_at = full.rindex(answer)
        parts = [(head, 0), (full[len(head) : first_end], 1), (full[first_end:answer_at], 0),
                 (answer + "<|im_end|>", 1)]  # fmt: skip
        batches.append(([], parts))
    return fit_segments(model, tok, batches, steps_each * len(batches), out)


def fit_segments(
    model: Any,
    tok: Any,
    sequences: list[tuple[list[int], list[tuple[str, int]]]],
    steps: int,
    out: Path,
) -> Path:
    """Plain SFT of ``model`` on sequences of (head ids, [(text, learn 0/1), ...]): the loss
    covers only the learned texts. Saves the model and ``tok`` to ``out``."""
    import torch

    batches = []
    for head, parts in sequences:
        ids, labels = list(head), [-100] * len(head)
        for text, learn in parts:
            seg = tok.encode(text, add_special_tokens=False)
            ids += seg
            labels += seg if learn else [-100] * len(seg)
        batches.append((torch.tensor([ids]), torch.tensor([labels])))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for step in range(steps):
        ids, labels = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
