"""RAG for ``evidex eval qa`` through the answer pipeline's own stages rather than a separate
retrieval path: the planner's subtasks and queries, the gathered evidence (batched hybrid
search per subtask, fused, scored for relevance to the sub-question, retracted records left
out, taken round-robin across subtasks) - the passages an evidex answer would cite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from answer import gather
from planner.chat import ChatModel
from planner.planner import Planner
from retrieval.search import Searcher
from retrieval.settings import Settings
from retrieval.types import ScoredPassage


class AssistantSearch:
    """A :class:`rl_training.eval.harness.PassageSearch` over the answer pipeline."""

    def __init__(self, settings: Settings, chat: ChatModel | None = None) -> None:
        self.settings = settings
        self.searcher = Searcher(settings)
        self.index = self.searcher.index
        self.planner = Planner(chat, settings.planner)

    def search(self, query: str, k: int | None = None) -> Sequence[Any]:
        a = self.settings.answer
        plan = self.planner.plan(query).plan
        by_sub = gather.retrieve(self.searcher, list(plan.ordered()), None, a.k_per_query)
        if a.exclude_retracted:
            by_sub, _ = gather.drop_retracted(by_sub)
        chosen = gather.select(by_sub, k or a.max_sources)
        out: list[ScoredPassage] = [c.passage for c in chosen if c.relevance >= a.min_relevance]
        return out

    def close(self) -> None:
        self.searcher.close()
