"""RLRow: exported verl rows read once, typed, and written back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.errors import InputError
from rl_training.data.export import export
from rl_training.data.rows import RLRow, environments, read_rows
from tests.conftest import shared_path


def test_exported_rows_round_trip_through_rlrow(tmp_path: Path) -> None:
    qa = tmp_path / "qa.parquet"
    export("pubmedqa", shared_path("pubmedqa", "pqal_dev.json"), qa, agent=True)
    cases = tmp_path / "cases.jsonl"
    lines = shared_path("cases", "agentclinic_medqa.jsonl").read_text().splitlines()[:2]
    cases.write_text("\n".join(lines) + "\n")
    diag = tmp_path / "diag.parquet"
    export("diagnosis", cases, diag)
    rows = read_rows([qa, diag])
    assert environments(rows) == {"search", "diagnosis"}
    typed = [RLRow.from_verl(r, n) for n, r in enumerate(rows, 1)]
    for raw, row in zip(rows, typed, strict=True):
        verl = row.to_verl()
        assert verl["reward_model"] == raw["reward_model"]
        assert verl["prompt"] == raw["prompt"] and verl["data_source"] == raw["data_source"]
        assert RLRow.from_verl(verl) == row
    q = typed[0]
    assert q.environment == "search" and q.agent_name == "tool_agent" and q.index == 0
    assert q.question == json.loads(shared_path("pubmedqa", "pqal_dev.json").read_text()
                                    )[str(raw_id(rows[0]))]["QUESTION"]  # fmt: skip
    d = typed[-1]
    assert d.is_diagnosis and d.style == "model"
    assert d.case_record() == json.loads(lines[1])
    with pytest.raises(InputError, match="case_json"):
        q.case_record()


def raw_id(row: dict) -> str:
    return str(row["extra_info"]["pmid"]) if "pmid" in row["extra_info"] else ""


def test_bad_rows_are_named() -> None:
    with pytest.raises(InputError, match="row 3: no data_source"):
        RLRow.from_verl({"reward_model": {"ground_truth": "yes"}, "prompt": []}, 3)
    with pytest.raises(InputError, match="row 1: the prompt is not a list"):
        RLRow.from_verl({"data_source": "x", "reward_model": {"ground_truth": 1},
                         "prompt": 5}, 1)  # fmt: skip
    with pytest.raises(InputError, match="not an object"):
        RLRow.from_verl(["a"])  # type: ignore[arg-type]


def test_read_rows_refuses_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_rows([tmp_path / "none.parquet"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no rows in"):
        read_rows([empty])
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable parquet file"):
        read_rows([bad])
