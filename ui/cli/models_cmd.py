"""The report's auxiliary models: ``evidex train rm`` and ``evidex eval rm``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ui.cli.app import JsonOpt, command, err, eval_app, out, train_app

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
    for p in problems[:20]:
        err.print(f"[yellow]skipped[/] {p.where}: {p.message}", highlight=False)
    if len(problems) > 20:
        err.print(f"[yellow]skipped[/] {len(problems) - 20} more bad lines")
    return pairs


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
