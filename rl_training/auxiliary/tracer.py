"""The think-tracing model (the report's section 4.4): SFT with the question and its answer as
input and the chain of thought that reaches the answer as output, in exactly the messages
``evidex train trace`` sends its tracer (:data:`rl_training.data.generate.TRACER_SYSTEM`), so
the trained folder, served by any OpenAI-compatible server, is that job's tracer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retrieval.errors import InputError
from retrieval.jsonl import iter_jsonl

log = logging.getLogger(__name__)


def cot_example(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A training example from a chain-of-thought record: a chat record whose last assistant
    turn is ``<think>CoT</think>answer`` (what ``train trace`` or a distillation writes), or a
    ``train distill`` record (``prompt``, ``response``).

    >>> ex = cot_example({"messages": [{"role": "user", "content": "Dose?"},
    ...                   {"role": "assistant", "content": "<think>weight 70 kg</think>5 mg"}]})
    >>> ex["prompt"][1]["content"]
    'Question:\\nDose?\\n\\nCorrect answer:\\n5 mg'
    >>> ex["completion"][0]["content"]
    '<think>\\nweight 70 kg\\n</think>\\n\\n5 mg'
    """
    from rl_training.data.generate import TRACER_SYSTEM

    if "response" in rec and "prompt" in rec:
        msgs = [*rec["prompt"], {"role": "assistant", "content": rec["response"]}]
    else:
        msgs = list(rec.get("messages") or [])
    last = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i].get("role") == "assistant"),
                None)  # fmt: skip
    user = next((m for m in reversed(msgs[: last or 0]) if m.get("role") == "user"), None)
    if last is None or user is None:
        raise InputError("no user question followed by an assistant answer")
    text = str(msgs[last].get("content") or "")
    if "<think>" not in text or "</think>" not in text:
        raise InputError("the answer has no <think>...</think> chain of thought")
    cot = text.split("<think>", 1)[1].split("</think>", 1)[0].strip()
    answer = text.split("</think>", 1)[1].strip()
    if not cot or not answer:
        raise InputError("an empty chain of thought or an empty answer")
    question = str(user.get("content") or "").strip()
    ask = f"Question:\n{question}\n\nCorrect answer:\n{answer}"
    reply = f"<think>\n{cot}\n</think>\n\n{answer}"
    return {
        "prompt": [{"role": "system", "content": TRACER_SYSTEM}, {"role": "user", "content": ask}],
        "completion": [{"role": "assistant", "content": reply}],
    }


def read_cot(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Training examples of a JSONL file and the problems of its bad lines."""
    if not Path(path).is_file():
        raise InputError(f"chain-of-thought records {path}: no such file")
    out, problems = [], []
    for n, rec in iter_jsonl(Path(path)):
        try:
            out.append(cot_example(rec))
        except InputError as exc:
            problems.append(f"{path}:{n}: {exc}")
    if not out:
        raise InputError(f"no usable record in {path} ({problems[0] if problems else 'empty'})")
    return out, problems
