"""The benchmarks ``evidex eval qa`` runs, as rows in the export schema (prompt, ground truth,
data source, extra info), read from the real files (default: ``../shared/data``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import InputError
from rl_training.data import export

Benchmark = Literal[
    "medqa",
    "medmcqa",
    "mmlu",
    "pubmedqa",
    "pubmedqa_context",
    "medcalc",
    "cmmlu",
    "cmexam",
    "math",
]
BENCHMARKS: tuple[str, ...] = (
    "medqa", "medmcqa", "mmlu", "pubmedqa", "pubmedqa_context", "medcalc", "cmmlu", "cmexam",
    "math",
)  # fmt: skip

# Where each benchmark lives under the shared data folder.
DEFAULT_FILES = {
    "medqa": "mirage_medqa_medmcqa_mmlu.json",
    "medmcqa": "mirage_medqa_medmcqa_mmlu.json",
    "mmlu": "mirage_medqa_medmcqa_mmlu.json",
    "pubmedqa": "pubmedqa/pqal_dev.json",
    "pubmedqa_context": "pubmedqa/pqal_dev.json",
    "medcalc": "medcalc/medcalc_v1.0_dev.csv",
    "cmmlu": "zh/cmmlu_medical/test",
    "cmexam": "zh/cmexam_dev.jsonl",
}


def data_root() -> Path:
    """``$EVIDEX_SHARED_DATA``, else ``../shared/data`` from the working folder, else beside
    the evidex checkout."""
    if os.environ.get("EVIDEX_SHARED_DATA"):
        return Path(os.environ["EVIDEX_SHARED_DATA"])
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base.parent / "shared" / "data").is_dir():
            return base.parent / "shared" / "data"
    return Path.cwd().parent / "shared" / "data"


def default_input(benchmark: str) -> Path:
    if benchmark not in DEFAULT_FILES:
        raise InputError(
            f"{benchmark} has no file in ../shared/data: pass --input FILE (MATH-500 style "
            "JSONL: problem, answer)"
        )
    return data_root() / DEFAULT_FILES[benchmark]


def load(benchmark: str, path: Path | None = None) -> list[dict[str, Any]]:
    """All rows of a benchmark; each gets an ``id`` (``benchmark:index``)."""
    if benchmark not in BENCHMARKS:
        raise InputError(f"unknown benchmark {benchmark!r}: choose one of {', '.join(BENCHMARKS)}")
    path = Path(path) if path else default_input(benchmark)
    if not path.exists():
        raise InputError(
            f"{benchmark} data not found at {path}: pass --input FILE (the file layout is in "
            "../shared/data/README.md) or set EVIDEX_SHARED_DATA"
        )
    rows: Iterator[dict[str, Any]]
    convert: Callable[..., Iterator[dict[str, Any]]]
    if benchmark in ("medqa", "medmcqa", "mmlu"):
        want = "mmlu_med" if benchmark == "mmlu" else benchmark
        rows = (r for r in export.mcq_rows(path, "test") if r["data_source"].endswith("/" + want))
    elif benchmark == "pubmedqa":
        # MIRAGE's PubMedQA*: the question alone; retrieval (--rag) must find the evidence.
        rows = export.pubmedqa_rows(path, "test", with_context=False)
    elif benchmark == "pubmedqa_context":
        # the report's setting: the question with its abstract's context
        rows = export.pubmedqa_rows(path, "test", with_context=True)
    elif benchmark == "math":
        rows = math_rows(path)
    else:
        convert = {
            "medcalc": export.medcalc_rows,
            "cmmlu": export.cmmlu_rows,
            "cmexam": export.cmexam_rows,
        }[benchmark]
        rows = convert(path, "test")
    out = []
    for i, r in enumerate(rows):
        r["id"] = f"{benchmark}:{i}"
        out.append(r)
    if not out:
        raise InputError(f"{path} holds no {benchmark} items")
    return out


MATH_PROMPT = (
    "Solve the following problem. Reason step by step, then give the final answer in "
    "\\boxed{{}}.\n\n{problem}"
)


def math_rows(path: Path) -> Iterator[dict[str, Any]]:
    """MATH-500-style JSONL (``problem``, ``answer``; ``subject``, ``level``, ``unique_id``
    kept) as rows scored by mathematical equivalence; a line without both is an error naming
    it."""
    from retrieval.jsonl import iter_jsonl

    for n, rec in iter_jsonl(path):
        problem, answer = str(rec.get("problem") or "").strip(), str(rec.get("answer") or "")
        if not problem or not answer.strip():
            raise InputError(f"{path}:{n}: a MATH row needs 'problem' and 'answer'")
        yield {
            "data_source": "evidex/math",
            "prompt": [{"role": "user", "content": MATH_PROMPT.format(problem=problem)}],
            "reward_model": {"style": "rule", "ground_truth": answer.strip()},
            "extra_info": {k: rec.get(k) for k in ("subject", "level", "unique_id")
                           if rec.get(k) is not None},
        }  # fmt: skip
