"""Convert benchmark files into chat records (SFT JSONL) and verl's RL parquet schema.

Each RL row has ``data_source``, ``prompt`` (a chat list), ``ability``, ``reward_model``
(``{"style": "rule", "ground_truth": ...}``) and ``extra_info`` (split, index and whatever the
reward needs), exactly what :func:`rl_training.rewards.compute_score` reads.
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import InputError

Task = Literal["medcalc", "mcq", "pubmedqa", "cmexam", "cmmlu", "diagnosis", "medquad", "chat"]

BOX = "Put your final answer in \\boxed{}."
SYSTEM = "You are a careful medical expert. Think step by step, then answer."


def _chat(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _options(opts: dict[str, str]) -> str:
    return "\n".join(f"{k}. {v}" for k, v in sorted(opts.items()))


def _row(
    source: str, prompt: str, answer: str, index: int, split: str, **extra: Any
) -> dict[str, Any]:
    return {
        "data_source": f"evidex/{source}",
        "prompt": _chat(prompt),
        "ability": "medical",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"split": split, "index": index, **extra},
    }


def medcalc_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            prompt = (
                f"Patient note:\n{r['Patient Note']}\n\nTask: {r['Question']}\n"
                f"Give only the value (no units). {BOX}"
            )
            yield _row(
                "medcalc",
                prompt,
                r["Ground Truth Answer"],
                i,
                split,
                lower_limit=r["Lower Limit"],
                upper_limit=r["Upper Limit"],
                output_type=r["Output Type"],
                calculator_id=r["Calculator ID"],
                question=r["Question"],
                explanation=r["Ground Truth Explanation"],
            )


def mcq_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """MIRAGE file: MedQA, MedMCQA and MMLU-Med, each ``{id: {question, options, answer}}``."""
    data = json.loads(Path(path).read_text("utf-8"))
    names = {"medqa": "medqa", "medmcqa": "medmcqa", "mmlu": "mmlu_med"}
    i = 0
    for key, items in data.items():
        for qid, item in items.items():
            prompt = (
                f"{item['question']}\n\n{_options(item['options'])}\n\n"
                f"Answer with the option letter. {BOX}"
            )
            yield _row(
                names.get(key, key),
                prompt,
                item["answer"],
                i,
                split,
                question_id=qid,
                question=item["question"],
            )
            i += 1


def pubmedqa_rows(
    path: Path, split: str = "train", with_context: bool = True
) -> Iterator[dict[str, Any]]:
    """PubMedQA; ``with_context=False`` gives the question alone (MIRAGE's PubMedQA*)."""
    data = json.loads(Path(path).read_text("utf-8"))
    for i, (pmid, item) in enumerate(data.items()):
        contexts = "\n".join(
            f"{label}: {text}"
            for label, text in zip(item["LABELS"], item["CONTEXTS"], strict=False)
        )
        head = f"Context (PMID {pmid}):\n{contexts}\n\n" if with_context else ""
        prompt = f"{head}Question: {item['QUESTION']}\nAnswer yes, no or maybe. {BOX}"
        yield _row(
            "pubmedqa",
            prompt,
            item["final_decision"],
            i,
            split,
            pmid=pmid,
            question=item["QUESTION"],
            long_answer=item.get("LONG_ANSWER", ""),
        )


def cmexam_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            item = json.loads(line)
            opts = item["options"]
            if isinstance(opts, str):
                opts = ast.literal_eval(opts)
            multi = len(item["answer"]) > 1
            hint = "（可能有多个正确选项）" if multi else ""
            prompt = f"{item['question']}{hint}\n\n{_options(opts)}\n\n请给出选项字母。{BOX}"
            yield _row(
                "cmexam",
                prompt,
                item["answer"],
                i,
                split,
                question_id=item["id"],
                multi_answer=multi,
                question=item["question"],
                explanation=""
                if str(item.get("explanation")) in ("", "nan", "None")
                else item["explanation"],
            )


def cmmlu_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """CMMLU CSVs (``,Question,A,B,C,D,Answer``): one file, or a folder of subject files (the
    subject, e.g. ``anatomy``, is the file name and goes to ``extra_info.category``); a folder
    of split folders (CMMLU's own ``dev/``, ``test/``) is read with its subfolders."""
    path = Path(path)
    files = sorted(path.rglob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path} holds no CMMLU .csv files")
    i = 0
    for f in files:
        with open(f, encoding="utf-8-sig") as fh:
            for line, r in enumerate(csv.DictReader(fh), start=2):
                try:
                    opts = {k: r[k] for k in "ABCD"}
                    question, answer = r["Question"], r["Answer"].strip()
                except KeyError as exc:
                    raise InputError(
                        f"{f}:{line}: missing column {exc}; CMMLU files have the header "
                        ",Question,A,B,C,D,Answer"
                    ) from None
                if answer not in opts:
                    raise InputError(f"{f}:{line}: answer {answer!r} is not one of A-D")
                prompt = f"{question}\n\n{_options(opts)}\n\n请给出选项字母。{BOX}"
                yield _row(
                    "cmmlu", prompt, answer, i, split, category=f.stem, line=line, question=question
                )
                i += 1


def _model_row(source: str, prompt: list[dict[str, str]], reference: str, index: int,
               split: str, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """An unverifiable row: the verifier scores it against ``reference`` (S3)."""
    return {
        "data_source": f"evidex/{source}",
        "prompt": prompt,
        "ability": "medical",
        "reward_model": {"style": "model", "ground_truth": reference},
        "extra_info": {"split": split, "index": index, **extra},
    }


def medquad_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """MedQuAD's answered consumer-health questions (``question``, ``answer``, ``qtype``,
    ``focus``, ``url`` per JSON line, .jsonl or .jsonl.gz) as verifier-scored rows whose
    reference is the NIH/CDC answer."""
    import gzip

    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                question, answer = str(item["question"]).strip(), str(item["answer"]).strip()
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{i + 1}: not a MedQuAD record ({exc})") from None
            if not question or not answer:
                continue  # MedQuAD has questions whose answers were withheld
            yield _model_row("medquad", _chat(question), answer, i, split, question=question,
                             qtype=item.get("qtype", ""), focus=item.get("focus", ""),
                             url=item.get("url", ""), qid=item.get("qid", ""))  # fmt: skip


def chat_rows(path: Path, split: str = "train") -> Iterator[dict[str, Any]]:
    """Chat records (``{"messages": [...]}`` per line) whose last assistant turn is the
    reference answer: the prompt is every turn before it; earlier turns are the dialogue
    history (``extra_info.history``), which the verifier prompt shows."""
    from retrieval.jsonl import iter_jsonl

    for n, rec in iter_jsonl(path):
        msgs = [m for m in rec.get("messages") or [] if isinstance(m, dict)]
        if len(msgs) < 2 or msgs[-1].get("role") != "assistant":
            raise InputError(f"{path}:{n}: a chat record must end with the assistant's answer")
        prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs[:-1]]
        if prompt[-1]["role"] != "user":
            raise InputError(f"{path}:{n}: the answer must follow a user turn")
        history = [[m["role"], m["content"]] for m in prompt[:-1] if m["role"] != "system"]
        yield _model_row(str(rec.get("source") or "chat"), prompt, str(msgs[-1]["content"]),
                         n - 1, split, question=prompt[-1]["content"], history=history)  # fmt: skip


CHINESE_SOURCES = frozenset({"cmexam", "cmmlu"})
"""Sources whose records are in Chinese: their SFT answer closes in Chinese."""


def sft_record(row: dict[str, Any]) -> dict[str, Any]:
    r"""An RL row as an SFT chat record: the prompt plus an assistant turn that reasons with
    the source's own rationale (MedCalc's explanation, PubMedQA's long answer, CMExam's
    explanation; empty when there is none) and boxes the ground truth. The RL fields stay, so
    the curation filters can verify the record.

    >>> row = _row("medqa", "Q?", "B", 0, "train", explanation="Because.")
    >>> sft_record(row)["messages"][-1]["content"]
    '<think>\nBecause.\n</think>\n\nThe answer is \\boxed{B}.'
    """
    info = row["extra_info"]
    why = str(info.get("explanation") or info.get("long_answer") or "").strip()
    answer = row["reward_model"]["ground_truth"]
    reply = f"<think>\n{why}\n</think>\n\nThe answer is \\boxed{{{answer}}}."
    if row["data_source"].split("/")[-1] in CHINESE_SOURCES:
        reply = f"<think>\n{why}\n</think>\n\n答案是 \\boxed{{{answer}}}。"
    if row["reward_model"].get("style") == "model":  # an open answer: no box
        reply = f"<think>\n{why}\n</think>\n\n{answer}"
    return {**row, "messages": [*row["prompt"], {"role": "assistant", "content": reply}]}


CONVERTERS = {
    "medcalc": medcalc_rows,
    "mcq": mcq_rows,
    "pubmedqa": pubmedqa_rows,
    "cmexam": cmexam_rows,
    "cmmlu": cmmlu_rows,
    "medquad": medquad_rows,
    "chat": chat_rows,
}


def export(task: Task, source: Path, out: Path, split: str = "train", agent: bool = False) -> int:
    """Write ``task`` rows from ``source`` to ``out`` (.parquet for verl, .jsonl for SFT).

    ``agent`` makes QA rows search-augmented for verl's tool agent (S4); the ``diagnosis``
    task (AgentClinic cases) always is a tool-agent task."""
    from rl_training.data.agentic import diagnosis_rows, search_rows

    converters: dict[str, Any] = {**CONVERTERS, "diagnosis": diagnosis_rows}
    if task not in converters:
        raise InputError(f"unknown task {task!r}: choose one of {sorted(converters)}")
    if not Path(source).exists() or (Path(source).is_dir() and task != "cmmlu"):
        raise InputError(f"input file {source} does not exist")
    rows = list(converters[task](Path(source), split))
    if agent and task != "diagnosis":
        rows = list(search_rows(rows))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for r in rows:  # parquet needs one type per column: keep extra_info values as strings
            r["extra_info"] = {
                k: v
                if (k == "index" and isinstance(v, int)) or k == "tools_kwargs"
                else json.dumps(v, ensure_ascii=False)
                if k == "history"
                else str(v)
                for k, v in r["extra_info"].items()
            }
        pq.write_table(pa.Table.from_pylist(rows), out)
    elif out.suffix == ".jsonl":
        with open(out, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(sft_record(r), ensure_ascii=False) + "\n")
    else:
        raise InputError(f"{out}: write .parquet (verl RL) or .jsonl (SFT)")
    return len(rows)
