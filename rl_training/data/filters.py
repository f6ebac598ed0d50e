"""Curation steps for chat records whose assistant turn may hold ``<think>...</think>``
reasoning and then the answer. Each step keeps what passes and counts what it dropped and why.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from retrieval.errors import ConfigError

Record = Mapping[str, Any]
ScoreFn = Callable[..., Any]
RecordScorer = Callable[[Sequence[Record]], Sequence[float]]


@dataclass
class StepReport:
    """What a step kept and dropped, by reason; ``passed`` counts records the step could not
    judge and let through unchanged (e.g. unverifiable items in the correctness filter)."""

    name: str
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    passed: int = 0

    def __str__(self) -> str:
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        extra = f", {self.passed} passed unjudged" if self.passed else ""
        return f"{self.name}: kept {self.kept}{extra}; dropped {why}"


def response_of(record: Record) -> str:
    """The last assistant message of a chat record."""
    for msg in reversed(record.get("messages", [])):
        if msg.get("role") == "assistant":
            return str(msg.get("content") or "")
    return ""


_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


def format_problem(response: str) -> str | None:
    """Why a response is badly formed, or None when it is fine: exactly one ``<think>``
    block at the start, a non-empty answer after it, nothing after the final answer box.

    >>> format_problem("<think>reason</think>The answer is \\\\boxed{B}.") is None
    True
    >>> format_problem("<think>a</think><think>b</think>B")
    'more than one think block'
    >>> format_problem("<think>reason</think>   ")
    'empty answer'
    >>> format_problem("<think> \\n </think>The answer is B.")
    'empty think block'
    >>> format_problem("<think>reason</think>\\\\boxed{B} and then more text")
    'text after the final answer'
    >>> format_problem("<think>氯丙嗪阻断多巴胺受体。</think>答案是\\\\boxed{D}。") is None
    True
    """
    if response.count(_THINK_OPEN) != 1 or response.count(_THINK_CLOSE) != 1:
        return (
            "more than one think block"
            if response.count(_THINK_OPEN) > 1
            else "no well-formed think block"
        )
    if not response.lstrip().startswith(_THINK_OPEN):
        return "text before the think block"
    if not response.split(_THINK_OPEN, 1)[1].split(_THINK_CLOSE, 1)[0].strip():
        return "empty think block"
    answer = response.split(_THINK_CLOSE, 1)[1].strip()
    if not answer:
        return "empty answer"
    boxes = [m.start() for m in re.finditer(r"\\boxed\{", answer)]
    if boxes:
        tail = answer[boxes[-1] :]
        depth, end = 0, None
        for i, c in enumerate(tail):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end is None:
            return "unbalanced braces in the final answer"
        rest = tail[end + 1 :].strip().rstrip(".。").strip()
        if len(rest) > 0:
            return "text after the final answer"
    return None


_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")


def units(text: str) -> list[str]:
    """The units n-grams are made of: words, and each CJK character on its own (Chinese and
    Japanese are written without spaces).

    >>> units("患者 has 胸痛。ok")
    ['患', '者', 'has', '胸', '痛', '。ok']
    """
    out: list[str] = []
    for word in text.split():
        if not _CJK.search(word):
            out.append(word)
            continue
        rest = ""
        for ch in word:
            if _CJK.match(ch):
                if rest:
                    out.append(rest)
                    rest = ""
                out.append(ch)
            else:
                rest += ch
        if rest:
            out.append(rest)
    return out


def repetition_ratio(text: str, n: int = 4) -> float:
    """Share of n-grams that repeat an earlier n-gram (0 = none repeated): word n-grams, and
    character n-grams in CJK text (see :func:`units`).

    >>> repetition_ratio("a b c d e f g")
    0.0
    >>> round(repetition_ratio("the cat sat " * 20, n=3), 2)
    0.95
    >>> repetition_ratio("患者胸痛三天伴呼吸困难"), round(repetition_ratio("继续思考" * 30), 2)
    (0.0, 0.97)
    """
    words = units(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def format_filter(records: Iterable[Record]) -> tuple[list[Record], StepReport]:
    rep = StepReport("format")
    kept = []
    for r in records:
        problem = format_problem(response_of(r))
        if problem:
            rep.dropped[problem] += 1
        else:
            kept.append(r)
    rep.kept = len(kept)
    return kept, rep


def repetition_filter(
    records: Iterable[Record], n: int = 4, threshold: float = 0.3
) -> tuple[list[Record], StepReport]:
    rep = StepReport(f"repetition(n={n}, threshold={threshold})")
    kept = []
    for r in records:
        if repetition_ratio(response_of(r), n) > threshold:
            rep.dropped["repetitive"] += 1
        else:
            kept.append(r)
    rep.kept = len(kept)
    return kept, rep


def select_for_rl(
    rewards: Mapping[str, Sequence[float]], budget: int | None = None, correct: float = 1.0
) -> tuple[list[str], StepReport]:
    """Questions worth RL (the report's selection): drop those answered all right or all
    wrong by the N samples, order from the lowest pass rate to the highest (ties keep the
    input order), take ``budget`` (all when None).

    >>> ids, rep = select_for_rl({"a": [1, 1], "b": [0, 1, 1], "c": [0, 0], "d": [1, 0, 0]}, 5)
    >>> ids, dict(rep.dropped)
    (['d', 'b'], {'all correct': 1, 'all wrong': 1})
    """
    rep = StepReport("rl-selection")
    scored = []
    for order, (qid, rs) in enumerate(rewards.items()):
        passes = sum(1 for x in rs if x >= correct)
        if not rs or passes == 0:
            rep.dropped["all wrong"] += 1
        elif passes == len(rs):
            rep.dropped["all correct"] += 1
        else:
            scored.append((passes / len(rs), order, qid))
    scored.sort()
    budget = len(scored) if budget is None else budget
    chosen = [q for _, _, q in scored[:budget]]
    rep.dropped["over budget"] += max(0, len(scored) - budget)
    rep.dropped = +rep.dropped  # drop zero counts
    rep.kept = len(chosen)
    return chosen, rep


def verifiable(record: Record) -> tuple[str, Any, Mapping[str, Any]] | None:
    """``(data_source, ground_truth, extra_info)`` of a record the rule rewards can check, or
    None. A record is verifiable when it names its ``data_source`` and carries a rule-style
    ``reward_model.ground_truth`` (the shape ``evidex train export`` writes)."""
    rm = record.get("reward_model") or {}
    if not record.get("data_source") or rm.get("style", "rule") != "rule":
        return None
    if rm.get("ground_truth") in (None, ""):
        return None
    return str(record["data_source"]), rm["ground_truth"], record.get("extra_info") or {}


def correctness_filter(
    records: Iterable[Record], score_fn: ScoreFn | None = None, min_score: float = 1.0
) -> tuple[list[Record], StepReport]:
    """Drop verifiable records whose response the rule reward scores below ``min_score``
    (default: not fully right); unverifiable records pass through and are counted.

    >>> good = {"data_source": "evidex/medqa", "reward_model": {"ground_truth": "B"},
    ...         "messages": [{"role": "assistant", "content": "<think>x</think>\\boxed{B}"}]}
    >>> bad = {**good, "messages": [{"role": "assistant", "content": "\\boxed{C}"}]}
    >>> kept, rep = correctness_filter([good, bad, {"messages": []}])
    >>> len(kept), str(rep)
    (2, 'correctness(min_score=1.0): kept 2, 1 passed unjudged; dropped wrong 1')
    """
    if score_fn is None:
        from rl_training.rewards import compute_score

        score_fn = compute_score
    rep = StepReport(f"correctness(min_score={min_score})")
    kept = []
    for r in records:
        v = verifiable(r)
        if v is None:
            rep.passed += 1
            kept.append(r)
            continue
        source, truth, info = v
        try:
            result = score_fn(source, response_of(r), truth, info)
        except ValueError as exc:  # unknown data_source: a data error, not a wrong answer
            rep.dropped[f"not scorable: {exc}"[:80]] += 1
            continue
        score = result["score"] if isinstance(result, Mapping) else float(result)
        if score >= min_score:
            kept.append(r)
        else:
            rep.dropped["wrong"] += 1
    rep.kept = len(kept)
    return kept, rep


def reward_model_filter(
    records: Iterable[Record],
    scorer: RecordScorer,
    *,
    threshold: float | None = None,
    top_fraction: float | None = None,
    unverifiable_only: bool = True,
) -> tuple[list[Record], StepReport]:
    """Keep records a reward model scores well: at or above ``threshold``, or the best
    ``top_fraction`` of them (exactly one of the two). ``scorer`` maps a batch of records to
    one score each: :class:`rl_training.rewards.vrm.VerifierRewardModel`'s ``record_scorer``, or
    :class:`rl_training.data.reward_model.HFRewardModel`. With ``unverifiable_only`` (default)
    records the rule rewards can check pass through unscored.

    >>> kept, rep = reward_model_filter(
    ...     [{"id": i} for i in range(4)], lambda rs: [r["id"] / 4 for r in rs], top_fraction=0.5)
    >>> [r["id"] for r in kept], str(rep)
    ([2, 3], 'reward-model(top 0.5): kept 2; dropped below the top fraction 2')
    """
    if (threshold is None) == (top_fraction is None):
        raise ConfigError("give exactly one of threshold and top_fraction")
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ConfigError(f"top_fraction must be in (0, 1], got {top_fraction}")
    rule = f"threshold {threshold}" if threshold is not None else f"top {top_fraction}"
    rep = StepReport(f"reward-model({rule})")
    items = list(records)
    judged = [i for i, r in enumerate(items) if not (unverifiable_only and verifiable(r))]
    scores = list(scorer([items[i] for i in judged])) if judged else []
    if len(scores) != len(judged):
        raise ConfigError(f"the scorer returned {len(scores)} scores for {len(judged)} records")
    keep = set(range(len(items))) - set(judged)
    rep.passed = len(keep)
    if threshold is not None:
        for i, s in zip(judged, scores, strict=True):
            if s >= threshold:
                keep.add(i)
            else:
                rep.dropped["below threshold"] += 1
    else:
        assert top_fraction is not None
        n = round(len(judged) * top_fraction)
        order = sorted(zip(judged, scores, strict=True), key=lambda p: (-p[1], p[0]))
        keep.update(i for i, _ in order[:n])
        if len(judged) - n:
            rep.dropped["below the top fraction"] += len(judged) - n
    kept = [items[i] for i in sorted(keep)]
    rep.kept = len(kept)
    return kept, rep
