"""evidex plugged into llama-index: its own query-engine and retriever machinery drives ours."""

from __future__ import annotations

import pytest
from llama_index.core import Settings as LlamaSettings
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import ResponseMode
from llama_index.core.schema import NodeWithScore

from answer import Assistant
from answer.llamaindex import EvidexQueryEngine, EvidexRetriever
from retrieval.search import Searcher
from tests.answer.test_pipeline import faithful
from tests.answer_fixture import AnswerIndex
from tests.scripted_chat import ScriptedChat


def test_retriever_nodes_carry_passage_score_parts_and_reference(
    answer_index: AnswerIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Searcher(answer_index.settings()) as s:
        retriever = EvidexRetriever(s, k=3, filters={"sources": ["beir"]})
        nodes = retriever.retrieve(answer_index.question)
        assert 1 <= len(nodes) <= 3 and all(isinstance(n, NodeWithScore) for n in nodes)
        top = nodes[0]
        assert top.node.metadata["pmid"] == answer_index.pmid
        assert {"dense", "bm25", "final"} <= set(top.node.metadata["score_parts"])
        assert f"PMID {answer_index.pmid}" in top.node.metadata["reference"]
        assert top.score is not None and top.node.get_content()  # text, not metadata
        # llama-index's own query engine over our retriever (no LLM: it returns the nodes)
        monkeypatch.setattr(LlamaSettings, "_llm", MockLLM())  # no OpenAI default
        engine = RetrieverQueryEngine.from_args(retriever, response_mode=ResponseMode.NO_TEXT)
        resp = engine.query(answer_index.question)
        assert [n.node.node_id for n in resp.source_nodes] == [n.node.node_id for n in nodes]


def test_query_engine_returns_the_cited_answer(answer_index: AnswerIndex) -> None:
    assistant = Assistant(answer_index.settings(), chat=ScriptedChat(faithful))
    try:
        engine = EvidexQueryEngine(assistant=assistant)
        resp = engine.query(answer_index.question)
        answer = resp.metadata["answer"]
        assert resp.response == answer["text"] and "[1]" in str(resp.response)
        assert not resp.metadata["abstained"] and resp.metadata["notice"]
        cited = {c["chunk_id"] for c in answer["citations"]}
        by_id = {n.node.node_id: n for n in resp.source_nodes}
        assert cited <= set(by_id)
        assert by_id[answer["citations"][0]["chunk_id"]].node.metadata["marker"] == 1
    finally:
        assistant.close()
