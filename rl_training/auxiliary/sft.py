"""Supervised fine-tuning of the auxiliary generators (the verifier, the think-tracing model):
prompt -> completion chat records through TRL's ``SFTTrainer``, the loss on the completion."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import ConfigError, InputError
from rl_training.data.reward_model import require_checkpoint


@dataclass
class SFTJobConfig:
    """Fine-tuning a causal LM on prompt -> completion records."""

    model: Path
    out: Path
    epochs: float = 2.0
    lr: float = 1e-5
    batch_size: int = 4
    max_length: int = 4096
    cpu: bool = False

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, not {self.epochs!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr!r}")
        if self.batch_size < 1 or self.max_length < 32:
            raise ConfigError(
                f"batch_size must be >= 1 and max_length >= 32, not {self.batch_size!r} / "
                f"{self.max_length!r}"
            )
        require_checkpoint(self.model, "base model")


def sft(rows: Sequence[Mapping[str, Any]], cfg: SFTJobConfig, report_name: str) -> dict[str, Any]:
    """Train on ``rows`` (``prompt`` and ``completion`` message lists), save the model and
    its tokenizer to ``cfg.out`` with a JSON report; returns the report."""
    if not rows:
        raise InputError("no records to train on")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    tok = AutoTokenizer.from_pretrained(str(cfg.model))
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    args = SFTConfig(
        output_dir=str(cfg.out / "checkpoints"), num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length, logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=cfg.cpu, completion_only_loss=True,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(str(cfg.model))
    trainer: Any = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's progress lines: stderr
        trainer.train()
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    cfg.out.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(cfg.out))
    tok.save_pretrained(str(cfg.out))
    report = {"out": str(cfg.out), "steps": trainer.state.global_step,
              "first_loss": losses[0] if losses else None,
              "last_loss": losses[-1] if losses else None}  # fmt: skip
    (cfg.out / report_name).write_text(json.dumps(report, indent=2))
    return report
