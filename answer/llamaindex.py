"""evidex inside llama-index apps: a retriever and a cited-answer query engine.

::

    from answer.llamaindex import EvidexQueryEngine, EvidexRetriever

    retriever = EvidexRetriever.from_settings(k=5)          # a llama-index BaseRetriever
    nodes = retriever.retrieve("statins in the elderly")    # NodeWithScore, score parts inside
    engine = EvidexQueryEngine.from_settings()              # a llama-index query engine
    response = engine.query("Do statins prevent strokes in people over 75?")
    print(response.response, response.metadata["answer"]["citations"])

Each node is a ``TextNode`` whose id is the evidex chunk id and whose metadata carries the
document id, title, PMID/DOI/URL, evidence level, the score parts and a one-line reference.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from answer.pipeline import Assistant
from answer.types import Answer
from retrieval.search import FiltersLike, Searcher
from retrieval.settings import Settings
from retrieval.types import ScoredPassage


def reference_line(p: ScoredPassage) -> str:
    """'Title. Journal. 2020. PMID 123. https://...' for a passage."""
    ident = f"PMID {p.pmid}" if p.pmid else f"DOI {p.doi}" if p.doi else p.doc_id
    bits = [p.title or p.doc_id, p.journal or "", str(p.year or ""), ident, p.url or ""]
    return ". ".join(b for b in bits if b)


def to_node(p: ScoredPassage, marker: int | None = None) -> NodeWithScore:
    """A llama-index node for an evidex passage."""
    meta: dict[str, Any] = {
        "doc_id": p.doc_id,
        "title": p.title,
        "section": p.section,
        "source": p.source,
        "pmid": p.pmid,
        "doi": p.doi,
        "year": p.year,
        "journal": p.journal,
        "url": p.url,
        "evidence_level": p.evidence_level,
        "score_parts": dict(p.score_parts),
        "reference": reference_line(p),
    }
    if marker is not None:
        meta["marker"] = marker
    node = TextNode(
        id_=p.chunk_id,
        text=p.text,
        metadata=meta,
        excluded_embed_metadata_keys=list(meta),
        excluded_llm_metadata_keys=[k for k in meta if k not in ("title", "reference")],
    )
    return NodeWithScore(node=node, score=p.score)


class EvidexRetriever(BaseRetriever):
    """evidex hybrid search as a llama-index retriever."""

    def __init__(
        self, searcher: Searcher, k: int | None = None, filters: FiltersLike = None
    ) -> None:
        super().__init__()
        self.searcher = searcher
        self.k = k
        self.filters = filters

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, k: int | None = None, filters: FiltersLike = None
    ) -> EvidexRetriever:
        return cls(Searcher(settings), k=k, filters=filters)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.searcher.search(query_bundle.query_str, k=self.k, filters=self.filters,
                                    rerank=True)  # fmt: skip
        return [to_node(p) for p in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self.searcher.asearch(query_bundle.query_str, k=self.k,
                                           filters=self.filters, rerank=True)  # fmt: skip
        return [to_node(p) for p in hits]


class EvidexQueryEngine(CustomQueryEngine):
    """The cited-answer pipeline as a llama-index query engine.

    ``response.source_nodes`` are the numbered sources (metadata ``marker`` = the [n] used in
    the text); ``response.metadata["answer"]`` is the whole :class:`~answer.types.Answer`.
    """

    assistant: Any
    filters: Any = None

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, filters: FiltersLike = None, **kwargs: Any
    ) -> EvidexQueryEngine:
        return cls(assistant=Assistant(settings, **kwargs), filters=filters)

    def _response(self, answer: Answer) -> Response:
        nodes = [to_node(p, n) for n, p in enumerate(answer.passages, 1)]
        return Response(
            response=answer.text,
            source_nodes=nodes,
            metadata={
                "answer": answer.model_dump(mode="json"),
                "abstained": answer.abstained,
                "notice": answer.notice,
            },
        )

    def custom_query(self, query_str: str) -> Response:
        return self._response(self.assistant.ask(query_str, filters=self.filters))

    async def acustom_query(self, query_str: str) -> Response:
        return self._response(await self.assistant.aask(query_str, filters=self.filters))
