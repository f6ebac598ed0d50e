"""One training row, typed: what ``evidex train export`` writes in verl's RL schema.

verl's rows are nested dicts (``reward_model.ground_truth``,
``extra_info.tools_kwargs.request_exam.create_kwargs.case_json``) and datasets store some of
their fields as JSON text; :class:`RLRow` reads them once (:meth:`RLRow.from_verl`), answers
the questions the trainers ask (which environment? which case? which question?) and writes
the same row back (:meth:`RLRow.to_verl`).

>>> row = RLRow.from_verl({"data_source": "evidex/pubmedqa",
...     "prompt": [{"role": "user", "content": "Q?"}],
...     "reward_model": '{"style": "rule", "ground_truth": "yes"}',
...     "extra_info": {"index": 3, "question": "Q?"}})
>>> row.environment, row.ground_truth, row.question, row.index
('search', 'yes', 'Q?', 3)
>>> RLRow.from_verl({"data_source": "x", "prompt": []})
Traceback (most recent call last):
...
retrieval.errors.InputError: row 0: no reward_model.ground_truth (rows from evidex train export)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import InputError
from retrieval.jsonl import read_jsonl

Environment = Literal["search", "diagnosis"]


def json_field(value: Any) -> Any:
    """A row field that a dataset stored as JSON text, decoded.

    >>> json_field('{"a": 1}'), json_field({"a": 1}), json_field("yes")
    ({'a': 1}, {'a': 1}, 'yes')
    """
    return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value


def history_of(extra_info: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The dialogue history of a row (``extra_info.history``: ``[[role, text], ...]``, or
    that list as JSON text, as parquet stores it).

    >>> history_of({"history": '[["user", "Hi"], ["assistant", "Hello"]]'}), history_of({})
    ([('user', 'Hi'), ('assistant', 'Hello')], [])
    """
    history = (extra_info or {}).get("history") or []
    if isinstance(history, str):
        history = json.loads(history) if history.strip() else []
    return [(str(r), str(t)) for r, t in history]


def environment_of(data_source: str) -> Environment:
    """``diagnosis`` for the diagnostic chain's data sources, else ``search``.

    >>> environment_of("evidex/diagnosis"), environment_of("evidex/medqa")
    ('diagnosis', 'search')
    """
    return "diagnosis" if str(data_source).endswith("diagnosis") else "search"


@dataclass(frozen=True)
class RLRow:
    """A verl RL row: the prompt, the reward's data source and ground truth, and the extra
    information the rewards and tools read."""

    data_source: str
    """Which reward scores the row, e.g. ``evidex/pubmedqa`` or ``evidex/diagnosis``."""
    prompt: tuple[dict[str, Any], ...]
    """The chat messages the policy sees."""
    ground_truth: Any
    """The reference answer (a string, a list of options, a number range, ...)."""
    style: str = "rule"
    """``rule`` (checked by code) or ``model`` (scored by the verifier reward model)."""
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    """Per-row data for the rewards and tools: ``index``, ``question``, ``tools_kwargs``."""
    ability: str = "medical"
    agent_name: str | None = None
    """``tool_agent`` for verl's multi-turn tool agent (S4)."""

    @classmethod
    def from_verl(cls, row: Mapping[str, Any], n: int = 0) -> RLRow:
        """Read a row as exported (parquet, JSONL, or a dataset that holds fields as JSON)."""
        if not isinstance(row, Mapping):
            raise InputError(f"row {n}: not an object")
        rm = json_field(row.get("reward_model")) or {}
        if not isinstance(rm, Mapping) or "ground_truth" not in rm:
            raise InputError(
                f"row {n}: no reward_model.ground_truth (rows from evidex train export)"
            )
        if not row.get("data_source"):
            raise InputError(f"row {n}: no data_source (rows from evidex train export)")
        prompt = json_field(row.get("prompt")) or ()
        if not isinstance(prompt, list | tuple):
            raise InputError(f"row {n}: the prompt is not a list of chat messages")
        return cls(
            data_source=str(row["data_source"]),
            prompt=tuple(dict(m) for m in prompt),
            ground_truth=rm["ground_truth"],
            style=str(rm.get("style") or "rule"),
            extra_info=dict(json_field(row.get("extra_info")) or {}),
            ability=str(row.get("ability") or "medical"),
            agent_name=row.get("agent_name"),
        )

    def to_verl(self) -> dict[str, Any]:
        """The row in verl's RL schema (what :meth:`from_verl` reads)."""
        out: dict[str, Any] = {
            "data_source": self.data_source,
            "prompt": [dict(m) for m in self.prompt],
            "ability": self.ability,
            "reward_model": {"style": self.style, "ground_truth": self.ground_truth},
            "extra_info": dict(self.extra_info),
        }
        if self.agent_name:
            out["agent_name"] = self.agent_name
        return out

    @property
    def environment(self) -> Environment:
        """The environment the row plays in: ``diagnosis`` for the diagnostic chain, else
        ``search`` (search-augmented QA)."""
        return environment_of(self.data_source)

    @property
    def is_diagnosis(self) -> bool:
        return self.environment == "diagnosis"

    @property
    def index(self) -> int | None:
        """The row's ``extra_info.index`` (its position in the source)."""
        value = self.extra_info.get("index")
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def question(self) -> str:
        """The question: ``extra_info.question``, else the last prompt message."""
        q = self.extra_info.get("question")
        if q:
            return str(q)
        return str(self.prompt[-1].get("content", "")) if self.prompt else ""

    def case_record(self) -> dict[str, Any]:
        """The patient case of a diagnosis row (from ``tools_kwargs.request_exam``)."""
        try:
            create = json_field(self.extra_info["tools_kwargs"])["request_exam"]["create_kwargs"]
            record = create.get("case") or json.loads(create["case_json"])
        except (KeyError, TypeError, json.JSONDecodeError):
            raise InputError(
                "a diagnosis row needs extra_info.tools_kwargs.request_exam.create_kwargs."
                "case_json (rows from evidex train export diagnosis)"
            ) from None
        return dict(record)


def read_rows(paths: Sequence[Path | str]) -> list[dict[str, Any]]:
    """The rows of exported parquet or JSONL files, as written (see :class:`RLRow`)."""
    rows: list[dict[str, Any]] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise InputError(f"data file {p} does not exist (write it with evidex train export)")
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                rows += pq.read_table(p).to_pylist()
            except Exception as exc:  # pyarrow raises many kinds for a bad file
                raise InputError(f"{p}: not a readable parquet file ({exc})") from None
        else:
            rows += read_jsonl(p)
    if not rows:
        raise InputError(f"no rows in {', '.join(map(str, paths))}")
    return rows


def environments(rows: Iterable[Mapping[str, Any]]) -> set[Environment]:
    """The environments a set of rows plays in.

    >>> sorted(environments([{"data_source": "evidex/diagnosis"}, {"data_source": "x/mcq"}]))
    ['diagnosis', 'search']
    """
    return {environment_of(r["data_source"]) for r in rows}
