"""The trained verifier: judged records from a (scripted, OpenAI-compatible) teacher judge on
loopback through the data engine (resumable), SFT of a tiny causal LM judge on them, and the
agreement of a judge with the teacher's verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from typer.testing import CliRunner

from rl_training.auxiliary.verifier import JudgedRecord, read_judged
from tests.llama_server import serve_app
from ui.cli import app

runner = CliRunner()


def teacher(calls: list[str], *, always_one: bool = False) -> FastAPI:
    """Says 1 when the predicted answer holds "5 mg", 0 otherwise; no verdict for "???"."""
    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        calls.append(prompt)
        predicted = prompt.split("(Answer to Evaluate)", 1)[-1].split("### Predicted Answer", 1)[0]
        if always_one:
            text = "\\\\boxed{1}"
        elif "???" in predicted:
            text = "I cannot tell."
        else:
            text = f"Checked the dose. \\\\boxed{{{1 if '5 mg' in predicted else 0}}}"
        return {
            "model": "teacher",
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5},
        }

    return api


def _candidates(path: Path) -> Path:
    rows = []
    for i, pred in enumerate(["5 mg daily", "50 mg daily", "<think>hmm</think>5 mg", "???"] * 3):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Dose of drug {i}?"},
                    {"role": "assistant", "content": pred},
                ],
                "reward_model": {"ground_truth": "5 mg once a day"},
            }
        )
    rows.append({"messages": [{"role": "user", "content": "no reference"}]})  # bad: skipped
    rows.append(
        {
            "prompt": [{"role": "user", "content": "Dose?"}],
            "response": "5 mg",
            "ground_truth": "5 mg",
        }
    )  # a train distill record
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_judge_data_train_and_eval(tmp_path: Path, tiny_lm: Path) -> None:
    calls: list[str] = []
    cands = _candidates(tmp_path / "cands.jsonl")
    judged = tmp_path / "judged.jsonl"
    with serve_app(teacher(calls)) as url:
        res = runner.invoke(
            app,
            [
                "train",
                "judge-data",
                "--input",
                str(cands),
                "--judge-url",
                f"{url}/v1",
                "--out",
                str(judged),
                "--json",
            ],
        )
        assert res.exit_code == 0, res.output
        assert len(calls) == 13  # 12 chat records and the distill record; the bad one skipped
        # the Appendix B prompt, CoT removed from the candidate
        assert "Predicted Answer" in calls[2] and "<think>" not in calls[2]
        again = runner.invoke(
            app,
            [
                "train",
                "judge-data",
                "--input",
                str(cands),
                "--judge-url",
                f"{url}/v1",
                "--out",
                str(judged),
                "--json",
            ],
        )
        assert again.exit_code == 0 and len(calls) == 13  # resumed from the cache: no request
        records, _ = read_judged(judged)
        assert [r.verdict for r in records[:4]] == [1, 0, 1, None] and records[-1].verdict == 1
        # the teacher agrees with itself; a judge that always says 1 is measured exactly
        res = runner.invoke(
            app, ["eval", "vrm", "--data", str(judged), "--judge-url", f"{url}/v1", "--json"]
        )
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout) == {
            "accuracy": 1.0,
            "precision": 1.0,
            "recall": 1.0,
            "malformed": 0.0,
            "records": 10,
        }
    with serve_app(teacher([], always_one=True)) as url:
        res = runner.invoke(
            app, ["eval", "vrm", "--data", str(judged), "--judge-url", f"{url}/v1", "--json"]
        )
        got = json.loads(res.stdout)
        assert (got["accuracy"], got["precision"], got["recall"]) == (0.7, 0.7, 1.0)

    # SFT of a tiny judge on the valid verdicts (the malformed ones are left out)
    res = runner.invoke(
        app,
        [
            "train",
            "vrm",
            "--data",
            str(judged),
            "--model",
            str(tiny_lm),
            "--out",
            str(tmp_path / "vrm"),
            "--epochs",
            "1",
            "--lr",
            "1e-3",
            "--batch-size",
            "2",
            "--max-length",
            "1024",
            "--cpu",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["records"] == 10 and report["left_out"] == 3 and report["steps"] == 5
    assert report["first_loss"] is not None and report["last_loss"] < report["first_loss"]
    res = runner.invoke(
        app,
        [
            "eval",
            "vrm",
            "--data",
            str(judged),
            "--model",
            str(tmp_path / "vrm"),
            "--max-new-tokens",
            "8",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert set(json.loads(res.stdout)) == {
        "accuracy",
        "precision",
        "recall",
        "malformed",
        "records",
    }


def test_bad_judged_records_and_options(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n{"reply": "\\\\boxed{1}"}\n')
    res = runner.invoke(app, ["eval", "vrm", "--data", str(bad), "--judge-url", "http://x/v1"])
    assert res.exit_code == 1 and "no judged record" in res.stderr
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps(JudgedRecord("p", "\\boxed{1}", 1).as_dict()) + "\n")
    res = runner.invoke(app, ["eval", "vrm", "--data", str(ok)])
    assert res.exit_code == 1 and "exactly one of --model" in res.stderr
    res = runner.invoke(
        app,
        ["train", "vrm", "--data", str(ok), "--model", str(tmp_path), "--out", str(tmp_path / "o")],
    )
    assert res.exit_code == 1 and "not a Hugging Face checkpoint" in res.stderr


def test_tracer_learns_in_the_messages_train_trace_sends(tmp_path: Path, tiny_lm: Path) -> None:
    """The tracer is trained on exactly the messages evidex train trace sends it."""
    from rl_training.auxiliary.tracer import cot_example

    records = [
        {
            "messages": [
                {"role": "user", "content": f"Dose of drug {i}?"},
                {
                    "role": "assistant",
                    "content": f"<think>weight {60 + i} kg, so</think>{i + 1} mg",
                },
            ]
        }
        for i in range(6)
    ]
    records.append(
        {
            "messages": [
                {"role": "user", "content": "no cot"},
                {"role": "assistant", "content": "5 mg"},
            ]
        }
    )  # skipped
    data = tmp_path / "cot.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    # what the trace job sends for an answered record: captured from a scripted tracer
    sent: list[list[dict[str, str]]] = []
    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = await request.json()
        sent.append(body["messages"])
        return {
            "model": "t",
            "choices": [{"message": {"content": "<think>x</think>1 mg"}, "finish_reason": "stop"}],
        }

    answered = tmp_path / "answered.jsonl"
    answered.write_text(json.dumps({"question": "Dose of drug 0?", "answer": "1 mg"}) + "\n")
    with serve_app(api) as url:
        res = runner.invoke(
            app,
            [
                "train",
                "trace",
                "--input",
                str(answered),
                "--tracer-url",
                f"{url}/v1",
                "--out",
                str(tmp_path / "traced.jsonl"),
            ],
        )
        assert res.exit_code == 0, res.output
    assert sent[0] == cot_example(records[0])["prompt"]
    res = runner.invoke(
        app,
        [
            "train",
            "tracer",
            "--data",
            str(data),
            "--model",
            str(tiny_lm),
            "--out",
            str(tmp_path / "tracer"),
            "--epochs",
            "2",
            "--lr",
            "1e-3",
            "--batch-size",
            "2",
            "--max-length",
            "512",
            "--cpu",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["records"] == 6 and report["skipped"] == 1 and report["steps"] == 6
    assert report["last_loss"] < report["first_loss"]
    assert (tmp_path / "tracer" / "config.json").is_file()
