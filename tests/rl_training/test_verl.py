"""The verl side of the agentic stages, driven with verl's own code on CPU: exported rows
loaded by verl's RLHFDataset, the tools built by verl's tool registry from the YAML evidex
writes, the search tool against a real search service, the exam tool on a real case."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("verl", reason="verl is not installed (pip install -e '.[train]')")

from omegaconf import OmegaConf

from rl_training.data.export import export
from rl_training.rewards import compute_score
from tests.answer_fixture import AnswerIndex
from tests.conftest import shared_path
from tests.llama_server import serve_app


@pytest.fixture(scope="module")
def search_url(answer_index: AnswerIndex) -> Iterator[str]:
    from retrieval.search import Searcher
    from retrieval.service import create_app

    with Searcher(answer_index.settings()) as searcher, serve_app(create_app(searcher)) as url:
        yield url


def _dataset(files: list[Path], tiny_lm: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    cfg = OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts": False,
                            "cache_dir": str(files[0].parent / "cache")})  # fmt: skip
    return RLHFDataset([str(f) for f in files], tok, cfg)


def test_tool_agent_rows_load_in_verls_dataset(tmp_path: Path, tiny_lm: Path) -> None:
    diag = tmp_path / "diagnosis.parquet"
    n = export("diagnosis", shared_path("cases", "agentclinic_medqa.jsonl"), diag)
    qa = tmp_path / "pubmedqa-agent.parquet"
    export("pubmedqa", shared_path("pubmedqa", "pqal_dev.json"), qa, agent=True)
    ds = _dataset([diag], tiny_lm)
    assert len(ds) == n == 107
    row = ds[0]
    assert row["agent_name"] == "tool_agent" and row["data_source"] == "evidex/diagnosis"
    case = json.loads(row["tools_kwargs"]["request_exam"]["create_kwargs"]["case_json"])
    assert case["OSCE_Examination"]["Correct_Diagnosis"] == row["reward_model"]["ground_truth"]
    assert "request_exam" in row["raw_prompt"][0]["content"]
    assert "ptosis" not in row["raw_prompt"][1]["content"]  # findings stay withheld
    ds = _dataset([qa], tiny_lm)
    row = ds[0]
    assert row["agent_name"] == "tool_agent" and "search" in row["tools_kwargs"]
    assert (
        row["raw_prompt"][0]["role"] == "system" and "`search`" in row["raw_prompt"][0]["content"]
    )
    truth = row["reward_model"]["ground_truth"]
    assert (
        compute_score(row["data_source"], f"\\boxed{{{truth}}}", truth, row["extra_info"])["score"]
        == 1.0
    )
    assert (
        compute_score("evidex/diagnosis", "\\boxed{The myasthenia gravis}", "Myasthenia gravis")[
            "score"
        ]
        == 1.0
    )


def test_tools_built_by_verls_registry(
    tmp_path: Path, search_url: str, answer_index: AnswerIndex
) -> None:
    from verl.tools.tool_registry import initialize_tools_from_config

    from rl_training.train.verl_tools import tool_config

    yaml_path = tool_config(tmp_path / "tools.yaml", retrieval_url=search_url, topk=2, exams=True)
    tools = {t.name: t for t in initialize_tools_from_config(str(yaml_path))}
    assert set(tools) == {"search", "request_exam"}

    async def run_search() -> str:
        search = tools["search"]
        iid, _ = await search.create(create_kwargs={"task": "evidex/pubmedqa"})
        resp, reward, metrics = await search.execute(iid, {"query": answer_index.question})
        await search.release(iid)
        assert reward == 0.0 and metrics == {"results": 2}
        return str(resp.text)

    text = asyncio.run(run_search())
    assert text.startswith("Doc 1(Title: ") and f"PMID {answer_index.pmid}" in text

    record = json.loads(shared_path("cases", "agentclinic_medqa.jsonl").read_text().splitlines()[0])

    async def run_exam() -> list[str]:
        exam = tools["request_exam"]
        out = []
        iid, _ = await exam.create(create_kwargs={"case_json": json.dumps(record)})
        for name in ("EMG", "brain MRI"):
            resp, _, metrics = await exam.execute(iid, {"name": name})
            out.append(f"{metrics['found']}|{resp.text}")
        await exam.release(iid)
        assert iid not in exam._cases
        return out

    emg, mri = asyncio.run(run_exam())
    assert emg.startswith("1|electromyography > findings: Decreased muscle response")
    assert mri == "0|brain MRI: not available for this patient."
    with pytest.raises(ValueError, match="case_json"):
        asyncio.run(tools["request_exam"].create(create_kwargs={}))


def _export_rl(tmp_path: Path) -> Path:
    out = tmp_path / "medqa.parquet"
    export("mcq", shared_path("mirage_medqa_medmcqa_mmlu.json"), out)
    return out


@pytest.mark.parametrize("stage", ["s2", "s3", "s4", "s4+judge"])
def test_grpo_stages_compose_and_validate_with_verl(tmp_path: Path, stage: str) -> None:
    from omegaconf import OmegaConf
    from typer.testing import CliRunner

    from ui.cli import app

    data = _export_rl(tmp_path)
    run_dir = tmp_path / "run"
    stage, judged = stage.removesuffix("+judge"), stage.endswith("+judge")
    args = ["train", "grpo", "--stage", stage, "--model", str(tmp_path / "qwen"), "--data",
            str(data), "--out", str(run_dir), "--dry-run",
            "--set", "trainer.save_freq=10"]  # fmt: skip
    if stage == "s3" or judged:
        args += ["--judge-url", "http://judge:8000/v1"]
    if stage == "s4":
        args += ["--search-url", "http://search:8765"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.data.train_batch_size == 128 and cfg.actor_rollout_ref.rollout.n == 12
    assert cfg.data.max_response_length == 16384 and cfg.trainer.save_freq == 10
    assert cfg.reward.reward_manager.name == "LengthPenaltyRewardManager"
    assert cfg.reward.reward_kwargs.length_penalty.threshold == 8192
    assert cfg.data.train_files == [str(data.resolve())]
    launch = (run_dir / "launch.sh").read_text()
    assert "verl.trainer.main_ppo" in launch and "LengthPenaltyRewardManager" in launch
    if stage == "s3":  # rule rows keep the rule reward; style-model rows go to the verifier
        assert cfg.reward.custom_reward_function.path == "pkg://rl_training.rewards.dispatch"
    if judged:
        assert cfg.reward.custom_reward_function.path == "pkg://rl_training.rewards.vrm"
    if stage == "s3" or judged:
        assert cfg.reward.custom_reward_function.reward_kwargs.base_url == "http://judge:8000/v1"
    else:
        assert cfg.reward.custom_reward_function.path == "pkg://rl_training.rewards.scoring"
    if stage == "s4":
        assert cfg.actor_rollout_ref.rollout.multi_turn.enable is True
        assert cfg.actor_rollout_ref.rollout.agent.default_agent_loop == "tool_agent"
        from verl.tools.tool_registry import initialize_tools_from_config

        tools = initialize_tools_from_config(
            cfg.actor_rollout_ref.rollout.multi_turn.tool_config_path
        )
        assert {t.name for t in tools} == {"search", "request_exam"}


def test_sft_stage_and_errors(tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from typer.testing import CliRunner

    from ui.cli import app

    sft = tmp_path / "sft.jsonl"
    export("pubmedqa", shared_path("pubmedqa", "pqal_dev.json"), sft)
    run_dir = tmp_path / "s1"
    runner = CliRunner()
    res = runner.invoke(app, ["train", "sft", "--model", str(tmp_path / "m"), "--data", str(sft),
                              "--out", str(run_dir), "--dry-run"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.optim.lr == 1e-5 and cfg.optim.lr_warmup_steps == 500
    assert cfg.optim.lr_scheduler_type == "cosine" and cfg.optim.min_lr_ratio == 0.1
    assert cfg.trainer.total_epochs == 2 and cfg.data.max_length == 16384
    import pyarrow.parquet as pq

    table = pq.read_table(cfg.data.train_files[0]).to_pylist()
    assert len(table) == 500 and table[0]["messages"][-1]["role"] == "assistant"
    assert "torchrun" in (run_dir / "launch.sh").read_text()
    rl = str(_export_rl(tmp_path))
    bad = runner.invoke(app, ["train", "grpo", "--stage", "s3", "--model", "m", "--data", rl,
                              "--out", str(tmp_path / "x"), "--dry-run"])  # fmt: skip
    assert bad.exit_code == 1 and "--judge-url" in bad.stderr
    bad = runner.invoke(app, ["train", "grpo", "--stage", "s2", "--model", "m", "--data", rl,
                              "--out", str(tmp_path / "y"), "--dry-run", "--n-gpus", "7",
                              "--set", "actor_rollout_ref.actor.use_dynamic_bsz=false",
                              "--set", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
                              ])  # fmt: skip
    assert bad.exit_code == 1 and "verl rejects this configuration" in bad.stderr
    bad = runner.invoke(app, ["train", "sft", "--stage", "s2", "--model", "m", "--data", str(sft),
                              "--out", str(tmp_path / "z"), "--dry-run"])  # fmt: skip
    assert bad.exit_code == 2 and "s1 is SFT" in bad.stderr


def test_curves_from_verls_file_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner
    from verl.utils.tracking import FileLogger

    from ui.cli import app

    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "metrics.jsonl"))
    log = FileLogger("evidex", "s2-grpo")  # what verl's trainer writes with logger=[file]
    for step in range(1, 6):
        log.log({"critic/score/mean": 0.1 * step, "response_length/mean": 900.0 + step,
                 "actor/pg_loss": 0.5 / step, "timing_s/step": 12.0}, step)  # fmt: skip
    log.finish()
    res = CliRunner().invoke(app, ["train", "plot", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "reward: critic/score/mean" in res.stderr and "loss: actor/pg_loss" in res.stderr
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    empty = CliRunner().invoke(app, ["train", "plot", str(tmp_path / "none")])
    assert empty.exit_code == 1 and "no metrics" in empty.stderr
