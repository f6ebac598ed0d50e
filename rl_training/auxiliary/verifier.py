"""The trained verifier reward model (the report's VRM, section 4.4 and Appendix B): judged
records built by a teacher judge, supervised fine-tuning of a judge on them, and its agreement
with the teacher.

- :func:`judge_data` (``evidex train judge-data``): each candidate (question, dialogue history,
  reference answer, candidate answer) becomes the Appendix B prompt, with the chain of thought
  removed from both answers, and the teacher judge's reply (analysis + ``\\boxed{0|1}``) is
  asked through the data engine's batch client (resumable, concurrent, cached).
- :func:`train_vrm` (``evidex train vrm``): TRL's ``SFTTrainer`` on prompt -> verdict, the loss
  on the verdict only, 2 epochs by default as in the report.
- :func:`evaluate_vrm` (``evidex eval vrm``): a local judge folder or a served judge against the
  teacher's verdicts: accuracy, precision and recall of "1", and the share of malformed replies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import ConfigError, InputError
from retrieval.jsonl import iter_jsonl
from rl_training.auxiliary.sft import SFTJobConfig, sft
from rl_training.rewards.vrm import VRMItem, item_of, parse_score, render_prompt

log = logging.getLogger(__name__)


def candidate_item(rec: Mapping[str, Any]) -> VRMItem:
    """A candidate as a VRM item: a chat record with ``reward_model.ground_truth`` (what
    :func:`rl_training.rewards.vrm.item_of` reads), or a ``train distill`` record (``prompt``,
    ``response``, ``ground_truth``).

    >>> candidate_item({"prompt": [{"role": "user", "content": "Dose?"}], "response": "5 mg",
    ...                 "ground_truth": "5 mg daily"}).prediction
    '5 mg'
    """
    if "response" in rec and "prompt" in rec:
        msgs = [*rec["prompt"], {"role": "assistant", "content": rec["response"]}]
        return item_of(
            {"messages": msgs, "reward_model": {"ground_truth": rec.get("ground_truth")}}
        )
    return item_of(rec)


@dataclass(frozen=True)
class JudgedRecord:
    """One judged record: the Appendix B prompt, the teacher's reply and its verdict."""

    prompt: str
    reply: str
    verdict: int | None
    """1 (the candidate matches the reference), 0, or None when the reply is malformed."""
    key: str = ""

    @classmethod
    def of(cls, rec: Mapping[str, Any], where: str) -> JudgedRecord:
        prompt, reply = rec.get("prompt"), rec.get("reply")
        if isinstance(prompt, list):  # prompt/completion chat form
            prompt = prompt[-1].get("content") if prompt else None
        if isinstance(reply, list) or "completion" in rec:
            comp = rec.get("completion") or reply or []
            reply = comp[-1].get("content") if isinstance(comp, list) and comp else comp
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{where}: no judge prompt")
        if not isinstance(reply, str) or not reply.strip():
            raise InputError(f"{where}: no verdict (the teacher's reply is missing)")
        score = parse_score(reply)
        return cls(prompt, reply, None if score is None else int(score), str(rec.get("key", "")))

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "prompt": [{"role": "user", "content": self.prompt}],
                "completion": [{"role": "assistant", "content": self.reply}],
                "verdict": self.verdict}  # fmt: skip


def read_judged(path: Path) -> tuple[list[JudgedRecord], list[str]]:
    """Judged records and the problems of the bad lines (reported, skipped)."""
    if not Path(path).is_file():
        raise InputError(f"judged records {path}: no such file")
    out, problems = [], []
    for n, rec in iter_jsonl(Path(path)):
        try:
            out.append(JudgedRecord.of(rec, f"{path}:{n}"))
        except InputError as exc:
            problems.append(str(exc))
    if not out:
        raise InputError(f"no judged record in {path} ({problems[0] if problems else 'empty'})")
    return out, problems


def judge_data(source: Path, out: Path, config: Any, *, engine: str = "local") -> Any:
    """``evidex train judge-data``: the teacher judge's verdict on every candidate."""
    from rl_training.data.engine import Request
    from rl_training.data.generate import JobReport, _run, _write

    items, problems = [], []
    for n, rec in iter_jsonl(Path(source)):
        try:
            items.append((f"c{n}", candidate_item(rec)))
        except InputError as exc:
            problems.append(f"{source}:{n}: {exc}")
    for p in problems[:20]:
        log.warning("skipped %s", p)
    if not items:
        raise InputError(f"{source}: no usable candidate ({problems[0] if problems else 'empty'})")
    prompts = {key: render_prompt(item) for key, item in items}
    requests = [Request(key, 0, ({"role": "user", "content": prompts[key]},)) for key, _ in items]
    done, report = _run(requests, config, out, engine)
    records = []
    for key, _ in items:
        c = done.get((key, 0))
        if c is not None:
            score = parse_score(c.text)
            judged = JudgedRecord(prompts[key], c.text, None if score is None else int(score), key)
            records.append({**judged.as_dict(), "judge": c.model})
    return JobReport(report, _write(out, records), problems, out=out)


def train_vrm(records: Sequence[JudgedRecord], cfg: SFTJobConfig) -> dict[str, Any]:
    """SFT of a causal LM judge on prompt -> verdict (records with a malformed verdict are
    left out); returns the losses and steps, and saves the model with its tokenizer."""
    usable = [r for r in records if r.verdict is not None]
    if not usable:
        raise InputError("no judged record with a valid verdict to train on")
    rows = [r.as_dict() for r in usable]
    report = sft(rows, cfg, "evidex_vrm.json")
    return {**report, "records": len(usable), "left_out": len(records) - len(usable)}


@dataclass(frozen=True)
class VRMEval:
    """Agreement with the teacher's verdicts (records whose teacher verdict is valid)."""

    accuracy: float
    precision: float
    recall: float
    malformed: float
    records: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(teacher: Sequence[int], judged: Sequence[int | None]) -> VRMEval:
    """Accuracy, precision and recall of "1", and the malformed share (a malformed verdict
    counts as wrong).

    >>> agreement([1, 1, 0, 0], [1, 0, 1, None])
    VRMEval(accuracy=0.25, precision=0.5, recall=0.5, malformed=0.25, records=4)
    """
    n = len(teacher)
    if n == 0:
        raise InputError("no records to compare")
    right = sum(t == j for t, j in zip(teacher, judged, strict=True))
    said1 = sum(j == 1 for j in judged)
    both1 = sum(t == 1 and j == 1 for t, j in zip(teacher, judged, strict=True))
    real1 = sum(t == 1 for t in teacher)
    precision = round(both1 / said1, 4) if said1 else 0.0
    recall = round(both1 / real1, 4) if real1 else 0.0
    malformed = round(sum(j is None for j in judged) / n, 4)
    return VRMEval(accuracy=round(right / n, 4), precision=precision, recall=recall,
                   malformed=malformed, records=n)  # fmt: skip


def local_verdicts(model: Path, prompts: Sequence[str], max_new_tokens: int = 256) -> list[str]:
    """A local judge folder's replies (greedy, through its chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl_training.data.reward_model import require_checkpoint

    require_checkpoint(model, "judge")
    tok: Any = AutoTokenizer.from_pretrained(str(model))
    lm: Any = AutoModelForCausalLM.from_pretrained(str(model))
    lm.eval()
    out = []
    for p in prompts:
        turn = [{"role": "user", "content": p}]
        ids: Any = tok.apply_chat_template(
            turn, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            gen = lm.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                              pad_token_id=tok.pad_token_id or tok.eos_token_id)  # fmt: skip
        out.append(str(tok.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)))
    return out


def evaluate_vrm(records: Sequence[JudgedRecord], *, model: Path | None = None,
                 judge_url: str | None = None, judge_model: str = "default",
                 max_new_tokens: int = 256) -> VRMEval:  # fmt: skip
    """A judge (local folder or served) against the teacher's verdicts."""
    if (model is None) == (judge_url is None):
        raise ConfigError("give exactly one of --model (a judge folder) or --judge-url")
    valid = [r for r in records if r.verdict is not None]
    if not valid:
        raise InputError("no judged record with a valid teacher verdict")
    prompts = [r.prompt for r in valid]
    if model is not None:
        replies = local_verdicts(model, prompts, max_new_tokens)
    else:
        from planner.chat import ChatError, ChatMessage
        from rl_training.eval.models import load_model

        chat = load_model(str(judge_url), name=judge_model, max_tokens=max_new_tokens)
        replies = []
        for p in prompts:
            try:
                replies.append(chat.complete([ChatMessage(role="user", content=p)]).text)
            except ChatError as exc:
                log.warning("judge failed: %s", exc)
                replies.append("")
    judged = [None if (s := parse_score(r)) is None else int(s) for r in replies]
    return agreement([int(r.verdict) for r in valid if r.verdict is not None], judged)
