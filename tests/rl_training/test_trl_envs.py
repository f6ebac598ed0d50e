"""The tool-calling environments (TRL's ``environment_factory``): the tools against a real
evidex index and real AgentClinic cases, the episode reward through the real reward code, and
two GRPO steps of TRL on CPU with a tiny Qwen2 model (Qwen2.5's chat template) that first
learns to call ``search`` and ``request_exam``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rl_training.data.agentic import diagnosis_rows, search_rows
from rl_training.envs.base import SearcherBackend
from rl_training.envs.diagnosis import Case
from rl_training.rewards import compute_score
from rl_training.train.trl_envs import (
    DiagnosisSearchToolEnv,
    DiagnosisToolEnv,
    SearchToolEnv,
    ToolEnvConfig,
    ToolEpisodeReward,
)
from tests.answer_fixture import AnswerIndex
from tests.conftest import shared_path
from tests.tiny_lm import teach_tool_calls

CASES = ("cases", "agentclinic_medqa.jsonl")


def _qa_row(question: str, truth: str = "yes") -> dict[str, Any]:
    row = {
        "data_source": "evidex/pubmedqa",
        "prompt": [{"role": "user", "content": f"{question} Answer yes, no or maybe."}],
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"question": question},
    }
    return next(search_rows([row]))


def _case_rows(tmp_path: Path, n: int = 2) -> list[dict[str, Any]]:
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(shared_path(*CASES).read_text().splitlines()[:n]) + "\n")
    return list(diagnosis_rows(cases))


def _call(tool: str, **arguments: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool, "arguments": arguments}}


def test_search_tool_env_on_a_real_index(answer_index: AnswerIndex) -> None:
    from retrieval.search import Searcher

    row = _qa_row(answer_index.question)
    with Searcher(answer_index.settings()) as searcher:
        env = SearchToolEnv(SearcherBackend(searcher), ToolEnvConfig(k=2, max_calls=2))
        env.reset(**{**row, "reward_model": json.dumps(row["reward_model"])})  # JSON text too
        text = env.search(answer_index.question)
        assert text.startswith("Doc 1(Title:") and "Doc 2(Title:" in text
        assert "non-empty" in env.search("  ")  # corrective, and it counts
        assert "limit (2) reached" in env.search("more")
    good = [
        {"role": "assistant", "content": "", "tool_calls": [_call("search", query="q")]},
        {"role": "tool", "name": "search", "content": text},
        {"role": "assistant", "content": "<think>the trial says so</think> \\boxed{yes}"},
    ]
    reward, info = env._score(good)
    truth = compute_score("evidex/pubmedqa", "\\boxed{yes}", "yes", {})["score"]
    assert truth == 1.0 and reward == pytest.approx(truth + 0.2)
    assert info["searches"] == 3 and info["format_problem"] is None
    wrong, info = env._score([*good[:2], {"role": "assistant", "content": "\\boxed{no}"}])
    assert wrong == pytest.approx(0.2) and info["task_reward"] == 0.0
    unfinished, info = env._score(good[:2])
    assert unfinished == 0.0 and info["format_problem"] == "ended without an answer"
    with pytest.raises(ValueError, match="ground_truth"):
        env.reset(data_source="evidex/pubmedqa", reward_model={})


def test_diagnosis_tool_env_on_real_cases(tmp_path: Path) -> None:
    rows = _case_rows(tmp_path)
    case = Case.from_record(json.loads(shared_path(*CASES).read_text().splitlines()[0]))
    env = DiagnosisToolEnv()
    env.reset(**rows[0])
    found = env.request_exam("Neurological exam")  # case, partial name
    assert "ptosis" in found and found == case.answer("neurological examination")[0]
    assert env.request_exam("ice pack test") == "ice pack test: not available for this patient."
    final = [{"role": "assistant", "content": "\\boxed{The myasthenia gravis.}"}]
    reward, info = env._score(final)
    assert reward == 1.0 and info["requests"] == 2 and info["judge"] == "exact"
    assert env._score([{"role": "assistant", "content": "\\boxed{stroke}"}])[0] == 0.0

    verdicts: list[tuple[str, str]] = []

    def judge(summary: str, reference: str, predicted: str, process: str = "") -> float:
        verdicts.append((reference, predicted))
        return 1.0

    judged = DiagnosisSearchToolEnv(judge, backend=None)
    judged.reset(**rows[1])
    assert "not available" in judged.search("PML")
    reward, info = judged._score([{"role": "assistant", "content": "\\boxed{PML}"}])
    assert reward == 1.0 and info["judge"] == "vrm" and info["searches"] == 1
    assert verdicts == [(rows[1]["reward_model"]["ground_truth"], "PML")]
    with pytest.raises(ValueError, match="case_json"):
        env.reset(data_source="evidex/diagnosis", extra_info={})


def test_episode_reward_keeps_and_logs_episodes(tmp_path: Path) -> None:
    env = DiagnosisToolEnv()
    env.reset(**_case_rows(tmp_path, 1)[0])
    env.request_exam("vital signs")
    logged: dict[str, float] = {}
    reward = ToolEpisodeReward()
    out = reward(
        [[{"role": "assistant", "content": "\\boxed{myasthenia gravis}"}], "no answer"],
        environments=[env, env],
        log_metric=logged.__setitem__,
    )
    assert out == [1.0, 0.0]
    assert [e["env"] for e in reward.episodes] == ["DiagnosisToolEnv"] * 2
    assert logged == {"env/task_reward": 0.5, "env/searches": 0.0, "env/exam_requests": 1.0}
    with pytest.raises(ValueError, match="environment_factory"):
        reward(["x"])


# -- TRL ---------------------------------------------------------------------------------


def test_environment_factory_two_grpo_steps(
    tiny_lm: Path, answer_index: AnswerIndex, tmp_path: Path
) -> None:
    pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[train]')")
    import torch
    from safetensors.torch import load_file

    from retrieval.search import Searcher
    from rl_training.train.trl_local import LocalGRPOConfig, tool_env_trainer, tool_row

    qa = _qa_row(answer_index.question)
    case_row = _case_rows(tmp_path, 1)[0]
    cfg = ToolEnvConfig(k=1, max_passage_chars=160, max_calls=2)
    with Searcher(answer_index.settings()) as searcher:
        backend = SearcherBackend(searcher)
        search_env, diag_env = SearchToolEnv(backend, cfg), DiagnosisToolEnv(config=cfg)
        search_env.reset(**qa)
        diag_env.reset(**case_row)
        warm = teach_tool_calls(
            tiny_lm,
            [(tool_row(qa)["prompt"], [search_env.search],
              _call("search", query="tailored mammography"), "\\boxed{yes}"),
             (case_row["prompt"], [diag_env.request_exam],
              _call("request_exam", name="neurological examination"),
              "\\boxed{Myasthenia gravis}")],
            tmp_path / "warm",
        )  # fmt: skip
        before = load_file(str(warm / "model.safetensors"))
        run_cfg = LocalGRPOConfig(
            output_dir=tmp_path / "run", max_steps=2, num_generations=4, prompts_per_step=2,
            learning_rate=1e-3, max_completion_tokens=400, max_turns=2,
        )  # fmt: skip
        factories = {
            "search": lambda: SearchToolEnv(backend, cfg),
            "diagnosis": lambda: DiagnosisToolEnv(config=cfg),
        }
        trainer, reward = tool_env_trainer(warm, [qa, case_row], factories, run_cfg)
        seen: list[dict[str, Any]] = []
        inner = trainer._generate_and_score_completions

        def spy(inputs: Any) -> Any:
            out = inner(inputs)
            seen.append(out)
            return out

        trainer._generate_and_score_completions = spy
        trainer.train()

    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k].cpu()) for k in before if k in after)
    episodes = reward.episodes
    assert len(episodes) == 16  # 2 steps x 2 prompts x 4 generations
    searched = [e for e in episodes if e["env"] == "SearchToolEnv" and e["searches"]]
    requested = [e for e in episodes if e["env"] == "DiagnosisToolEnv" and e["requests"]]
    assert searched and requested, "the warmed-up model should call both tools"
    # rewards: the real reward code (task + 0.2 x format for search; exact match for diagnosis)
    for e in episodes:
        if e["env"] == "SearchToolEnv":
            boxed = f"\\boxed{{{e['answer']}}}"
            task = compute_score("evidex/pubmedqa", boxed, "yes", {})["score"] if e["answer"] else 0
            assert e["reward"] == pytest.approx(task + 0.2 * e["format_reward"])
        else:
            assert e["reward"] == float((e["diagnosis"] or "").lower() == "myasthenia gravis")
    assert any(e["reward"] > 0 for e in episodes)
    # the tool answers (retrieved passages, findings) were masked out of the loss
    tok = trainer.processing_class
    masked_texts = []
    for out in seen:
        for ids, keep, mask in zip(out["completion_ids"], out["completion_mask"],
                                   out["tool_mask"], strict=True):  # fmt: skip
            ids, keep, mask = ids.tolist(), keep.tolist(), mask.tolist()
            hidden = [t for t, k, m in zip(ids, keep, mask, strict=True) if k and not m]
            shown = [t for t, k, m in zip(ids, keep, mask, strict=True) if k and m]
            masked_texts.append(tok.decode(hidden))
            assert "<tool_response>" not in tok.decode(shown)
    assert any("Doc 1(Title:" in t for t in masked_texts)  # retrieved text
    assert any("ptosis" in t for t in masked_texts)  # the case's findings
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2 and "env/exam_requests" in logged[0]


def test_a_template_without_tool_calls_is_refused(tiny_lm: Path, tmp_path: Path) -> None:
    pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[train]')")
    from rl_training.train.trl_local import LocalGRPOConfig, tool_env_trainer

    rows = _case_rows(tmp_path, 1)
    with pytest.raises(ValueError, match="--protocol tags"):
        tool_env_trainer(tiny_lm, rows, {"diagnosis": DiagnosisToolEnv},
                         LocalGRPOConfig(output_dir=tmp_path / "o"))  # fmt: skip


def test_s4_tools_protocol_on_the_command_line(tiny_lm: Path, tmp_path: Path) -> None:
    """`evidex train grpo --engine trl --stage s4` on diagnosis rows: environment_factory with
    an untrained tool-calling model (reward 0, every episode written); a model whose template
    cannot call tools gets a clear error."""
    pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[train]')")
    from transformers import AutoTokenizer
    from trl.chat_template_utils import qwen2_5_chat_template
    from typer.testing import CliRunner

    from rl_training.data.export import export
    from ui.cli import app

    cases = tmp_path / "cases.jsonl"
    cases.write_text(shared_path(*CASES).read_text().splitlines()[0] + "\n")
    rows = tmp_path / "cases.parquet"
    export("diagnosis", cases, rows)
    model = tmp_path / "model"
    model.mkdir()
    for f in tiny_lm.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    tok = AutoTokenizer.from_pretrained(str(model))
    tok.chat_template = qwen2_5_chat_template
    tok.save_pretrained(str(model))
    base = ["train", "grpo", "--engine", "trl", "--stage", "s4", "--data", str(rows), "--cpu",
            "--max-steps", "1"]  # fmt: skip
    res = CliRunner().invoke(app, [*base, "--model", str(model), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    episodes = [json.loads(x) for x in (tmp_path / "run" / "episodes.jsonl").open()]
    assert len(episodes) == 4 and {e["env"] for e in episodes} == {"DiagnosisToolEnv"}
    assert all(e["correct"] == "Myasthenia gravis" for e in episodes)
    assert (tmp_path / "run" / "curves.png").is_file()
    bad = CliRunner().invoke(app, [*base, "--model", str(tiny_lm), "--out", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "--protocol tags" in bad.stderr
    odd = CliRunner().invoke(app, [*base, "--model", str(model), "--out", str(tmp_path / "c"),
                                   "--protocol", "xml"])  # fmt: skip
    assert odd.exit_code == 2 and "use tools or tags" in odd.stderr
