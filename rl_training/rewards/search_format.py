"""Format reward for the search protocol (Search-R1 style, used by the search environment).

A trajectory is reasoning in ``<think>...</think>``, any number of
``<search>query</search>`` calls each answered by the environment's
``<information>...</information>``, and exactly one final ``<answer>...</answer>`` with
nothing after it. Tags may not nest (retrieved text inside ``<information>`` is not checked).
"""

from __future__ import annotations

import re

TAGS = ("think", "search", "information", "answer")
_TAG = re.compile(r"</?([a-zA-Z_]+)>")
_INFO = re.compile(r"<information>.*?</information>", re.S)


def search_format_problem(trajectory: str) -> str | None:
    """What is wrong with a trajectory's tags, or None when it is well formed.

    >>> ok = "<think>need data</think><search>aspirin stroke</search>"
    >>> ok += "<information>Doc 1 ...</information><think>so yes</think><answer>yes</answer>"
    >>> search_format_problem(ok) is None
    True
    >>> search_format_problem("<think>x</think><answer>a</answer><answer>b</answer>")
    'more than one answer'
    >>> search_format_problem("<think>x</think><answer>a</answer> more")
    'text after the answer'
    >>> search_format_problem("<think>x<search>q</search></think><answer>a</answer>")
    'search inside think'
    >>> search_format_problem("<think>x</think><search>q</search><answer>a</answer>")
    'search without information'
    """
    text = _INFO.sub("<information></information>", trajectory)
    if not text.lstrip().startswith("<think>"):
        return "does not start with <think>"
    open_tag: str | None = None
    start = 0
    last_closed: str | None = None
    answers = 0
    for m in _TAG.finditer(text):
        name, closing = m.group(1).lower(), m.group(0).startswith("</")
        if name not in TAGS:
            return f"unknown tag <{name}>"
        if not closing:
            if open_tag is not None:
                return f"{name} inside {open_tag}"
            if name == "information" and last_closed != "search":
                return "information without a search"
            if last_closed == "search" and name != "information":
                return "search without information"
            if last_closed == "answer":
                return "more than one answer" if name == "answer" else "text after the answer"
            between = text[start : m.start()].strip()
            if between:
                return f"text outside tags before <{name}>"
            open_tag, start = name, m.end()
        else:
            if open_tag != name:
                return f"</{name}> without <{name}>"
            body = text[start : m.start()].strip()
            if name in ("search", "answer") and not body:
                return f"empty {name}"
            if name == "answer":
                answers += 1
            open_tag, last_closed, start = None, name, m.end()
    if open_tag is not None:
        return f"unclosed <{open_tag}>"
    if last_closed == "search":
        return "search without information"
    if answers == 0:
        return "no answer"
    if text[start:].strip():
        return "text after the answer"
    return None


def search_format_reward(trajectory: str) -> float:
    """1.0 for a well-formed trajectory, else 0.0.

    >>> search_format_reward("<think>easy</think><answer>B</answer>")
    1.0
    >>> search_format_reward("<answer>B</answer>")
    0.0
    """
    return 0.0 if search_format_problem(trajectory) else 1.0


def answer_of(trajectory: str) -> str | None:
    """The content of the last ``<answer>`` block, or None.

    >>> answer_of("<think>t</think><answer> \\\\boxed{B} </answer>")
    '\\\\boxed{B}'
    """
    found = re.findall(r"<answer>(.*?)</answer>", _INFO.sub("", trajectory), re.S)
    return found[-1].strip() if found else None
