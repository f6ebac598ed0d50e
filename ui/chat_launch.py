"""Starting the clinicians' chat: the first user, the environment, Streamlit in the foreground
(always headless), and a browser tab once the page answers."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrieval.errors import ServiceError
from retrieval.privacy import make_private

log = logging.getLogger(__name__)

APP_FILE = Path(__file__).with_name("chat_app.py")


def open_when_up(url: str, timeout_s: float = 120) -> None:
    """Open a browser tab once the chat answers its health check."""
    import webbrowser

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                webbrowser.open(url)
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line of the chat."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_FILE),
        "--server.address", host, "--server.port", str(port),
        # Always headless: otherwise Streamlit asks for an e-mail address on first run
        # (reading stdin, which ends the job when there is none).
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def launch_chat(
    settings: Any,
    config: Path | None,
    store: Path | None,
    host: str,
    port: int,
    *,
    browser: bool = False,
    say: Callable[[str], Any] = log.warning,
) -> int:
    """Run the Streamlit chat in the foreground until Ctrl-C; returns its exit status.

    With local login and no users yet, creates ``admin`` and tells its password once
    through ``say``."""
    if importlib.util.find_spec("streamlit") is None:
        raise ServiceError(
            "the chat needs Streamlit: bash scripts/setup.sh ui (or pip install -e '.[ui]')"
        )
    from ui.auth import UserStore, ensure_first_user

    if settings.chat.login == "local":
        users = UserStore(settings.chat.users_file or settings.data_dir / "users.json")
        password = ensure_first_user(users)
        if password:
            say(
                f"created the first chat user, shown once:\n  user: admin\n  password: "
                f"{password}\n(stored hashed in {users.path}; add users with evidex users add "
                "NAME)"
            )
    env = dict(os.environ)
    if config is not None:
        env["EVIDEX_CONFIG"] = str(Path(config).resolve())
    if store is not None:
        env["EVIDEX_STORE__PATH"] = str(Path(store).resolve())
    url = f"http://{host}:{port}"
    say(f"evidex chat on {url}  (Ctrl-C stops it)")
    if browser:
        threading.Thread(target=open_when_up, args=(url,), daemon=True).start()
    os.umask(0o077)
    make_private(Path(settings.data_dir))
    return run_child(streamlit_command(host, port), env)


def run_child(cmd: list[str], env: dict[str, str], grace_s: float = 10.0) -> int:
    """Run ``cmd`` in the foreground and wait for it. SIGTERM, SIGINT and SIGHUP to this
    process are forwarded to the child, which is waited for (killed after ``grace_s``), so
    no orphan keeps serving or holding the store lock. Returns the child's exit status (0
    after a forwarded signal)."""
    child = subprocess.Popen(cmd, env=env)
    forwarded: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
        if child.poll() is None:
            child.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    watched = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, forward) for s in watched}
    deadline: float | None = None
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if forwarded and deadline is None:
                    deadline = time.monotonic() + grace_s
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("the chat did not stop within %.0f s of the signal: killing it",
                                grace_s)  # fmt: skip
                    child.kill()
            except KeyboardInterrupt:  # no handler installed (not the main thread)
                forward(signal.SIGINT, None)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if forwarded else code
