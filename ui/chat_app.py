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
from pathlib import Path
from typing import Any

import streamlit as st

from answer import REVIEW_NOTICE, Answer, Assistant
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

log = logging.getLogger("evidex.chat")

RATINGS = {"👍 Helpful": 1, "👎 Not helpful": -1, "No rating": None}
LANGUAGES = {"English": "eng", "Chinese": "chi"}


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
            st.button("Log in", on_click=st.login, type="primary")
            return None
        return str(st.user.get("email") or st.user.get("name") or "oidc-user")
    if st.session_state.get("user"):
        return str(st.session_state["user"])
    users_file, _, audit_path = _paths(settings)
    st.title("evidex")
    st.caption("Evidence-based answers with citations. Sign in to continue.")
    with st.form("login"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _sign_in(settings, name.strip()[:64], password, users_file, audit_path)
    if not UserStore(users_file).names():
        st.info(f"No users yet: create one with `evidex users add NAME` (users file {users_file}).")
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
            st.error(
                f"Too many failed sign-ins: try again in {math.ceil(wait / 60)} minute(s), or "
                "ask your evidex administrator to reset the password (evidex users add NAME)."
            )
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
    st.error("Wrong user name or password.")


# -- sidebar -----------------------------------------------------------------------------


def _patient_panel() -> None:
    st.subheader("Patient context")
    patient: Patient | None = st.session_state.get("patient")
    if patient is not None:
        st.success(f"Active: {patient.summary()}", icon="🩺")
        if st.button("Clear patient context", key="clear_patient"):
            st.session_state.pop("patient", None)
            st.rerun()
        return
    st.caption("Not active. Answers then ignore patient specifics.")
    with st.form("patient_form", clear_on_submit=False):
        age = st.number_input("Age (years)", min_value=0, max_value=130, value=None, step=1)
        sex = st.selectbox("Sex", ["—", "female", "male"])
        conditions = st.text_input("Conditions (comma separated)")
        medications = st.text_input("Medications (comma separated)")
        allergies = st.text_input("Allergies (comma separated)")
        use = st.form_submit_button("Use this patient")
    upload = st.file_uploader("…or upload a JSON record / FHIR Bundle", type=["json"])

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
                st.warning("Fill in at least one field.")
                return
            st.session_state["patient"] = load_patient(record)
            st.rerun()
        if upload is not None:
            st.session_state["patient"] = load_patient(json.loads(upload.getvalue()))
            st.rerun()
    except (PatientError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        st.error(f"Patient record not used: {exc}")


def _sidebar(settings: Settings, user: str) -> dict[str, Any]:
    with st.sidebar:
        st.markdown(f"Signed in as **{user}**")
        if settings.chat.login == "local" and st.button("Sign out"):
            audit(_paths(settings)[2], user, "logout")
            st.session_state.clear()
            st.rerun()
        elif settings.chat.login == "oidc":
            st.button("Sign out", on_click=st.logout)
        st.subheader("Evidence")
        this_year = dt.date.today().year
        bounds = (1950, this_year)
        years = st.slider("Publication years", *bounds, value=bounds, key="years")
        levels = st.multiselect(
            "Evidence levels",
            [e.value for e in EvidenceLevel],
            format_func=lambda v: view.BADGES.get(v, (v, ""))[0],
            key="evidence_levels",
        )
        sources = st.multiselect("Sources", [s.value for s in Source], key="sources")
        langs = st.multiselect("Language", list(LANGUAGES), key="languages")
        n_sources = st.slider(
            "Number of sources", 1, 12, value=min(settings.answer.max_sources, 12), key="n_sources"
        )
        st.divider()
        _patient_panel()
        st.divider()
        st.subheader("System")
        st.caption(f"Model: {_model_name(settings)}")
        try:
            stats = _store_stats()
            st.caption(
                f"Index: {stats['documents']:,} documents, {stats['chunks']:,} passages "
                f"({settings.store_path})"
            )
        except Exception as exc:  # the page must still render: the error shows in the chat
            st.caption(f"Index: unavailable ({exc})")
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
        badge = ":red-badge[Sources disagree]" if agree.contradiction else ":green-badge[Consensus]"
        st.markdown(f"{badge} {view.link_markers(agree.summary, markers)}")
    elif agree is not None:
        st.caption(agree.note)
    if kind == "insufficient":
        with st.container(border=True):
            st.markdown(":orange-badge[Insufficient evidence]")
            st.markdown(body)
            if answer.abstain_reason:
                st.caption(answer.abstain_reason)
        if answer.sources_say is not None:
            st.markdown(f"**{SOURCES_SAY_LABEL}**")
            st.markdown(view.digest_markdown(answer.sources_say.text, markers))
    elif kind in ("digest", "degraded"):
        st.markdown(
            ":blue-badge[Evidence digest: quoted from the sources, no model synthesis]"
            if kind == "digest"
            else ":orange-badge[Model unavailable: evidence digest quoted from the sources]"
        )
        st.markdown(view.digest_markdown(answer.text, markers))
    else:
        st.markdown(":green-badge[Answer with verified citations]")
        st.markdown(body)
    for w in answer.warnings:
        st.warning(w, icon="⚠️")
    removed = view.removed_markers(answer)
    if answer.removed:
        with st.expander(f"Removed sentences ({len(answer.removed)}): not supported by sources"):
            for r in answer.removed:
                st.markdown(f"~~{r.sentence}~~  \n:red-badge[unsupported] {r.reason}")
    by_marker = view.citations_by_marker(answer)
    stances = {x.marker: x.stance for x in agree.stances} if agree is not None else {}
    if answer.references:
        st.markdown("**References**")
    for ref in answer.references:
        cites = by_marker.get(ref.marker, [])
        flags = [":red-badge[RETRACTED]"] if ref.retracted else []
        if ref.grade:
            flags.append(f":violet-badge[Grade {ref.grade}]")
        stance = stances.get(ref.marker)
        if stance:
            flags.append(view.stance_badge(stance))
        flags += [f":orange-badge[{n.label()}]" for n in ref.notices if not ref.retracted]
        if any(c.status == "unsupported" for c in cites) or ref.marker in removed:
            flags.append(":red-badge[unsupported citation]")
        elif cites:
            flags.append(":green-badge[cited]")
        else:
            flags.append(":gray-badge[not cited]")
        st.markdown(f'<a id="ref-{ref.marker}"></a>', unsafe_allow_html=True)
        with st.expander(f"{view.reference_title(ref)}"):
            st.markdown(" ".join([view.badge(ref.evidence_level), *flags]))
            for c in cites:
                st.markdown(f"> {c.evidence or c.text}")
                st.caption(f"Supports: “{c.sentence}” (support {c.support:.2f}, {c.status})")
            if not cites:
                passage = next((p for p in answer.passages if p.chunk_id == ref.chunk_id), None)
                if passage is not None:
                    st.markdown(f"> {passage.text[:600]}")
            link = view.reference_link(ref)
            if link:
                st.markdown(f"[Open source]({link})")
            if ref.pmcid:
                st.markdown(
                    f"[Full text ({ref.pmcid})](https://www.ncbi.nlm.nih.gov/pmc/articles/{ref.pmcid}/)"
                )
    if answer.left_out:
        with st.expander(f"Left out: retracted records ({len(answer.left_out)})"):
            for p in answer.left_out:
                notices = " ".join(f":orange-badge[{n.label()}]" for n in p.notices)
                who = f"PMID {p.pmid}" if p.pmid else p.doc_id
                st.markdown(
                    f":red-badge[RETRACTED] **{p.heading()[0] or p.doc_id}** ({who}) {notices}  \n"
                    "Retrieved but never cited: the record is retracted."
                )
    if answer.plan is not None:
        with st.expander("Plan: how the question was searched"):
            for sub in answer.plan.subtasks:
                st.markdown(f"- **{sub.question}**: " + "; ".join(f"`{q}`" for q in sub.queries))
    if answer.passages:
        with st.expander(f"Evidence retrieved ({len(answer.passages)} passages)"):
            for p in answer.passages:
                retracted = " :red-badge[RETRACTED]" if p.retracted else ""
                st.markdown(
                    f"**{p.title or p.doc_id}** {view.badge(p.evidence_level)}{retracted} "
                    f"(score {p.score:.3f})  \n{p.text[:400]}"
                )
    st.caption(f"⚕️ {REVIEW_NOTICE}")


def _feedback_form(answer: Answer, user: str, settings: Settings) -> None:
    done = st.session_state.setdefault("feedback_done", set())
    if answer.answer_id in done:
        st.caption("✅ Feedback saved. Thank you.")
        return
    with st.form(f"fb-{answer.answer_id}"):
        st.markdown("**Was this answer right?**")
        rating = st.radio(
            "Rating", list(RATINGS), index=2, horizontal=True, key=f"rating-{answer.answer_id}"
        )
        comment = st.text_input("Comment (optional)", key=f"comment-{answer.answer_id}")
        correction = st.text_area("Corrected answer (optional)", key=f"corr-{answer.answer_id}")
        sent = st.form_submit_button("Send feedback")
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
        st.error(f"evidex cannot answer yet: {exc}")
        return
    audit_path = _paths(settings)[2]
    placeholder = st.empty()
    answer: Answer | None = None
    try:
        with lock:
            assistant.settings.answer.max_sources = options["n_sources"]
            draft = ""
            with st.spinner("Searching the evidence and writing the answer…"):
                for piece in assistant.stream(
                    question, st.session_state.get("patient"), options["filters"] or None
                ):
                    if isinstance(piece, Answer):
                        answer = piece
                    else:
                        draft += piece
                        placeholder.markdown(draft + " ▌")
    except EvidexError as exc:  # an expected failure: its message says what to do
        placeholder.error(f"The question was not answered: {exc}")
        return
    except Exception as exc:  # a bug; still never a traceback in front of a clinician
        log.exception("answering failed")
        placeholder.error(
            f"Something went wrong while answering ({type(exc).__name__}: {exc}). The question "
            "was not answered; try again, or tell your evidex administrator."
        )
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
        st.error(f"evidex settings are invalid: {exc}")
        return
    user = _login(settings)
    if user is None:
        return
    options = _sidebar(settings, user)
    st.title("evidex")
    st.warning(REVIEW_NOTICE, icon="⚕️")
    if st.session_state.get("patient") is not None:
        st.info("Patient context is active for new questions (see the sidebar).", icon="🩺")
    messages = st.session_state.setdefault("messages", [])
    for msg in messages:
        with st.chat_message(msg["role"]):
            if msg["role"] == "user":
                st.markdown(msg["content"])
            else:
                _render_answer(msg["answer"])
                _feedback_form(msg["answer"], user, settings)
    question = st.chat_input("Ask a clinical question (English or Chinese)")
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
