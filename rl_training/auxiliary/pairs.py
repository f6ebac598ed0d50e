"""Preference pairs for the reward model: evidex's own JSONL (also what ``evidex feedback
export`` writes), HelpSteer3-style preference rows and INF-ORM magnitude rows, read into one
frozen :class:`Pair`; and MedQuAD pairs (a question's own answer against another question's).

Formats (one JSON object per line; ``.jsonl`` or ``.jsonl.gz``):

- evidex / TRL: ``prompt``, ``chosen``, ``rejected`` (strings or chat-message lists), optional
  ``magnitude`` (a positive number: how strongly chosen is preferred; 1 when absent);
- HelpSteer3 preference: ``context`` (messages), ``response1``, ``response2``,
  ``overall_preference`` (-3..3; negative prefers response1; 0 is a tie and is skipped), the
  magnitude being its absolute value;
- INF-ORM-Preference-Magnitude: ``chosen`` and ``rejected`` conversations (the prompt inside
  them) and ``magnitude``.

A bad line (empty side, identical sides, a magnitude that is not a positive number, a row of
no known format) is reported with its line number and skipped; the rest is read.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import InputError

Message = Mapping[str, str]


@dataclass(frozen=True)
class Pair:
    """One preference: after ``prompt``, ``chosen`` is preferred to ``rejected`` by
    ``magnitude`` (1 = a plain preference)."""

    prompt: tuple[tuple[str, str], ...]
    """The conversation before the answers, as (role, content)."""
    chosen: str
    rejected: str
    magnitude: float = 1.0
    source: str = ""
    """Where it came from: ``file:line``."""

    def messages(self, answer: str) -> list[dict[str, str]]:
        """The conversation ending with ``answer`` (what the reward model scores)."""
        return [*({"role": r, "content": c} for r, c in self.prompt),
                {"role": "assistant", "content": answer}]  # fmt: skip


@dataclass(frozen=True)
class PairProblem:
    """A line that could not be read, and why."""

    where: str
    message: str


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and value and isinstance(value[-1], Mapping):
        return str(value[-1].get("content") or "").strip()
    return ""


def _prompt(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str):
        return (("user", value.strip()),) if value.strip() else ()
    if isinstance(value, list):
        return tuple(
            (str(m.get("role") or "user"), str(m.get("content") or ""))
            for m in value
            if isinstance(m, Mapping)
        )
    return ()


def _magnitude(value: Any) -> float:
    if value is None:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"magnitude {value!r} is not a number")
    if value <= 0:
        raise InputError(f"magnitude {value!r} is not positive")
    return float(value)


def pair_of(rec: Mapping[str, Any], where: str = "") -> Pair | None:
    """The pair in one row of any of the three formats; None for a HelpSteer3 tie.

    >>> pair_of({"prompt": "Q?", "chosen": "good", "rejected": "bad", "magnitude": 2}).magnitude
    2.0
    >>> p = pair_of({"context": [{"role": "user", "content": "Q?"}], "response1": "a",
    ...              "response2": "b", "overall_preference": 2})
    >>> (p.chosen, p.rejected, p.magnitude)
    ('b', 'a', 2.0)
    >>> pair_of({"prompt": "Q?", "chosen": "same", "rejected": "same"})
    Traceback (most recent call last):
    ...
    retrieval.errors.InputError: chosen and rejected are the same text
    """
    if "overall_preference" in rec:  # HelpSteer3
        pref = rec.get("overall_preference")
        if isinstance(pref, bool) or not isinstance(pref, int | float):
            raise InputError(f"overall_preference {pref!r} is not a number")
        if pref == 0:
            return None
        first, second = _content(rec.get("response1")), _content(rec.get("response2"))
        chosen, rejected = (first, second) if pref < 0 else (second, first)
        prompt, magnitude = _prompt(rec.get("context")), abs(float(pref))
    elif "chosen" in rec and "rejected" in rec:
        chosen, rejected = _content(rec["chosen"]), _content(rec["rejected"])
        prompt = _prompt(rec.get("prompt"))
        if not prompt and isinstance(rec["chosen"], list):  # INF-ORM: the prompt is inside
            prompt = _prompt(rec["chosen"][:-1])
        magnitude = _magnitude(rec.get("magnitude"))
    else:
        raise InputError(
            "not a preference row: expected prompt/chosen/rejected, HelpSteer3 "
            "context/response1/response2/overall_preference, or INF-ORM chosen/rejected/magnitude"
        )
    if not chosen or not rejected:
        raise InputError(f"the {'chosen' if not chosen else 'rejected'} answer is empty")
    if chosen == rejected:
        raise InputError("chosen and rejected are the same text")
    if not prompt:
        raise InputError("no prompt (the question the answers reply to)")
    return Pair(prompt, chosen, rejected, magnitude, where)


def read_pairs(path: Path, limit: int | None = None) -> tuple[list[Pair], list[PairProblem]]:
    """The pairs of a JSONL file and the problems of its bad lines."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"preference pairs {path}: no such file")
    opener: Any = gzip.open if path.suffix == ".gz" else open
    pairs: list[Pair] = []
    problems: list[PairProblem] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise InputError("expected a JSON object")
                p = pair_of(rec, where)
            except json.JSONDecodeError as exc:
                problems.append(PairProblem(where, f"invalid JSON: {exc.msg}"))
                continue
            except InputError as exc:
                problems.append(PairProblem(where, str(exc)))
                continue
            if p is not None:
                pairs.append(p)
                if limit and len(pairs) >= limit:
                    break
    if not pairs:
        detail = f" ({problems[0].where}: {problems[0].message})" if problems else ""
        raise InputError(f"no usable preference pair in {path}{detail}")
    return pairs, problems


def medquad_pairs(
    path: Path,
    n: int,
    *,
    seed: int = 0,
    focus: set[str] | None = None,
    exclude: frozenset[str] | set[str] = frozenset(),
) -> Iterator[Pair]:
    """Pairs from MedQuAD: a question with its own answer (chosen) against the answer of a
    question on another topic (rejected). ``focus`` keeps only those topics, ``exclude``
    leaves topics out (so that held-out topics are unseen in training)."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            topic = str(r.get("focus") or "")
            if not r.get("answer") or not r.get("question") or topic in exclude:
                continue
            if focus is not None and topic not in focus:
                continue
            rows.append((str(r["question"]).strip(), " ".join(str(r["answer"]).split()), topic))
    rng = random.Random(seed)
    rng.shuffle(rows)
    for i, (q, a, topic) in enumerate(rows[:n]):
        other = rows[(i + 1 + rng.randrange(len(rows) - 1)) % len(rows)]
        while other[2] == topic:
            other = rows[rng.randrange(len(rows))]
        yield Pair((("user", q),), a[:2000], other[1][:2000], 1.0, f"medquad:{topic}")


def topics(path: Path) -> list[str]:
    """MedQuAD's topics (``focus``), in file order."""
    seen: dict[str, None] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            seen.setdefault(str(json.loads(line).get("focus") or ""), None)
    return [t for t in seen if t]


def write_pairs(pairs: Sequence[Pair], out: Path) -> None:
    """Pairs as evidex JSONL (readable by :func:`read_pairs`)."""
    with Path(out).open("w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps({"prompt": [{"role": r, "content": c} for r, c in p.prompt],
                                 "chosen": p.chosen, "rejected": p.rejected,
                                 "magnitude": p.magnitude}, ensure_ascii=False) + "\n")  # fmt: skip
