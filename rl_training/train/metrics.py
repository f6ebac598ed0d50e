"""Training curves: reward, response length and loss over steps, from the metrics file a run
writes (verl's file logger: ``{"step": n, "data": {...}}`` per line; or flat
``{"step": n, ...}`` lines such as the TRL runs write), to a PNG."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

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
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                data = rec.get("data", rec)
                step = int(rec.get("step", data.get("step", len(out))))
            except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                raise ValueError(f"{path}:{n}: not a metrics line") from None
            values = {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
            out.append((step, values))
    if not out:
        raise ValueError(f"{path} holds no metrics yet")
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
