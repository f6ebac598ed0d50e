"""The report's auxiliary models: ``evidex train rm|vrm|judge-data|tracer`` and ``evidex eval
rm|vrm``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ui.cli.app import ConfigOpt, JsonOpt, command, err, eval_app, out, train_app

PairsOpt = Annotated[
    Path,
    typer.Option(
        "--data",
        help="Preference pairs, JSONL(.gz): prompt, chosen, rejected, optional magnitude "
        "(also what `evidex feedback export` writes), HelpSteer3 or INF-ORM rows.",
    ),
]


def _pairs(path: Path) -> list:  # type: ignore[type-arg]
    from rl_training.auxiliary.pairs import read_pairs

    pairs, problems = read_pairs(path)
    _skipped([f"{p.where}: {p.message}" for p in problems])
    return pairs


def _skipped(problems: list[str]) -> None:
    """The bad input lines a command passed over (the first 20, then a count)."""
    for p in problems[:20]:
        err.print(f"[yellow]skipped[/] {p}", highlight=False)
    if len(problems) > 20:
        err.print(f"[yellow]skipped[/] {len(problems) - 20} more bad lines")


@command(train_app, "rm")
def train_rm(
    data: PairsOpt,
    model: Annotated[Path, typer.Option(help="Base checkpoint folder (HF encoder or decoder).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the reward model is written.")],
    loss: Annotated[
        str, typer.Option(help="scaled-bt (pairs weighted by magnitude) or bt (plain).")
    ] = "scaled-bt",
    epochs: Annotated[float, typer.Option(help="Passes over the pairs.")] = 1.0,
    max_length: Annotated[int, typer.Option(help="Longest conversation in tokens.")] = 512,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-5,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = 8,
    as_json: JsonOpt = False,
) -> None:
    """Train a preference reward model (one scalar output) with TRL's reward trainer."""
    from rl_training.auxiliary.rm import RMConfig
    from rl_training.auxiliary.rm import train_rm as run

    cfg = RMConfig(model=model, out=out_dir, loss=loss, epochs=epochs,  # type: ignore[arg-type]
                   lr=lr, batch_size=batch_size, max_length=max_length)  # fmt: skip
    report = run(_pairs(data), cfg)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        err.print(
            f"reward model: {report.pairs} pairs, {report.steps} steps, loss "
            f"{report.first_loss:.3f} -> {report.last_loss:.3f} in {report.seconds:.0f} s; "
            f"saved to {report.out}"
        )


@command(eval_app, "rm")
def eval_rm(
    model: Annotated[Path, typer.Option(help="A reward model folder (one output).")],
    data: PairsOpt,
    max_length: Annotated[int, typer.Option(help="Longest conversation in tokens.")] = 512,
    as_json: JsonOpt = False,
) -> None:
    """Pairwise accuracy of a reward model: chosen scored above rejected (RewardBench's)."""
    from rl_training.auxiliary.rm import evaluate_rm

    result = evaluate_rm(model, _pairs(data), max_length=max_length)
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        out.print(f"accuracy {result.accuracy:.1%} on {result.pairs} pairs ({result.ties} ties)")


JudgedOpt = Annotated[
    Path, typer.Option("--data", help="Judged records from evidex train judge-data (JSONL).")
]


@command(train_app, "judge-data")
def train_judge_data(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            help="Candidates (JSONL): chat records with reward_model.ground_truth, or "
            "train distill records (prompt, response, ground_truth).",
        ),
    ],
    judge_url: Annotated[str, typer.Option(help="The teacher judge's OpenAI-compatible URL.")],
    out_file: Annotated[Path, typer.Option("--out", help="Judged records (resumable).")],
    judge_model: Annotated[str, typer.Option(help="The teacher judge model name.")] = "default",
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Most tokens per verdict.")] = 4096,
    engine: Annotated[str, typer.Option(help="local (threads) or ray (Ray Data).")] = "local",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Judged records for the verifier: the Appendix B prompt and a teacher's verdict each."""
    from rl_training.auxiliary.verifier import judge_data
    from ui.cli.engine_cmd import _run

    _run(judge_data, config, as_json, input, out_file, judge_url, judge_model,
         concurrency=concurrency, temperature=0.0, max_tokens=max_tokens,
         engine=engine)  # fmt: skip


@command(train_app, "vrm")
def train_vrm(
    data: JudgedOpt,
    model: Annotated[Path, typer.Option(help="Base causal LM checkpoint folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the judge is written.")],
    epochs: Annotated[float, typer.Option(help="Passes over the records (the report: 2).")] = 2.0,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-5,
    batch_size: Annotated[int, typer.Option(help="Records per step.")] = 4,
    max_length: Annotated[int, typer.Option(help="Longest record in tokens.")] = 4096,
    cpu: Annotated[bool, typer.Option("--cpu", help="Train on CPU (a smoke run).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a verifier (judge) on the teacher's verdicts: prompt in, verdict out."""
    from rl_training.auxiliary.sft import SFTJobConfig
    from rl_training.auxiliary.verifier import read_judged
    from rl_training.auxiliary.verifier import train_vrm as run

    records, problems = read_judged(data)
    _skipped(problems)
    cfg = SFTJobConfig(model=model, out=out_dir, epochs=epochs, lr=lr, batch_size=batch_size,
                         max_length=max_length, cpu=cpu)  # fmt: skip
    report = run(records, cfg)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        err.print(f"verifier: {report['records']} records, {report['steps']} steps; saved to "
                  f"{report['out']}")  # fmt: skip


@command(eval_app, "vrm")
def eval_vrm(
    data: JudgedOpt,
    model: Annotated[Path | None, typer.Option(help="A judge folder (train vrm).")] = None,
    judge_url: Annotated[str | None, typer.Option(help="Or a served judge's URL.")] = None,
    judge_model: Annotated[str, typer.Option(help="The served judge's model name.")] = "default",
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per verdict.")] = 256,
    as_json: JsonOpt = False,
) -> None:
    """Agreement with the teacher's verdicts: accuracy, precision and recall of 1, malformed."""
    from rl_training.auxiliary.verifier import evaluate_vrm, read_judged

    records, problems = read_judged(data)
    _skipped(problems)
    result = evaluate_vrm(records, model=model, judge_url=judge_url, judge_model=judge_model,
                          max_new_tokens=max_new_tokens)  # fmt: skip
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        r = result
        out.print(f"agreement {r.accuracy:.1%} (precision {r.precision:.1%}, recall "
                  f"{r.recall:.1%}, malformed {r.malformed:.1%}) on {r.records}")  # fmt: skip


@command(train_app, "tracer")
def train_tracer(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Chain-of-thought records (JSONL): chat records whose answer is "
            "<think>CoT</think>answer, or train distill records.",
        ),
    ],
    model: Annotated[Path, typer.Option(help="Base causal LM checkpoint folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the tracer is written.")],
    epochs: Annotated[float, typer.Option(help="Passes over the records.")] = 2.0,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-5,
    batch_size: Annotated[int, typer.Option(help="Records per step.")] = 4,
    max_length: Annotated[int, typer.Option(help="Longest record in tokens.")] = 8192,
    cpu: Annotated[bool, typer.Option("--cpu", help="Train on CPU (a smoke run).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the think-tracing model (question + answer in, the chain of thought out); serve
    it and point evidex train trace --tracer-url at it."""
    from rl_training.auxiliary.sft import SFTJobConfig, sft
    from rl_training.auxiliary.tracer import read_cot

    rows, problems = read_cot(data)
    _skipped(problems)
    cfg = SFTJobConfig(model=model, out=out_dir, epochs=epochs, lr=lr, batch_size=batch_size,
                       max_length=max_length, cpu=cpu)  # fmt: skip
    report = {**sft(rows, cfg, "evidex_tracer.json"), "records": len(rows),
              "skipped": len(problems)}  # fmt: skip
    if as_json:
        out.print_json(json.dumps(report))
    else:
        err.print(f"tracer: {report['records']} records, {report['steps']} steps; saved to "
                  f"{report['out']}")  # fmt: skip
