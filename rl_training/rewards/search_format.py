"""Format rewards for the search protocol (Search-R1 style, used by the search environment)
and for tool-calling episodes (TRL's ``environment_factory``, verl's tool agent).

A trajectory is reasoning in ``<think>...</think>``, any number of
``<search>query</search>`` calls each answered by the environment's
``<information>...</information>``, and exactly one final ``<answer>...</answer>`` with
nothing after it. Tags may not nest (retrieved text inside ``<information>`` is not checked).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

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


def tool_call_problem(messages: Sequence[Mapping[str, Any]]) -> str | None:
    r"""What is wrong with a tool-calling episode (the messages after the prompt: assistant
    turns with parsed ``tool_calls``, and the tools' answers), or None when it is well formed:
    every call parsed and succeeded, and the last assistant turn gives a ``\boxed{}`` answer.

    >>> call = {"type": "function", "function": {"name": "search", "arguments": {"query": "q"}}}
    >>> ok = [{"role": "assistant", "content": "", "tool_calls": [call]},
    ...       {"role": "tool", "name": "search", "content": "Doc 1(Title: T) text"},
    ...       {"role": "assistant", "content": "<think>so</think> \\boxed{yes}"}]
    >>> tool_call_problem(ok) is None
    True
    >>> tool_call_problem(ok[:2])
    'ended without an answer'
    >>> tool_call_problem([{"role": "assistant", "content": "<tool_call>{bad</tool_call>"}])
    'malformed tool call'
    >>> tool_call_problem([ok[0], {"role": "tool", "content": "{'error': 'Tool x not found.'}"},
    ...                    ok[2]])
    'failed tool call'
    >>> tool_call_problem([{"role": "assistant", "content": "yes"}])
    'no boxed answer'
    """
    from rl_training.rewards.extract import last_boxed, strip_reasoning

    if not messages or messages[-1].get("role") != "assistant" or messages[-1].get("tool_calls"):
        return "ended without an answer"
    for m in messages:
        content = m.get("content")
        text = content if isinstance(content, str) else str(content or "")
        if m.get("role") == "assistant" and "<tool_call>" in text:
            return "malformed tool call"
        if m.get("role") == "tool" and text.startswith("{'error'"):
            return "failed tool call"
    if last_boxed(strip_reasoning(str(messages[-1].get("content") or ""))) is None:
        return "no boxed answer"
    return None


def tool_call_reward(messages: Sequence[Mapping[str, Any]]) -> float:
    r"""1.0 for a well-formed tool-calling episode (see :func:`tool_call_problem`), else 0.0.

    >>> tool_call_reward([{"role": "assistant", "content": "\\boxed{B}"}])
    1.0
    """
    return 0.0 if tool_call_problem(messages) else 1.0
