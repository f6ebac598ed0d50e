"""``evidex train export|curate|sft|grpo|plot|merge``: thin wrappers over :mod:`rl_training`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rl_training.train.trl_config import LocalGRPOConfig
from ui.cli.app import ConfigOpt, StoreOpt, command, err, load, train_app

DEFAULT_STEPS: int = LocalGRPOConfig.default("max_steps")


@command(train_app, "export")
def train_export(
    task: Annotated[
        str,
        typer.Option(
            help="medcalc, mcq (MIRAGE file), pubmedqa, cmexam, cmmlu (a CSV or a folder), "
            "diagnosis (AgentClinic cases), medquad (answered questions: verifier-scored) or "
            "chat (chat records whose last answer is the reference; multi-turn history kept)."
        ),
    ],
    input: Annotated[Path, typer.Option("--input", help="The benchmark file to convert.")],
    out: Annotated[Path, typer.Option(help="FILE.parquet (verl RL schema) or FILE.jsonl (SFT).")],
    split: Annotated[str, typer.Option(help="Split name stored in extra_info.")] = "train",
    agent: Annotated[
        bool,
        typer.Option(
            help="Search-augmented rows for verl's tool agent (S4), with the search tool."
        ),
    ] = False,
) -> None:
    """Convert a benchmark file into training records scored by rl_training.rewards."""
    from rl_training.data.export import export

    n = export(task, input, out, split, agent)  # type: ignore[arg-type]
    err.print(f"wrote {n} rows to {out}")


@command(train_app, "curate")
def train_curate(
    input: Annotated[Path, typer.Argument(help="Chat records, JSONL (e.g. from train export).")],
    out: Annotated[Path, typer.Option(help="Where the kept records go (JSONL).")],
    check_format: Annotated[
        bool, typer.Option("--format/--no-format", help="One <think> block, then the answer.")
    ] = True,
    repetition_n: Annotated[int, typer.Option(min=1, help="n of the n-gram filter.")] = 4,
    repetition_threshold: Annotated[
        float, typer.Option(min=0, max=1, help="Most repeated n-grams allowed (1 = off).")
    ] = 0.3,
    correctness: Annotated[
        bool, typer.Option(help="Drop verifiable records the rule rewards score wrong.")
    ] = True,
    reward_model: Annotated[
        Path | None,
        typer.Option(help="Sequence-classification reward model folder for unverifiable items."),
    ] = None,
    vrm_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible judge for the verifier reward (unverifiable items)."),
    ] = None,
    vrm_model: Annotated[str, typer.Option(help="Judge model name.")] = "default",
    threshold: Annotated[
        float | None, typer.Option(help="Keep reward-model scores at or above this.")
    ] = None,
    top_fraction: Annotated[
        float | None, typer.Option(min=0, max=1, help="Or keep the best fraction.")
    ] = None,
) -> None:
    """Filter SFT records step by step and report what each step dropped and why."""
    from rl_training.data.curate import CurationConfig, curate_file

    config = CurationConfig(
        check_format=check_format, repetition_n=repetition_n,
        repetition_threshold=repetition_threshold, correctness=correctness,
        reward_model=reward_model, vrm_url=vrm_url, vrm_model=vrm_model, threshold=threshold,
        top_fraction=top_fraction,
    )  # fmt: skip
    result = curate_file(input, out, config)
    for rep in result.reports:
        err.print(str(rep), highlight=False)
    err.print(f"kept {len(result.kept)} records in {out}")


TrainModel = Annotated[Path, typer.Option(help="Base model: a Hugging Face checkpoint folder.")]
TrainData = Annotated[
    list[Path], typer.Option("--data", help="Training file(s) from evidex train export/curate.")
]
TrainVal = Annotated[list[Path] | None, typer.Option("--val", help="Validation file(s).")]
TrainOut = Annotated[
    Path, typer.Option("--out", help="Run folder (config, launch script, checkpoints).")
]
TrainEngine = Annotated[str, typer.Option(help="verl (multi-GPU, Ray) or trl (one GPU / CPU).")]
TrainSet = Annotated[
    list[str] | None, typer.Option("--set", help="Extra verl override key=value (repeatable).")
]
DryRun = Annotated[bool, typer.Option(help="Resolve and validate only; launch nothing.")]
TrainSteps = Annotated[int, typer.Option(min=1, help="trl: optimizer steps.")]
TrainCpu = Annotated[bool, typer.Option("--cpu", help="trl: run on CPU (a smoke run).")]
GPUs = Annotated[int, typer.Option(min=1, help="GPUs per node.")]
Nodes = Annotated[int, typer.Option(min=1, help="Nodes.")]


def _run(args: Any) -> None:
    """Run a :class:`rl_training.train.jobs.TrainArgs` and say what happened."""
    from rl_training.train.jobs import train

    result = train(args)
    for note in result.notes:
        err.print(note, highlight=False)
    if result.engine == "verl":
        err.print(f"resolved {result.stage} config written to {result.config_file} "
                  f"(launch: {result.launch_script})")  # fmt: skip
        raise typer.Exit(result.exit_code)
    if args.dry_run:
        err.print(f"{result.rows} rows read from {', '.join(map(str, args.data))}; nothing "
                  "trained (--dry-run)")  # fmt: skip
    else:
        out = args.out_dir
        err.print(f"trained {result.stage} on {result.rows} rows: {out}/metrics.jsonl, "
                  f"{out}/curves.png")  # fmt: skip


@command(train_app, "sft")
def train_sft(
    model: TrainModel,
    data: TrainData,
    out_dir: TrainOut,
    engine: TrainEngine = "verl",
    stage: Annotated[str, typer.Option(help="s1 (the SFT stage).")] = "s1",
    val: TrainVal = None,
    n_gpus: GPUs = 8,
    nnodes: Nodes = 1,
    overrides: TrainSet = None,
    dry_run: DryRun = False,
    max_steps: TrainSteps = DEFAULT_STEPS,
    cpu: TrainCpu = False,
) -> None:
    """S1 SFT (AdamW, lr 1e-5, 500 warm-up steps, cosine to 10%, 2 epochs, 16K context)."""
    from rl_training.train.jobs import TrainArgs

    _run(TrainArgs(kind="sft", stage=stage, model=model, data=data, out_dir=out_dir,
                   engine=engine, val=val or (), n_gpus=n_gpus, nnodes=nnodes,
                   overrides=overrides or (), dry_run=dry_run, max_steps=max_steps,
                   cpu=cpu))  # fmt: skip


@command(train_app, "grpo")
def train_grpo(
    model: TrainModel,
    data: TrainData,
    out_dir: TrainOut,
    stage: Annotated[
        str,
        typer.Option(help="s2 (rules), s3 (verifier RM) or s4 (search and diagnostic chain)."),
    ],
    engine: TrainEngine = "verl",
    val: TrainVal = None,
    n_gpus: GPUs = 8,
    nnodes: Nodes = 1,
    judge_url: Annotated[
        str | None,
        typer.Option(
            help="s3: the verifier's OpenAI-compatible endpoint; s4 (optional): it scores the "
            "answers and diagnoses instead of the rules."
        ),
    ] = None,
    search_url: Annotated[
        str | None, typer.Option(help="s4: evidex serve-search URL the rollouts reach.")
    ] = None,
    reward_model: Annotated[
        Path | None,
        typer.Option(
            help="trl s3: a preference reward model folder (evidex train rm) for the "
            "open-ended rows instead of --judge-url."
        ),
    ] = None,
    overrides: TrainSet = None,
    dry_run: DryRun = False,
    max_steps: TrainSteps = DEFAULT_STEPS,
    cpu: TrainCpu = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="trl s4: tools (tool calls through TRL's environment_factory; needs a "
            "tool-calling chat template) or tags (Search-R1 text tags, any model)."
        ),
    ] = "tools",
) -> None:
    """GRPO stages (128 prompts x 12 rollouts per step, the 8K/16K cosine length penalty)."""
    from rl_training.train.jobs import TrainArgs

    _run(TrainArgs(kind="grpo", stage=stage, model=model, data=data, out_dir=out_dir,
                   engine=engine, val=val or (), n_gpus=n_gpus, nnodes=nnodes,
                   judge_url=judge_url, search_url=search_url, reward_model=reward_model,
                   overrides=overrides or (),
                   dry_run=dry_run, max_steps=max_steps, cpu=cpu, protocol=protocol,
                   want_index=store is not None or config is not None,
                   settings=lambda: load(config, store)))  # fmt: skip


@command(train_app, "plot")
def train_plot(
    run: Annotated[Path, typer.Argument(help="A run folder, or its metrics .jsonl file.")],
    out_png: Annotated[
        Path | None, typer.Option("--out", help="PNG to write (default: RUN/curves.png).")
    ] = None,
) -> None:
    """Reward, response length and loss over steps of a training run, as a PNG."""
    from rl_training.train.metrics import plot_run

    png, used = plot_run(run, out_png)
    for panel, key in used.items():
        err.print(f"{panel}: {key or 'not logged'}", highlight=False)
    err.print(f"wrote {png}")


@command(train_app, "merge")
def train_merge(
    models: Annotated[
        list[str], typer.Argument(help="Two or more Hugging Face checkpoint folders.")
    ],
    out: Annotated[Path, typer.Option(help="New folder for the merged checkpoint.")],
    weights: Annotated[
        str | None,
        typer.Option(help="One weight per model: --weights 0.5 0.5 (or 0.5,0.5). Default: equal."),
    ] = None,
) -> None:
    """Linear merge of checkpoints, streamed tensor by tensor (the report's 1:1 merge)."""
    from rl_training.train.merge import merge_with_progress, split_models_and_weights

    paths, ws = split_models_and_weights(models, weights)
    report = merge_with_progress(paths, ws, out)
    err.print(
        f"merged {report.tensors} tensors from {len(paths)} checkpoints with weights "
        f"{report.weights} into {out} ({report.shards} shard(s); tokenizer from "
        f"{report.tokenizer_from})"
    )
