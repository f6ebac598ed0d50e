"""A discriminative reward model loaded by local path (a Hugging Face sequence-classification
checkpoint with one output, e.g. Skywork-Reward), scoring chat records for
:func:`rl_training.data.filters.reward_model_filter`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import InputError

log = logging.getLogger(__name__)


def conversation_text(record: Mapping[str, Any], tokenizer: Any) -> str:
    """The record's messages through the tokenizer's chat template, or ``role: content``
    lines when it has none."""
    messages = [
        {"role": str(m.get("role", "user")), "content": str(m.get("content") or "")}
        for m in record.get("messages", [])
    ]
    if not messages:
        raise InputError("record has no messages to score")
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def require_checkpoint(path: Path | str, what: str) -> Path:
    """``path`` when it is a Hugging Face checkpoint folder (it has ``config.json``), else a
    clear error naming ``what`` it should be."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(
            f"{what} {path} is not a Hugging Face checkpoint (no config.json): give the folder "
            "of a local model"
        )
    return path


class HFRewardModel:
    """Scores conversations with a local sequence-classification reward model (CPU or GPU).

    Call it with a batch of records: one float per record (the model's single logit)."""

    def __init__(
        self, path: Path | str, device: str = "cpu", batch_size: int = 8, max_length: int = 4096
    ) -> None:
        path = require_checkpoint(path, "reward model")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device)
        self.model.eval()
        if self.model.config.num_labels != 1:
            raise InputError(
                f"reward model {path} has {self.model.config.num_labels} outputs; a reward "
                "model has exactly one (num_labels=1)"
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> list[float]:
        scores: list[float] = []
        for i in range(0, len(records), self.batch_size):
            texts = [conversation_text(r, self.tokenizer) for r in records[i : i + self.batch_size]]
            enc = self.tokenizer(
                texts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(self.device)
            with self._torch.no_grad():
                logits = self.model(**enc).logits
            scores.extend(float(x) for x in logits[:, 0].cpu())
        return scores
