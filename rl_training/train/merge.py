"""Linear merging of Hugging Face checkpoints (the report's 1:1 merge after S2).

Tensors are streamed one at a time from (sharded) safetensors files, combined in float32 as
``sum(w_i * T_i)`` and written back in the first model's dtype, one output shard at a time, so
memory stays near one shard. The models must share an architecture and its shapes; vocabularies
may differ in size: the output keeps the first model's vocabulary (and its tokenizer), rows the
models share are merged, and rows only the first model has are kept from it, renormalised over
the models that have them.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import InputError

log = logging.getLogger(__name__)

SHAPE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "head_dim",
    "tie_word_embeddings",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)


class MergeError(InputError):
    """The checkpoints cannot be merged; the message says what differs and where."""


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge` wrote (also saved as ``merge.json`` in the merged folder)."""

    tensors: int
    """Tensors merged."""
    shards: int
    """Safetensors files written."""
    bytes: int
    """Bytes of tensor data written."""
    vocab_sizes: list[int | None]
    """Each input's vocabulary size (the first model's is kept)."""
    tokenizer_from: str
    """The checkpoint whose tokenizer files were copied."""
    copied: list[str]
    """The tokenizer and generation files copied."""
    weights: list[float]
    """The weight of each input, in order."""
    models: list[str] = field(default_factory=list)
    """The input checkpoints, in order."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_models_and_weights(
    args: Sequence[str], weights: str | None = None
) -> tuple[list[Path], list[float]]:
    """Checkpoint folders and weights from the command line's words: ``--weights 0.5 0.5``
    hands the second number over as a positional argument, and ``--weights 0.5,0.5`` works
    too; without weights every model weighs the same.

    >>> split_models_and_weights(["/no/a", "/no/b", "0.7"], "0.3")
    ([PosixPath('/no/a'), PosixPath('/no/b')], [0.3, 0.7])
    >>> split_models_and_weights(["/no/a", "/no/b"])
    ([PosixPath('/no/a'), PosixPath('/no/b')], [0.5, 0.5])
    >>> split_models_and_weights(["/no/a", "/no/b"], "half")
    Traceback (most recent call last):
    ...
    rl_training.train.merge.MergeError: --weights: 'half' is not a number
    """

    def is_number(x: str) -> bool:
        try:
            float(x)
        except ValueError:
            return False
        return not Path(x).exists()

    paths = [Path(m) for m in args if not is_number(m)]
    ws = []
    for x in [*(weights or "").replace(",", " ").split(), *(m for m in args if is_number(m))]:
        try:
            ws.append(float(x))
        except ValueError:
            raise MergeError(f"--weights: {x!r} is not a number") from None
    if not ws and paths:
        ws = [1 / len(paths)] * len(paths)
    return paths, ws


def _config(path: Path) -> dict[str, Any]:
    f = path / "config.json"
    if not f.is_file():
        raise MergeError(f"{path} is not a Hugging Face checkpoint: no config.json")
    return dict(json.loads(f.read_text("utf-8")))


def weight_map(path: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file that holds it."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text("utf-8"))
        return {name: path / file for name, file in data["weight_map"].items()}
    single = path / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as fh:
            return {name: single for name in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    raise MergeError(
        f"{path} has no safetensors weights (model.safetensors or its index): save the model "
        "with save_pretrained(safe_serialization=True)"
    )


def check_compatible(paths: Sequence[Path]) -> list[dict[str, Any]]:
    configs = [_config(p) for p in paths]
    first = configs[0]
    for p, cfg in zip(paths[1:], configs[1:], strict=True):
        if cfg.get("architectures") != first.get("architectures"):
            raise MergeError(
                f"architectures differ: {paths[0]} is {first.get('architectures')}, {p} is "
                f"{cfg.get('architectures')}"
            )
        for key in SHAPE_KEYS:
            if cfg.get(key) != first.get(key):
                raise MergeError(
                    f"{key} differs: {first.get(key)} in {paths[0]}, {cfg.get(key)} in {p}: "
                    "only checkpoints of the same architecture and size can be merged"
                )
    return configs


class _Readers:
    """Open safetensors files, kept open while their tensors are read."""

    def __init__(self) -> None:
        self._open: dict[Path, Any] = {}

    def get(self, file: Path, name: str) -> Any:
        from safetensors import safe_open

        if file not in self._open:
            self._open[file] = safe_open(str(file), framework="pt").__enter__()  # type: ignore[no-untyped-call]
        return self._open[file].get_tensor(name)

    def close(self) -> None:
        for fh in self._open.values():
            fh.__exit__(None, None, None)
        self._open.clear()


def _merge_tensor(name: str, tensors: list[Any], weights: Sequence[float]) -> Any:
    import torch

    base = tensors[0]
    if all(t.shape == base.shape for t in tensors):
        acc = torch.zeros(base.shape, dtype=torch.float32)
        for w, t in zip(weights, tensors, strict=True):
            acc += w * t.to(torch.float32)
        return acc.to(base.dtype)
    # Vocabulary-sized tensors (embeddings, LM head, biases) may differ in their first dim only.
    if any(t.shape[1:] != base.shape[1:] for t in tensors):
        raise MergeError(
            f"tensor {name} has shapes {[tuple(t.shape) for t in tensors]}: only the vocabulary "
            "dimension may differ"
        )
    rows = base.shape[0]
    acc = torch.zeros(base.shape, dtype=torch.float32)
    total = torch.zeros((rows,) + (1,) * (base.dim() - 1), dtype=torch.float32)
    for w, t in zip(weights, tensors, strict=True):
        n = min(rows, t.shape[0])
        acc[:n] += w * t[:n].to(torch.float32)
        total[:n] += w
    total[total == 0] = 1.0
    return (acc / total * (sum(weights))).to(base.dtype)


def merge(
    paths: Sequence[Path],
    weights: Sequence[float],
    out: Path,
    max_shard_bytes: int = 5 * 1024**3,
    progress: Callable[[int], Any] | None = None,
) -> MergeReport:
    """Merge ``paths`` with ``weights`` into ``out``; returns what was written."""
    from safetensors.torch import save_file

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise MergeError("give at least two checkpoints to merge")
    if len(weights) != len(paths):
        raise MergeError(f"{len(paths)} checkpoints but {len(weights)} weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise MergeError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    if abs(sum(weights) - 1) > 1e-6:
        log.warning("weights sum to %g, not 1: the merged tensors are scaled by it", sum(weights))
    if out.exists() and any(out.iterdir()):
        raise MergeError(f"{out} exists and is not empty: choose a new folder")
    configs = check_compatible(paths)
    maps = [weight_map(p) for p in paths]
    names = list(maps[0])
    for p, m in zip(paths[1:], maps[1:], strict=True):
        missing, extra = set(names) - set(m), set(m) - set(names)
        if missing or extra:
            raise MergeError(
                f"tensor names differ between {paths[0]} and {p}: only in the first "
                f"{sorted(missing)[:3]}, only in {p.name} {sorted(extra)[:3]}"
            )
    out.mkdir(parents=True, exist_ok=True)
    readers = _Readers()
    shard: dict[str, Any] = {}
    shard_bytes = 0
    shard_files: list[str] = []
    index: dict[str, str] = {}
    total_bytes = 0

    def flush() -> None:
        nonlocal shard, shard_bytes
        if not shard:
            return
        name = f"model-{len(shard_files) + 1:05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        shard_files.append(name)
        for key in shard:
            index[key] = name
        shard, shard_bytes = {}, 0

    try:
        for name in names:
            merged = _merge_tensor(name, [readers.get(m[name], name) for m in maps], weights)
            size = merged.numel() * merged.element_size()
            if shard and shard_bytes + size > max_shard_bytes:
                flush()
            shard[name] = merged.contiguous()
            shard_bytes += size
            total_bytes += size
            if progress:
                progress(1)
        flush()
    finally:
        readers.close()
    if len(shard_files) == 1:
        (out / shard_files[0]).rename(out / "model.safetensors")
    else:
        # Rename to the usual model-0000i-of-0000n pattern.
        n = len(shard_files)
        final = {f: f"model-{i:05d}-of-{n:05d}.safetensors" for i, f in enumerate(shard_files, 1)}
        for old, new in final.items():
            (out / old).rename(out / new)
        data = {
            "metadata": {"total_size": total_bytes},
            "weight_map": {k: final[v] for k, v in index.items()},
        }
        (out / "model.safetensors.index.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(configs[0], indent=2) + "\n")
    copied = []
    for f in TOKENIZER_FILES:
        if (paths[0] / f).is_file():
            shutil.copy2(paths[0] / f, out / f)
            copied.append(f)
    vocab = [c.get("vocab_size") for c in configs]
    report = MergeReport(
        tensors=len(names),
        shards=len(shard_files),
        bytes=total_bytes,
        vocab_sizes=vocab,
        tokenizer_from=str(paths[0]),
        copied=copied,
        weights=list(weights),
        models=[str(p) for p in paths],
    )
    (out / "merge.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return report


def merge_with_progress(paths: Sequence[Path], weights: Sequence[float], out: Path) -> MergeReport:
    """:func:`merge` with a tqdm progress bar over the tensors."""
    from tqdm import tqdm

    n = len(weight_map(Path(paths[0]))) if paths else 0
    with tqdm(total=n, desc="merge", unit="tensor", disable=None) as bar:
        return merge(paths, weights, out, progress=bar.update)
