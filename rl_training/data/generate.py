"""The report's data engine (section 4.1) as jobs over :mod:`rl_training.data.engine`:

- :func:`distill` - Long-CoT candidates from a teacher (the report uses DeepSeek-R1): N per row
  of ``evidex train export``, each scored by the rule reward when the row is verifiable;
- :func:`trace` - Think-Tracing: for records with a question and an answer but no reasoning, a
  tracer model writes the ``<think>`` that reaches the given answer; only traces whose final
  answer matches it are kept;
- :func:`select` - RL data selection: N responses per question from the (SFT) policy, scored
  by the rule reward (or the verifier for ``style: model`` rows); questions answered all right
  or all wrong are dropped, the rest ordered from the lowest to the highest number correct.

Each job is resumable (the engine's cache sits beside the output: ``OUT.cache.sqlite``), writes
its output whole at the end (atomically), and returns a :class:`JobReport`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import ConfigError, InputError
from retrieval.jsonl import read_jsonl, write_jsonl
from rl_training.data.engine import BatchEngine, Completion, EngineConfig, EngineReport, Request
from rl_training.data.filters import select_for_rl
from rl_training.data.rows import RLRow, history_of, read_rows
from rl_training.rewards.extract import last_boxed, strip_reasoning

log = logging.getLogger(__name__)

TRACER_SYSTEM = (
    "You are given a question and its correct answer. Write the chain of thought that leads "
    "to this answer: reason step by step inside <think> and </think>, as if solving the "
    "question yourself, without saying that you were given the answer. After </think>, state "
    "the final answer exactly as given."
)


@dataclass
class JobReport:
    """A job's report: the engine's (requests, tokens, failures) and what the job kept."""

    engine: EngineReport
    written: int = 0
    """Records written to the output."""
    skipped_rows: list[str] = field(default_factory=list)
    """Input rows that could not be used, each with the reason."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Outputs left out, by reason (trace: mismatched answers; select: all right/wrong)."""
    out: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.engine.as_dict(), "written": self.written,
                "skipped_rows": self.skipped_rows[:50], "dropped": self.dropped,
                "out": str(self.out) if self.out else None}  # fmt: skip

    def __str__(self) -> str:
        dropped = ", ".join(f"{k} {v}" for k, v in self.dropped.items()) or "none"
        return (f"{self.engine}; wrote {self.written} records to {self.out}; "
                f"{len(self.skipped_rows)} input rows skipped; dropped: {dropped}")  # fmt: skip


def cache_path(out: Path) -> Path:
    """Where a job keeps its completions (beside its output)."""
    return out.with_name(out.name + ".cache.sqlite")


def _typed_rows(source: Path) -> tuple[list[tuple[str, RLRow]], list[str]]:
    """(row key, row) of every usable row of an export, and the problems of the others."""
    if source.suffix not in (".parquet", ".jsonl"):
        raise InputError(
            f"{source}: --input must be what evidex train export writes (.parquet or .jsonl)"
        )
    out, problems, seen = [], [], set()
    for n, raw in enumerate(read_rows([source]), 1):
        try:
            row = RLRow.from_verl(raw, n)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if not row.prompt or not any(m.get("role") == "user" for m in row.prompt):
            problems.append(f"row {n}: no prompt (a chat list with a user turn)")
            continue
        key = f"{row.data_source}#{row.index if row.index is not None else n}"
        if key in seen:
            key = f"{key}@{n}"
        seen.add(key)
        out.append((key, row))
    for p in problems[:20]:
        log.warning("skipped %s", p)
    if not out:
        raise InputError(f"{source}: no usable rows ({problems[0] if problems else 'empty'})")
    return out, problems


def _chat(prompt: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], ...]:
    return tuple({"role": str(m["role"]), "content": str(m["content"])} for m in prompt)


def _rule_score(row: RLRow, text: str) -> tuple[float | None, bool | None]:
    """(score, correct) by the rule reward; (None, None) for rows it cannot score."""
    from rl_training.rewards.dispatch import is_rule_task
    from rl_training.rewards.scoring import compute_score

    if row.style != "rule" or not is_rule_task(row.data_source):
        return None, None
    scored = compute_score(row.data_source, text, row.ground_truth, row.extra_info)
    return float(scored["score"]), bool(scored["acc"])


def _run(requests: Sequence[Request], config: EngineConfig, out: Path, engine: str
         ) -> tuple[dict[tuple[str, int], Completion], EngineReport]:  # fmt: skip
    if engine == "ray":
        from rl_training.data.engine import run_ray

        return run_ray(requests, config, cache_path(out))
    if engine != "local":
        raise ConfigError(f"--engine {engine}: use local or ray")
    with BatchEngine(config, cache_path(out)) as batch:
        return batch.run(requests)


def _write(out: Path, records: Sequence[Mapping[str, Any]]) -> int:
    """Write the whole output at once: JSONL, or parquet by suffix (a temporary file renamed
    over the old one, so an interrupted write never leaves half a file)."""
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(list(records)), tmp)
    else:
        write_jsonl(tmp, records)
    os.replace(tmp, out)
    return len(records)


def distill(source: Path, out: Path, config: EngineConfig, *, engine: str = "local") -> JobReport:
    """``evidex train distill``: ``config.samples`` Long-CoT candidates per row."""
    rows, problems = _typed_rows(source)
    requests = [Request(key, s, _chat(row.prompt)) for key, row in rows
                for s in range(config.samples)]  # fmt: skip
    done, report = _run(requests, config, out, engine)
    by_key = dict(rows)
    records = []
    for req in requests:
        c = done.get((req.row, req.sample))
        if c is None:
            continue
        row = by_key[req.row]
        score, correct = _rule_score(row, c.text)
        records.append({
            "index": row.index, "sample": req.sample, "row": req.row,
            "data_source": row.data_source, "prompt": [dict(m) for m in req.messages],
            "response": c.text, "ground_truth": row.ground_truth, "style": row.style,
            "score": score, "correct": correct, "teacher": c.model,
            "finish_reason": c.finish_reason, "completion_tokens": c.completion_tokens,
        })  # fmt: skip
    return JobReport(report, _write(out, records), problems, out=out)


def _answered(n: int, rec: Mapping[str, Any]) -> tuple[str, str, RLRow | None]:
    """(question, answer, the RL row when the record is one) of an answered record."""
    if "question" in rec and "answer" in rec:
        return str(rec["question"]), str(rec["answer"]), None
    if rec.get("messages"):
        msgs = list(rec["messages"])
        last = next((i for i in range(len(msgs) - 1, -1, -1)
                     if msgs[i].get("role") == "assistant"), None)  # fmt: skip
        user = next((m for m in reversed(msgs[: last or 0]) if m.get("role") == "user"), None)
        if last is None or user is None:
            raise InputError(f"record {n}: no user question followed by an assistant answer")
        answer = str(msgs[last].get("content") or "")
        if "</think>" in answer and strip_reasoning(answer).strip() != answer.strip():
            reasoning = answer.split("<think>", 1)[-1].split("</think>", 1)[0]
            if reasoning.strip():
                raise InputError(f"record {n}: the answer already has its reasoning")
            answer = strip_reasoning(answer)
        row = RLRow.from_verl(rec, n) if rec.get("reward_model") else None
        return str(user.get("content") or ""), answer.strip(), row
    if rec.get("prompt") and rec.get("reward_model"):
        row = RLRow.from_verl(rec, n)
        return row.question, str(row.ground_truth), row
    raise InputError(f"record {n}: give question and answer, chat messages, or an exported row")


def _norm(text: str) -> str:
    """A final answer for comparison: no box, case, white space or trailing punctuation.

    >>> _norm(" The answer is \\\\boxed{B}. "), _norm("Myasthenia  Gravis.")
    ('b', 'myasthenia gravis')
    """
    boxed = last_boxed(text)
    text = boxed if boxed is not None else text
    return re.sub(r"\s+", " ", text).strip().strip(".。!").strip().lower()


def trace_matches(trace: str, answer: str, row: RLRow | None = None) -> bool:
    """Whether a trace ends in the given answer: the rule reward for verifiable rows, else
    the normalized final answer (its box, or the text after ``</think>``) equals the given
    one's, or the given answer's box.

    >>> trace_matches("<think>so B</think>The answer is \\\\boxed{B}.", "\\\\boxed{B}")
    True
    >>> trace_matches("<think>so C</think>\\\\boxed{C}", "\\\\boxed{B}")
    False
    """
    if "</think>" not in trace:
        return False
    final = trace.split("</think>", 1)[1]
    if row is not None and row.style == "rule":
        _, correct = _rule_score(row, trace)
        if correct is not None:
            return correct
    return bool(final.strip()) and (_norm(final) == _norm(answer))


def trace(source: Path, out: Path, config: EngineConfig, *, engine: str = "local") -> JobReport:
    """``evidex train trace``: a ``<think>`` for each answered record (``config.samples``
    tries each; the first trace that reaches the answer is kept)."""
    items = []
    problems: list[str] = []
    for n, rec in enumerate(read_jsonl(source), 1):
        try:
            question, answer, row = _answered(n, rec)
        except InputError as exc:
            problems.append(str(exc))
            continue
        if not question.strip() or not answer.strip():
            problems.append(f"record {n}: an empty question or answer")
            continue
        items.append((f"record#{n}", question, answer, row, rec))
    if not items:
        raise InputError(f"{source}: no answered records ({problems[0] if problems else 'empty'})")
    msgs = {key: ({"role": "system", "content": TRACER_SYSTEM},
                  {"role": "user", "content": f"Question:\n{q}\n\nCorrect answer:\n{a}"})
            for key, q, a, _, _ in items}  # fmt: skip
    requests = [Request(key, s, msgs[key]) for key, *_ in items for s in range(config.samples)]
    done, report = _run(requests, config, out, engine)
    records, dropped = [], {"answer does not match": 0, "no trace": 0}
    for key, question, answer, row, rec in items:
        texts = _texts(done, key, config.samples)
        good = next((t for t in texts if trace_matches(t, answer, row)), None)
        if good is None:
            dropped["answer does not match" if texts else "no trace"] += 1
            continue
        think = good.split("</think>", 1)[0].split("<think>", 1)[-1].strip()
        reply = f"<think>\n{think}\n</think>\n\n{answer}"
        prompt = [dict(m) for m in (row.prompt if row else ({"role": "user", "content":
                  question},))]  # fmt: skip
        base = {k: v for k, v in rec.items() if k not in ("messages", "question", "answer")}
        records.append({**base, "messages": [*prompt, {"role": "assistant", "content": reply}],
                        "tracer": config.model})  # fmt: skip
    return JobReport(report, _write(out, records), problems, dropped, out=out)


def select(
    source: Path,
    out: Path,
    config: EngineConfig,
    *,
    budget: int | None = None,
    judge_url: str | None = None,
    judge_model: str = "default",
    engine: str = "local",
) -> JobReport:
    """``evidex train select``: the report's RL data selection (see the module doc)."""
    if budget is not None and budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget!r}")
    rows, problems = _typed_rows(source)
    from rl_training.rewards.dispatch import is_rule_task

    needs_judge = [k for k, r in rows if r.style == "model" or not is_rule_task(r.data_source)]
    if needs_judge and not judge_url:
        raise ConfigError(
            f"{len(needs_judge)} rows (e.g. {needs_judge[0]}) are scored by the verifier "
            "(reward_model.style model): give --judge-url"
        )
    requests = [Request(key, s, _chat(row.prompt)) for key, row in rows
                for s in range(config.samples)]  # fmt: skip
    done, report = _run(requests, config, out, engine)
    judge = None
    if judge_url:
        from rl_training.rewards.vrm import VerifierRewardModel, VRMConfig

        judge = VerifierRewardModel(VRMConfig(base_url=judge_url, model=judge_model,
                                              cache_dir=out.parent))  # fmt: skip
    rewards: dict[str, list[float]] = {}
    incomplete = 0
    for key, row in rows:
        texts = _texts(done, key, config.samples)
        if len(texts) < config.samples:
            incomplete += 1  # a re-run completes it
            continue
        rewards[key] = [float(_correct(row, t, judge)) for t in texts]
    chosen, step = select_for_rl(rewards, budget)
    by_key = dict(rows)
    records = []
    for key in chosen:
        verl = by_key[key].to_verl()
        verl["extra_info"] = {**verl["extra_info"], "pass_count": int(sum(rewards[key])),
                              "samples": config.samples}  # fmt: skip
        records.append(verl)
    dropped = {"all right": step.dropped["all correct"], "all wrong": step.dropped["all wrong"],
               "incomplete": incomplete}  # fmt: skip
    if step.dropped["over budget"]:
        dropped["over the budget"] = step.dropped["over budget"]
    return JobReport(report, _write(out, records), problems, dropped, out=out)


def _correct(row: RLRow, text: str, judge: Any) -> bool:
    _, correct = _rule_score(row, text)
    if correct is not None:
        return correct
    res = judge.score(row.question, str(row.ground_truth), text, history_of(row.extra_info))
    return bool(res.score >= 1.0)


def _texts(done: Mapping[tuple[str, int], Completion], key: str, samples: int) -> list[str]:
    """The finished completions of one row, in sample order."""
    return [done[(key, s)].text for s in range(samples) if (key, s) in done]
