"""CDS Hooks 2.0: evidex as a clinical decision support service an EHR calls.

* ``GET /cds-services`` - discovery: ``evidex-patient-view`` (hook ``patient-view``) and
  ``evidex-order-select`` (hook ``order-select``, for medication orders), each with its
  ``prefetch`` templates (the Patient, active Conditions, active MedicationRequests, recent
  Observations).
* ``POST /cds-services/{id}`` - the hook call: the patient context comes from ``prefetch`` (or,
  for what is missing, from ``fhirServer`` with ``fhirAuthorization``), validated as strictly as
  ``--patient``; the question from the hook (``order-select``: each selected medication against
  the patient's conditions; ``patient-view``: ``service.cds_questions`` for the active
  conditions). Each answer that does not abstain becomes a card: ``summary`` (at most 140
  characters), ``detail`` (the answer's sentences with their ``[n]`` and the numbered
  references), ``indicator`` (``warning`` when the cited evidence reports a harm or risk,
  else ``info``), ``source`` (the top evidence) and ``links`` to every reference. An
  abstention gives no card, never an empty claim.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

import httpx
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from answer.patient import Patient, PatientError, load_patient
from answer.types import REVIEW_NOTICE, Answer
from retrieval.errors import InputError
from retrieval.service import client_id

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "observations": "Observation?patient={{context.patientId}}&_sort=-date&_count=20",
}
SERVICES = [
    {
        "hook": "patient-view",
        "id": "evidex-patient-view",
        "title": "evidex: evidence for the patient's active conditions",
        "description": "Cited evidence (PubMed, guidelines) on managing the patient's active "
        "conditions, each claim verified against its source.",
        "prefetch": PREFETCH,
    },
    {
        "hook": "order-select",
        "id": "evidex-order-select",
        "title": "evidex: evidence on the selected medication",
        "description": "Cited evidence on the risks and benefits of a selected medication for "
        "this patient; a warning card when the cited evidence reports a harm.",
        "prefetch": PREFETCH,
    },
]
_BY_ID = {s["id"]: s for s in SERVICES}
_KIND = {"patient": "Patient", "conditions": "Condition", "medications": "MedicationRequest",
         "observations": "Observation"}  # fmt: skip
_RISK = re.compile(
    r"\b(increas\w*\s+(?:the\s+)?risk|risks?\s+of|harms?|adverse|toxicit\w*|contraindicat\w*|"
    r"bleed\w*|hemorrhag\w*|haemorrhag\w*|fatal|death|mortality|complication\w*|avoid|"
    r"against\s+(?:initiating|the\s+use)|caution|interaction\w*|overdose)\b",
    re.IGNORECASE,
)
SUMMARY_MAX = 140
_STRENGTH = re.compile(
    r"\s*\d[\d.,]*\s*(?:MG|MCG|UG|G|ML|L|UNITS?|IU|MEQ|%)\b(?:\s*/\s*(?:ML|MG|G|L|ACTUAT|HR)\b)?",
    re.IGNORECASE,
)
_FORM = re.compile(
    r"\b(?:oral|topical|injectable|extended[- ]release|delayed[- ]release|chewable)?\s*"
    r"(?:tablets?|capsules?|suspension|solution|injection|syrup|cream|ointment|patch|"
    r"inhaler|powder)\b",
    re.IGNORECASE,
)


class HookRequest(BaseModel):
    """A CDS Hooks call (only the fields evidex reads are typed; others are allowed)."""

    model_config = ConfigDict(extra="allow")

    hook: str = Field(description="The hook that fired, e.g. patient-view.")
    hookInstance: str = Field(description="A UUID for this call.")
    fhirServer: str | None = Field(None, description="Base URL of the EHR's FHIR server.")
    fhirAuthorization: dict[str, Any] | None = Field(None, description="OAuth token for it.")
    context: dict[str, Any] = Field(description="The hook's context (patientId, ...).")
    prefetch: dict[str, Any] | None = Field(None, description="Resources asked for in discovery.")


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


class Source(BaseModel):
    label: str
    url: str | None = None


class Card(BaseModel):
    """A CDS Hooks card (the fields evidex fills)."""

    uuid: str
    summary: str = Field(max_length=SUMMARY_MAX)
    detail: str
    indicator: Literal["info", "warning", "critical"]
    source: Source
    links: list[Link] = []


def _bad(detail: str) -> HTTPException:
    return HTTPException(400, detail[:400])


def _resources(name: str, value: Any) -> list[dict[str, Any]]:
    """The resources of one prefetch entry, checked against what discovery asked for."""
    want = _KIND[name]
    if value is None:
        return []
    if not isinstance(value, dict):
        raise _bad(f"prefetch.{name} must be a FHIR resource or Bundle, not {type(value).__name__}")
    if name == "patient":
        if value.get("resourceType") != "Patient":
            raise _bad(f"prefetch.patient must be a Patient, not {value.get('resourceType')!r}")
        return [value]
    if value.get("resourceType") != "Bundle":
        raise _bad(f"prefetch.{name} must be a Bundle of {want}, not {value.get('resourceType')!r}")
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(value.get("entry") or []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        kind = res.get("resourceType") if isinstance(res, dict) else None
        if kind == "OperationOutcome":
            continue  # a search Bundle may carry one; it holds no patient data
        if kind != want or not isinstance(res, dict):
            raise _bad(f"prefetch.{name}.entry[{i}] must be a {want}, not {kind!r}")
        out.append(res)
    return out


def _fetch(req: HookRequest, name: str) -> Any:
    """A prefetch entry the EHR left out, read from its FHIR server (None when there is none)."""
    if not req.fhirServer:
        return None
    patient_id = str(req.context.get("patientId", ""))
    if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", patient_id):
        raise _bad("context.patientId is not a FHIR id")
    query = PREFETCH[name].replace("{{context.patientId}}", patient_id)
    token = (req.fhirAuthorization or {}).get("access_token")
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        r = httpx.get(f"{req.fhirServer.rstrip('/')}/{query}", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        why = f"cannot read {name} from the FHIR server: {type(exc).__name__}"
        raise HTTPException(502, why) from None
    if r.status_code != 200:
        raise HTTPException(502, f"the FHIR server answered {r.status_code} for {name}")
    try:
        return r.json()
    except ValueError:
        raise HTTPException(502, f"the FHIR server sent no JSON for {name}") from None


def patient_of(req: HookRequest) -> tuple[Patient, list[dict[str, Any]]]:
    """The patient context of a hook call and the Bundle it was built from."""
    resources: list[dict[str, Any]] = []
    prefetch = req.prefetch or {}
    for name in PREFETCH:
        value = prefetch.get(name)
        if value is None:
            value = _fetch(req, name)
        resources += _resources(name, value)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in resources]}  # fmt: skip
    try:
        return load_patient(bundle, max_bytes=10_000_000), resources
    except PatientError as exc:
        raise _bad(f"prefetch: {str(exc).removeprefix('the patient record: ')}") from None


def _selected_drugs(context: dict[str, Any]) -> list[str]:
    """Names of the selected MedicationRequests of an order-select context."""
    selections = context.get("selections")
    draft = context.get("draftOrders")
    if not isinstance(selections, list) or not isinstance(draft, dict):
        raise _bad("order-select needs context.selections (a list) and context.draftOrders "
                   "(a Bundle)")  # fmt: skip
    entries: list[Any] = draft["entry"] if isinstance(draft.get("entry"), list) else []
    by_ref: dict[str, dict[str, Any]] = {}
    for e in entries:
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict) and res.get("resourceType") and res.get("id"):
            by_ref[f"{res['resourceType']}/{res['id']}"] = res
    drugs = []
    for ref in selections:
        res = by_ref.get(str(ref))
        if res is None:
            raise _bad(f"context.selections names {str(ref)[:60]!r}, which draftOrders lacks")
        if res.get("resourceType") != "MedicationRequest":
            continue  # a diet or a lab order: nothing for evidex to weigh
        concept = res.get("medicationCodeableConcept") or {}
        name = concept.get("text") if isinstance(concept, dict) else None
        if not name and isinstance(concept, dict):
            name = next((c.get("display") for c in concept.get("coding") or [] if
                         isinstance(c, dict) and c.get("display")), None)  # fmt: skip
        if isinstance(name, str) and name.strip():
            drugs.append(_short_drug(name))
    return drugs


def _short_drug(name: str) -> str:
    """The drug of an order's display text, without strength and form.

    >>> _short_drug("Aspirin 81 MG Oral Tablet")
    'Aspirin'
    >>> _short_drug("Amoxicillin 120 MG/ML / clavulanate potassium 8.58 MG/ML Oral Suspension")
    'Amoxicillin / clavulanate potassium'
    """
    text = _STRENGTH.sub(" ", name)
    text = _FORM.sub(" ", text)
    parts = [" ".join(p.split()) for p in text.split("/")]
    return " / ".join(p for p in parts if p) or name.strip()


def questions(service_id: str, req: HookRequest, patient: Patient, limit: int,
              templates: tuple[str, ...]) -> list[tuple[str, str]]:  # fmt: skip
    """(topic, question) pairs the hook call asks."""
    if service_id == "evidex-order-select":
        drugs = _selected_drugs(req.context)
        who = (
            f" in a patient with {', '.join(patient.conditions[:3])}" if patient.conditions else ""
        )
        return [(d, f"What are the risks and benefits of {d}{who}?") for d in drugs][:limit]
    out = []
    for condition in patient.conditions:
        for t in templates:
            out.append((condition, t.replace("{condition}", condition)))
    return out[:limit]


_GENERIC = {"essential", "primary", "secondary", "chronic", "acute", "type", "disease",
            "disorder", "syndrome", "history", "oral", "tablet", "mellitus"}  # fmt: skip


def about(topic: str, answer: Answer) -> bool:
    """Whether the cited evidence is about ``topic`` at all: one of its distinctive words
    occurs in a cited passage. A card on a condition or drug the sources never name would be
    an empty claim, so there is none.

    >>> from answer.types import Citation
    >>> c = Citation(marker=1, doc_id="d", chunk_id="c", text="Aspirin raised bleeding risk.",
    ...              sentence="s", support=1.0, status="verified")
    >>> a = Answer(answer_id="a", created_at="t", question="q", text="s [1]", abstained=False,
    ...            settings_hash="h",
    ...            citations=(c,))
    >>> about("Aspirin", a), about("Xeroderma pigmentosum", a)
    (True, False)
    """
    words = {w for w in re.findall(r"[a-z0-9]{4,}", topic.lower()) if w not in _GENERIC}
    if not words:
        return True
    cited = " ".join(c.text.lower() for c in answer.citations)
    return any(re.search(rf"\b{re.escape(w[:7])}", cited) for w in words)


def card(topic: str, answer: Answer) -> dict[str, Any] | None:
    """The card for one answer, or None when it abstained."""
    if answer.abstained or not answer.citations or not about(topic, answer):
        return None
    cited = {c.marker for c in answer.citations}
    refs = [r for r in answer.references if r.marker in cited]
    warning = any(_RISK.search(c.sentence) for c in answer.citations)
    first = re.sub(r"\s*\[\d+\](\[\d+\])*", "", answer.citations[0].sentence).strip()
    first = first.strip('“”"')
    head = f"{topic}: " if topic else ""
    summary = head + first
    if len(summary) > SUMMARY_MAX:
        summary = summary[: SUMMARY_MAX - 1].rstrip() + "…"
    lines = [answer.text, "", "**References**"]
    for r in refs:
        ident = f"PMID {r.pmid}" if r.pmid else r.doc_id
        lines.append(f"[{r.marker}] {r.shown_title()} ({ident}){' ' + r.url if r.url else ''}")
    lines += ["", f"_{REVIEW_NOTICE}_"]
    top = refs[0] if refs else None
    links = [
        {"label": f"[{r.marker}] {r.shown_title()}"[:120], "url": r.url, "type": "absolute"}
        for r in refs
        if r.url
    ]
    source: dict[str, Any] = {
        "label": ("evidex: " + (top.shown_title() if top else "cited evidence"))[:120]
    }
    if top and top.url:
        source["url"] = top.url
    out = {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "detail": "\n".join(lines),
        "indicator": "warning" if warning else "info",
        "source": source,
        "links": links,
    }
    Card.model_validate(out)  # the specification's field rules, checked on the way out
    return out


def add_routes(app: FastAPI, answerer: Any) -> None:
    """``/cds-services`` and ``/cds-services/{id}`` on ``app`` (answers on ``answerer``)."""
    settings = answerer.settings.service

    @app.get("/cds-services", summary="CDS Hooks discovery")
    async def discovery() -> dict[str, Any]:
        return {"services": SERVICES}

    @app.post("/cds-services/{service_id}", summary="CDS Hooks call")
    async def call(service_id: str, request: Request) -> dict[str, Any]:
        service = _BY_ID.get(service_id)
        if service is None:
            raise HTTPException(404, f"no CDS service {service_id[:60]!r}: see GET /cds-services")
        try:
            body = await request.json()
        except ValueError:
            raise _bad("the hook request is not JSON") from None
        if not isinstance(body, dict):
            raise _bad("the hook request must be a JSON object")
        try:
            req = HookRequest.model_validate(body)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise _bad(f"{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        if req.hook != service["hook"]:
            raise _bad(f"{service_id} answers the {service['hook']} hook, not {req.hook[:40]!r}")
        if not req.context.get("patientId"):
            raise _bad("context.patientId is required")
        who = client_id(request.scope)

        def answer_all() -> list[dict[str, Any]]:
            patient, _ = patient_of(req)
            asked = questions(service_id, req, patient, settings.cds_max_cards,
                              settings.cds_questions)  # fmt: skip
            cards = []
            for topic, q in asked:
                try:
                    ans = answerer.answer_now(q, patient, None, None)
                except InputError as exc:
                    raise _bad(str(exc)) from None
                answerer.audit(who, q, ans, event="cds")
                c = card(topic, ans)
                if c is not None:
                    cards.append(c)
            return cards

        return {"cards": await answerer.worker.run(answer_all)}
