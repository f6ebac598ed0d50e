"""The chat-model boundary shared by the planner, the answer generator and rl_training.

The planner owns the :class:`ChatModel` protocol because it is the lowest package that talks
to a language model; the implementations (an OpenAI-compatible HTTP client and the embedded
llama.cpp model) live in :mod:`answer.llm` and are handed in.

Reasoning models write ``<think>...</think>`` before their answer. :func:`split_reasoning`
keeps that text apart so it is shown on demand and never parsed as the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import ServiceError


class ChatMessage(BaseModel):
    """One turn of a conversation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"] = Field(description="Who speaks.")
    content: str = Field(description="What is said.")


class ChatResult(BaseModel):
    """A finished completion: the answer text apart from any reasoning, and its cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(description="The answer, without <think> reasoning.")
    reasoning: str = Field("", description="Text the model wrote inside <think>...</think>.")
    model: str = Field(description="The model that answered.")
    prompt_tokens: int = Field(0, ge=0, description="Tokens read.")
    completion_tokens: int = Field(0, ge=0, description="Tokens written.")
    finish_reason: str | None = Field(None, description="'stop', 'length', ...")
    seconds: float = Field(0.0, ge=0, description="Wall time of the request.")


class ChatError(ServiceError):
    """The chat model could not answer (endpoint down, timeout, load failure).

    The message says what failed and what to check; callers fall back where they can.
    """


@runtime_checkable
class ChatModel(Protocol):
    """A chat model: messages in; text, streamed tokens and token usage out."""

    @property
    def name(self) -> str:
        """Model name shown to users and recorded in answers."""
        ...

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        """The whole completion. Raises :class:`ChatError`.

        ``json_schema`` asks for a JSON reply of that shape (constrained decoding where the
        backend supports it; callers still validate the reply).
        """
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str | ChatResult]:
        """Raw text pieces as they are generated, then one final :class:`ChatResult`."""
        ...


_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)


def split_reasoning(text: str) -> tuple[str, str]:
    """Split a completion into (reasoning, answer).

    >>> split_reasoning("<think>weigh the trials</think>Aspirin helps [1].")
    ('weigh the trials', 'Aspirin helps [1].')
    >>> split_reasoning("No reasoning here.")
    ('', 'No reasoning here.')
    >>> split_reasoning("<think>cut off before the answer")
    ('cut off before the answer', '')
    >>> split_reasoning("chat template opened it</think> Answer.")  # <think> in the prompt
    ('chat template opened it', 'Answer.')
    """
    if "<think>" not in text and "</think>" in text:
        head, _, tail = text.partition("</think>")
        return head.strip(), tail.strip()
    reasoning = [m.group(1).strip() for m in _THINK.finditer(text)]
    answer = _THINK.sub("", text)
    return "\n".join(r for r in reasoning if r), answer.strip()


class ReasoningFilter:
    """Incremental :func:`split_reasoning` for streams: feed pieces, get answer text out.

    >>> f = ReasoningFilter()
    >>> "".join(f.feed(p) for p in ["<thi", "nk>hmm</th", "ink>Yes", " [1]."]) + f.flush()
    'Yes [1].'
    >>> f.reasoning
    'hmm'
    """

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False
        self._reasoning: list[str] = []

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning).strip()

    def feed(self, piece: str) -> str:
        """Answer text that is certain so far (reasoning and partial tags held back)."""
        self._buf += piece
        out: list[str] = []
        while self._buf:
            tag = "</think>" if self._inside else "<think>"
            pos = self._buf.find(tag)
            if pos >= 0:
                (self._reasoning if self._inside else out).append(self._buf[:pos])
                self._buf = self._buf[pos + len(tag) :]
                self._inside = not self._inside
                continue
            # Keep a suffix that could be the start of the tag.
            keep = next(
                (
                    n
                    for n in range(min(len(tag) - 1, len(self._buf)), 0, -1)
                    if tag.startswith(self._buf[-n:])
                ),
                0,
            )
            emit, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            (self._reasoning if self._inside else out).append(emit)
            break
        return "".join(out)

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        if self._inside:
            self._reasoning.append(rest)
            return ""
        return rest
