"""Pull the final answer out of a model response.

Reasoning models write ``<think>...</think>`` first; the answer is the last ``\\boxed{...}``
after the reasoning (nested braces allowed), or else the text after ``</think>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_THINK = re.compile(r"<think>.*?</think>", re.S)
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def strip_reasoning(text: str) -> str:
    r"""The response without its reasoning.

    >>> strip_reasoning("<think>hmm {</think> The answer is \\boxed{B}.")
    'The answer is \\boxed{B}.'
    >>> strip_reasoning("still thinking <think> no end")
    ''
    """
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1].strip()
    if "<think>" in text:  # reasoning never closed: no answer yet
        return ""
    return _THINK.sub("", text).strip()


def last_boxed(text: str) -> str | None:
    r"""Content of the last well-formed ``\boxed{...}``; None when there is none.

    >>> last_boxed(r"first \boxed{A} then \boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> last_boxed(r"\boxed{unbalanced") is None
    True
    >>> last_boxed("no box") is None
    True
    """
    for m in reversed(list(_BOX.finditer(text))):
        depth, start = 1, m.end()
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def final_answer(response: str) -> str | None:
    r"""The answer a response commits to: the last box after the reasoning, else the text
    after ``</think>``; None for an empty or unfinished response.

    >>> final_answer("<think>A or B?</think>\n\\boxed{B}")
    'B'
    >>> final_answer("<think>x</think> yes")
    'yes'
    >>> final_answer("") is None
    True
    """
    answer = strip_reasoning(response)
    boxed = last_boxed(answer)
    if boxed is not None:
        return boxed
    return answer or None


_LETTER = re.compile(r"(?<![A-Za-z])([A-J])(?![A-Za-z])")


def choice_letters(answer: str, valid: str = "ABCDEFGHIJ") -> frozenset[str]:
    """Option letters named in an answer (one or several).

    >>> sorted(choice_letters("(B)"))
    ['B']
    >>> sorted(choice_letters("A, C and D"))
    ['A', 'C', 'D']
    >>> sorted(choice_letters("ACD"))
    ['A', 'C', 'D']
    >>> sorted(choice_letters("Answer: C. Aspirin"))
    ['C']
    """
    text = answer.strip()
    text = re.sub(
        r"^(the )?(correct )?(answer|option|choice)s?\s*(is|are|:)?\s*", "", text, flags=re.I
    )
    compact = re.sub(r"[\s,;/&()\[\].]|and", "", text)
    if compact and compact.isupper() and set(compact) <= set(valid) and len(compact) <= len(valid):
        return frozenset(compact)
    head = re.split(r"[.:)\]]\s", text, maxsplit=1)[0] if len(text) > 3 else text
    found = {m.group(1) for m in _LETTER.finditer(head) if m.group(1) in valid}
    if not found:
        m = _LETTER.search(text)
        found = {m.group(1)} if m and m.group(1) in valid else set()
    return frozenset(found)


def yes_no_maybe(answer: str) -> str | None:
    """'yes', 'no' or 'maybe' from an answer, or None.

    >>> yes_no_maybe("Yes, it does."), yes_no_maybe("**No**"), yes_no_maybe("unclear")
    ('yes', 'no', None)
    """
    m = re.match(r"\W*(yes|no|maybe)\b", answer.strip(), re.I)
    return m.group(1).lower() if m else None


def micro_f1(pred: frozenset[str], gold: frozenset[str]) -> float:
    """Micro-F1 between predicted and gold option sets (multi-select questions).

    >>> micro_f1(frozenset("AC"), frozenset("ACD"))
    0.8
    >>> micro_f1(frozenset(), frozenset("A"))
    0.0
    """
    if not pred or not gold:
        return 0.0
    tp = len(pred & gold)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(pred), tp / len(gold)
    return 2 * precision * recall / (precision + recall)


def pooled_micro_f1(items: Iterable[tuple[frozenset[str], frozenset[str]]]) -> float:
    """Micro-F1 pooled over items: true positives, false positives and false negatives are
    summed over all (predicted, gold) option sets first (the report's MedReMCQ metric), so an
    item with many options weighs more than in a mean of per-item F1.

    >>> items = [(frozenset("A"), frozenset("AB")), (frozenset("ABC"), frozenset("AB"))]
    >>> pooled_micro_f1(items)  # TP 3, FP 1, FN 1
    0.75
    >>> round(sum(micro_f1(p, g) for p, g in items) / 2, 4)  # the mean of per-item F1 differs
    0.7333
    >>> pooled_micro_f1([])
    0.0
    """
    tp = fp = fn = 0
    for pred, gold in items:
        tp += len(pred & gold)
        fp += len(pred - gold)
        fn += len(gold - pred)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
