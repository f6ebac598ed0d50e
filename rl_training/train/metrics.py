"""Training curves: reward, response length and loss over steps, from the metrics file a run
writes (verl's file logger: ``{"step": n, "data": {...}}`` per line; or flat
``{"step": n, ...}`` lines such as the TRL runs write), to a PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.errors import InputError
from retrieval.jsonl import iter_jsonl, write_jsonl

PANELS: dict[str, Sequence[str]] = {
    "reward": (
        "critic/score/mean",
        "critic/rewards/mean",
        "reward",
        "rewards/mean",
        "train/reward",
    ),
    "response length": (
        "response_length/mean",
        "completions/mean_length",
        "train/completions/mean_length",
    ),
    "loss": ("actor/pg_loss", "train/loss", "loss", "val-aux/loss"),
}


def read_metrics(path: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) pairs; unreadable lines are named in the error."""
    out: list[tuple[int, dict[str, float]]] = []
    for n, rec in iter_jsonl(path):
        try:
            data = rec.get("data", rec)
            step = int(rec.get("step", data.get("step", len(out))))
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{path}:{n}: not a metrics line") from None
        values = {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
        out.append((step, values))
    if not out:
        raise InputError(f"{path} holds no metrics yet")
    return out


def plot(path: Path, png: Path) -> dict[str, str | None]:
    """Draw the three panels; returns which metric each panel used (None when absent)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(path)
    used: dict[str, str | None] = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, keys) in zip(axes, PANELS.items(), strict=True):
        key = next((k for k in keys if any(k in m for _, m in rows)), None)
        used[title] = key
        ax.set_title(title)
        ax.set_xlabel("step")
        if key is None:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
            continue
        pts = [(s, m[key]) for s, m in rows if key in m]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_ylabel(key, fontsize=8)
    fig.suptitle(str(path.parent.name or path.name))
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return used


def write_run(trainer: Any, out: Path, episodes: Sequence[Mapping[str, Any]] = ()) -> None:
    """Write a finished TRL run into ``out``: its metrics (``metrics.jsonl``), its curves
    (``curves.png``), its episodes (environment runs, ``episodes.jsonl``) and the model."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "metrics.jsonl", trainer.state.log_history)
    if episodes:
        write_jsonl(out / "episodes.jsonl", episodes, default=str)
    trainer.save_model(str(out / "model"))
    plot(out / "metrics.jsonl", out / "curves.png")


def plot_run(run: Path, png: Path | None = None) -> tuple[Path, dict[str, str | None]]:
    """Draw the curves of a run folder (or its metrics file) into ``png`` (default
    ``RUN/curves.png``); returns the PNG and, per panel, the metric it drew."""
    metrics = run / "metrics.jsonl" if run.is_dir() else run
    png = png or metrics.parent / "curves.png"
    if not metrics.is_file():
        raise InputError(f"no metrics at {metrics}: the run has not logged a step yet")
    return png, plot(metrics, png)
