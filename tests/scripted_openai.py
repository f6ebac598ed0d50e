"""A scripted OpenAI-compatible chat server (FastAPI, run on loopback with
``tests.llama_server.serve_app``) for tests that need a *served* model in another process (the
chat in a real browser): it answers by quoting its sources faithfully with citations, and
plants a contradiction when asked for the sources' stances."""

import json
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from answer.consensus import SYSTEM as STANCE_SYSTEM
from answer.injection import block_contents
from answer.verify import split_sentences


def _sources(user: str) -> dict[int, str]:
    block = block_contents(user) or ""
    out: dict[int, str] = {}
    for part in re.split(r"\n\n(?=\[\d+\] )", block):
        m = re.match(r"\[(\d+)\] [^\n]*\n(.*)", part, re.DOTALL)
        if m:
            out[int(m.group(1))] = m.group(2).split("\n\nPatient:")[0]
    return out


def reply(messages: list[dict[str, str]]) -> str:
    """What the scripted model writes for these messages."""
    system, user = messages[0]["content"], messages[-1]["content"]
    if system == STANCE_SYSTEM:  # source 1 supports, every other source contradicts
        shown = [int(n) for n in re.findall(r"^\[(\d+)\] ", user, re.MULTILINE)]
        return json.dumps({"stances": [{"source": n, "stance": "supports" if n == 1
                                        else "contradicts"} for n in shown]})  # fmt: skip
    src = _sources(user)
    picks = [n for n in (1, 2) if n in src]
    return " ".join(f"{max(split_sentences(src[n]), key=len).rstrip('.')} [{n}]." for n in picks)


def create_app() -> Any:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"data": [{"id": "scripted"}]}

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> Any:
        body = await request.json()
        text = reply(body["messages"])
        if not body.get("stream"):
            return JSONResponse({
                "model": "scripted",
                "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split())},
            })  # fmt: skip

        def events() -> Any:
            for word in re.findall(r"\S+\s*", text):
                chunk = {"model": "scripted", "choices": [{"delta": {"content": word}}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            done = {"model": "scripted", "choices": [{"delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
