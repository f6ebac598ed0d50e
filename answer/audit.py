"""The audit log of the chat and the answer API: who asked and when, one JSON object per
line, in a private file (600).

It never holds patient data, and by default not the question either: ``chat.audit_questions``
chooses what an ``ask`` event keeps of it:

* ``"hash"`` (default): a keyed hash (HMAC-SHA256 with the install's own ``audit.key``) and the
  length, so that repeated questions can be matched without keeping their text;
* ``"redacted"``: the text with names, dates, MRN-like numbers, phone numbers and e-mail
  addresses replaced (:func:`retrieval.privacy.redact`);
* ``"full"``: the text as typed (only where the audit log itself is protected health data).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import InputError
from retrieval.jsonl import write_jsonl
from retrieval.privacy import redact

_LOCK = threading.Lock()
QuestionMode = Literal["hash", "redacted", "full"]


def audit(path: Path, user: str, event: str, **fields: Any) -> None:
    """Append one event (``login``, ``login_failed``, ``login_locked``, ``ask``, ``feedback``,
    ``logout``) to the private audit file."""
    if "patient" in fields:
        raise InputError("patient data never goes to the audit log")
    rec = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "user": user,
           "event": event, **fields}  # fmt: skip
    path = Path(path)
    with _LOCK:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        write_jsonl(path, [rec], append=True)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def question_fields(question: str, mode: QuestionMode, key_file: Path) -> dict[str, Any]:
    """What an ``ask`` event keeps of the question under ``mode``."""
    if mode == "full":
        return {"question": question}
    if mode == "redacted":
        return {"question": redact(question), "question_chars": len(question)}
    digest = hmac.new(_key(key_file), question.encode("utf-8", "replace"), hashlib.sha256)
    return {"question_hmac": digest.hexdigest(), "question_chars": len(question)}


def _key(path: Path) -> bytes:
    """The install's audit key (32 random bytes, created once, mode 600)."""
    path = Path(path)
    try:
        return bytes.fromhex(path.read_text("ascii").strip())
    except (OSError, ValueError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex())
        return key
