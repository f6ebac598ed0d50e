"""Local users for the chat: a JSON file of names and scrypt password hashes.

``evidex users add NAME`` creates or resets a user (the password is asked for, never given on
the command line). Passwords are never stored or logged; only ``scrypt`` hashes with a random
salt per user. OpenID Connect goes through Streamlit's own ``st.login`` instead (settings
``chat.login = "oidc"``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
from pathlib import Path

from retrieval.errors import EvidexError

_N, _R, _P = 2**14, 8, 1
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class AuthError(EvidexError, ValueError):
    """A users-file problem (bad name, short password, unreadable file)."""


def _hash(password: str, salt: bytes) -> str:
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return base64.b64encode(digest).decode()


class UserStore:
    """Users in a JSON file: ``{"users": {name: {"salt", "hash", "created"}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text("utf-8"))
            return dict(data["users"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AuthError(
                f"users file {self.path} is unreadable ({exc}): fix it or remove it and add "
                "users again with evidex users add NAME"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._load())

    def add(self, name: str, password: str) -> None:
        """Create ``name`` or reset its password."""
        if not NAME.match(name):
            raise AuthError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@', '-'")
        if len(password) < 8:
            raise AuthError("the password must have at least 8 characters")
        users = self._load()
        salt = secrets.token_bytes(16)
        users[name] = {
            "salt": base64.b64encode(salt).decode(),
            "hash": _hash(password, salt),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"users": users}, indent=2) + "\n", "utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def remove(self, name: str) -> bool:
        users = self._load()
        if users.pop(name, None) is None:
            return False
        self.path.write_text(json.dumps({"users": users}, indent=2) + "\n", "utf-8")
        return True

    def verify(self, name: str, password: str) -> bool:
        """True when ``name`` exists and ``password`` is its password (constant time)."""
        user = self._load().get(name)
        if user is None:
            _hash(password, b"0" * 16)  # same cost whether or not the user exists
            return False
        expected = user["hash"]
        return hmac.compare_digest(_hash(password, base64.b64decode(user["salt"])), expected)


def ensure_first_user(store: UserStore) -> str | None:
    """With no users yet, create ``admin`` with a random password and return that password
    (shown once to whoever started the chat); None when users exist."""
    if store.names():
        return None
    password = secrets.token_urlsafe(12)
    store.add("admin", password)
    return password
