"""The chat's audit log: who asked what and when, one JSON object per line. It holds the
question text and the answer id, never patient data."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from retrieval.errors import InputError
from retrieval.jsonl import write_jsonl

_LOCK = threading.Lock()


def audit(path: Path, user: str, event: str, **fields: Any) -> None:
    """Append one event (``login``, ``login_failed``, ``ask``, ``feedback``, ``logout``)."""
    if "patient" in fields:
        raise InputError("patient data never goes to the audit log")
    rec = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "user": user,
           "event": event, **fields}  # fmt: skip
    with _LOCK:
        write_jsonl(path, [rec], append=True)
