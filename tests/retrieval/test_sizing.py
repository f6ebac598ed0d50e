"""The index at scale: ``evidex index plan`` (its formulas, its measured inputs) and ``evidex
index create`` laying out a qdrant-client collection (local mode: no Qdrant server can be
installed here, and local mode ignores sharding, HNSW and quantization, so what the client is
asked to create is checked, and search through the quantized path still works)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval.errors import ConfigError
from retrieval.sizing import PlanInputs, plan
from tests.conftest import shared_path
from ui.cli import app


def test_plan_formulas_follow_the_layout() -> None:
    base = dict(documents=1e6, chunks_per_document=2.0, dim=100, payload_bytes=500,
                bm25_terms=10, hnsw_m=16, encoder_rate=1000)  # fmt: skip
    q = plan(PlanInputs(**base, shards=4, replication=3, quantization="int8",  # type: ignore[arg-type]
                        on_disk_payload=True))  # fmt: skip
    # int8 2e6*100 = 0.2e9; HNSW 2e6*32*4*1.1 = 0.2816e9; BM25 2e6*10*8 = 0.16e9
    assert q.ram_per_shard == pytest.approx((0.2e9 + 0.2816e9 + 0.16e9) / 4)
    # float32 0.8e9 + int8 + HNSW + BM25 + payload 1e9, plus 20%, over 4 shards
    assert q.disk_per_shard == pytest.approx((0.8e9 + 0.2e9 + 0.2816e9 + 0.16e9 + 1e9) * 1.2 / 4)
    assert q.cluster_disk == pytest.approx(q.disk_per_shard * 12)
    assert q.ingest_seconds == 2000
    f = plan(PlanInputs(**base, quantization="none", on_disk_payload=False))  # type: ignore[arg-type]
    assert f.dense_int8 == 0
    assert f.ram_per_shard == pytest.approx(0.8e9 + 0.2816e9 + 0.16e9 + 1e9)  # floats, payload
    with pytest.raises(ConfigError, match="quantization must be"):
        PlanInputs(documents=1, quantization="pq")
    with pytest.raises(ConfigError, match="documents must be positive"):
        PlanInputs(documents=0)


def test_plan_command_defaults_and_measured_inputs(tmp_path: Path, tiny_model_dir: Path) -> None:
    from ingest.pipeline import run_ingest
    from ingest.sources.files import records
    from retrieval.index import Index
    from retrieval.settings import load_settings

    runner = CliRunner()
    res = runner.invoke(app, ["index", "plan", "--documents", "36e6", "--shards", "6", "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.stdout)
    assert p["chunks"] == pytest.approx(36e6 * 1.92) and p["inputs"]["shards"] == 6
    assert "MEDLINE" in p["inputs"]["measured_from"]

    lines = shared_path("pubmedqa", "beir_dev", "corpus.jsonl").read_text().splitlines()[:30]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    tiny = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    with Index(tiny, tmp_path / "s") as idx:  # (chunking uses MiniLM's tokenizer all the same)
        run_ingest(records("beir", [tmp_path / "c.jsonl"]), idx, progress=False)
        chunks = idx.store.count()
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(f'[embedding]\nmodel_path = "{tiny_model_dir}"\n')
    res = runner.invoke(app, ["index", "plan", "--documents", "1000", "--measure", "--store",
                              str(tmp_path / "s"), "--config", str(cfg), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["inputs"]
    assert m["chunks_per_document"] == pytest.approx(chunks / 30)
    assert f"{chunks} chunks of" in m["measured_from"] and m["payload_bytes"] > 300


def test_index_create_lays_out_the_collection_and_search_works_quantized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    asked: dict[str, object] = {}
    real = QdrantClient.create_collection

    def spy(self, name, **kw):  # type: ignore[no-untyped-def]
        asked.update(kw)
        return real(self, name, **kw)

    monkeypatch.setattr(QdrantClient, "create_collection", spy)
    cfg = tmp_path / "q.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[embedding]\nmodel_path = "{tiny_model_dir}"\n'
                   f'[store]\nkind = "qdrant"\npath = "{tmp_path / "q"}"\n'
                   "[store.cluster]\nhnsw_m = 32\n")  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(app, ["index", "create", "--config", str(cfg), "--shards", "3",
                              "--replication", "2", "--write-consistency", "2", "--on-disk",
                              "--quantization", "int8", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["existed"] is False
    assert (asked["shard_number"], asked["replication_factor"]) == (3, 2)
    assert asked["write_consistency_factor"] == 2 and asked["on_disk_payload"] is True
    assert asked["hnsw_config"] == m.HnswConfigDiff(m=32)
    q = asked["quantization_config"]
    assert isinstance(q, m.ScalarQuantization) and q.scalar.type == m.ScalarType.INT8
    assert asked["vectors_config"]["dense"].on_disk is True  # type: ignore[index]

    # ingest and search through the quantized (rescoring) query path
    corpus = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    (tmp_path / "c.jsonl").write_text("\n".join(corpus.read_text().splitlines()[:20]) + "\n")
    (tmp_path / "q.toml").write_text(cfg.read_text() + 'quantization = "int8"\n')
    res = runner.invoke(app, ["ingest", "beir", str(tmp_path / "c.jsonl"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", "lace plant programmed cell death", "--config",
                              str(cfg), "--json", "-k", "3", "--mode", "sparse"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["results"][0]["doc_id"].endswith("21645374")
    res = runner.invoke(
        app, ["search", "lace plant", "--config", str(cfg), "--json", "--mode", "dense"]
    )  # the int8 rescoring path (random tiny model)
    assert res.exit_code == 0 and len(json.loads(res.stdout)["results"]) == 5
    again = runner.invoke(app, ["index", "create", "--config", str(cfg), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["existed"] is True
    bad = runner.invoke(app, ["index", "create", "--config", str(cfg), "--quantization", "pq"])
    assert bad.exit_code == 2 and "int8" in bad.output
