"""The chat page with Streamlit's AppTest: the real Assistant over a real index and the real
embedded model (answers kept short), the real users file, feedback database and audit log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the chat needs the ui extra (pip install -e '.[ui]')")

from streamlit.testing.v1 import AppTest

from answer import REVIEW_NOTICE
from tests.answer_fixture import AnswerIndex
from ui.auth import UserStore

APP = str(Path(__file__).resolve().parents[2] / "ui" / "chat_app.py")
PASSWORD = "ward-3 password"


@pytest.fixture
def env(
    answer_index: AnswerIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    import streamlit as st

    monkeypatch.setenv("EVIDEX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVIDEX_STORE__PATH", str(answer_index.store))
    monkeypatch.setenv("EVIDEX_LLM__MAX_TOKENS", "60")
    UserStore(tmp_path / "users.json").add("alice", PASSWORD)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()


def _login(at: AppTest, password: str = PASSWORD) -> AppTest:
    at.run()
    at.text_input[0].input("alice")
    at.text_input[1].input(password)
    at.button[0].click().run()
    return at


def test_login_is_required_and_audited(env: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception and not at.chat_input  # nothing but the login form
    _login(at, "wrong password")
    assert "Wrong user name or password" in at.error[0].value and not at.chat_input
    _login(at)
    assert not at.exception and at.chat_input
    assert at.warning[0].value == REVIEW_NOTICE  # the permanent notice
    events = [json.loads(x)["event"] for x in (env / "audit.jsonl").read_text().splitlines()]
    assert events == ["login_failed", "login"]
    sidebar = " ".join(m.value for m in at.sidebar.markdown) + " ".join(
        c.value for c in at.sidebar.caption
    )
    assert "Signed in as **alice**" in sidebar and "SmolLM2" in sidebar and "documents" in sidebar


def test_ask_shows_answer_references_and_takes_feedback(
    env: Path, answer_index: AnswerIndex
) -> None:
    at = _login(AppTest.from_file(APP, default_timeout=300))
    at.chat_input[0].set_value(answer_index.question).run()
    assert not at.exception
    msgs = at.session_state["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    answer = msgs[1]["answer"]
    labels = [e.label for e in at.expander]
    assert any(label.startswith("[1] ") for label in labels)  # reference cards
    assert "Plan: how the question was searched" in labels
    assert any(label.startswith("Evidence retrieved") for label in labels)
    text = " ".join(m.value for m in at.markdown)
    assert f"pubmed.ncbi.nlm.nih.gov/{answer_index.pmid}" in text  # a link to open the source
    assert ("Insufficient evidence" in text) == answer.abstained  # a distinct look
    assert any(c.value.endswith(REVIEW_NOTICE) for c in at.caption)
    # the audit log has the question's keyed hash, its length and the answer id, not its text
    log_text = (env / "audit.jsonl").read_text()
    ask = [json.loads(x) for x in log_text.splitlines()][-1]
    assert ask == {
        **ask,
        "event": "ask",
        "question_chars": len(answer_index.question),
        "answer_id": answer.answer_id,
    }
    assert len(ask["question_hmac"]) == 64 and "question" not in ask
    assert answer_index.question not in log_text and "tailored" not in log_text
    # private files in a private folder
    assert (env.stat().st_mode & 0o777) == 0o700
    for name in ("audit.jsonl", "audit.key", "users.json", "logins.sqlite"):
        assert ((env / name).stat().st_mode & 0o777) == 0o600, name
    # feedback: thumbs down, a comment and a correction
    at.radio[0].set_value("not_helpful")
    assert at.radio[0].options == ["👍 Helpful", "👎 Not helpful", "No rating"]
    at.text_input(key=f"comment-{answer.answer_id}").input("misses the trial result")
    at.text_area(key=f"corr-{answer.answer_id}").input(
        "Yes: tailored telephone counseling helped [1]."
    )
    next(b for b in at.button if b.label == "Send feedback").click().run()
    assert not at.exception and any("Feedback saved" in c.value for c in at.caption)
    with sqlite3.connect(env / "feedback.sqlite") as db:
        rows = db.execute(
            "SELECT user, rating, comment, correction, question, settings_hash FROM feedback"
        ).fetchall()
    correction = "Yes: tailored telephone counseling helped [1]."
    assert rows == [
        ("alice", -1, "misses the trial result", correction, answer_index.question,
         answer.settings_hash)
    ]  # fmt: skip


def test_patient_context_filters_and_errors(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _login(AppTest.from_file(APP, default_timeout=300))
    # patient form -> active indicator and a clear button
    at.sidebar.number_input[0].set_value(67)
    next(b for b in at.sidebar.selectbox if b.label == "Sex").select("female")
    at.sidebar.text_input[0].input("type 2 diabetes")
    next(b for b in at.sidebar.button if b.label == "Use this patient").click().run()
    assert not at.exception
    assert "Active: 67-year-old female" in at.sidebar.success[0].value
    assert any("Patient context is active" in i.value for i in at.info)
    next(b for b in at.sidebar.button if b.label == "Clear patient context").click().run()
    assert "patient" not in at.session_state and not at.sidebar.success
    # a filter that matches nothing: the answer says there is no evidence, no traceback
    at.sidebar.multiselect(key="evidence_levels").set_value(["case_report"])
    at.chat_input[0].set_value("Does aspirin prevent stroke after a TIA?").run()
    assert not at.exception
    answer = at.session_state["messages"][-1]["answer"]
    assert answer.abstained and not answer.passages


def test_empty_store_is_a_message(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDEX_STORE__PATH", str(env / "no-index"))
    at = _login(AppTest.from_file(APP, default_timeout=120))
    assert not at.exception and any("unavailable" in c.value for c in at.sidebar.caption)
    at.chat_input[0].set_value("Does aspirin prevent stroke?").run()
    assert not at.exception
    assert "evidex cannot answer yet" in at.error[0].value and "ingest" in at.error[0].value


def test_model_endpoint_down_is_a_message(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.llama_server import free_port

    monkeypatch.setenv("EVIDEX_LLM__KIND", "openai")
    monkeypatch.setenv("EVIDEX_LLM__BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("EVIDEX_LLM__RETRIES", "0")
    at = _login(AppTest.from_file(APP, default_timeout=120))
    at.chat_input[0].set_value("Can tailored interventions increase mammography use?").run()
    assert not at.exception
    answer = at.session_state["messages"][-1]["answer"]
    assert answer.degraded or answer.abstained
    shown = " ".join(w.value for w in at.warning) + " ".join(m.value for m in at.markdown)
    assert "cannot reach the model" in shown


def test_oidc_login_shows_the_provider_button(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDEX_CHAT__LOGIN", "oidc")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()  # not configured: a message that says where to configure it
    assert not at.exception and not at.chat_input and "[auth]" in at.error[0].value
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback"}
    at.run()
    assert not at.exception and not at.chat_input and not at.text_input
    assert [b.label for b in at.button] == ["Log in"]


def test_no_login_mode_opens_the_chat(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDEX_CHAT__LOGIN", "none")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception and at.chat_input and at.warning[0].value == REVIEW_NOTICE


def test_wrong_passwords_lock_the_user_out_and_are_audited(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDEX_CHAT__MAX_LOGIN_FAILURES", "3")
    monkeypatch.setenv("EVIDEX_CHAT__FAILURE_DELAY_S", "0")
    at = AppTest.from_file(APP, default_timeout=120)
    for _ in range(3):
        _login(at, "wrong password")
        assert "Wrong user name or password" in at.error[0].value
    _login(at)  # the right password, after the lockout: still refused
    assert "Too many failed sign-ins" in at.error[0].value and not at.chat_input
    other = _login(AppTest.from_file(APP, default_timeout=120))  # another session, same user
    assert "Too many failed sign-ins" in other.error[0].value and not other.chat_input
    events = [json.loads(x) for x in (env / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["login_failed"] * 2 + [
        "login_failed", "lockout", "login_locked", "login_locked"
    ]  # fmt: skip
    assert [e.get("failures") for e in events[:3]] == [1, 2, 3]
    import time

    import streamlit as st

    monkeypatch.setenv("EVIDEX_CHAT__LOCKOUT_S", "0.5")  # the window passes: the user is back
    st.cache_resource.clear()  # the settings are read once per process
    time.sleep(0.6)
    again = _login(AppTest.from_file(APP, default_timeout=120))
    assert not again.exception and again.chat_input, [e.value for e in again.error]


def test_redacted_audit_keeps_no_identifier(
    env: Path, answer_index: AnswerIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVIDEX_CHAT__AUDIT_QUESTIONS", "redacted")
    at = _login(AppTest.from_file(APP, default_timeout=300))
    question = f"Mrs. Ellen Walsh, MRN 40123987, DOB 02/11/1951: {answer_index.question}"
    at.chat_input[0].set_value(question).run()
    assert not at.exception
    log_text = (env / "audit.jsonl").read_text()
    ask = json.loads(log_text.splitlines()[-1])
    assert ask["question"].startswith("Mrs. [NAME], MRN [ID], DOB [DATE]: Can tailored")
    for secret in ("Walsh", "Ellen", "40123987", "1951"):
        assert secret not in log_text


def test_the_interface_follows_the_question_and_the_users_choice(env: Path) -> None:
    from ui.i18n import t

    at = _login(AppTest.from_file(APP, default_timeout=300))
    assert at.warning[0].value == REVIEW_NOTICE and at.chat_input[0].placeholder == t("ask")
    at.chat_input[0].set_value("阿司匹林能预防短暂性脑缺血发作后的卒中吗？").run()
    assert not at.exception
    # 'auto': a Chinese question turns the interface Chinese (labels, notices, badges)
    zh_notice = t("review_notice", "zh")
    assert at.warning[0].value == zh_notice and at.chat_input[0].placeholder == t("ask", "zh")
    assert any(c.value.endswith(zh_notice) for c in at.caption)
    assert t("signed_in_as", "zh", user="alice") in [m.value for m in at.sidebar.markdown]
    assert "这个回答正确吗？" in " ".join(m.value for m in at.markdown)
    assert at.radio[0].options == ["👍 有帮助", "👎 没有帮助", "不评价"]
    # the user's own choice wins, and is kept for their next session
    at.selectbox(key="ui_choice").set_value("en").run()
    assert at.warning[0].value == REVIEW_NOTICE
    assert json.loads((env / "preferences.json").read_text()) == {"alice": "en"}
    assert ((env / "preferences.json").stat().st_mode & 0o777) == 0o600
    again = _login(AppTest.from_file(APP, default_timeout=120))
    assert again.selectbox(key="ui_choice").value == "en"
    again.selectbox(key="ui_choice").set_value("zh").run()
    assert again.warning[0].value == zh_notice and again.sidebar.subheader[0].value == "证据"


def test_chinese_login_page_by_setting(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVIDEX_CHAT__LANGUAGE", "zh")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert [x.label for x in at.text_input] == ["用户名", "密码"]
    _login(at, "wrong password")
    assert at.error[0].value == "用户名或密码错误。"
