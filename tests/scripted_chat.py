"""A scripted chat model for unit tests of the logic around a model (parsing, repair,
fallbacks, verification). The real models are tested in tests/answer/test_llm.py and the
end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from planner.chat import ChatError, ChatMessage, ChatResult, split_reasoning

Reply = str | Exception | Callable[[Sequence[ChatMessage]], str]


class ScriptedChat:
    """Replies from a list (or a function of the messages); records what it was sent."""

    name = "scripted"

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.sent: list[list[ChatMessage]] = []

    def _next(self, messages: Sequence[ChatMessage]) -> str:
        self.sent.append(list(messages))
        if not self.replies:
            raise AssertionError("the scripted chat ran out of replies")
        reply = self.replies[0] if len(self.replies) == 1 else self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply(messages) if callable(reply) else reply

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        reasoning, text = split_reasoning(self._next(messages))
        return ChatResult(
            text=text, reasoning=reasoning, model=self.name, prompt_tokens=10,
            completion_tokens=len(text.split()), finish_reason="stop",
        )  # fmt: skip

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str | ChatResult]:
        raw = self._next(messages)
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]
        reasoning, text = split_reasoning(raw)
        yield ChatResult(text=text, reasoning=reasoning, model=self.name, finish_reason="stop")


__all__ = ["ChatError", "ScriptedChat"]
