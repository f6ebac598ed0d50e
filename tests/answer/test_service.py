"""``evidex serve``: POST /ask (JSON and server-sent events) and CDS Hooks, on the real uvicorn
server on loopback over the real answer index (40 PubMedQA abstracts, the USPSTF guidelines),
with the real embedded default (evidence digest) or a scripted served model, the real audit
log, API keys, and patients made from the real AgentClinic cases."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from answer import REVIEW_NOTICE, Assistant
from answer.cds_hooks import SUMMARY_MAX, Card
from answer.service import create_answer_app
from planner.chat import ChatMessage, ChatResult
from retrieval.service import key_hash
from retrieval.settings import Settings
from tests.answer.test_pipeline import faithful
from tests.answer_fixture import AnswerIndex
from tests.conftest import shared_path
from tests.llama_server import serve_app
from tests.scripted_chat import ScriptedChat

KEY = "evx_ward-3-test-key-000000000000"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings(ix: AnswerIndex, tmp: Path, **service: Any) -> Settings:
    s = ix.settings(service={"api_keys": [key_hash(KEY)], **service})
    s.data_dir = tmp
    return s


@pytest.fixture(scope="module")
def served(
    answer_index: AnswerIndex, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Assistant]]:
    """The embedded default: answers are evidence digests (no model to load)."""
    tmp = tmp_path_factory.mktemp("serve")
    settings = _settings(answer_index, tmp)
    with Assistant(settings) as assistant, serve_app(create_answer_app(assistant, settings)) as url:
        yield url, tmp, assistant


@pytest.fixture
def digest_url(served: tuple[str, Path, Assistant]) -> tuple[str, Path]:
    return served[0], served[1]


def _sharing(served: tuple[str, Path, Assistant], settings: Settings, chat: Any) -> Assistant:
    """Another assistant on the same open index (the store admits one process, one opener)."""
    return Assistant(settings, chat=chat, searcher=served[2].searcher)


def _case_patient(index: int = 4) -> dict[str, Any]:
    """A FHIR prefetch made from a real AgentClinic case (demographics, history, vitals)."""
    line = shared_path("cases", "agentclinic_medqa.jsonl").read_text().splitlines()[index]
    actor = json.loads(line)["OSCE_Examination"]["Patient_Actor"]
    age, sex = actor["Demographics"].split("-year-old ")
    born = dt.date.today().replace(year=dt.date.today().year - int(age) - 1)
    gender = "female" if sex.strip().lower() in ("woman", "female") else "male"
    history = [h.strip() for h in actor["Past_Medical_History"].split(",") if h.strip()]
    vitals = json.loads(line)["OSCE_Examination"]["Physical_Examination_Findings"]["Vital_Signs"]
    return {
        "patient": {"resourceType": "Patient", "id": "case-4", "gender": gender,
                    "birthDate": born.isoformat()},
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Condition", "id": f"c{i}", "code": {"text": h},
                          "clinicalStatus": {"coding": [{"code": "active"}]}}}
            for i, h in enumerate(history)]},
        "medications": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Observation", "id": "bp",
                          "code": {"text": "Blood pressure"},
                          "valueString": vitals["Blood_Pressure"]}}]},
    }  # fmt: skip


def _order_select(drug: str, prefetch: dict[str, Any] | None) -> dict[str, Any]:
    """An order-select call shaped as the specification's R4 example (a diet order and a
    medication order selected together)."""
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "order-select",
        "fhirServer": None,
        "context": {
            "userId": "PractitionerRole/123", "patientId": "case-4", "encounterId": "89284",
            "selections": ["NutritionOrder/pureeddiet-simple", "MedicationRequest/mr-103"],
            "draftOrders": {"resourceType": "Bundle", "entry": [
                {"resource": {"resourceType": "NutritionOrder", "id": "pureeddiet-simple",
                              "status": "draft", "patient": {"reference": "Patient/case-4"}}},
                {"resource": {"resourceType": "MedicationRequest", "id": "mr-103",
                              "status": "draft", "intent": "order",
                              "medicationCodeableConcept": {"text": drug},
                              "subject": {"reference": "Patient/case-4"}}}]},
        },
        **({"prefetch": prefetch} if prefetch is not None else {}),
    }  # fmt: skip


# -- POST /ask ---------------------------------------------------------------------------------


def test_ask_returns_the_verified_answer_and_audits_it(
    digest_url: tuple[str, Path], answer_index: AnswerIndex
) -> None:
    url, data = digest_url
    patient = {"age": 52, "sex": "female", "conditions": ["Hodgkin lymphoma"]}
    body = {"question": answer_index.question, "k": 4, "patient": patient}
    assert httpx.post(f"{url}/ask", json=body, timeout=60).status_code == 401  # keys apply
    res = httpx.post(f"{url}/ask", json=body, headers=AUTH, timeout=120)
    assert res.status_code == 200, res.text
    ans = res.json()
    assert ans["notice"] == REVIEW_NOTICE and ans["digest"] and not ans["abstained"]
    assert ans["patient_context"] is True and len(ans["references"]) <= 4
    own = [r for r in ans["references"] if r["pmid"] == answer_index.pmid]
    assert own and own[0]["url"] == f"https://pubmed.ncbi.nlm.nih.gov/{answer_index.pmid}/"
    assert ans["citations"] and all(c["text"] and c["status"] == "verified"
                                    for c in ans["citations"])  # fmt: skip
    assert ans["timings_ms"]["retrieve"] > 0 and ans["plan"]["subtasks"]
    # audited like the chat: who (the key's id), the question's keyed hash, the answer id
    events = [json.loads(x) for x in (data / "audit.jsonl").read_text().splitlines()]
    mine = [e for e in events if e.get("answer_id") == ans["answer_id"]]
    assert mine and mine[0]["user"] == f"key:{key_hash(KEY)[7:15]}" and mine[0]["via"] == "api"
    assert "question_hmac" in mine[0] and answer_index.question not in json.dumps(events)
    assert "Hodgkin" not in json.dumps(events)


def test_ask_bad_input_is_a_short_clear_4xx(digest_url: tuple[str, Path]) -> None:
    url, _ = digest_url
    post = lambda body: httpx.post(f"{url}/ask", json=body, headers=AUTH, timeout=60)  # noqa: E731
    wrong = post({"question": "aspirin", "patient": {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "gender": 42}}]}})  # fmt: skip
    assert wrong.status_code == 422 and "gender" in wrong.json()["detail"]
    long = post({"question": "why " * 3000})
    assert long.status_code == 400 and "characters" in long.json()["detail"]
    bad_filter = post({"question": "aspirin", "filters": {"year_from": 1200}})
    assert bad_filter.status_code == 422 and len(bad_filter.content) < 2000
    assert post({"question": "aspirin", "k": 0}).status_code == 422
    assert post({"query": "aspirin"}).status_code == 422


def test_openapi_documents_ask_and_cds_hooks_with_examples(digest_url: tuple[str, Path]) -> None:
    url, _ = digest_url
    spec = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    assert {"/ask", "/cds-services", "/cds-services/{service_id}", "/search"} <= set(spec["paths"])
    ask = spec["paths"]["/ask"]["post"]
    assert "text/event-stream" in ask["responses"]["200"]["content"]
    schema = spec["components"]["schemas"]["AskRequest"]
    assert schema["examples"][0]["question"].startswith("Does low-dose aspirin")
    assert set(schema["required"]) == {"question"}


class SlowChat(ScriptedChat):
    """A served model that streams one piece every ``delay`` seconds; counts what it sent."""

    def __init__(self, delay: float) -> None:
        super().__init__(faithful)
        self.delay, self.streamed = delay, 0

    def stream(self, messages: Sequence[ChatMessage], **kw: Any) -> Iterator[str | ChatResult]:
        for piece in super().stream(messages, **kw):
            if not isinstance(piece, ChatResult):
                time.sleep(self.delay)
                self.streamed += 1
            yield piece


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event:
            yield event, json.loads(line.removeprefix("data: "))


def test_ask_streams_tokens_then_the_verified_answer(
    answer_index: AnswerIndex, served: tuple[str, Path, Assistant], tmp_path: Path
) -> None:
    settings = _settings(answer_index, tmp_path)
    assistant = _sharing(served, settings, ScriptedChat(faithful))
    with (
        serve_app(create_answer_app(assistant, settings)) as url,
        httpx.stream("POST", f"{url}/ask", json={"question": answer_index.question},
                     headers={**AUTH, "Accept": "text/event-stream"}, timeout=120) as res,
    ):  # fmt: skip
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        events = list(_events(res.iter_lines()))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("token") >= 3 and "error" not in kinds
    draft = "".join(d["text"] for k, d in events if k == "token")
    final = events[-1][1]
    assert not final["abstained"] and final["citations"] and final["notice"] == REVIEW_NOTICE
    assert final["citations"][0]["sentence"].split(" [")[0][:40] in draft  # verified from it


def test_disconnect_frees_the_worker_search_keeps_answering_and_full_is_503(
    answer_index: AnswerIndex, served: tuple[str, Path, Assistant], tmp_path: Path
) -> None:
    settings = _settings(answer_index, tmp_path, max_pending_answers=1)
    chat = SlowChat(0.5)  # a whole answer takes 15 s or more: the test ends long before
    assistant = _sharing(served, settings, chat)
    with serve_app(create_answer_app(assistant, settings)) as url:
        body = {"question": answer_index.question}
        stream_headers = {**AUTH, "Accept": "text/event-stream"}
        with httpx.stream("POST", f"{url}/ask", json=body, headers=stream_headers,
                          timeout=120) as res:  # fmt: skip
            first = next(_events(res.iter_lines()))
            assert first[0] == "token"
            # while it streams: search answers at once, and a second answer is refused
            t0 = time.monotonic()
            found = httpx.post(f"{url}/search", json={"query": "mammography"}, headers=AUTH)
            assert found.status_code == 200 and time.monotonic() - t0 < 5
            busy = httpx.post(f"{url}/ask", json=body, headers=AUTH, timeout=30)
            assert busy.status_code == 503 and busy.headers["retry-after"]
            assert "service.max_pending_answers" in busy.json()["detail"]
        # the client went away after the first token: the answer stops and frees the worker
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            again = httpx.post(f"{url}/ask", json=body, headers=AUTH, timeout=120)
            if again.status_code != 503:
                break
            time.sleep(0.2)
        assert again.status_code == 200, again.text
        # the dropped stream was not generated to its end: one whole answer streamed (the
        # last ask) plus the few pieces before the disconnect
        whole = -(-len(faithful(chat.sent[-1])) // 7)
        assert chat.streamed < 2 * whole - 5, (chat.streamed, whole)


# -- CDS Hooks ---------------------------------------------------------------------------------


def test_discovery_lists_both_services_with_prefetch(digest_url: tuple[str, Path]) -> None:
    url, _ = digest_url
    services = httpx.get(f"{url}/cds-services", headers=AUTH).json()["services"]
    assert {s["hook"] for s in services} == {"patient-view", "order-select"}
    for s in services:
        assert {"hook", "id", "description", "prefetch"} <= set(s)  # required by the spec
        assert s["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        assert "Condition?patient={{context.patientId}}" in s["prefetch"]["conditions"]


def test_order_select_for_aspirin_gives_a_warning_card_citing_uspstf(
    digest_url: tuple[str, Path],
) -> None:
    url, data = digest_url
    req = _order_select("Aspirin 81 MG Oral Tablet", _case_patient())
    res = httpx.post(f"{url}/cds-services/evidex-order-select", json=req, headers=AUTH,
                     timeout=120)  # fmt: skip
    assert res.status_code == 200, res.text
    cards = res.json()["cards"]
    assert len(cards) == 1  # the diet order is not a medication: no card for it
    card = Card.model_validate(cards[0])
    assert card.indicator == "warning", card
    assert len(card.summary) <= SUMMARY_MAX and card.summary.startswith("Aspirin")
    assert "USPSTF" in card.detail or "uspstf" in card.detail.lower()
    assert "[1]" in card.detail and REVIEW_NOTICE in card.detail
    assert card.links and all(link.url.startswith("http") for link in card.links)
    assert card.source.label.startswith("evidex: ")
    events = [json.loads(x) for x in (data / "audit.jsonl").read_text().splitlines()]
    assert any(e["event"] == "cds" for e in events)


def test_patient_view_cards_follow_the_rules_and_abstentions_give_none(
    digest_url: tuple[str, Path],
) -> None:
    url, _ = digest_url
    req = {"hookInstance": "a4f1b2c3-0000-4000-8000-000000000001", "hook": "patient-view",
           "context": {"userId": "Practitioner/example", "patientId": "case-4"},
           "prefetch": _case_patient()}  # fmt: skip
    res = httpx.post(f"{url}/cds-services/evidex-patient-view", json=req, headers=AUTH,
                     timeout=300)  # fmt: skip
    assert res.status_code == 200, res.text
    cards = res.json()["cards"]
    assert 1 <= len(cards) <= 3  # service.cds_max_cards
    for c in cards:
        card = Card.model_validate(c)
        assert card.indicator in ("info", "warning") and "[" in card.detail
    # an unrelated condition finds no evidence in this corpus: no card, not an empty claim
    unrelated = {"resourceType": "Condition", "id": "x", "code": {"text": "Xeroderma pigmentosum"}}
    req["prefetch"]["conditions"]["entry"] = [{"resource": unrelated}]
    none = httpx.post(f"{url}/cds-services/evidex-patient-view", json=req, headers=AUTH,
                      timeout=300)  # fmt: skip
    assert none.status_code == 200 and none.json() == {"cards": []}


def test_hook_bad_input_is_a_clear_4xx(digest_url: tuple[str, Path]) -> None:
    url, _ = digest_url

    def post(service: str, body: Any) -> httpx.Response:
        return httpx.post(f"{url}/cds-services/{service}", json=body, headers=AUTH, timeout=60)

    good = _order_select("Aspirin", _case_patient())
    assert post("no-such-service", good).status_code == 404
    wrong_hook = post("evidex-patient-view", good)
    assert wrong_hook.status_code == 400 and "patient-view hook" in wrong_hook.json()["detail"]
    no_context = {k: v for k, v in good.items() if k != "context"}
    assert post("evidex-order-select", no_context).status_code == 400
    obs_as_conditions = json.loads(json.dumps(good))
    obs_as_conditions["prefetch"]["conditions"] = obs_as_conditions["prefetch"]["observations"]
    res = post("evidex-order-select", obs_as_conditions)
    assert res.status_code == 400
    assert "prefetch.conditions.entry[0] must be a Condition" in res.json()["detail"]
    bad_patient = json.loads(json.dumps(good))
    bad_patient["prefetch"]["patient"]["gender"] = 42
    res = post("evidex-order-select", bad_patient)
    assert res.status_code == 400 and "gender" in res.json()["detail"]
    missing = json.loads(json.dumps(good))
    missing["context"]["selections"] = ["MedicationRequest/unknown"]
    res = post("evidex-order-select", missing)
    assert res.status_code == 400 and "draftOrders lacks" in res.json()["detail"]
    assert httpx.post(f"{url}/cds-services/evidex-order-select", content=b"{oops",
                      headers=AUTH).status_code == 400  # fmt: skip


def test_missing_prefetch_is_read_from_the_fhir_server_with_its_token(
    digest_url: tuple[str, Path],
) -> None:
    url, _ = digest_url
    fhir = FastAPI()
    seen: list[tuple[str, str]] = []
    data = _case_patient()

    def answer(kind: str, request: Request) -> Any:
        seen.append((request.url.path, request.headers.get("authorization", "")))
        return {"Patient": data["patient"], "Condition": data["conditions"],
                "MedicationRequest": data["medications"],
                "Observation": data["observations"]}[kind]  # fmt: skip

    @fhir.get("/fhir/{kind}")
    def search(kind: str, request: Request) -> Any:
        return answer(kind, request)

    @fhir.get("/fhir/{kind}/{rid}")
    def read(kind: str, rid: str, request: Request) -> Any:
        return answer(kind, request)

    with serve_app(fhir) as fhir_url:
        req = _order_select("Aspirin 81 MG Oral Tablet", None)
        req["fhirServer"] = f"{fhir_url}/fhir"
        req["fhirAuthorization"] = {"access_token": "tok-123", "token_type": "Bearer",
                                    "expires_in": 300, "scope": "patient/*.read",
                                    "subject": "cds-service"}  # fmt: skip
        res = httpx.post(f"{url}/cds-services/evidex-order-select", json=req, headers=AUTH,
                         timeout=120)  # fmt: skip
    assert res.status_code == 200, res.text
    assert {p for p, _ in seen} == {"/fhir/Patient/case-4", "/fhir/Condition",
                                    "/fhir/MedicationRequest", "/fhir/Observation"}  # fmt: skip
    assert all(auth == "Bearer tok-123" for _, auth in seen)
    assert res.json()["cards"] and res.json()["cards"][0]["indicator"] == "warning"


def test_concurrent_asks_queue_and_all_finish(digest_url: tuple[str, Path]) -> None:
    url, _ = digest_url
    body = {"question": "Does aspirin prevent cardiovascular disease in older adults?"}
    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(lambda _: httpx.post(f"{url}/ask", json=body, headers=AUTH,
                                                   timeout=300).status_code, range(6)))  # fmt: skip
    assert codes == [200] * 6
    assert threading.active_count() < 200
