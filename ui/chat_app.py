"""The clinicians' chat (Streamlit). Start it with ``evidex chat``; it reads the same settings
as the command line (``EVIDEX_CONFIG`` names a TOML file; ``EVIDEX_*`` variables override).

The page: a login (local users file, or OpenID Connect through Streamlit), the permanent
review notice, the chat with streamed answers, linked citations, reference cards, plan and
evidence expanders, and a feedback form under every answer; the sidebar holds the evidence
filters, the model and store in use, and the patient context.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from answer import Answer, Assistant
from answer.patient import Patient, PatientError, load_patient
from answer.types import SOURCES_SAY_LABEL
from retrieval.errors import EvidexError
from retrieval.privacy import install_log_redaction, make_private
from retrieval.settings import Settings, SettingsError, load_settings
from retrieval.types import EvidenceLevel, Source
from ui import chat_view as view
from ui.audit import audit, question_fields
from ui.auth import AuthError, LoginThrottle, UserStore
from ui.feedback import FeedbackStore
from ui.i18n import CHOICES, Preferences, UiLang, choose
from ui.i18n import t as _text

log = logging.getLogger("evidex.chat")

RATINGS = {"helpful": 1, "not_helpful": -1, "no_rating": None}
LANGUAGES = {"English": "eng", "Chinese": "chi"}
LANGUAGE_CHOICES = {"auto": "Auto / 自动（随提问语言）", "en": "English", "zh": "中文"}


def _lang() -> str:
    return str(st.session_state.get("ui_lang", "en"))


def _t(key: str, **values: object) -> str:
    """Interface text in this session's language (ui/i18n.py)."""
    return _text(key, "zh" if _lang() == "zh" else "en", **values)


def _labels() -> Callable[[str], str]:
    """A widget's ``format_func`` in this run's language (bound now: Streamlit may call it
    outside the run)."""
    lang: UiLang = "zh" if _lang() == "zh" else "en"
    return lambda key: _text(key, lang)


def _accept_language() -> str | None:
    try:
        return st.context.headers.get("Accept-Language")
    except Exception:  # no request context (AppTest)
        return None


def _set_language(settings: Settings, user: str | None) -> None:
    """This run's interface language: the user's choice, else chat.language ('auto': the
    last question's language, else the browser's)."""
    pref = None
    if user is not None:
        pref = Preferences(Path(settings.data_dir) / "preferences.json").get(user)
        st.session_state.setdefault("ui_choice", pref or "auto")
    asked = [m["content"] for m in st.session_state.get("messages", []) if m["role"] == "user"]
    st.session_state["ui_lang"] = choose(
        pref, settings.chat.language, asked[-1] if asked else None, _accept_language()
    )


@st.cache_resource(show_spinner=False)
def _settings() -> Settings:
    config = os.environ.get("EVIDEX_CONFIG")
    return load_settings(Path(config) if config else None)


@st.cache_resource(show_spinner="Opening the index and the model…")
def _assistant() -> tuple[Assistant, threading.Lock]:
    return Assistant.from_settings(_settings()), threading.Lock()


@st.cache_data(ttl=60, show_spinner=False)
def _store_stats() -> dict[str, Any]:
    assistant, _ = _assistant()
    return assistant.searcher.index.stats().model_dump()


@st.cache_resource(show_spinner=False)
def _private(data_dir: str) -> None:
    """Once per process: the data folder and its files private (700/600), new files too, and
    identifiers redacted from the logs."""
    os.umask(0o077)
    make_private(Path(data_dir))
    install_log_redaction()


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    chat = settings.chat
    base = Path(settings.data_dir)
    _private(str(base))
    return (
        chat.users_file or base / "users.json",
        chat.feedback_db or base / "feedback.sqlite",
        chat.audit_log or base / "audit.jsonl",
    )


# -- login -------------------------------------------------------------------------------


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _login(settings: Settings) -> str | None:
    """The signed-in user's name, or None after drawing the login form."""
    if settings.chat.login == "none":
        return "local"
    if settings.chat.login == "oidc":
        if not _oidc_configured():
            st.error(
                "chat.login is 'oidc' but Streamlit has no [auth] section in "
                ".streamlit/secrets.toml (redirect_uri, cookie_secret, client_id, client_secret, "
                "server_metadata_url): configure your identity provider there, or set "
                "chat.login = 'local'."
            )
            return None
        if not st.user.get("is_logged_in", False):
            st.title("evidex")
            st.button(_t("log_in"), on_click=st.login, type="primary")
            return None
        return str(st.user.get("email") or st.user.get("name") or "oidc-user")
    if st.session_state.get("user"):
        return str(st.session_state["user"])
    users_file, _, audit_path = _paths(settings)
    st.title("evidex")
    st.caption(_t("sign_in_caption"))
    with st.form("login"):
        name = st.text_input(_t("user_name"))
        password = st.text_input(_t("password"), type="password")
        submitted = st.form_submit_button(_t("sign_in"), type="primary")
    if submitted:
        _sign_in(settings, name.strip()[:64], password, users_file, audit_path)
    if not UserStore(users_file).names():
        st.info(_t("no_users", path=users_file))
    return None


def _client() -> str:
    """Who is signing in, for the per-client count: the address, else this browser session."""
    ip = getattr(st.context, "ip_address", None)
    if ip:
        return f"ip:{ip}"
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id if ctx else '-'}"


def _sign_in(
    settings: Settings, name: str, password: str, users_file: Path, audit_path: Path
) -> None:
    chat, client = settings.chat, _client()
    throttle = LoginThrottle(
        Path(settings.data_dir) / "logins.sqlite", chat.max_login_failures, chat.lockout_s
    )
    try:
        wait = throttle.locked_for(name, client)
        if wait > 0:
            audit(audit_path, name or "-", "login_locked")
            st.error(_t("locked", minutes=math.ceil(wait / 60)))
            return
        try:
            ok = UserStore(users_file).verify(name, password)
        except AuthError as exc:
            st.error(str(exc))
            return
        if ok:
            throttle.succeeded(name, client)
            st.session_state["user"] = name
            audit(audit_path, name, "login")
            st.rerun()
        failures = throttle.failed(name, client)
        audit(audit_path, name or "-", "login_failed", failures=failures)
        if failures >= chat.max_login_failures:
            audit(audit_path, name or "-", "lockout", seconds=chat.lockout_s)
        time.sleep(min(10.0, chat.failure_delay_s * failures))
    finally:
        throttle.close()
    st.error(_t("wrong_login"))


# -- sidebar -----------------------------------------------------------------------------


def _patient_panel() -> None:
    st.subheader(_t("patient_context"))
    patient: Patient | None = st.session_state.get("patient")
    if patient is not None:
        st.success(_t("patient_active", summary=patient.summary()), icon="🩺")
        if st.button(_t("clear_patient"), key="clear_patient"):
            st.session_state.pop("patient", None)
            st.rerun()
        return
    st.caption(_t("patient_inactive"))
    with st.form("patient_form", clear_on_submit=False):
        age = st.number_input(_t("age"), min_value=0, max_value=130, value=None, step=1)
        label = _labels()
        sex = st.selectbox(
            _t("sex"), ["—", "female", "male"], format_func=lambda v: v if v == "—" else label(v)
        )
        conditions = st.text_input(_t("conditions"))
        medications = st.text_input(_t("medications"))
        allergies = st.text_input(_t("allergies"))
        use = st.form_submit_button(_t("use_patient"))
    upload = st.file_uploader(_t("upload"), type=["json"])

    def split(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    try:
        if use:
            record = {
                "age": age,
                "sex": None if sex == "—" else sex,
                "conditions": split(conditions),
                "medications": split(medications),
                "allergies": split(allergies),
            }
            if not any(v for v in record.values()):
                st.warning(_t("fill_one"))
                return
            st.session_state["patient"] = load_patient(record)
            st.rerun()
        if upload is not None:
            st.session_state["patient"] = load_patient(json.loads(upload.getvalue()))
            st.rerun()
    except (PatientError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        st.error(_t("patient_not_used", error=exc))


def _sidebar(settings: Settings, user: str) -> dict[str, Any]:
    with st.sidebar:
        st.markdown(_t("signed_in_as", user=user))
        if settings.chat.login == "local" and st.button(_t("sign_out")):
            audit(_paths(settings)[2], user, "logout")
            st.session_state.clear()
            st.rerun()
        elif settings.chat.login == "oidc":
            st.button(_t("sign_out"), on_click=st.logout)
        st.selectbox(
            "界面语言 / Interface language",  # the same in both: anyone can find it
            CHOICES,
            format_func=LANGUAGE_CHOICES.__getitem__,
            key="ui_choice",
            on_change=_save_language,
            args=(settings, user),
        )
        st.subheader(_t("evidence"))
        this_year = dt.date.today().year
        bounds = (1950, this_year)
        years = st.slider(_t("years"), *bounds, value=bounds, key="years")
        levels = st.multiselect(
            _t("levels"),
            [e.value for e in EvidenceLevel],
            format_func=_level_names(),
            key="evidence_levels",
        )
        sources = st.multiselect(_t("sources"), [s.value for s in Source], key="sources")
        langs = st.multiselect(
            _t("language_filter"), list(LANGUAGES), format_func=_labels(), key="languages"
        )
        n_sources = st.slider(
            _t("n_sources"), 1, 12, value=min(settings.answer.max_sources, 12), key="n_sources"
        )
        st.divider()
        _patient_panel()
        st.divider()
        st.subheader(_t("system"))
        st.caption(_t("model", name=_model_name(settings)))
        try:
            stats = _store_stats()
            st.caption(_t("index", documents=f"{stats['documents']:,}",
                          chunks=f"{stats['chunks']:,}", path=settings.store_path))  # fmt: skip
        except Exception as exc:  # the page must still render: the error shows in the chat
            st.caption(_t("index_unavailable", error=exc))
    return {
        "filters": view.filters_from(
            {
                "years": years,
                "year_bounds": bounds,
                "evidence_levels": levels,
                "sources": sources,
                "languages": [LANGUAGES[x] for x in langs],
            }
        ),
        "n_sources": n_sources,
    }


def _level_names() -> Callable[[str], str]:
    lang = _lang()
    return lambda v: view.badge(v, lang).split("[", 1)[1].rstrip("]")


def _save_language(settings: Settings, user: str) -> None:
    choice = str(st.session_state.get("ui_choice") or "auto")
    Preferences(Path(settings.data_dir) / "preferences.json").set(user, choice)
    audit(_paths(settings)[2], user, "ui_language", choice=choice)


def _model_name(settings: Settings) -> str:
    llm = settings.llm
    if llm.kind == "openai":
        return f"{llm.model} at {llm.base_url}"
    return str(llm.model_path.name) if llm.model_path else "SmolLM2-135M-Instruct (embedded)"


# -- answers -----------------------------------------------------------------------------


def _render_answer(answer: Answer) -> None:
    kind = view.kind(answer)
    markers = [r.marker for r in answer.references]
    body = view.link_markers(answer.text, markers)
    agree = answer.consensus
    if agree is not None and agree.available:
        badge = (
            f":red-badge[{_t('sources_disagree')}]"
            if agree.contradiction
            else f":green-badge[{_t('consensus')}]"
        )
        st.markdown(f"{badge} {view.link_markers(agree.summary, markers)}")
    elif agree is not None:
        st.caption(agree.note)
    if kind == "insufficient":
        with st.container(border=True):
            st.markdown(f":orange-badge[{_t('insufficient')}]")
            st.markdown(body)
            if answer.abstain_reason:
                st.caption(answer.abstain_reason)
        if answer.sources_say is not None:
            st.markdown(f"**{_t('sources_say') if _lang() == 'zh' else SOURCES_SAY_LABEL}**")
            st.markdown(view.digest_markdown(answer.sources_say.text, markers))
    elif kind in ("digest", "degraded"):
        st.markdown(
            f":blue-badge[{_t('digest')}]"
            if kind == "digest"
            else f":orange-badge[{_t('degraded')}]"
        )
        st.markdown(view.digest_markdown(answer.text, markers))
    else:
        st.markdown(f":green-badge[{_t('answer')}]")
        st.markdown(body)
    for w in answer.warnings:
        st.warning(w, icon="⚠️")
    removed = view.removed_markers(answer)
    if answer.removed:
        with st.expander(_t("removed", n=len(answer.removed))):
            for r in answer.removed:
                st.markdown(f"~~{r.sentence}~~  \n:red-badge[{_t('unsupported')}] {r.reason}")
    by_marker = view.citations_by_marker(answer)
    stances = {x.marker: x.stance for x in agree.stances} if agree is not None else {}
    if answer.references:
        st.markdown(f"**{_t('references')}**")
    for ref in answer.references:
        cites = by_marker.get(ref.marker, [])
        flags = [f":red-badge[{_t('retracted')}]"] if ref.retracted else []
        if ref.grade:
            flags.append(f":violet-badge[{_t('grade', grade=ref.grade)}]")
        stance = stances.get(ref.marker)
        if stance:
            flags.append(view.stance_badge(stance, _lang()))
        flags += [f":orange-badge[{n.label()}]" for n in ref.notices if not ref.retracted]
        if any(c.status == "unsupported" for c in cites) or ref.marker in removed:
            flags.append(f":red-badge[{_t('unsupported_citation')}]")
        elif cites:
            flags.append(f":green-badge[{_t('cited')}]")
        else:
            flags.append(f":gray-badge[{_t('not_cited')}]")
        st.markdown(f'<a id="ref-{ref.marker}"></a>', unsafe_allow_html=True)
        with st.expander(f"{view.reference_title(ref)}"):
            st.markdown(" ".join([view.badge(ref.evidence_level, _lang()), *flags]))
            for c in cites:
                st.markdown(f"> {c.evidence or c.text}")
                st.caption(_t("supports", sentence=c.sentence, support=c.support, status=c.status))
            if not cites:
                passage = next((p for p in answer.passages if p.chunk_id == ref.chunk_id), None)
                if passage is not None:
                    st.markdown(f"> {passage.text[:600]}")
            link = view.reference_link(ref)
            if link:
                st.markdown(f"[{_t('open_source')}]({link})")
            if ref.pmcid:
                st.markdown(
                    f"[{_t('full_text', pmcid=ref.pmcid)}]"
                    f"(https://www.ncbi.nlm.nih.gov/pmc/articles/{ref.pmcid}/)"
                )
    if answer.left_out:
        with st.expander(_t("left_out", n=len(answer.left_out))):
            for p in answer.left_out:
                notices = " ".join(f":orange-badge[{n.label()}]" for n in p.notices)
                who = f"PMID {p.pmid}" if p.pmid else p.doc_id
                st.markdown(
                    f":red-badge[{_t('retracted')}] **{p.heading()[0] or p.doc_id}** ({who}) "
                    f"{notices}  \n{_t('left_out_note')}"
                )
    if answer.plan is not None:
        with st.expander(_t("plan")):
            for sub in answer.plan.subtasks:
                st.markdown(f"- **{sub.question}**: " + "; ".join(f"`{q}`" for q in sub.queries))
    if answer.passages:
        with st.expander(_t("retrieved", n=len(answer.passages))):
            for p in answer.passages:
                retracted = f" :red-badge[{_t('retracted')}]" if p.retracted else ""
                st.markdown(
                    f"**{p.title or p.doc_id}** {view.badge(p.evidence_level, _lang())}{retracted} "
                    f"({_t('score')} {p.score:.3f})  \n{p.text[:400]}"
                )
    st.caption(f"⚕️ {_t('review_notice')}")


def _feedback_form(answer: Answer, user: str, settings: Settings) -> None:
    done = st.session_state.setdefault("feedback_done", set())
    if answer.answer_id in done:
        st.caption(_t("feedback_saved"))
        return
    with st.form(f"fb-{answer.answer_id}"):
        st.markdown(f"**{_t('was_right')}**")
        rating = st.radio(
            _t("rating"),
            list(RATINGS),
            index=2,
            horizontal=True,
            format_func=_labels(),
            key=f"rating-{answer.answer_id}-{_lang()}",  # its labels change with the language
        )
        comment = st.text_input(_t("comment"), key=f"comment-{answer.answer_id}")
        correction = st.text_area(_t("correction"), key=f"corr-{answer.answer_id}")
        sent = st.form_submit_button(_t("send_feedback"))
    if sent:
        _, db, audit_path = _paths(settings)
        try:
            FeedbackStore(db).record(answer, user, RATINGS[rating], comment, correction)
        except EvidexError as exc:
            st.warning(str(exc))
            return
        audit(audit_path, user, "feedback", answer_id=answer.answer_id, rating=RATINGS[rating])
        done.add(answer.answer_id)
        st.rerun()


def _ask(question: str, options: dict[str, Any], user: str, settings: Settings) -> None:
    try:
        assistant, lock = _assistant()
    except EvidexError as exc:  # no index, bad settings, a model that cannot load
        st.error(_t("cannot_answer", error=exc))
        return
    audit_path = _paths(settings)[2]
    placeholder = st.empty()
    answer: Answer | None = None
    try:
        with lock:
            assistant.settings.answer.max_sources = options["n_sources"]
            draft = ""
            with st.spinner(_t("searching")):
                for piece in assistant.stream(
                    question, st.session_state.get("patient"), options["filters"] or None
                ):
                    if isinstance(piece, Answer):
                        answer = piece
                    else:
                        draft += piece
                        placeholder.markdown(draft + " ▌")
    except EvidexError as exc:  # an expected failure: its message says what to do
        placeholder.error(_t("not_answered", error=exc))
        return
    except Exception as exc:  # a bug; still never a traceback in front of a clinician
        log.exception("answering failed")
        placeholder.error(_t("went_wrong", error=f"{type(exc).__name__}: {exc}"))
        return
    placeholder.empty()
    assert answer is not None
    audit(
        audit_path,
        user,
        "ask",
        **question_fields(
            question, settings.chat.audit_questions, Path(settings.data_dir) / "audit.key"
        ),
        answer_id=answer.answer_id,
    )
    st.session_state["messages"].append({"role": "assistant", "answer": answer})
    st.rerun()


def main() -> None:
    st.set_page_config(page_title="evidex", page_icon="⚕️", layout="wide")
    try:
        settings = _settings()
    except SettingsError as exc:
        st.error(_t("settings_invalid", error=exc))
        return
    _set_language(settings, None)
    user = _login(settings)
    if user is None:
        return
    _set_language(settings, user)
    options = _sidebar(settings, user)
    st.title("evidex")
    st.warning(_t("review_notice"), icon="⚕️")
    if st.session_state.get("patient") is not None:
        st.info(_t("patient_info"), icon="🩺")
    messages = st.session_state.setdefault("messages", [])
    for msg in messages:
        with st.chat_message(msg["role"]):
            if msg["role"] == "user":
                st.markdown(msg["content"])
            else:
                _render_answer(msg["answer"])
                _feedback_form(msg["answer"], user, settings)
    question = st.chat_input(_t("ask"))
    if question and question.strip():
        messages.append({"role": "user", "content": question.strip()})
        with st.chat_message("user"):
            st.markdown(question.strip())
        with st.chat_message("assistant"):
            _ask(question.strip(), options, user, settings)


# ``streamlit run`` (and AppTest) execute this file as __main__; importing it (doctest
# collection, type checks) must not render a page.
if __name__ == "__main__":
    main()
