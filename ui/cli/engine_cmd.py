"""``evidex train distill|trace|select``: the data engine's jobs (rl_training.data.generate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ui.cli.app import JsonOpt, command, err, out, train_app

InputOpt = Annotated[Path, typer.Option("--input", help="Rows from evidex train export.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output file (resumable: re-run to go on).")]
Samples = Annotated[int, typer.Option("--samples", help="Completions per row (N).")]
Concurrency = Annotated[int, typer.Option(help="Requests in flight at once.")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature.")]
MaxTokens = Annotated[int, typer.Option(help="Most tokens per completion.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds one request may take.")]
Retries = Annotated[int, typer.Option(help="Retries of a request (429, 5xx, bad replies).")]
RateLimit = Annotated[
    float | None, typer.Option("--rate-limit", help="Most requests started per second.")
]
RequestBudget = Annotated[
    int | None,
    typer.Option("--request-budget", help="Most HTTP requests this run (the rest waits)."),
]
Engine = Annotated[str, typer.Option("--engine", help="local (threads) or ray (Ray Data).")]
ApiKey = Annotated[
    str | None, typer.Option(envvar="EVIDEX_ENGINE_API_KEY", help="Bearer token (or env var).")
]


def _config(url: str, model: str, **values: Any) -> Any:
    from rl_training.data.engine import EngineConfig

    return EngineConfig(base_url=url, model=model, **values)


def _finish(report: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        err.print(str(report), highlight=False)
    for f in report.engine.failures[:10]:
        err.print(f"[yellow]failed[/] {f}", highlight=False)
    for p in report.skipped_rows[:10]:
        err.print(f"[yellow]skipped[/] {p}", highlight=False)
    if report.engine.failures or report.engine.pending:
        err.print("[yellow]re-run the same command to retry the rest[/]")
        raise typer.Exit(3)


@command(train_app, "distill")
def train_distill(
    input: InputOpt,
    teacher_url: Annotated[str, typer.Option(help="The teacher's OpenAI-compatible endpoint.")],
    out_file: OutOpt,
    teacher_model: Annotated[str, typer.Option(help="Teacher model name (e.g. DeepSeek-R1).")] = (
        "default"
    ),
    samples: Samples = 4,
    concurrency: Concurrency = 8,
    temperature: Temperature = 0.6,
    max_tokens: MaxTokens = 16384,
    timeout: Timeout = 1800.0,
    retries: Retries = 4,
    rate_limit: RateLimit = None,
    request_budget: RequestBudget = None,
    engine: Engine = "local",
    api_key: ApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Long-CoT candidates from a teacher: N per row, each scored by the rule reward when the
    row is verifiable (the report's distillation from DeepSeek-R1)."""
    from rl_training.data.generate import distill

    cfg = _config(teacher_url, teacher_model, samples=samples, concurrency=concurrency,
                  temperature=temperature, max_tokens=max_tokens, timeout_s=timeout,
                  retries=retries, rate_limit=rate_limit, request_budget=request_budget,
                  api_key=api_key, require_think=True)  # fmt: skip
    _finish(distill(input, out_file, cfg, engine=engine), as_json)


@command(train_app, "trace")
def train_trace(
    input: Annotated[
        Path, typer.Option("--input", help="Answered records: question+answer, chat or rows.")
    ],
    tracer_url: Annotated[str, typer.Option(help="The tracer's OpenAI-compatible endpoint.")],
    out_file: OutOpt,
    tracer_model: Annotated[str, typer.Option(help="Tracer model name.")] = "default",
    samples: Annotated[int, typer.Option("--samples", help="Tries per record.")] = 1,
    concurrency: Concurrency = 8,
    temperature: Temperature = 0.6,
    max_tokens: MaxTokens = 8192,
    timeout: Timeout = 1800.0,
    retries: Retries = 4,
    rate_limit: RateLimit = None,
    request_budget: RequestBudget = None,
    engine: Engine = "local",
    api_key: ApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """Think-Tracing: the chain of thought that reaches each record's given answer; traces
    whose final answer differs are dropped."""
    from rl_training.data.generate import trace

    cfg = _config(tracer_url, tracer_model, samples=samples, concurrency=concurrency,
                  temperature=temperature, max_tokens=max_tokens, timeout_s=timeout,
                  retries=retries, rate_limit=rate_limit, request_budget=request_budget,
                  api_key=api_key, require_think=True)  # fmt: skip
    _finish(trace(input, out_file, cfg, engine=engine), as_json)


@command(train_app, "select")
def train_select(
    input: InputOpt,
    policy_url: Annotated[str, typer.Option(help="The (SFT) policy's endpoint.")],
    out_file: Annotated[Path, typer.Option("--out", help="RL rows (.parquet or .jsonl).")],
    policy_model: Annotated[str, typer.Option(help="Policy model name.")] = "default",
    samples: Samples = 8,
    budget: Annotated[
        int | None, typer.Option("--budget", help="Keep at most K rows (the hardest first).")
    ] = None,
    judge_url: Annotated[
        str | None, typer.Option(help="The verifier for rows the rules cannot score.")
    ] = None,
    judge_model: Annotated[str, typer.Option(help="Verifier model name.")] = "default",
    concurrency: Concurrency = 8,
    temperature: Temperature = 1.0,
    max_tokens: MaxTokens = 8192,
    timeout: Timeout = 1800.0,
    retries: Retries = 4,
    rate_limit: RateLimit = None,
    request_budget: RequestBudget = None,
    engine: Engine = "local",
    api_key: ApiKey = None,
    as_json: JsonOpt = False,
) -> None:
    """RL data selection: N policy responses per question; questions answered all right or
    all wrong are dropped; the rest ordered from the fewest correct to the most."""
    from rl_training.data.generate import select

    cfg = _config(policy_url, policy_model, samples=samples, concurrency=concurrency,
                  temperature=temperature, max_tokens=max_tokens, timeout_s=timeout,
                  retries=retries, rate_limit=rate_limit, request_budget=request_budget,
                  api_key=api_key)  # fmt: skip
    report = select(input, out_file, cfg, budget=budget, judge_url=judge_url,
                    judge_model=judge_model, engine=engine)  # fmt: skip
    _finish(report, as_json)
