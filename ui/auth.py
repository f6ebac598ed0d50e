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
from typing import Any

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


class LoginThrottle:
    """Failed sign-ins per user and per client in a small SQLite file, shared by every session
    and surviving restarts. After ``max_failures`` failures within ``lockout_s`` seconds the
    user (or the client) is locked out until that window has passed: even the right password
    is refused meanwhile. A success clears the user's failures (not the client's)."""

    def __init__(
        self, path: Path, max_failures: int = 5, lockout_s: float = 900.0, clock: Any = None
    ) -> None:
        import sqlite3
        import time

        self.path, self.max_failures, self.lockout_s = Path(path), max_failures, lockout_s
        self.clock = clock or time.time
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not self.path.exists()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        if fresh:
            os.chmod(self.path, 0o600)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS failures (who TEXT, ts REAL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS failures_who ON failures (who, ts)")

    @staticmethod
    def _keys(user: str, client: str) -> tuple[str, str]:
        user_key = "user:" + hashlib.sha256(user.strip().lower().encode()).hexdigest()[:32]
        return user_key, "client:" + hashlib.sha256(client.encode()).hexdigest()[:32]

    def locked_for(self, user: str, client: str) -> float:
        """Seconds until ``user`` from ``client`` may try again; 0 when not locked out."""
        now = self.clock()
        waits = [0.0]
        for who in self._keys(user, client):
            rows = self._db.execute(
                "SELECT ts FROM failures WHERE who = ? AND ts > ? ORDER BY ts DESC LIMIT ?",
                (who, now - self.lockout_s, self.max_failures),
            ).fetchall()
            if len(rows) >= self.max_failures:
                waits.append(rows[0][0] + self.lockout_s - now)
        return max(waits)

    def failed(self, user: str, client: str) -> int:
        """Record a failure; returns the user's failures in the window."""
        now = self.clock()
        user_key, client_key = self._keys(user, client)
        with self._db:
            self._db.executemany("INSERT INTO failures VALUES (?, ?)",
                                 [(user_key, now), (client_key, now)])  # fmt: skip
            self._db.execute("DELETE FROM failures WHERE ts < ?", (now - self.lockout_s,))
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM failures WHERE who = ? AND ts > ?",
            (user_key, now - self.lockout_s),
        ).fetchone()
        return int(count)

    def succeeded(self, user: str, client: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM failures WHERE who = ?", (self._keys(user, client)[0],))

    def close(self) -> None:
        self._db.close()
