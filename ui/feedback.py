"""Clinicians' feedback on answers, stored durably in SQLite, and its export as preference
pairs for training (``evidex feedback export``).

Each row keeps the question, the answer text, its citations (JSON) and the settings hash of
the run that produced it, with the rating (+1 / -1), an optional comment and an optional
corrected answer. One row per (answer, user): submitting again updates it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from answer.types import Answer
from retrieval.errors import InputError
from retrieval.jsonl import write_jsonl

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT NOT NULL,
    user TEXT NOT NULL,
    created_at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    abstained INTEGER NOT NULL,
    settings_hash TEXT NOT NULL,
    rating INTEGER,
    comment TEXT NOT NULL DEFAULT '',
    correction TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (answer_id, user)
)
"""


class FeedbackStore:
    """The feedback table in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=10)
        db.row_factory = sqlite3.Row
        return db

    def record(
        self,
        answer: Answer,
        user: str,
        rating: int | None,
        comment: str = "",
        correction: str = "",
    ) -> None:
        """Store (or update) ``user``'s feedback on ``answer``."""
        if rating not in (1, -1, None):
            raise InputError(f"rating must be 1 (up), -1 (down) or None, got {rating!r}")
        if rating is None and not comment.strip() and not correction.strip():
            raise InputError("empty feedback: give a rating, a comment or a corrected answer")
        cites = [
            {"marker": c.marker, "doc_id": c.doc_id, "status": c.status, "sentence": c.sentence}
            for c in answer.citations
        ]
        row = (
            answer.answer_id,
            user,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            answer.question,
            answer.text,
            json.dumps(cites, ensure_ascii=False),
            int(answer.abstained),
            answer.settings_hash,
            rating,
            comment.strip(),
            correction.strip(),
        )
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO feedback VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)

    def rows(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as db:
            cur = db.execute("SELECT * FROM feedback ORDER BY created_at, answer_id")
            return [dict(r) for r in cur.fetchall()]


def _norm(question: str) -> str:
    return re.sub(r"\W+", " ", question.lower()).strip()


def preference_pairs(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Preference pairs in TRL's conversational format (``prompt``, ``chosen``, ``rejected``).

    - a corrected answer is preferred to the answer it corrects;
    - for the same question, an answer rated up is preferred to one rated down.
    """

    def pair(question: str, chosen: str, rejected: str, **meta: Any) -> dict[str, Any]:
        return {
            "prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            **meta,
        }

    by_question: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["correction"] and r["correction"].strip() != r["answer"].strip():
            yield pair(
                r["question"], r["correction"], r["answer"], kind="correction",
                answer_id=r["answer_id"], settings_hash=r["settings_hash"],
            )  # fmt: skip
        if r["rating"] in (1, -1):
            by_question[_norm(r["question"])][r["rating"]].append(r)
    for groups in by_question.values():
        seen: set[tuple[str, str]] = set()
        for good in groups[1]:
            for bad in groups[-1]:
                key = (good["answer"], bad["answer"])
                if good["answer"] == bad["answer"] or key in seen:
                    continue
                seen.add(key)
                yield pair(
                    good["question"], good["answer"], bad["answer"], kind="rating",
                    chosen_id=good["answer_id"], rejected_id=bad["answer_id"],
                )  # fmt: skip


def export_pairs(db: Path, out: Path) -> int:
    """Write the preference pairs of the feedback in ``db`` to ``out`` (JSONL)."""
    if not Path(db).is_file():
        raise InputError(f"no feedback database at {db}: nothing has been rated yet")
    pairs = list(preference_pairs(FeedbackStore(db).rows()))
    return write_jsonl(out, pairs)
