"""Chat backends: the embedded model in-process, the same model behind llama.cpp's real
OpenAI-compatible server, and a loopback server that misbehaves on purpose (faults)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from answer.llm import LlamaCppChat, OpenAIChat, load_chat
from planner.chat import ChatError, ChatMessage, ChatResult
from retrieval.settings import LLMSettings
from tests.llama_server import free_port

MSGS = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="Name one organ of the human body."),
]


def test_embedded_model_completes_and_streams() -> None:
    chat = load_chat(LLMSettings(context_tokens=2048, threads=2))
    assert isinstance(chat, LlamaCppChat) and "SmolLM2" in chat.name
    res = chat.complete(MSGS, max_tokens=24)
    assert res.text.strip() and res.completion_tokens > 0 and res.prompt_tokens > 0
    pieces = list(chat.stream(MSGS, max_tokens=24))
    final = pieces[-1]
    assert isinstance(final, ChatResult)
    assert "".join(p for p in pieces[:-1] if isinstance(p, str)).strip() == final.text
    assert load_chat(LLMSettings(context_tokens=2048, threads=2)) is chat  # loaded once


def test_embedded_model_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ChatError, match="not a file"):
        LlamaCppChat(LLMSettings(model_path=tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ChatError, match="cannot load"):
        LlamaCppChat(LLMSettings(model_path=bad)).complete(MSGS)
    chat = LlamaCppChat(LLMSettings(context_tokens=512, threads=2))
    with pytest.raises(ChatError, match="context"):
        chat.complete([ChatMessage(role="user", content="word " * 600)], max_tokens=16)


def test_openai_backend_against_a_real_llama_cpp_server(llama_server: str) -> None:
    chat = OpenAIChat(LLMSettings(kind="openai", base_url=llama_server, model="smollm2",
                                  api_key="secret-token", max_tokens=24))  # fmt: skip
    res = chat.complete(MSGS)
    assert res.text.strip() and res.completion_tokens > 0 and res.prompt_tokens > 0
    pieces = list(chat.stream(MSGS, max_tokens=24))
    assert isinstance(pieces[-1], ChatResult)
    streamed = "".join(p for p in pieces[:-1] if isinstance(p, str))
    assert streamed.strip() and pieces[-1].text == streamed.strip()
    schema = {"type": "object", "properties": {"organ": {"type": "string"}}, "required": ["organ"]}
    res = chat.complete(MSGS, json_schema=schema, max_tokens=40)
    assert res.text  # the server accepted or the client retried without the schema
    chat.close()


class _Faulty:
    """A loopback OpenAI-compatible server scripted per request."""

    def __init__(self, script: list[tuple[int, object] | str]) -> None:
        self.script = script
        self.bodies: list[dict[str, object]] = []
        self.auth: list[str | None] = []

    def __enter__(self) -> str:
        import http.server

        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(n)))
                outer.auth.append(self.headers.get("Authorization"))
                step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if step == "hang":
                    time.sleep(3)
                    return
                status, body = step  # type: ignore[misc]
                if isinstance(body, list):  # server-sent events
                    self.send_response(status)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for ev in body:
                        self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                raw = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def _ok(content: str, **msg: object) -> tuple[int, object]:
    choice = {"message": {"content": content, **msg}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 5, "completion_tokens": 3}
    return 200, {"model": "wingpt", "choices": [choice], "usage": usage}


def _settings(url: str, **kw: object) -> LLMSettings:
    return LLMSettings(kind="openai", base_url=url, model="wingpt", backoff_s=0.01, **kw)  # type: ignore[arg-type]


def test_retries_on_5xx_then_succeeds_and_splits_reasoning() -> None:
    with _Faulty([(503, "overloaded"), _ok("<think>check trials</think>Yes [1].")]) as url:
        res = OpenAIChat(_settings(url, api_key="k")).complete(MSGS)
    assert res.text == "Yes [1]." and res.reasoning == "check trials" and res.model == "wingpt"


def test_reasoning_content_field_and_streamed_reasoning() -> None:
    with _Faulty([_ok("Answer.", reasoning_content="server-side thoughts")]) as url:
        res = OpenAIChat(_settings(url)).complete(MSGS)
    assert res.text == "Answer." and res.reasoning == "server-side thoughts"
    events = [
        {"choices": [{"delta": {"reasoning_content": "hmm "}}]},
        {"choices": [{"delta": {"content": "Ans"}}]},
        {"choices": [{"delta": {"content": "wer."}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
    ]
    with _Faulty([(200, events)]) as url:
        out = list(OpenAIChat(_settings(url)).stream(MSGS))
    assert out[:2] == ["Ans", "wer."]
    final = out[-1]
    assert isinstance(final, ChatResult) and final.reasoning == "hmm" and final.prompt_tokens == 7


def test_a_server_without_constrained_decoding_is_asked_again_plainly() -> None:
    fake = _Faulty([(400, "response_format not supported"), _ok('{"a": 1}')])
    with fake as url:
        res = OpenAIChat(_settings(url)).complete(MSGS, json_schema={"type": "object"})
    assert res.text == '{"a": 1}'
    assert "response_format" in fake.bodies[0] and "response_format" not in fake.bodies[1]


def test_faults_are_chat_errors_that_say_what_to_check() -> None:
    with _Faulty([(401, "bad key")]) as url, pytest.raises(ChatError, match="HTTP 401"):
        OpenAIChat(_settings(url)).complete(MSGS)
    with _Faulty([(500, "boom")]) as url, pytest.raises(ChatError, match="3 attempts"):
        OpenAIChat(_settings(url, retries=2)).complete(MSGS)
    with _Faulty([(200, "not json")]) as url, pytest.raises(ChatError, match="not a chat"):
        OpenAIChat(_settings(url)).complete(MSGS)
    with _Faulty(["hang"]) as url, pytest.raises(ChatError, match="did not answer within"):
        OpenAIChat(_settings(url, timeout_s=0.5)).complete(MSGS)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ChatError, match="cannot reach"):
        OpenAIChat(_settings(dead, retries=1)).complete(MSGS)
    with pytest.raises(ChatError, match="base_url"):
        OpenAIChat(LLMSettings(kind="openai"))
