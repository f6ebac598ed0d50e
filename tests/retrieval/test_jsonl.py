"""The one JSONL reader and writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.errors import InputError
from retrieval.jsonl import iter_jsonl, read_jsonl, write_jsonl


def test_round_trip_append_and_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "rows.jsonl"
    assert write_jsonl(p, [{"q": "胸痛"}]) == 1
    assert write_jsonl(p, [{"q": 2}], append=True, flush=True) == 1
    p.write_text(p.read_text() + "\n\n")
    assert read_jsonl(p) == [{"q": "胸痛"}, {"q": 2}]
    assert "胸痛" in p.read_text("utf-8")  # non-ASCII kept as text
    assert [n for n, _ in iter_jsonl(p)] == [1, 2]


def test_bad_lines_are_named_or_skipped(tmp_path: Path) -> None:
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n[1, 2]\n{"cut": ')
    with pytest.raises(InputError, match=r"rows.jsonl:2: expected a JSON object, not list"):
        read_jsonl(p)
    assert read_jsonl(p, on_bad="skip") == [{"a": 1}]
    with pytest.raises(InputError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl")
