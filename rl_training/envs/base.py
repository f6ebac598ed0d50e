"""What the environments share: search backends, the trajectory with its inserted spans, and
the token-level loss mask."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from retrieval.errors import ServiceError


@dataclass(frozen=True)
class Doc:
    """A retrieved passage as the environment shows it."""

    title: str
    text: str
    doc_id: str = ""


def format_docs(docs: Sequence[Doc], max_chars: int) -> str:
    """Passages as the Search-R1 protocol shows them ('No results.' when there are none).

    >>> format_docs([Doc("Aspirin trial", "Aspirin lowered events.")], 12)
    'Doc 1(Title: Aspirin trial) Aspirin lowe'
    """
    text = "\n".join(
        f"Doc {i}(Title: {d.title}) {d.text[:max_chars]}" for i, d in enumerate(docs, 1)
    )
    return text or "No results."


class DocSearch(Protocol):
    """Top-k passages for a query."""

    def __call__(self, query: str, k: int) -> Sequence[Doc]: ...


class SearcherBackend:
    """In-process: an open :class:`retrieval.search.Searcher`."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher

    def __call__(self, query: str, k: int) -> list[Doc]:
        hits = self.searcher.search(query, k=k)
        return [
            Doc(h.title or (f"PMID {h.pmid}" if h.pmid else h.doc_id), h.text, h.doc_id)
            for h in hits
        ]


class HTTPBackend:
    """The search service's ``POST /retrieve`` (``evidex serve-search``).

    ``api_key`` (default: ``$EVIDEX_SEARCH_API_KEY``) is sent as a bearer token to a service
    with ``service.api_keys``."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 30.0,
        client: httpx.Client | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        key = api_key or os.environ.get("EVIDEX_SEARCH_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def __call__(self, query: str, k: int) -> list[Doc]:
        resp = self._client.post(
            f"{self.url}/retrieve", json={"queries": [query], "topk": k, "return_scores": False}
        )
        if resp.status_code != 200:
            raise ServiceError(
                f"search service {self.url} answered {resp.status_code}: {resp.text[:200]}"
            )
        docs = resp.json()["result"][0]
        return [
            Doc(d.get("title", ""), d["contents"].split("\n", 1)[-1], d.get("doc_id", ""))
            for d in docs
        ]

    def close(self) -> None:
        self._client.close()


@dataclass
class Trajectory:
    """The episode's text as (segment, written-by-the-model) pairs after the prompt."""

    segments: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, text: str, by_model: bool) -> None:
        if text:
            self.segments.append((text, by_model))

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)

    @property
    def model_text(self) -> str:
        return "".join(t for t, m in self.segments if m)

    def tokens_and_mask(self, tokenizer: Any) -> tuple[list[int], list[int]]:
        """Token ids of the trajectory and a loss mask: 1 on tokens the model wrote, 0 on the
        environment's observations (retrieved text, findings), which must not be trained on.
        Each segment is tokenized alone, so no token straddles a boundary.

        >>> class Chars:
        ...     def encode(self, text, add_special_tokens=False): return [ord(c) for c in text]
        >>> t = Trajectory([("ab", True), ("<i>", False), ("c", True)])
        >>> t.tokens_and_mask(Chars())[1]
        [1, 1, 0, 0, 0, 1]
        """
        ids: list[int] = []
        mask: list[int] = []
        for text, by_model in self.segments:
            seg = tokenizer.encode(text, add_special_tokens=False)
            ids.extend(seg)
            mask.extend([1 if by_model else 0] * len(seg))
        return ids, mask


@dataclass(frozen=True)
class StepResult:
    observation: str
    """Text the environment appends after the model's action ('' when done)."""
    done: bool
    reward: float | None = None
    """Set when the episode ends."""
    info: dict[str, Any] = field(default_factory=dict)
