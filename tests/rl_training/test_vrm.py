"""The verifier reward model over real HTTP: a loopback judge with a known rule (exact
semantics: parsing, caching, concurrency, retries, errors), and the real SmolLM2 behind
llama.cpp's server as a judge whose replies are often malformed (counted, scored 0)."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rl_training.rewards import vrm
from rl_training.rewards.vrm import (
    VerifierRewardModel,
    VRMConfig,
    VRMItem,
    parse_score,
    render_prompt,
)
from tests.conftest import SHARED


class _Judge:
    """An OpenAI-compatible judge: \\boxed{1} when the prediction names the reference's
    answer, \\boxed{0} otherwise; "garble" predictions get a reply with no box; the first
    request for "flaky" fails with 503."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()
        self.flaky_seen = False

    def reply(self, prompt: str) -> tuple[int, str]:
        ref = re.search(r"Reference Answer\)\n\.\.\.\nassistant: (.*?)\n\.\.\.\n", prompt, re.S)
        pred = re.search(r"Answer to Evaluate\)\n\.\.\.\nassistant: (.*?)\n\.\.\.\n", prompt, re.S)
        assert ref and pred
        if "flaky" in pred.group(1) and not self.flaky_seen:
            self.flaky_seen = True
            return 503, "busy"
        if "garble" in pred.group(1):
            return 200, "I cannot decide."
        ok = ref.group(1).strip().lower() in pred.group(1).lower()
        return 200, f"<think>compare</think>Reason: compared. \\boxed{{{int(ok)}}}"


@pytest.fixture
def judge() -> Iterator[tuple[str, _Judge]]:
    state = _Judge()

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            with state.lock:
                state.prompts.append(prompt)
                state.in_flight += 1
                state.peak = max(state.peak, state.in_flight)
            time.sleep(0.05)
            status, text = state.reply(prompt)
            with state.lock:
                state.in_flight -= 1
            raw = json.dumps(
                {"model": "judge", "choices": [{"message": {"content": text}}]}
                if status == 200
                else {"error": text}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()


def test_vrm_scores_caches_and_limits_concurrency(
    judge: tuple[str, _Judge], tmp_path: Path
) -> None:
    url, state = judge
    cfg = VRMConfig(base_url=url, model="judge", concurrency=3, batch_size=5, cache_dir=tmp_path)
    rm = VerifierRewardModel(cfg)
    items = [
        VRMItem("Best first-line drug?", "metformin", "<think>maybe insulin</think>Metformin."),
        VRMItem("Best first-line drug?", "metformin", "<think>metformin?</think>Insulin."),
        VRMItem("Q", "yes", "garble"),
        VRMItem("Q", "yes", "flaky yes"),
        *[VRMItem(f"Q{i}", "aspirin", f"aspirin {i}") for i in range(8)],
    ]
    ticks: list[int] = []
    results = rm.score_batch(items, progress=ticks.append)
    assert [r.score for r in results] == [1.0, 0.0, 0.0, 1.0, *[1.0] * 8]
    assert results[2].parsed is False and rm.stats["malformed"] == 1
    assert sum(ticks) == len(items) and len(ticks) == 3  # batches of 5, 5, 2
    assert 1 < state.peak <= 3
    # The judge sees the answer without the model's reasoning.
    sent_text = "\n".join(state.prompts)  # requests arrive in any order
    assert "maybe insulin" not in sent_text and "metformin?" not in sent_text
    assert "### Predicted Answer (Answer to Evaluate)\n...\nassistant: Metformin." in sent_text
    sent = len(state.prompts)
    assert sent == len(items) + 1  # one retry for the 503
    # A second judge on the same cache asks nothing again.
    again = VerifierRewardModel(cfg).score_batch(items)
    assert [r.score for r in again] == [r.score for r in results]
    assert all(r.cached for r in again) and len(state.prompts) == sent
    rm.close()


def test_vrm_unreachable_judge_scores_zero_and_is_not_cached(tmp_path: Path) -> None:
    from tests.llama_server import free_port

    cfg = VRMConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", retries=0, cache_dir=tmp_path)
    rm = VerifierRewardModel(cfg)
    res = rm.score("Q", "yes", "yes")
    assert res.score == 0.0 and res.error and "cannot reach" in res.error
    assert rm.stats["errors"] == 1 and rm.stats["requests"] == 0


def test_vrm_record_scorer_and_verl_entry(judge: tuple[str, _Judge]) -> None:
    url, state = judge
    rm = VerifierRewardModel(VRMConfig(base_url=url))
    rec = {
        "messages": [
            {"role": "system", "content": "be careful"},
            {"role": "user", "content": "I have a cough."},
            {"role": "assistant", "content": "How long?"},
            {"role": "user", "content": "Three weeks. What test?"},
            {"role": "assistant", "content": "<think>tb?</think>A chest X-ray."},
        ],
        "reward_model": {"style": "model", "ground_truth": "chest x-ray"},
    }
    assert rm.record_scorer()([rec]) == [1.0]
    prompt = state.prompts[-1]
    assert "user: I have a cough.\nassistant: How long?" in prompt
    assert "### Current Question\n...\nuser: Three weeks. What test?" in prompt
    assert "be careful" not in prompt
    with pytest.raises(ValueError, match="ground_truth"):
        vrm.item_of({"messages": rec["messages"]})
    out = vrm.compute_score(
        "evidex/open",
        "<think>x</think>Get a chest X-ray.",
        "chest x-ray",
        {"question": "What test?", "history": json.dumps([["user", "cough"]])},
        base_url=url,
    )
    assert out == {"score": 1.0, "acc": True, "vrm_parsed": True}
    addr = url.removeprefix("http://").removesuffix("/v1")
    assert vrm.compute_score("x", "no", "chest x-ray", {}, reward_router_address=addr)["score"] == 0
    with pytest.raises(ValueError, match="no judge"):
        vrm.compute_score("x", "y", "z", {})


def test_vrm_with_the_real_embedded_model_as_judge(llama_server: str, tmp_path: Path) -> None:
    import sqlite3

    rm = VerifierRewardModel(VRMConfig(base_url=llama_server, model="smollm2", max_tokens=48,
                                       cache_dir=tmp_path))  # fmt: skip
    items = [
        VRMItem("Is aspirin an antiplatelet drug?", "Yes", "Yes, it is."),
        VRMItem("What is 2 + 2?", "4", "5"),
    ]
    results = rm.score_batch(items)
    assert all(r.error is None for r in results) and rm.stats["requests"] == 2
    assert rm.stats["malformed"] == sum(not r.parsed for r in results)
    db = sqlite3.connect(str(tmp_path / "vrm.sqlite"))
    for item, result in zip(items, results, strict=True):  # each score is the model's own reply's
        (reply,) = db.execute("SELECT reply FROM replies WHERE key = ?",
                              (rm._key(render_prompt(item)),)).fetchone()  # fmt: skip
        parsed = parse_score(reply)
        assert (result.score, result.parsed) == (parsed or 0.0, parsed is not None), reply


def _appendix_b() -> list[str]:
    """The report's Appendix B prompt, its wrapped lines ("↳ ...") joined back."""
    report = SHARED.parent / "reference" / "wingpt3_technical_report.txt"
    if not report.is_file():
        pytest.skip(f"the report is not at {report}")
    text = report.read_text("utf-8")
    block = text.split("B The Prompt for Verifier-Based Rewards", 1)[1].split("```")[1]
    lines: list[str] = []
    for line in block.strip("\n").splitlines():
        if line.startswith("↳ "):
            lines[-1] += " " + line[2:]
        else:
            lines.append(line)
    # The text file escapes the backslash of \boxed as Markdown does.
    return [line.replace("\\\\boxed", "\\boxed") for line in lines]


def test_the_verifier_prompt_is_appendix_b_word_for_word() -> None:
    expected = _appendix_b()
    item = VRMItem("Q-TEXT", "REF-TEXT", "<think>hidden</think>PRED-TEXT", (("user", "HIST"),))
    rendered = render_prompt(item).splitlines()
    slots = {"{Insert dialogue history}": "user: HIST", "user: {Insert original question}":
             "user: Q-TEXT", "assistant: {Insert excellent answer}": "assistant: REF-TEXT",
             "assistant: {Insert predicted answer}": "assistant: PRED-TEXT"}  # fmt: skip
    expected = [slots.get(line, line) for line in expected]
    assert len(rendered) == len(expected) > 40
    for n, (got, want) in enumerate(zip(rendered, expected, strict=True), 1):
        assert got == want, f"line {n}"
    assert "hidden" not in "\n".join(rendered)  # the prediction's reasoning is removed


def test_the_s4_verifier_sees_the_diagnostic_process(judge: tuple[str, _Judge]) -> None:
    url, state = judge
    response = (
        "<think>ptosis worse in the evening</think><request>ice pack test</request>"
        "<result>positive</result> \\boxed{Myasthenia gravis}"
    )
    info = {"question": "Initial consultation: ptosis."}
    out = vrm.compute_score("evidex/diagnosis", response, "Myasthenia gravis", info, base_url=url)
    assert out["score"] == 1.0
    prompt = state.prompts[-1]
    assert "assistant: Diagnostic process:\n[reasoning] ptosis worse in the evening" in prompt
    assert "<request>ice pack test</request><result>positive</result>" in prompt
    assert "Final diagnosis: \\boxed{Myasthenia gravis}" in prompt
    vrm.compute_score("evidex/open", response, "Myasthenia gravis", {"question": "Q"},
                      base_url=url)  # fmt: skip
    assert "ptosis worse" not in state.prompts[-1]  # other rows: the reasoning is removed
