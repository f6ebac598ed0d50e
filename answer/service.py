"""``evidex serve``: the answer API and CDS Hooks on the search service's app.

* everything of :mod:`retrieval.service` (``/health``, ``/search``, ``/retrieve``) with the same
  API keys, ``Host`` check and limits;
* ``POST /ask`` - ``{question, patient?, filters?, k?}`` -> the verified :class:`Answer` as
  JSON; with ``Accept: text/event-stream`` the draft as ``token`` events, then the verified
  answer as the ``answer`` event (``error`` when it fails);
* ``GET /cds-services`` and ``POST /cds-services/{id}`` - CDS Hooks (:mod:`answer.cds_hooks`).

Answers run one at a time in their own worker thread, off the event loop and apart from the
search worker, so ``/health`` and ``/search`` answer while they run; at most
``service.max_pending_answers`` wait or run (503 past it) and each has
``service.answer_timeout_s``. A client that disconnects mid-stream stops its answer at the next
token and frees the worker. Every answer is audited like the chat's questions (who: the key's
id, or ``local``; the question's keyed hash; the answer id), never with patient data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from answer.audit import audit, question_fields
from answer.patient import Patient, PatientError, load_patient
from answer.pipeline import Assistant
from answer.types import Answer
from retrieval.errors import EvidexError
from retrieval.filters import SearchFilters
from retrieval.service import Worker, client_id, create_app
from retrieval.settings import Settings

log = logging.getLogger(__name__)

ASK_EXAMPLE = {
    "question": "Does low-dose aspirin prevent a first stroke in adults over 60?",
    "patient": {"age": 67, "sex": "female", "conditions": ["hypertension"]},
    "filters": {"year_from": 2010},
    "k": 5,
}


class AskRequest(BaseModel):
    """A question for ``POST /ask``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [ASK_EXAMPLE]},  # type: ignore[list-item]
    )

    question: str = Field(description="A clinical question, English or Chinese.")
    patient: dict[str, Any] | None = Field(
        None,
        description="Patient context: evidex's record (age, sex, conditions, medications, "
        "allergies, labs, notes) or a FHIR R4 Bundle; validated as on the command line.",
    )
    filters: SearchFilters | None = Field(None, description="Evidence restrictions.")
    k: int | None = Field(None, ge=1, le=30, description="Most numbered sources to use.")


SSE_DOC: dict[str, Any] = {
    "description": "The verified answer (JSON), or with Accept: text/event-stream the events "
    "token (draft text) ... then answer (the verified Answer) or error.",
    "content": {"text/event-stream": {}},
}


def _patient(raw: dict[str, Any] | None) -> Patient | None:
    if raw is None:
        return None
    try:
        return load_patient(raw)
    except PatientError as exc:
        raise HTTPException(422, f"patient: {str(exc)[:300]}") from None


def sse(event: str, data: Any) -> bytes:
    """One server-sent event.

    >>> sse("token", {"text": "Aspirin"})
    b'event: token\\ndata: {"text": "Aspirin"}\\n\\n'
    """
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class Answerer:
    """Runs the assistant on the answer worker; one answer at a time."""

    def __init__(self, assistant: Assistant, settings: Settings) -> None:
        self.assistant, self.settings = assistant, settings
        service = settings.service
        self.worker = Worker(
            service.max_pending_answers,
            service.answer_timeout_s,
            "answer",
            ("service.max_pending_answers", "service.answer_timeout_s"),
        )
        self._default_k = assistant.settings.answer.max_sources

    def answer_now(
        self, question: str, patient: Patient | None, filters: Any, k: int | None
    ) -> Answer:
        """One answer in this thread (call it on the answer worker)."""
        self.assistant.settings.answer.max_sources = k or self._default_k
        return self.assistant.ask(question, patient=patient, filters=filters)

    async def ask(
        self, question: str, patient: Patient | None, filters: Any, k: int | None, who: str
    ) -> Answer:
        answer: Answer = await self.worker.run(self.answer_now, question, patient, filters, k)
        self.audit(who, question, answer)
        return answer

    def audit(self, who: str, question: str, answer: Answer, event: str = "ask") -> None:
        data = Path(self.settings.data_dir)
        fields = question_fields(question, self.settings.chat.audit_questions, data / "audit.key")
        audit(self.settings.chat.audit_log or data / "audit.jsonl", who, event, **fields,
              answer_id=answer.answer_id, via="api")  # fmt: skip

    async def stream(
        self, question: str, patient: Patient | None, filters: Any, k: int | None, who: str
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            self.assistant.settings.answer.max_sources = k or self._default_k
            pieces = self.assistant.stream(question, patient, filters)
            try:
                for piece in pieces:
                    if stop.is_set():  # the client went away: stop here, free the worker
                        return
                    put(("answer", piece) if isinstance(piece, Answer) else ("token", piece))
            except EvidexError as exc:
                put(("error", str(exc)))
            except Exception as exc:  # a bug: said once, never a traceback to the client
                log.exception("answering failed")
                put(("error", f"answering failed ({type(exc).__name__})"))
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
                put(("end", None))

        future = self.worker.submit(work)  # 503 before the stream starts when full
        deadline = loop.time() + self.worker.timeout_s
        try:
            while True:
                try:
                    kind, value = await asyncio.wait_for(queue.get(), deadline - loop.time())
                except TimeoutError:
                    yield sse("error", {"detail": "the answer took longer than "
                                        "service.answer_timeout_s"})  # fmt: skip
                    return
                if kind == "end":
                    return
                if kind == "token":
                    yield sse("token", {"text": value})
                elif kind == "answer":
                    self.audit(who, question, value)
                    yield sse("answer", value.model_dump(mode="json"))
                else:
                    yield sse("error", {"detail": value})
        finally:
            stop.set()
            del future


def create_answer_app(assistant: Assistant, settings: Settings, host: str | None = None) -> FastAPI:
    """The app of ``evidex serve``: search routes, ``/ask`` and CDS Hooks."""
    from answer import cds_hooks

    app = create_app(assistant.searcher, settings.service, host)
    answerer = Answerer(assistant, settings)
    app.router.on_shutdown.append(lambda: answerer.worker.close())

    @app.post(
        "/ask",
        summary="Answer a question with verified citations",
        responses={200: SSE_DOC},
    )
    async def ask(req: AskRequest, request: Request) -> Any:
        patient = _patient(req.patient)
        who = client_id(request.scope)
        if "text/event-stream" in request.headers.get("accept", ""):
            events = answerer.stream(req.question, patient, req.filters, req.k, who)
            first = await anext(events)  # a full queue is a 503 before any event is sent

            async def body() -> AsyncIterator[bytes]:
                yield first
                async for chunk in events:
                    yield chunk

            return StreamingResponse(body(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})  # fmt: skip
        answer = await answerer.ask(req.question, patient, req.filters, req.k, who)
        return JSONResponse(answer.model_dump(mode="json"))

    cds_hooks.add_routes(app, answerer)
    return app


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], Any] | None = None,
    store: Path | None = None,
) -> None:
    """Serve search, answers and CDS Hooks until stopped (``evidex serve``)."""
    import uvicorn

    from retrieval.service import check_exposure

    check_exposure(settings, host)
    with Assistant(settings, store=store) as assistant:
        assistant.searcher.index.embedder  # load the model before the first request  # noqa: B018
        app = create_answer_app(assistant, settings, host)
        if on_ready:
            keys = len(settings.service.api_keys)
            on_ready(
                f"evidex on http://{host}:{port}: /ask, /cds-services, /search, /retrieve "
                f"(store {assistant.searcher.index.where}; "
                f"{f'{keys} API key(s)' if keys else 'no API keys: loopback only'})"
            )
        uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["Answerer", "AskRequest", "create_answer_app", "serve", "sse"]
