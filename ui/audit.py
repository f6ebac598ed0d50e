"""The chat's audit log: who asked what and when, one JSON object per line. It holds the
question text and the answer id, never patient data."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()


def audit(path: Path, user: str, event: str, **fields: Any) -> None:
    """Append one event (``login``, ``login_failed``, ``ask``, ``feedback``, ``logout``)."""
    if "patient" in fields:
        raise ValueError("patient data never goes to the audit log")
    rec = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "user": user,
           "event": event, **fields}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
