"""``evidex train distill|trace|select``: the data engine's jobs (rl_training.data.generate).

The endpoint client's own knobs (timeout, retries, back-off, rate limit, request budget, API
key) are the ``[engine]`` settings (``--config``, or ``EVIDEX_ENGINE__REQUEST_BUDGET=...``).
"""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ui.cli.app import ConfigOpt, JsonOpt, command, err, load, out, train_app

InputOpt = Annotated[Path, typer.Option("--input", help="Rows from evidex train export.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output file (resumable: re-run to go on).")]
Concurrency = Annotated[int, typer.Option(help="Requests in flight at once.")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature.")]
MaxTokens = Annotated[int, typer.Option(help="Most tokens per completion.")]
Engine = Annotated[str, typer.Option("--engine", help="local (threads) or ray (Ray Data).")]


def _run(job: str | Any, config: Path | None, as_json: bool, source: Path, dest: Path,
         url: str, model: str, **options: Any) -> None:  # fmt: skip
    """Build the engine's config from the options and the ``[engine]`` settings, run the
    job, print its report; exit 3 when some completions failed or wait for the next run."""
    from rl_training.data import generate
    from rl_training.data.engine import EngineConfig

    s = load(config).engine
    engine = options.pop("engine")
    extra = {k: options.pop(k) for k in ("budget", "judge_url", "judge_model") if k in options}
    cfg = EngineConfig(base_url=url, model=model, timeout_s=s.timeout_s, retries=s.retries,
                       backoff_s=s.backoff_s, rate_limit=s.rate_limit,
                       request_budget=s.request_budget,
                       api_key=s.api_key.get_secret_value() if s.api_key else None,
                       **options)  # fmt: skip
    run = getattr(generate, job) if isinstance(job, str) else job
    report = run(source, dest, cfg, engine=engine, **extra)
    if as_json:
        out.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        err.print(str(report), highlight=False)
    for line in [*report.engine.failures[:10], *report.skipped_rows[:10]]:
        err.print(f"[yellow]skipped[/] {line}", highlight=False)
    if report.engine.failures or report.engine.pending:
        err.print("[yellow]re-run the same command to retry the rest[/]")
        raise typer.Exit(3)


def _generation_command(
    name: str, role: str, doc: str, input_help: str, samples_help: str, default_samples: int,
    default_max_tokens: int,
) -> None:  # fmt: skip
    """Register ``evidex train distill`` / ``trace`` (they share one shape; ``role`` names
    the endpoint's options: ``--teacher-url``, ``--tracer-url``, ...)."""

    def job(
        input: Annotated[Path, typer.Option("--input", help=input_help)],
        url: Annotated[
            str, typer.Option(f"--{role}-url", help=f"The {role}'s OpenAI-compatible endpoint.")
        ],
        out_file: OutOpt,
        model: Annotated[str, typer.Option(f"--{role}-model", help=f"The {role} model name.")] = (
            "default"
        ),
        samples: Annotated[int, typer.Option("--samples", help=samples_help)] = default_samples,
        concurrency: Concurrency = 8,
        temperature: Temperature = 0.6,
        max_tokens: MaxTokens = default_max_tokens,
        engine: Engine = "local",
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        _run(name, config, as_json, input, out_file, url, model, samples=samples,
             concurrency=concurrency, temperature=temperature, max_tokens=max_tokens,
             engine=engine, require_think=True)  # fmt: skip

    job.__doc__ = doc
    command(train_app, name)(job)


_generation_command(
    "distill",
    "teacher",
    "Long-CoT candidates from a teacher: N per row, each scored by the rule reward when the "
    "row is verifiable (the report's distillation from DeepSeek-R1).",
    "Rows from evidex train export.",
    "Candidates per row (N).",
    4,
    16384,
)
_generation_command(
    "trace",
    "tracer",
    "Think-Tracing: the chain of thought that reaches each record's given answer; traces "
    "whose final answer differs are dropped.",
    "Answered records: question+answer, chat or rows.",
    "Tries per record.",
    1,
    8192,
)


@command(train_app, "select")
def train_select(
    input: InputOpt,
    policy_url: Annotated[str, typer.Option(help="The (SFT) policy's endpoint.")],
    out_file: Annotated[Path, typer.Option("--out", help="RL rows (.parquet or .jsonl).")],
    policy_model: Annotated[str, typer.Option(help="Policy model name.")] = "default",
    samples: Annotated[int, typer.Option("--samples", help="Responses per question (N).")] = 8,
    budget: Annotated[
        int | None, typer.Option("--budget", help="Keep at most K rows (the hardest first).")
    ] = None,
    judge_url: Annotated[
        str | None, typer.Option(help="The verifier, for rows the rules cannot score.")
    ] = None,
    judge_model: Annotated[str, typer.Option(help="Verifier model name.")] = "default",
    concurrency: Concurrency = 8,
    temperature: Temperature = 1.0,
    max_tokens: MaxTokens = 8192,
    engine: Engine = "local",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """RL data selection: N policy responses per question; questions answered all right or
    all wrong are dropped; the rest ordered from the fewest correct to the most."""
    _run("select", config, as_json, input, out_file, policy_url, policy_model,
         samples=samples, concurrency=concurrency, temperature=temperature,
         max_tokens=max_tokens, engine=engine, budget=budget, judge_url=judge_url,
         judge_model=judge_model)  # fmt: skip
