"""The TRL GRPO loop: step time and tokens/s of search-augmented GRPO (TRL's
``environment_factory`` with evidex's ``search`` tool over a real index), side by side with
plain GRPO on the same prompts, model and budget (TRL's own generation, no environment) in
the same run.

The model is a random Qwen2 of the chosen shape with the tiny byte-level tokenizer of the
tests (``--shape 0.5b``: Qwen2.5-0.5B's layers, heads and widths; the vocabulary is the
tokenizer's), first taught by a short SFT to call ``search`` and answer, so the tool path
really runs; or a tool-calling checkpoint (``--model``, e.g. Qwen2.5-0.5B-Instruct), used
as is. The index holds the first ``--docs`` PubMedQA dev abstracts; the prompts are PubMedQA
questions with the tool-agent system prompt.

Tokens/s counts the tokens the model generated (TRL's completion lengths leave the tool
answers out) over the step's wall time, generation and optimization together.

Usage: python bench/trl_grpo.py [--shape tiny|0.5b | --model DIR] [--steps 4] [--gens 4]
       [--prompts-per-step 2] [--max-completion 256] [--cpu] [--out bench/results/trl_grpo.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench.ingest_throughput import machine  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.search import Searcher  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402
from rl_training.envs.base import SearcherBackend  # noqa: E402
from rl_training.train.trl_envs import SearchToolEnv, ToolEnvConfig  # noqa: E402
from rl_training.train.trl_local import LocalGRPOConfig, tool_env_trainer, tool_row  # noqa: E402

log = logging.getLogger("bench.trl_grpo")

SHAPES: dict[str, dict[str, int]] = {
    "tiny": {},
    # Qwen2.5-0.5B's transformer (the vocabulary stays the test tokenizer's).
    "0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    },
}


class StepClock:
    """A TrainerCallback's worth of timing: wall time per optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class _Cb(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock._t = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                clock.times.append(time.perf_counter() - clock._t)

        return _Cb()


def _rows(n: int) -> list[dict[str, Any]]:
    from rl_training.data.export import export

    out = Path(tempfile.mkdtemp()) / "rows.jsonl"
    export("pubmedqa", SHARED / "pubmedqa" / "pqal_dev.json", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()[:n]]
    return [tool_row(r) for r in rows]


def _index(docs: int) -> Path:
    tmp = Path(tempfile.mkdtemp())
    lines = (SHARED / "pubmedqa" / "beir_dev" / "corpus.jsonl").read_text().splitlines()[:docs]
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    idx = Index(load_settings(data_dir=tmp, store={"path": tmp / "store"}), tmp / "store")
    run_ingest(records("beir", [corpus], pmid_ids=True), idx, progress=False)
    idx.close()
    return tmp


def _model(args: argparse.Namespace, rows: list[dict[str, Any]], backend: Any) -> Path:
    if args.model:
        return Path(args.model)
    from tests.tiny_lm import build_tiny_lm, teach_tool_calls

    base = Path(tempfile.mkdtemp()) / "base"
    base.mkdir()
    build_tiny_lm(base, SHARED, **SHAPES[args.shape])
    env = SearchToolEnv(backend, ToolEnvConfig(k=2, max_passage_chars=300))
    episodes = []
    for r in rows[:4]:
        env.reset(**r)
        truth = json.loads(r["reward_model"])["ground_truth"]
        call = {"type": "function",
                "function": {"name": "search", "arguments": {"query": "clinical evidence"}}}  # fmt: skip
        episodes.append((r["prompt"], [env.search], call, f"\\boxed{{{truth}}}"))
    if not args.warmup_steps:  # untaught: only the chat template that renders tool calls
        from transformers import AutoTokenizer
        from trl.chat_template_utils import qwen2_5_chat_template

        tok = AutoTokenizer.from_pretrained(str(base))
        tok.chat_template = qwen2_5_chat_template
        tok.save_pretrained(str(base))
        return base
    t = time.perf_counter()
    warm = teach_tool_calls(base, episodes, base.parent / "warm", steps_each=args.warmup_steps)
    log.info("taught the tool-call format in %.0f s", time.perf_counter() - t)
    return warm


def _plain_reward(completions: list[Any], reward_model: list[str], **_: Any) -> list[float]:
    from rl_training.rewards import compute_score

    out = []
    for c, rm in zip(completions, reward_model, strict=True):
        text = c[-1]["content"] if isinstance(c, list) else str(c)
        out.append(compute_score("evidex/pubmedqa", text, json.loads(rm)["ground_truth"])["score"])
    return out


def _prompt_tokens(model_dir: Path, rows: list[dict[str, Any]], tools: list[Any] | None) -> float:
    """Mean prompt length in tokens as TRL renders it (with the tool schema, or without)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    texts = [
        tok.apply_chat_template(r["prompt"], tools=tools, add_generation_prompt=True,
                                tokenize=False)
        for r in rows
    ]  # fmt: skip
    return statistics.mean(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


def _summary(
    name: str, trainer: Any, clock: StepClock, batch: int, prompt_tokens: float
) -> dict[str, Any]:
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    lengths = [h["completions/mean_length"] for h in logs]
    times = clock.times
    steady = times[1:] or times
    tokens = [n * batch for n in lengths]
    tok_s = [tk / t for tk, t in zip(tokens[1:] or tokens, steady, strict=False)]
    calls = [h.get("tools/call_frequency", 0.0) for h in logs]
    return {
        "run": name,
        "prompt tokens": prompt_tokens,
        "first step s": times[0],
        "step s (median, after the first)": statistics.median(steady),
        "generated tokens / step": statistics.mean(tokens),
        "tokens/s": statistics.median(tok_s),
        "tool calls / rollout": statistics.mean(calls) if calls else 0.0,
        "reward": statistics.mean(h.get("reward", 0.0) for h in logs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--model", help="A tool-calling checkpoint to use instead of a random one.")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--gens", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=2)
    ap.add_argument("--max-completion", type=int, default=256)
    ap.add_argument(
        "--warmup-steps", type=int, default=80, help="SFT steps per taught episode (0: none)."
    )
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--cpu", action="store_true", help="Run on CPU even with a GPU.")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "trl_grpo.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    use_cpu = args.cpu or not torch.cuda.is_available()
    device = "CPU" if use_cpu else torch.cuda.get_device_name(0)
    rows = _rows(max(8, args.steps * args.prompts_per_step))
    data_dir = _index(args.docs)
    settings = load_settings(data_dir=data_dir, store={"path": data_dir / "store"})
    batch = args.gens * args.prompts_per_step
    results = []
    with Searcher(settings) as searcher:
        backend = SearcherBackend(searcher)
        model_dir = _model(args, rows, backend)
        n_params = sum(
            p.numel() for p in AutoModelForCausalLM.from_pretrained(str(model_dir)).parameters()
        )
        cfg = LocalGRPOConfig(
            output_dir=Path(tempfile.mkdtemp()), max_steps=args.steps, num_generations=args.gens,
            prompts_per_step=args.prompts_per_step, learning_rate=1e-6,
            max_completion_tokens=args.max_completion, max_turns=3, use_cpu=use_cpu,
        )  # fmt: skip

        # plain GRPO: the same prompts without tools, TRL's own generation, the rule reward
        clock = StepClock()
        plain = GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
            reward_funcs=[_plain_reward],
            args=GRPOConfig(
                output_dir=str(cfg.output_dir / "plain"),
                max_steps=args.steps,
                per_device_train_batch_size=batch,
                num_generations=args.gens,
                learning_rate=1e-6,
                beta=0.0,
                max_completion_length=args.max_completion,
                logging_steps=1,
                save_strategy="no",
                report_to=[],
                seed=0,
                use_cpu=use_cpu,
                bf16=not use_cpu,
            ),
            train_dataset=Dataset.from_list(
                [{"prompt": r["prompt"], "reward_model": r["reward_model"]} for r in rows]
            ),
            processing_class=AutoTokenizer.from_pretrained(str(model_dir)),
            callbacks=[clock.callback()],
        )
        plain.train()
        plain_prompt = _prompt_tokens(model_dir, rows, None)
        results.append(_summary("plain GRPO (no environment)", plain, clock, batch, plain_prompt))

        clock = StepClock()
        env_cfg = ToolEnvConfig(k=2, max_passage_chars=300)
        trainer, reward = tool_env_trainer(
            model_dir, [*rows], {"search": lambda: SearchToolEnv(backend, env_cfg)}, cfg
        )
        trainer.add_callback(clock.callback())
        trainer.train()
        env_prompt = _prompt_tokens(model_dir, rows, [SearchToolEnv(backend, env_cfg).search])
        name = "environment_factory + search tool"
        results.append(_summary(name, trainer, clock, batch, env_prompt))
        searches = sum(e["searches"] for e in reward.episodes)

    shape = args.model or f"random Qwen2, {args.shape} shape"
    lines = [
        f"\n## {dt.datetime.now():%Y-%m-%d %H:%M} · {device}",
        "",
        f"Machine: {machine()}",
        f"Model: {shape}, {n_params / 1e6:.1f} M parameters. {args.steps} steps of "
        f"{args.prompts_per_step} prompts × {args.gens} rollouts, completions ≤ "
        f"{args.max_completion} tokens (model and tool), index of {args.docs} abstracts; "
        f"{searches} searches ran in the environment run.",
        "",
        "| " + " | ".join(results[0]) + " |",
        "|" + "---|" * len(results[0]),
    ]
    for r in results:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()]
        lines.append("| " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with open(args.out, "a", encoding="utf-8") as fh:
        if new:
            fh.write("# TRL GRPO loop: step time and tokens/s\n\n" + __doc__.split("\n\nUsage")[0])
            fh.write("\n")
        fh.write("\n".join(lines) + "\n")
    log.info("results appended to %s", args.out)


if __name__ == "__main__":
    main()
