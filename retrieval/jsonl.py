"""JSON Lines in and out: the one reader and writer every package uses.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
>>> write_jsonl(p, [{"q": "Does aspirin help?"}, {"q": "胸痛"}])
2
>>> read_jsonl(p)
[{'q': 'Does aspirin help?'}, {'q': '胸痛'}]
>>> _ = p.write_text('{"q": 1}\\n{oops\\n')
>>> read_jsonl(p)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
retrieval.errors.InputError: ...rows.jsonl:2: not JSON (Expecting property name ...)
>>> read_jsonl(p, on_bad="skip")
[{'q': 1}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import InputError

OnBad = Literal["raise", "skip"]


def iter_jsonl(
    path: Path | str, *, on_bad: OnBad = "raise", objects: bool = True
) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of ``path``.

    A line that is not JSON (or, with ``objects``, not a JSON object) raises
    :class:`InputError` naming the file and line, or is passed over with ``on_bad="skip"``
    (a job killed mid-write leaves a cut last line that a resumed run ignores).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist (or is not a file)")
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                if on_bad == "skip":
                    continue
                raise InputError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if objects and not isinstance(value, dict):
                if on_bad == "skip":
                    continue
                raise InputError(f"{path}:{n}: expected a JSON object, not {type(value).__name__}")
            yield n, value


def read_jsonl(path: Path | str, *, on_bad: OnBad = "raise") -> list[dict[str, Any]]:
    """Every JSON object of ``path``, in order (see :func:`iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path, on_bad=on_bad)]


def write_jsonl(
    path: Path | str,
    records: Iterable[Any],
    *,
    append: bool = False,
    default: Callable[[Any], Any] | None = None,
    flush: bool = False,
) -> int:
    """Write ``records`` one JSON line each (UTF-8, non-ASCII kept); returns how many.

    Creates the parent folder. ``append`` adds to the file; ``flush`` syncs every line to
    disk (for logs a killed job must not lose).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, default=default) + "\n")
            n += 1
            if flush:
                fh.flush()
                os.fsync(fh.fileno())
    return n
