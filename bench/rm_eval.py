"""The preference reward model on MedQuAD pairs (the question's own answer chosen, another
topic's answer rejected), trained from the packaged all-MiniLM-L6-v2 on CPU and measured on
topics unseen in training, beside the untrained model (the same base with a fresh one-output
head) in the same run.

Usage: python bench/rm_eval.py [--train 400] [--test 200] [--epochs 1] [--max-length 256]
Writes bench/results/rm_eval.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench.ingest_throughput import machine  # noqa: E402
from retrieval.embedders import default_model_path  # noqa: E402
from rl_training.auxiliary.pairs import medquad_pairs, topics  # noqa: E402
from rl_training.auxiliary.rm import RMConfig, evaluate_rm, train_rm  # noqa: E402

log = logging.getLogger("bench")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "rm_eval.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    mq = SHARED / "guidelines" / "medquad" / "medquad_answered.jsonl.gz"
    all_topics = topics(mq)
    held = set(all_topics[::5])
    train = list(medquad_pairs(mq, args.train, seed=0, exclude=held))
    test = list(medquad_pairs(mq, args.test, seed=1, focus=held))
    base = default_model_path()
    tmp = Path(tempfile.mkdtemp(prefix="evidex-rm-"))
    torch.manual_seed(0)
    untrained = tmp / "untrained"
    AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1).save_pretrained(
        str(untrained)
    )
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(untrained))
    t0 = time.perf_counter()
    before = evaluate_rm(untrained, test, max_length=args.max_length)
    eval_s = time.perf_counter() - t0
    cfg = RMConfig(model=base, out=tmp / "rm", epochs=args.epochs, lr=args.lr,
                   max_length=args.max_length)  # fmt: skip
    report = train_rm(train, cfg)
    after = evaluate_rm(tmp / "rm", test, max_length=args.max_length)
    lines = [
        "# Preference reward model on MedQuAD pairs (bench/rm_eval.py)",
        "",
        f"- date: {dt.date.today().isoformat()}; machine: {machine()}",
        f"- base: all-MiniLM-L6-v2 (packaged), one-output head; loss {report.loss}; "
        f"{args.epochs:g} epoch, lr {args.lr:g}, batch 8, max length {args.max_length}",
        f"- pairs: the question's own answer (chosen) against the answer of a question on another "
        f"topic (rejected); {len(train)} training pairs from {len(all_topics) - len(held)} topics; "
        f"{len(test)} test pairs from the {len(held)} held-out topics (every fifth, never seen "
        "in training)",
        "",
        "| model | held-out pairwise accuracy | ties | pairs |",
        "|---|---|---|---|",
        f"| untrained (fresh head) | {before.accuracy:.1%} | {before.ties} | {before.pairs} |",
        f"| trained | {after.accuracy:.1%} | {after.ties} | {after.pairs} |",
        "",
        f"Training: {report.steps} steps in {report.seconds:.0f} s "
        f"({report.pairs / max(report.seconds, 1e-9):.1f} pairs/s on CPU); first logged loss "
        f"{report.first_loss:.3f}, last {report.last_loss:.3f}. Scoring the {len(test)} test "
        f"pairs (2 conversations each) took {eval_s:.1f} s.",
        "",
        "MedQuAD pairs carry no magnitude, so scaled and plain Bradley-Terry coincide here (the "
        "weights are all 1); the scaled loss matters for HelpSteer3 / INF-ORM rows and for chat "
        "feedback exported with magnitudes. No GPU was lent to this task: the 0.5B Qwen2 speed "
        "measurement the issue asks for is not done.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    log.info("%s", "\n".join(lines))


if __name__ == "__main__":
    main()
