"""The ``evidex`` command line, end to end on real data with the real default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import shared_path
from ui.cli import app

runner = CliRunner()


def _beir_slice(tmp_path: Path, n: int) -> Path:
    src = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    out = tmp_path / "corpus.jsonl"
    out.write_text("\n".join(src.read_text().splitlines()[:n]) + "\n")
    return out


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["ingest"],
        ["ingest", "pubmed"],
        ["ingest", "pmc"],
        ["ingest", "guidelines"],
        ["ingest", "beir"],
        ["ingest", "entrez"],
        ["index"],
        ["index", "stats"],
        ["search"],
        ["demo"],
        ["config"],
        ["config", "show"],
        ["train", "rm"],
        ["eval", "rm"],
        ["train", "vrm"],
        ["train", "judge-data"],
        ["train", "tracer"],
        ["eval", "vrm"],
    ],
)
def test_help_everywhere(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    corpus = _beir_slice(tmp, 60)
    store = tmp / "store"
    res = runner.invoke(app, ["ingest", "beir", str(corpus), "--pmid-ids", "--store", str(store),
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["documents"] == 60 and report["written"] == 60 and report["skipped"] == 0
    return corpus, store


def test_stats_json(sample_store: tuple[Path, Path]) -> None:
    _, store = sample_store
    res = runner.invoke(app, ["index", "stats", "--json", "--store", str(store)])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["documents"] == 60 and stats["chunks"] >= 60
    assert stats["sources"]["beir"]["documents"] == 60
    assert stats["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert stats["dim"] == 384
    text = runner.invoke(app, ["index", "stats", "--store", str(store)])
    assert "all-MiniLM-L6-v2" in text.stdout and "beir" in text.stdout


def test_search_finds_the_article_a_question_is_about(sample_store: tuple[Path, Path]) -> None:
    corpus, store = sample_store
    pmids = [json.loads(line)["_id"] for line in corpus.read_text().splitlines()]
    queries = {
        q["_id"].removeprefix("pqa-"): q["text"]
        for q in map(
            json.loads,
            shared_path("pubmedqa", "beir_dev", "queries.jsonl").read_text().splitlines(),
        )
    }
    found = 0
    asked = [p for p in pmids if p in queries][:20]
    for pmid in asked:
        res = runner.invoke(
            app, ["search", queries[pmid], "--json", "-k", "5", "--store", str(store)]
        )
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        hits = data["results"]
        assert hits and {"pmid", "title", "score", "text", "doc_id"} <= set(hits[0])
        found += pmid in {h["pmid"] for h in hits}
    assert len(asked) == 20 and found >= 16  # recall@5 on the questions' own abstracts
    human = runner.invoke(app, ["search", queries[asked[0]], "--store", str(store)])
    assert "PMID" in human.stdout and "score" in human.stdout


def test_search_filters(sample_store: tuple[Path, Path]) -> None:
    _, store = sample_store
    res = runner.invoke(
        app,
        ["search", "cancer", "--json", "--year-from", "2010", "--store", str(store), "-k", "20"],
    )
    assert res.exit_code == 0
    assert all(h["year"] >= 2010 for h in json.loads(res.stdout)["results"])
    none = runner.invoke(
        app, ["search", "cancer", "--json", "--source", "guideline", "--store", str(store)]
    )
    assert json.loads(none.stdout)["results"] == []


def test_errors_are_one_clear_line(tmp_path: Path, sample_store: tuple[Path, Path]) -> None:
    _, store = sample_store
    res = runner.invoke(app, ["search", "x", "--store", str(tmp_path / "nowhere")])
    assert res.exit_code == 1 and "no index at" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["search", "   ", "--store", str(store)])
    assert res.exit_code == 1 and "query is empty" in res.stderr
    res = runner.invoke(app, ["search", "x", "--mode", "fuzzy", "--store", str(store)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["ingest", "pubmed", str(tmp_path / "missing.xml")])
    assert res.exit_code == 1 and "does not exist" in res.stderr
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text("[search]\nk = 'many'\n")
    res = runner.invoke(app, ["search", "x", "--config", str(bad_cfg)])
    assert res.exit_code == 1 and "search.k" in res.stderr


def test_skipped_input_sets_the_exit_code(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = _beir_slice(tmp_path, 5)
    corpus.write_text(corpus.read_text() + "{broken\n")
    env = {"EVIDEX_EMBEDDING__MODEL_PATH": str(tiny_model_dir)}
    res = runner.invoke(
        app, ["ingest", "beir", str(corpus), "--store", str(tmp_path / "s")], env=env
    )
    assert res.exit_code == 3
    assert "corpus.jsonl:line 6: invalid JSON" in res.stderr
    again = runner.invoke(
        app, ["ingest", "beir", str(corpus), "--store", str(tmp_path / "s"), "--json"], env=env
    )
    assert json.loads(again.stdout)["unchanged"] == 5


def test_a_store_of_another_model_is_refused(
    tmp_path: Path, tiny_model_dir: Path, sample_store: tuple[Path, Path]
) -> None:
    corpus, store = sample_store
    env = {"EVIDEX_EMBEDDING__MODEL_PATH": str(tiny_model_dir)}
    res = runner.invoke(app, ["search", "cancer", "--store", str(store)], env=env)
    assert res.exit_code == 1 and "all-MiniLM-L6-v2" in res.stderr and "tiny-bert" in res.stderr
    res = runner.invoke(app, ["ingest", "beir", str(corpus), "--store", str(store)], env=env)
    assert res.exit_code == 1 and "384" in res.stderr


def _evidex() -> list[str]:
    exe = Path(sys.executable).with_name("evidex")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ui.cli"]


def test_demo_offline_without_a_corpus_says_what_to_pass(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "EVIDEX_ENTREZ__BASE_URL": "http://nonexistent.invalid/eutils",
        "EVIDEX_ENTREZ__BACKOFF_S": "0.05",  # the retries still happen, without the waits
        "EVIDEX_DATA_DIR": str(tmp_path),
    }
    res = subprocess.run(
        [*_evidex(), "demo", "--no-interactive"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2
    assert "PubMed is not reachable" in res.stderr
    assert "evidex demo ../shared/data/pubmedqa/beir_dev/corpus.jsonl" in res.stderr
    assert "Traceback" not in res.stderr


def test_demo_with_a_corpus_ingests_and_answers(tmp_path: Path) -> None:
    (tmp_path / "pubmedqa").mkdir()  # under a PubMed-named folder: the demo links PMIDs
    corpus = _beir_slice(tmp_path / "pubmedqa", 30)
    env = {**os.environ, "EVIDEX_DATA_DIR": str(tmp_path / "data")}
    res = subprocess.run(
        [*_evidex(), "demo", str(corpus), "--question", "lace plant cell death"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert "indexed 30 documents" in res.stderr
    assert "PMID 21645374" in res.stdout  # the lace-plant abstract is the first corpus line
    assert "licensed clinician must review" in res.stdout  # a cited answer, not a hit list


def test_search_filters_and_why(sample_store: tuple[Path, Path]) -> None:
    _, store = sample_store
    res = runner.invoke(
        app,
        [
            "search",
            "cell death",
            "--why",
            "--evidence",
            "other",
            "--language",
            "eng",
            "--store",
            str(store),
        ],
    )
    assert res.exit_code == 0, res.output
    bad = runner.invoke(app, ["search", "x", "--evidence", "anecdote", "--store", str(store)])
    assert bad.exit_code == 2 and "bad filter" in bad.stderr
    why = runner.invoke(app, ["search", "lace plant", "--why", "--store", str(store)])
    assert "why: " in why.stdout and "dense" in why.stdout and "final" in why.stdout


def test_help_imports_no_heavy_library() -> None:
    """(pydantic is not on the list: typer itself imports it.)"""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ui.cli import app\n"
        "res = CliRunner().invoke(app, ['train', 'grpo', '--help'])\n"
        "assert res.exit_code == 0, res.output\n"
        "heavy = ['numpy', 'torch', 'qdrant_edge', 'qdrant_client', 'llama_cpp',\n"
        "         'transformers', 'fastapi', 'trl', 'verl', 'sentence_transformers']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
