"""``compute_score``: verl's ``custom_reward_function`` for every task evidex exports.

``data_source`` names the task (``evidex/medqa``, ``medmcqa``, ``mmlu_med``, ``cmexam``,
``cmmlu``, ``pubmedqa``, ``medcalc``, ``math``; the ``evidex/`` prefix is optional). The
result is a dict with ``score`` (what verl optimizes), ``acc`` and ``pred`` (the extracted answer).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from retrieval.errors import InputError
from rl_training.rewards.extract import choice_letters, final_answer, micro_f1, yes_no_maybe
from rl_training.rewards.medcalc import medcalc_correct

MCQ = {"medqa", "medmcqa", "mmlu_med", "mmlu", "cmexam", "cmmlu"}


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    r"""Score one response against its ground truth.

    >>> compute_score("evidex/medqa", "<think>...</think> \\boxed{C}", "C")["score"]
    1.0
    >>> compute_score("cmexam", "\\boxed{AC}", "ACD")["score"]
    0.8
    >>> compute_score("pubmedqa", "\\boxed{maybe}", "no")["score"]
    0.0
    """
    task = data_source.split("/", 1)[-1].lower()
    answer = final_answer(solution_str or "")
    if answer is None:
        return {"score": 0.0, "acc": False, "pred": None}
    if task in MCQ:
        gold = choice_letters(str(ground_truth))
        pred = choice_letters(answer)
        score = micro_f1(pred, gold) if len(gold) > 1 else float(pred == gold)
        return {"score": score, "acc": pred == gold, "pred": "".join(sorted(pred))}
    if task == "pubmedqa":
        pred_ynm = yes_no_maybe(answer)
        ok = pred_ynm == str(ground_truth).strip().lower()
        return {"score": float(ok), "acc": ok, "pred": pred_ynm}
    if task == "medcalc":
        info = dict(extra_info or {})
        ok = medcalc_correct(
            answer,
            str(ground_truth),
            info.get("lower_limit", ground_truth),
            info.get("upper_limit", ground_truth),
            str(info.get("output_type", "decimal")),
            info.get("calculator_id"),
        )
        return {"score": float(ok), "acc": ok, "pred": answer}
    if task == "math":  # MATH-500 style: mathematical equivalence (math-verify)
        ok = math_equivalent(answer, str(ground_truth))
        return {"score": float(ok), "acc": ok, "pred": answer}
    if task == "diagnosis":  # the diagnostic chain without a judge: normalized exact match
        from rl_training.envs.diagnosis import normalize_diagnosis

        ok = normalize_diagnosis(answer) == normalize_diagnosis(str(ground_truth))
        return {"score": float(ok), "acc": ok, "pred": answer}
    raise InputError(
        f"unknown data_source {data_source!r}: expected one of "
        f"{sorted(MCQ | {'pubmedqa', 'medcalc', 'diagnosis', 'math'})}"
    )


def math_equivalent(predicted: str, gold: str) -> bool:
    r"""Whether two answers are mathematically equivalent, by Hugging Face's math-verify
    (LaTeX and plain expressions parsed to SymPy; no signal-based timeouts, so it runs in
    worker threads).

    >>> math_equivalent("\\frac{1}{2}", "0.5"), math_equivalent("2\\sqrt{2}", "\\sqrt{8}")
    (True, True)
    >>> math_equivalent("x^2+1", "(x+1)^2")
    False
    """
    try:
        from math_verify import parse, verify
    except ImportError as exc:  # the [train] extra brings it
        raise InputError(
            "scoring math answers needs math-verify: pip install 'evidex[train]'"
        ) from exc

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" notes

    def expr(text: str) -> list[Any]:
        return list(parse(f"${text}$", parsing_timeout=None))

    gold_e, pred_e = expr(gold), expr(predicted)
    if not gold_e or not pred_e:
        return " ".join(predicted.split()) == " ".join(gold.split())
    return bool(verify(gold_e, pred_e, timeout_seconds=None))
