"""evidex's one error family.

Every error evidex raises on purpose derives from :class:`EvidexError`, so a caller (the
command line, the chat, an application) catches one class and shows its message; anything
else is a bug and keeps its traceback. Each kind also keeps the standard base that callers
already rely on (``ValueError`` for bad input and settings, ``RuntimeError`` for a part that
cannot work), as qdrant-client's ``QdrantException`` and haystack's per-area roots do.

The areas subclass these kinds: :class:`retrieval.stores.base.StoreError`,
:class:`retrieval.settings.SettingsError`, :class:`planner.chat.ChatError`,
:class:`answer.pipeline.AnswerError`, :class:`rl_training.train.merge.MergeError`, ...

>>> issubclass(InputError, EvidexError) and issubclass(InputError, ValueError)
True
>>> UsageError("--mode must be dense, sparse or hybrid").exit_code
2
>>> try:
...     raise InputError("corpus.jsonl:3: not JSON")
... except EvidexError as exc:
...     print(exc.exit_code, exc)
1 corpus.jsonl:3: not JSON
"""

from __future__ import annotations

from typing import ClassVar


class EvidexError(Exception):
    """The root of every error evidex raises: the message says what failed, where, and what
    to do. ``exit_code`` is what the command line exits with (1; 2 for usage errors)."""

    exit_code: ClassVar[int] = 1


class UsageError(EvidexError, ValueError):
    """A command or call was asked for something it cannot do (a bad option value, options
    that exclude each other)."""

    exit_code: ClassVar[int] = 2


class InputError(EvidexError, ValueError):
    """An input (file, folder, record, query) cannot be used; the message says which and why."""


class ConfigError(EvidexError, ValueError):
    """A configuration (settings, a training stage, a job's parameters) is invalid."""


class ServiceError(EvidexError, RuntimeError):
    """A part evidex needs cannot work right now (a model endpoint, a store, a library)."""


class StateError(EvidexError, RuntimeError):
    """An object was used out of order (e.g. an environment stepped before ``reset``)."""
