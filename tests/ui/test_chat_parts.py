"""The chat's parts without Streamlit: local users (scrypt hashes), the audit log (no patient
data), the feedback store and its export as preference pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from answer.types import Answer, Citation
from ui.audit import audit
from ui.auth import AuthError, UserStore, ensure_first_user
from ui.cli import app
from ui.feedback import FeedbackStore, export_pairs


def test_users_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.json")
    assert ensure_first_user(users) is not None and users.names() == ["admin"]
    assert ensure_first_user(users) is None  # only when there is nobody
    users.add("dr.chen@ward-3", "correct horse")
    raw = (tmp_path / "users.json").read_text()
    assert "correct horse" not in raw and "scrypt" not in raw
    assert (tmp_path / "users.json").stat().st_mode & 0o777 == 0o600
    assert users.verify("dr.chen@ward-3", "correct horse")
    assert not users.verify("dr.chen@ward-3", "wrong horse")
    assert not users.verify("nobody", "correct horse")
    users.add("dr.chen@ward-3", "new password")  # reset
    assert users.verify("dr.chen@ward-3", "new password")
    with pytest.raises(AuthError, match="8 characters"):
        users.add("bob", "short")
    with pytest.raises(AuthError, match="user name"):
        users.add("bob smith", "long enough")
    (tmp_path / "users.json").write_text("{broken")
    with pytest.raises(AuthError, match="unreadable"):
        users.verify("admin", "x")


def test_users_add_command_asks_for_the_password(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["users", "add", "alice"], input="a good password\na good password\n",
        env={"EVIDEX_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert UserStore(tmp_path / "users.json").verify("alice", "a good password")
    assert "a good password" not in res.stderr


def test_audit_log_refuses_patient_data(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    audit(log, "alice", "ask", question="Is metformin safe in CKD?", answer_id="a1")
    rec = json.loads(log.read_text())
    assert rec["user"] == "alice" and rec["event"] == "ask" and rec["answer_id"] == "a1"
    with pytest.raises(ValueError, match="patient"):
        audit(log, "alice", "ask", patient={"age": 67})


def _answer(answer_id: str, question: str, text: str, abstained: bool = False) -> Answer:
    cite = Citation(
        marker=1, doc_id="pmid:1", chunk_id="c1", text="Aspirin reduced events.",
        sentence=text, support=0.9, status="verified",
    )  # fmt: skip
    return Answer(
        answer_id=answer_id, created_at="2026-11-24T00:00:00Z", question=question, text=text,
        abstained=abstained, citations=(cite,), settings_hash="abc123",
    )  # fmt: skip


def test_feedback_is_stored_once_per_user_and_exported_as_pairs(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    store = FeedbackStore(db)
    q = "Does aspirin prevent stroke?"
    good, bad = _answer("a1", q, "Yes [1]."), _answer("a2", q + " ", "No [1].")
    store.record(good, "alice", 1)
    store.record(bad, "alice", -1, "wrong direction", "Yes, for secondary prevention [1].")
    store.record(bad, "alice", -1, "wrong direction (edited)", "Yes, for secondary prevention [1].")
    store.record(good, "bob", 1, "fine")
    rows = store.rows()
    assert len(rows) == 3  # alice's second submission on a2 replaced the first
    row = next(r for r in rows if r["answer_id"] == "a2")
    assert row["comment"] == "wrong direction (edited)" and row["settings_hash"] == "abc123"
    assert json.loads(row["citations"])[0]["doc_id"] == "pmid:1" and row["question"] == q + " "
    with pytest.raises(ValueError, match="empty feedback"):
        store.record(good, "carol", None)
    with pytest.raises(ValueError, match="rating"):
        store.record(good, "carol", 5)
    out = tmp_path / "pairs.jsonl"
    assert export_pairs(db, out) == 2
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    kinds = {p["kind"]: p for p in pairs}
    assert kinds["correction"]["chosen"][0]["content"] == "Yes, for secondary prevention [1]."
    assert kinds["correction"]["rejected"][0]["content"] == "No [1]."
    assert kinds["rating"]["chosen"][0]["content"] == "Yes [1]." and kinds["rating"]["prompt"][0][
        "content"
    ] in (q, q + " ")
    res = CliRunner().invoke(
        app, ["feedback", "export", "--out", str(tmp_path / "cli.jsonl")],
        env={"EVIDEX_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert res.exit_code == 0 and "wrote 2 preference pairs" in res.stderr
    res = CliRunner().invoke(
        app, ["feedback", "export", "--out", str(tmp_path / "x.jsonl")],
        env={"EVIDEX_DATA_DIR": str(tmp_path / "empty")},
    )  # fmt: skip
    assert res.exit_code == 1 and "nothing has been rated" in res.stderr


def test_evidex_chat_starts_streamlit_and_creates_the_first_user(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    import httpx

    from tests.llama_server import free_port, wait_until_up

    pytest.importorskip("streamlit", reason="the chat needs the ui extra")
    port = free_port()
    env = {**os.environ, "EVIDEX_DATA_DIR": str(tmp_path)}
    log = (tmp_path / "chat.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.cli", "chat", "--port", str(port),
         "--store", str(tmp_path / "idx")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/_stcore/health", log)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        # SIGTERM to evidex chat reaches Streamlit, and evidex waits for it: no orphan keeps
        # serving (or holding the store) once evidex has exited
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert (tmp_path.stat().st_mode & 0o777) == 0o700  # the data dir made private
    assert ((tmp_path / "users.json").stat().st_mode & 0o777) == 0o600
    log.seek(0)
    said = log.read().decode()
    m = re.search(r"user: admin\n  password: (\S+)\n", said)
    assert m, said[-2000:]
    assert UserStore(tmp_path / "users.json").verify("admin", m.group(1))
