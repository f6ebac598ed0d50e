"""`evidex ask` on a real index with the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.answer_fixture import AnswerIndex
from ui.cli import app

runner = CliRunner()


def _env(ix: AnswerIndex) -> dict[str, str]:
    return {"EVIDEX_DATA_DIR": str(ix.data_dir), "EVIDEX_LLM__THREADS": "2",
            "EVIDEX_ANSWER__MAX_TOKENS": "100"}  # fmt: skip


def test_ask_json_with_the_embedded_model(answer_index: AnswerIndex, tmp_path: Path) -> None:
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps({"age": 61, "sex": "male", "conditions": ["hypertension"]}))
    res = runner.invoke(
        app,
        ["ask", answer_index.question, "--store", str(answer_index.store), "--json",
         "--patient", str(patient)],
        env=_env(answer_index),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in (
        "answer_id",
        "text",
        "abstained",
        "citations",
        "references",
        "plan",
        "notice",
        "timings_ms",
        "usage",
        "models",
        "settings_hash",
        "passages",
    ):
        assert key in data, key
    assert data["patient_context"] is True
    assert "hypertension" not in res.stderr  # patient data not logged
    for c in data["citations"]:
        assert {"marker", "doc_id", "chunk_id", "text"} <= set(c)
    assert all("label" in r for r in data["references"])
    assert data["plan"]["subtasks"][0]["queries"][0] == answer_index.question


def test_ask_human_output_and_errors(answer_index: AnswerIndex, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["ask", answer_index.question, "--store", str(answer_index.store)],
        env=_env(answer_index),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "clinician must review" in res.stdout
    # the embedded default answers with an evidence digest that quotes the question's abstract
    assert "Evidence digest" in res.stdout and "“" in res.stdout
    assert f"PMID {answer_index.pmid}" in res.stdout
    # no index
    res = runner.invoke(app, ["ask", "aspirin?", "--store", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "ingest" in res.stderr and "Traceback" not in res.output
    # bad patient file
    bad = tmp_path / "p.json"
    bad.write_text('{"age": "old"}')
    res = runner.invoke(
        app, ["ask", "x", "--patient", str(bad), "--store", str(answer_index.store)]
    )
    assert res.exit_code == 2 and "age" in res.stderr
    # model endpoint down: a degraded answer, not a crash
    env = {**_env(answer_index), "EVIDEX_LLM__KIND": "openai",
           "EVIDEX_LLM__BASE_URL": "http://127.0.0.1:9/v1", "EVIDEX_LLM__RETRIES": "0"}  # fmt: skip
    res = runner.invoke(
        app, ["ask", answer_index.question, "--store", str(answer_index.store), "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["degraded"] and any("cannot reach" in w for w in data["warnings"])
    assert data["digest"] and data["citations"]
