"""verl tools (``BaseTool``) for the agentic stages; needs verl (the ``train`` extra).

- :class:`EvidexSearchTool` (``search``): evidex retrieval through the search service's
  ``/retrieve`` (``evidex serve-search``), for search-augmented QA (S4).
- :class:`ExamRequestTool` (``request_exam``): the diagnostic chain's environment agent; the
  case comes per sample through ``tools_kwargs.request_exam.create_kwargs.case``.

verl's tool agent creates, executes and releases a tool instance per call, so each call gets
its state from ``create_kwargs``. :func:`tool_config` writes the YAML verl reads
(``actor_rollout_ref.rollout.multi_turn.tool_config_path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse

from retrieval.errors import ConfigError
from rl_training.envs.base import HTTPBackend, format_docs
from rl_training.envs.diagnosis import Case

SEARCH_SCHEMA = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search PubMed abstracts and clinical guidelines; returns the top passages.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query."}},
            "required": ["query"],
        },
    },
}
EXAM_SCHEMA = {
    "type": "function",
    "function": {
        "name": "request_exam",
        "description": "Request one physical examination or test for the patient by name; "
        "returns its findings, or says it is not available.",
        "parameters": {
            "type": "object",
            "properties": {"name": {"type": "string", "description": "e.g. complete blood count"}},
            "required": ["name"],
        },
    },
}


class EvidexSearchTool(BaseTool):
    """Top-k evidex passages for a query, formatted as Search-R1 documents."""

    def __init__(self, config: dict[str, Any], tool_schema: OpenAIFunctionToolSchema | None):
        super().__init__(
            config, tool_schema or OpenAIFunctionToolSchema.model_validate(SEARCH_SCHEMA)
        )
        url = config.get("retrieval_url")
        if not url:
            raise ConfigError("the search tool needs config.retrieval_url (evidex serve-search)")
        self.backend = HTTPBackend(str(url), timeout_s=float(config.get("timeout_s", 30)))
        self.topk = int(config.get("topk", 3))
        self.max_chars = int(config.get("max_passage_chars", 600))

    async def create(
        self, instance_id: str | None = None, **kwargs: Any
    ) -> tuple[str, ToolResponse]:
        return instance_id or str(uuid4()), ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict[str, Any]]:
        query = str(parameters.get("query", "")).strip()
        if not query:
            return ToolResponse(text="Give a non-empty query."), 0.0, {"empty_query": 1}
        try:
            docs = self.backend(query, self.topk)
        except Exception as exc:  # the rollout goes on; the model sees why
            return ToolResponse(text=f"Search failed: {exc}"), 0.0, {"search_error": 1}
        text = format_docs(docs, self.max_chars)
        return ToolResponse(text=text), 0.0, {"results": len(docs)}


class ExamRequestTool(BaseTool):
    """Findings of the requested examination or test from the sample's case."""

    def __init__(self, config: dict[str, Any], tool_schema: OpenAIFunctionToolSchema | None):
        super().__init__(
            config, tool_schema or OpenAIFunctionToolSchema.model_validate(EXAM_SCHEMA)
        )
        self._cases: dict[str, Case] = {}

    async def create(
        self, instance_id: str | None = None, **kwargs: Any
    ) -> tuple[str, ToolResponse]:
        instance_id = instance_id or str(uuid4())
        create = kwargs.get("create_kwargs") or {}
        record = create.get("case")
        if record is None and create.get("case_json"):
            record = json.loads(create["case_json"])
        if record is None:
            raise ConfigError(
                "request_exam needs tools_kwargs.request_exam.create_kwargs.case_json (the case)"
            )
        self._cases[instance_id] = Case.from_record(record)
        return instance_id, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[ToolResponse, float, dict[str, Any]]:
        text, found = self._cases[instance_id].answer(str(parameters.get("name", "")))
        return ToolResponse(text=text), 0.0, {"found": int(found)}

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._cases.pop(instance_id, None)


def tool_config(
    out: Path, retrieval_url: str | None = None, topk: int = 3, exams: bool = False
) -> Path:
    """Write verl's tool-config YAML for the search tool and/or the exam tool."""
    import yaml

    tools: list[dict[str, Any]] = []
    if retrieval_url:
        tools.append(
            {
                "class_name": f"{__name__}.EvidexSearchTool",
                "config": {"type": "native", "retrieval_url": retrieval_url, "topk": topk},
                "tool_schema": SEARCH_SCHEMA,
            }
        )
    if exams:
        tools.append(
            {
                "class_name": f"{__name__}.ExamRequestTool",
                "config": {"type": "native"},
                "tool_schema": EXAM_SCHEMA,
            }
        )
    if not tools:
        raise ConfigError("no tools: give a retrieval URL and/or exams=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump({"tools": tools}, sort_keys=False))
    return out
