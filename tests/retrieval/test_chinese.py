"""Chinese in the BM25 branch, on real CMExam rows: a question finds its own explanation among
300 once Chinese is segmented, and hardly ever without it (the baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.pipeline import run_ingest
from ingest.sources.files import records
from retrieval import embedders
from retrieval.chinese import bigrams, segment
from retrieval.embedders import Bm25Encoder
from retrieval.index import Index
from retrieval.settings import load_settings
from tests.conftest import shared_path


def _rows(n: int) -> list[dict]:
    rows = [json.loads(x) for x in shared_path("zh", "cmexam_dev.jsonl").read_text().splitlines()]
    return [r for r in rows if (r.get("explanation") or "nan") not in ("", "nan")][:n]


def _recall_at_5(tmp: Path, tiny_model_dir: Path, rows: list[dict], name: str) -> float:
    corpus = tmp / f"{name}.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": r["explanation"]},
                                         ensure_ascii=False) + "\n"
                              for i, r in enumerate(rows)))  # fmt: skip
    settings = load_settings(data_dir=tmp, embedding={"model_path": tiny_model_dir})
    with Index(settings, tmp / name) as idx:
        run_ingest(records("beir", [corpus]), idx, progress=False)
        found = 0
        for i, r in enumerate(rows):
            hits = idx.search(r["question"], k=5, mode="sparse")
            found += f"beir:d{i}" in {h.doc_id for h in hits}
    return found / len(rows)


def test_segmented_bm25_finds_the_explanation(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(300)
    segmented = _recall_at_5(tmp_path, tiny_model_dir, rows, "segmented")
    monkeypatch.setattr(embedders, "segment", lambda text: text)
    whole_runs = _recall_at_5(tmp_path, tiny_model_dir, rows, "unsegmented")
    assert segmented >= 0.5 and segmented > whole_runs + 0.3, (segmented, whole_runs)


def test_english_is_unchanged_and_chinese_gets_words() -> None:
    enc = Bm25Encoder()
    english = "Low-dose aspirin reduced recurrent stroke after TIA."
    assert segment(english) == english
    raw = enc._bm25.embed_document(english)  # Qdrant's own BM25, without our segmentation
    mine = enc.embed_documents([english])[0]
    assert (mine.indices, mine.values) == (list(raw.indices), list(raw.values))
    words = segment("患者长期服用氯丙嗪后出现迟发性运动障碍").split()
    assert "氯丙嗪" in words and ("迟发性" in words or "运动障碍" in words)
    # a Chinese query shares terms with a Chinese document only when both are segmented
    doc = enc.embed_documents(["长期服用氯丙嗪后出现的不良反应"])[0]
    query = enc.embed_query("氯丙嗪的不良反应")
    assert set(doc.indices) & set(query.indices)
    assert bigrams("不良反应") == ["不良", "良反", "反应"]


def test_search_command_says_how_a_chinese_query_was_searched(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from typer.testing import CliRunner

    from ui.cli import app

    rows = _rows(60)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": r["explanation"]},
                                         ensure_ascii=False) + "\n"
                              for i, r in enumerate(rows)))  # fmt: skip
    env = {"EVIDEX_EMBEDDING__MODEL_PATH": str(tiny_model_dir), "EVIDEX_DATA_DIR": str(tmp_path)}
    store = str(tmp_path / "s")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "beir", str(corpus), "--store", store],
                         env=env).exit_code == 0  # fmt: skip
    res = runner.invoke(app, ["search", rows[3]["question"], "--store", store, "-k", "3"],
                        env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "searched by BM25 alone" in res.stderr
    res = runner.invoke(app, ["search", rows[3]["question"], "--store", store, "--json"], env=env)
    assert json.loads(res.stdout)["results"][0]["doc_id"] == "beir:d3"


def test_the_digest_quotes_the_chinese_source_a_question_is_about(tmp_path: Path) -> None:
    """The embedded default on a Chinese corpus: 20 CMExam questions over 150 explanations
    (real MiniLM, which cannot read Chinese: relevance and sentence choice go by words)."""
    from answer import Assistant

    rows = _rows(150)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": r["explanation"]},
                                         ensure_ascii=False) + "\n"
                              for i, r in enumerate(rows)))  # fmt: skip
    settings = load_settings(data_dir=tmp_path, store={"path": tmp_path / "s"},
                             planner={"use_llm": "never"})  # fmt: skip
    with Index(settings, tmp_path / "s") as idx:
        run_ingest(records("beir", [corpus]), idx, progress=False)
    own = 0
    with Assistant(settings) as a:
        for i, r in enumerate(rows[:20]):
            ans = a.ask(r["question"])
            assert ans.abstained or ans.digest
            assert any("BM25 alone" in w for w in ans.warnings)
            own += f"beir:d{i}" in {c.doc_id for c in ans.citations}
    assert own >= 14, own  # 7 of 20 when MiniLM's cosine picked the sources and sentences
