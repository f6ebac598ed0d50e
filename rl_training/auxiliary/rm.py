"""The preference reward model (the report's WiNGPT-32B-RM): a sequence-classification model
with one scalar output, trained on preference pairs with TRL's ``RewardTrainer`` and the loss
TRL lacks, the scaled Bradley-Terry of INF-ORM (each pair's loss weighted by its preference
magnitude).

The model scores a conversation exactly as :class:`rl_training.data.reward_model.HFRewardModel`
reads it (the tokenizer's chat template, or ``role: content`` lines), so a trained folder plugs
into ``evidex train curate --reward-model DIR`` and ``evidex eval rm`` as it is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import ConfigError, InputError
from rl_training.auxiliary.pairs import Pair
from rl_training.data.reward_model import require_checkpoint

log = logging.getLogger(__name__)

Loss = Literal["scaled-bt", "bt"]


def scaled_bt_loss(chosen: Any, rejected: Any, magnitude: Any | None = None) -> Any:
    """Bradley-Terry loss ``-log sigmoid(r_chosen - r_rejected)``, each pair weighted by its
    preference magnitude (scaled BT); without magnitudes, the plain BT mean.

    The weighted mean is normalized by the weights' sum, so a batch of equal magnitudes gives
    the plain loss and only the relative strength of preferences matters.

    >>> import torch
    >>> c, r = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    >>> round(float(scaled_bt_loss(c, r)), 4)  # plain BT
    0.7201
    >>> round(float(scaled_bt_loss(c, r, torch.tensor([1.0, 1.0]))), 4)  # equal weights: same
    0.7201
    >>> round(float(scaled_bt_loss(c, r, torch.tensor([3.0, 1.0]))), 4)  # the sure pair weighs more
    0.4235
    """
    import torch.nn.functional as F

    per_pair = -F.logsigmoid(chosen - rejected)
    if magnitude is None:
        return per_pair.mean()
    w = magnitude.to(per_pair.dtype)
    return (w * per_pair).sum() / w.sum()


@dataclass
class RMConfig:
    """Training a reward model (``evidex train rm``)."""

    model: Path = field(metadata={"help": "Base checkpoint folder (any HF encoder or decoder)."})
    out: Path = field(metadata={"help": "Where the trained model is written."})
    loss: Loss = field(
        default="scaled-bt",
        metadata={"help": "'scaled-bt' (pairs weighted by magnitude) or 'bt' (plain)."},
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs."})
    lr: float = field(default=2e-5, metadata={"help": "Learning rate (AdamW)."})
    batch_size: int = field(default=8, metadata={"help": "Pairs per step."})
    max_length: int = field(default=512, metadata={"help": "Longest conversation in tokens."})
    seed: int = field(default=0, metadata={"help": "Seed of the head's initialization and order."})
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu' or 'cuda'."})

    def __post_init__(self) -> None:
        self.model, self.out = Path(self.model), Path(self.out)
        if self.loss not in ("scaled-bt", "bt"):
            raise ConfigError(f"loss must be 'scaled-bt' or 'bt', not {self.loss!r}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, not {self.epochs!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size!r}")
        if self.max_length < 16:
            raise ConfigError(f"max_length must be at least 16 tokens, not {self.max_length!r}")
        require_checkpoint(self.model, "base model")


@dataclass(frozen=True)
class RMReport:
    """What a training run did."""

    out: str
    pairs: int
    steps: int
    loss: str
    first_loss: float
    last_loss: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RMEval:
    """Pairwise accuracy, as RewardBench reports it: chosen scored above rejected."""

    accuracy: float
    pairs: int
    ties: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(tokenizer: Any, pair: Pair, answer: str) -> str:
    from rl_training.data.reward_model import conversation_text

    return conversation_text({"messages": pair.messages(answer)}, tokenizer)


def _trainer_class() -> Any:
    import torch
    from trl.trainer.reward_trainer import RewardTrainer

    class ScaledBTRewardTrainer(RewardTrainer):
        """TRL's reward trainer with the scaled Bradley-Terry loss (``magnitude`` column)."""

        def _set_signature_columns_if_needed(self) -> None:
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "rejected_ids", "magnitude"]  # type: ignore[assignment]

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:  # fmt: skip
            magnitude = inputs.pop("magnitude", None)
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            loss = scaled_bt_loss(chosen, rejected, magnitude)
            mode = "train" if model.training else "eval"
            acc = (chosen > rejected).float().mean()
            self._metrics[mode]["accuracy"].append(float(acc))
            return (loss, outputs) if return_outputs else loss

    return ScaledBTRewardTrainer


def _collator(pad_token_id: int) -> Any:
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    base = DataCollatorForPreference(pad_token_id=pad_token_id)

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        mags = [float(e.pop("magnitude", 1.0)) for e in examples]
        out = base(examples)
        out["magnitude"] = torch.tensor(mags, dtype=torch.float)
        return dict(out)

    return collate


def train_rm(pairs: Sequence[Pair], cfg: RMConfig) -> RMReport:
    """Train a one-output reward model on ``pairs`` and save it (with its tokenizer) to
    ``cfg.out``; the loss falls, and the report says by how much."""
    if not pairs:
        raise InputError("no preference pairs to train on")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_config import RewardConfig

    torch.manual_seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(str(cfg.model))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(str(cfg.model), num_labels=1)
    model.config.pad_token_id = tok.pad_token_id

    def ids(text: str) -> list[int]:
        return list(tok(text, truncation=True, max_length=cfg.max_length)["input_ids"])

    rows = [{"chosen_ids": ids(_text(tok, p, p.chosen)),
             "rejected_ids": ids(_text(tok, p, p.rejected)),
             "magnitude": p.magnitude if cfg.loss == "scaled-bt" else 1.0}
            for p in pairs]  # fmt: skip
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    args = RewardConfig(
        output_dir=str(cfg.out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
        data_collator=_collator(int(tok.pad_token_id)),
    )  # fmt: skip
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's progress lines: stderr
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    cfg.out.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(cfg.out))
    tok.save_pretrained(str(cfg.out))
    report = RMReport(
        out=str(cfg.out), pairs=len(pairs), steps=trainer.state.global_step, loss=cfg.loss,
        first_loss=round(float(losses[0]), 4) if losses else float("nan"),
        last_loss=round(float(losses[-1]), 4) if losses else float("nan"),
        seconds=round(time.perf_counter() - t0, 1),
    )  # fmt: skip
    (cfg.out / "evidex_rm.json").write_text(json.dumps(report.as_dict(), indent=2))
    log.info("reward model: %d pairs, %d steps, loss %.3f -> %.3f, saved to %s",
             report.pairs, report.steps, report.first_loss, report.last_loss, cfg.out)  # fmt: skip
    return report


def evaluate_rm(model: Path, pairs: Sequence[Pair], *, batch_size: int = 16,
                max_length: int = 512) -> RMEval:  # fmt: skip
    """Pairwise accuracy of a reward model folder on ``pairs`` (ties count as wrong)."""
    from rl_training.data.reward_model import HFRewardModel

    if not pairs:
        raise InputError("no preference pairs to evaluate")
    rm = HFRewardModel(model, batch_size=batch_size, max_length=max_length)
    chosen = rm([{"messages": p.messages(p.chosen)} for p in pairs])
    rejected = rm([{"messages": p.messages(p.rejected)} for p in pairs])
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    ties = sum(c == r for c, r in zip(chosen, rejected, strict=True))
    return RMEval(accuracy=round(wins / len(pairs), 4), pairs=len(pairs), ties=ties)
