"""Rows for verl's tool agent (``agent_name: tool_agent``): search-augmented QA (S4) and the
diagnostic chain, each with per-sample ``extra_info.tools_kwargs``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from retrieval.errors import InputError
from retrieval.jsonl import iter_jsonl

SEARCH_SYSTEM = (
    "You are a careful medical expert. Think step by step. When you lack knowledge, call the "
    "`search` tool (PubMed abstracts and clinical guidelines) as often as you need, then put "
    "your final answer in \\boxed{}."
)
DIAGNOSIS_SYSTEM = (
    "You are the doctor in a clinical consultation. Examination findings and test results are "
    "withheld: request them one at a time with the `request_exam` tool, only those you need. "
    "When you are confident, give the final diagnosis as \\boxed{diagnosis}."
)


def search_rows(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Exported QA rows made search-augmented: same task, reward and ground truth; the
    system prompt offers the ``search`` tool."""
    for r in rows:
        user = r["prompt"][-1]
        info = dict(r["extra_info"])
        # (parquet cannot hold an empty struct: the tool ignores this key)
        info["tools_kwargs"] = {"search": {"create_kwargs": {"task": r["data_source"]}}}
        yield {
            **r,
            "prompt": [{"role": "system", "content": SEARCH_SYSTEM}, dict(user)],
            "agent_name": "tool_agent",
            "extra_info": info,
        }


def diagnosis_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """The cases of an AgentClinic-style JSONL file as diagnostic-chain rows."""
    from rl_training.envs.diagnosis import Case

    for n, record in iter_jsonl(path):
        i = n - 1
        try:
            case = Case.from_record(record)
        except (AttributeError, TypeError) as exc:
            raise InputError(f"{path}:{n}: not a case record ({exc})") from None
        user = f"Initial consultation:\n{case.summary}\n\nWhat is the most likely diagnosis?"
        yield {
            "data_source": "evidex/diagnosis",
            "prompt": [
                {"role": "system", "content": DIAGNOSIS_SYSTEM},
                {"role": "user", "content": user},
            ],
            "ability": "medical",
            "agent_name": "tool_agent",
            "reward_model": {"style": "model", "ground_truth": case.diagnosis},
            "extra_info": {
                "split": split,
                "index": i,
                "question": user,
                "tools_kwargs": {
                    "request_exam": {"create_kwargs": {"case_json": json.dumps(record)}}
                },
            },
        }
