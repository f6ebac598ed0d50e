"""Learned ranking: the retriever adapted to a real corpus with the packaged MiniLM (pseudo-
queries, BM25 hard negatives, MultipleNegativesRankingLoss), then the store re-embedded with it
(resumable; the old store untouched until the new one is whole)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi import Request

from ingest.pipeline import run_ingest
from ingest.reembed import reembed
from ingest.sources.files import records
from retrieval.errors import ConfigError, InputError
from retrieval.index import Index
from retrieval.settings import load_settings
from rl_training.auxiliary.retriever import (
    RetrieverConfig,
    adapt,
    beir_pairs,
    documents,
    feedback_pairs,
    mine_negatives,
    pseudo_queries,
)
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """60 PubMedQA abstracts (untitled) and 40 MedQuAD answers (titled by their question) in
    a store of the packaged MiniLM."""
    import gzip

    tmp = tmp_path_factory.mktemp("ranking")
    lines = shared_path("pubmedqa", "beir_dev", "corpus.jsonl").read_text().splitlines()[:60]
    beir = tmp / "corpus.jsonl"
    beir.write_text("\n".join(lines) + "\n")
    with gzip.open(shared_path("guidelines", "medquad", "medquad_answered.jsonl.gz"), "rt") as f:
        mq = [json.loads(next(f)) for _ in range(40)]
    medquad = tmp / "medquad.jsonl"
    medquad.write_text("".join(json.dumps(r) + "\n" for r in mq))
    settings = load_settings(data_dir=tmp)
    with Index(settings, tmp / "store") as idx:
        run_ingest(records("beir", [beir], pmid_ids=True), idx, progress=False)
        run_ingest(records("guidelines", [medquad]), idx, progress=False)
    return tmp, tmp / "store"


def test_pseudo_queries_and_negatives_from_the_store(corpus_store: tuple[Path, Path]) -> None:
    tmp, store = corpus_store
    with Index(load_settings(data_dir=tmp), store, create=False) as idx:
        docs = documents(idx)
        assert len(docs) == 100
        pairs, skipped = pseudo_queries(docs, random.Random(0))
        origins = {p.origin for p in pairs}
        assert origins == {"title", "cloze"} and skipped <= 2
        for p in pairs:
            assert p.query and p.positive and p.query not in p.positive
        mined = mine_negatives(idx, pairs[:30], random.Random(0))
        assert sum(bool(p.negative) for p in mined) >= 28
        assert all(p.negative != p.positive for p in mined)


def test_adapted_retriever_learns_its_pairs_and_reembeds_the_store(
    corpus_store: tuple[Path, Path], tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    from retrieval.embedders import default_model_path

    tmp, store = corpus_store
    settings = load_settings(data_dir=tmp)
    cfg = RetrieverConfig(out=tmp_path / "adapted", epochs=1, batch_size=16, min_documents=50,
                          train_max_tokens=64)  # fmt: skip
    with Index(settings, store, create=False) as idx:
        report = adapt(idx, cfg)
        pairs, _ = pseudo_queries(documents(idx), random.Random(1))
        pairs = mine_negatives(idx, pairs[:40], random.Random(1))
    assert report.pairs >= 80 and report.with_negative == report.pairs
    assert set(report.by_origin) == {"title", "cloze"} and report.dim == 384
    assert (cfg.out / "evidex_retriever.json").exists()

    def margin(model: SentenceTransformer) -> float:  # positive minus hard-negative cosine
        q = model.encode([p.query for p in pairs], normalize_embeddings=True)
        pos = model.encode([p.positive for p in pairs], normalize_embeddings=True)
        neg = model.encode([p.negative for p in pairs], normalize_embeddings=True)
        return float(np.mean((q * pos).sum(1) - (q * neg).sum(1)))

    before = margin(SentenceTransformer(str(default_model_path()), device="cpu"))
    after = margin(SentenceTransformer(str(cfg.out), device="cpu"))
    assert after > before + 0.01, (before, after)

    # re-embed into a new store: same points and payloads, the new model recorded
    copy = tmp_path / "copy"
    r = reembed(settings, cfg.out, store, copy, batch=64, progress=False)
    assert r.points == r.embedded and not r.replaced
    with (
        Index(settings, store, create=False) as old,
        Index(
            load_settings(data_dir=tmp, embedding={"model_path": cfg.out}), copy, create=False
        ) as new,
    ):
        assert new.store.point_ids() == old.store.point_ids()
        assert dict(new.store.payloads()) == dict(old.store.payloads())
        assert new.store.info().embedding_model == "adapted"
        assert new.search("mammography use among HMO women", k=3)
    again = reembed(settings, cfg.out, store, copy, progress=False)
    assert again.embedded == 0 and again.already_done == r.points


def test_reembed_resumes_and_replaces_only_when_whole(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import ingest.reembed as mod

    lines = shared_path("pubmedqa", "beir_dev", "corpus.jsonl").read_text().splitlines()[:60]
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    work = tmp_path / "store"
    with Index(settings, work) as idx:
        run_ingest(records("beir", [tmp_path / "corpus.jsonl"]), idx, progress=False)
        total = idx.store.count()
        before = dict(idx.store.payloads())
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-adapted"))
    calls = {"n": 0}
    real = mod.PointRecord

    def dying(*a, **kw):  # the job is killed after the first batch
        calls["n"] += 1
        if calls["n"] > 20:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(mod, "PointRecord", dying)
    with pytest.raises(KeyboardInterrupt):
        reembed(settings, model, work, None, batch=20, progress=False)
    monkeypatch.setattr(mod, "PointRecord", real)
    with Index(settings, work, create=False) as idx:  # untouched meanwhile
        assert idx.store.count() == total and idx.store.info().embedding_model == "tiny-bert"
    done = reembed(settings, model, work, None, batch=20, progress=False)
    assert done.already_done == 20 and done.embedded == total - 20 and done.replaced
    assert Path(done.backup or "").exists()
    adapted = load_settings(data_dir=tmp_path, embedding={"model_path": model})
    with Index(adapted, work, create=False) as idx:
        assert idx.store.info().embedding_model == "tiny-adapted"
        assert dict(idx.store.payloads()) == before
        assert idx.search("programmed cell death in the lace plant", k=3)
    with Index(settings, work, create=False) as idx, pytest.raises(Exception, match="tiny"):
        idx.search("lace plant", k=3)  # the old model no longer matches the store
    # another dimension in place: refused, the store untouched
    with pytest.raises(ConfigError, match="give --out"):
        reembed(adapted, __import__("retrieval.embedders").embedders.default_model_path(), work,
                None, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="not a sentence-transformers model"):
        reembed(settings, tmp_path, work, None, progress=False)


def test_bad_input_is_named(corpus_store: tuple[Path, Path], tmp_path: Path) -> None:
    tmp, store = corpus_store
    settings = load_settings(data_dir=tmp)
    with Index(settings, store, create=False) as idx:
        with pytest.raises(InputError, match="of 100"):
            adapt(idx, RetrieverConfig(out=tmp_path / "m", min_documents=500))
        with pytest.raises(InputError, match="no feedback database"):
            feedback_pairs(tmp_path / "none.sqlite", idx)
        db = tmp_path / "fb.sqlite"
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE feedback (question TEXT, citations TEXT, rating INTEGER, "
                        "abstained INTEGER)")  # fmt: skip
            con.execute("INSERT INTO feedback VALUES ('q', '[]', -1, 0)")
        with pytest.raises(InputError, match="no helpful-rated answer"):
            feedback_pairs(db, idx)
        with sqlite3.connect(db) as con:
            cite = json.dumps([{"doc_id": "pmid:21645374", "sentence": "PCD in lace plant",
                                "status": "verified"}])  # fmt: skip
            con.execute("INSERT INTO feedback VALUES ('Do mitochondria play a role in PCD?', ?, "
                        "1, 0)", (cite,))  # fmt: skip
        (fb,) = feedback_pairs(db, idx)
        assert fb.origin == "feedback" and fb.doc_id == "pmid:21645374"
    with pytest.raises(InputError, match="not a BEIR folder"):
        beir_pairs(tmp_path)
    pairs = beir_pairs(shared_path("pubmedqa", "beir_dev"), exclude=["pqa-10808977"])
    assert len(pairs) == 499 and all(p.origin == "pairs" for p in pairs)
    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        RetrieverConfig(out=tmp_path, batch_size=1)


# -- the reranker ------------------------------------------------------------------------------


def _teacher_app() -> object:
    """An OpenAI-compatible teacher: grade 3 when the passage holds two of the query's longer
    words, else 0; no grade at all for queries that mention 'lace'."""
    import re

    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, object]:
        user = (await request.json())["messages"][-1]["content"]
        query, passage = user.split("\n\nPassage: ", 1)
        words = set(re.findall(r"[a-z]{6,}", query.lower()))
        shared = len(words & set(re.findall(r"[a-z]{6,}", passage.lower())))
        text = "I cannot say." if "lace" in query.lower() else json.dumps(
            {"grade": 3 if shared >= 2 else 0})  # fmt: skip
        return {"model": "teacher", "choices": [{"message": {"content": text}}]}

    return app


def test_trained_reranker_orders_its_candidates_and_serves_ask_not_plain_search(
    corpus_store: tuple[Path, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rl_training.auxiliary.reranker import RerankerConfig, load_base, mine_candidates, train
    from rl_training.auxiliary.retriever import collect_pairs
    from ui.cli import app

    tmp, store = corpus_store
    settings = load_settings(data_dir=tmp)
    cfg = RerankerConfig(out=tmp_path / "rr", layers=1, max_length=64, negatives=2,
                         max_pairs=60, epochs=4, batch_size=16, lr=3e-4, validation=0.2,
                         min_documents=50)  # fmt: skip
    with Index(settings, store, create=False) as idx:
        report = train(idx, cfg)
        rng = random.Random(cfg.seed)  # the trainer's own draw: its queries and negatives
        pairs, _, _ = collect_pairs(idx, rng, min_documents=1, max_pairs=60)
        negs = mine_candidates(idx, pairs, rng, 2, cfg.candidates)
    kept = [(p, n) for p, n in zip(pairs, negs, strict=True) if n]
    assert 8 <= report.held_out <= 12  # those whose document is among their candidates
    pairs, negs = [p for p, _ in kept[12:]], [n for _, n in kept[12:]]  # the trained ones
    assert report.layers == 1 and report.positives == len(pairs)
    assert report.examples == len(pairs) + sum(len(n) for n in negs)
    assert report.latency_passages == 30 and report.latency_ms > 0
    meta = json.loads((cfg.out / "evidex_reranker.json").read_text())
    assert meta["layers"] == 1 and meta["weight"] == report.weight

    def ordered(model: object) -> float:  # share of queries whose own passage scores first
        wins = 0
        for p, n in zip(pairs, negs, strict=True):
            s = model.predict([(p.query, t) for t in [p.positive, *n]], show_progress_bar=False)
            wins += int(np.argmax(s) == 0)
        return wins / len(pairs)

    from sentence_transformers import CrossEncoder

    from retrieval.embedders import default_model_path

    before = ordered(load_base(default_model_path(), 1, 64, "cpu"))
    after = ordered(CrossEncoder(str(cfg.out), device="cpu", local_files_only=True))
    assert after >= 0.7 and after > before + 0.25, (before, after)

    # served: ask's path reranks (search_many), plain search only when asked
    served = load_settings(data_dir=tmp, search={"rerank": {"kind": "cross-encoder",
                                                            "model_path": cfg.out}})  # fmt: skip
    q = "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"
    with Index(served, store, create=False) as idx:
        (asked,) = idx.search_many([q], k=5)
        assert all("rerank" in h.score_parts for h in asked)
        assert "rerank_ms" in idx.last_timings
    cfg_file = tmp_path / "rerank.toml"
    cfg_file.write_text(f'[search.rerank]\nkind = "cross-encoder"\nmodel_path = "{cfg.out}"\n'
                        f'[store]\npath = "{store}"\n')  # fmt: skip
    runner = CliRunner()
    plain = runner.invoke(app, ["search", q, "--config", str(cfg_file), "--json", "-k", "3"])
    assert plain.exit_code == 0, plain.output
    assert all("rerank" not in h["score_parts"] for h in json.loads(plain.stdout)["results"])
    ranked = runner.invoke(app, ["search", q, "--rerank", "--config", str(cfg_file), "--json"])
    assert ranked.exit_code == 0 and all("rerank" in h["score_parts"]
                                         for h in json.loads(ranked.stdout)["results"])  # fmt: skip

    # eval retrieval --rerank: both rows, the rerank stage timed
    beir = shared_path("pubmedqa", "beir_dev")
    small = tmp_path / "small.jsonl"  # a throw-away store: a few documents are enough here
    small.write_text("".join((tmp / "corpus.jsonl").read_text().splitlines(True)[:12]))
    res = runner.invoke(app, ["eval", "retrieval", "--corpus", str(small),
                              "--queries", str(beir / "queries.jsonl"), "--qrels",
                              str(beir / "qrels" / "test.tsv"), "--limit", "8", "--reranker",
                              str(cfg.out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert set(rows) == {"evidex", "evidex + rerank"}
    assert "rerank" in rows["evidex + rerank"]["stages_ms"]
    assert "rerank" not in rows["evidex"]["stages_ms"] and "embed" in rows["evidex"]["stages_ms"]
    no_reranker = runner.invoke(app, ["search", q, "--rerank", "--store", str(store)])
    assert no_reranker.exit_code == 1, no_reranker.output
    assert "needs a reranker" in no_reranker.output


class _ByPosition:
    """A stand-in reranker for :func:`validate`: the own document comes first in what it is
    given; ``oracle`` scores it 1 and the rest 0, otherwise the reverse."""

    def __init__(self, oracle: bool) -> None:
        self.oracle = oracle

    def predict(self, pairs: list[tuple[str, str]], **kw: object) -> list[float]:
        return [float((i == 0) == self.oracle) for i in range(len(pairs))]


def test_validation_runs_the_first_stage_and_picks_the_blend(
    corpus_store: tuple[Path, Path],
) -> None:
    from rl_training.auxiliary.reranker import validate
    from rl_training.auxiliary.retriever import collect_pairs

    tmp, store = corpus_store
    with Index(load_settings(data_dir=tmp), store, create=False) as idx:
        pairs, _, _ = collect_pairs(idx, random.Random(3), min_documents=1, max_pairs=25)
        n, first, alone, blended, w = validate(idx, _ByPosition(True), pairs, 30)
        assert n >= 20 and alone == 1.0 and blended == 1.0 and 0 < first < 1.0
        assert w > 0.0  # the reranker is let in because it helps
        n2, first2, alone2, blended2, w2 = validate(idx, _ByPosition(False), pairs, 30)
        assert (n2, first2) == (n, first) and w2 == 0.0 and blended2 == first
        assert alone2 < first


def test_teacher_grades_relabel_pairs_and_failures_keep_binary_labels() -> None:
    from answer.llm import OpenAIChat
    from retrieval.settings import LLMSettings
    from rl_training.auxiliary.reranker import RerankExample, teacher_label
    from tests.llama_server import serve_app

    stroke = "aspirin secondary prevention stroke"
    rows = [
        RerankExample(stroke, "Aspirin for secondary prevention after stroke.", 1.0, True),
        RerankExample(stroke, "Statins lowered cholesterol in the trial.", 0.0, False),
        RerankExample("lace plant leaves", "Lace plant leaves form holes.", 1.0, True),
        # the teacher overrules a wrong binary label
        RerankExample("insulin glargine dosing", "Insulin glargine dosing starts low.", 0.0, False),
    ]
    with serve_app(_teacher_app()) as url:
        chat = OpenAIChat(LLMSettings(kind="openai", base_url=f"{url}/v1", retries=0))
        out, failed = teacher_label(chat, rows, limit=10, concurrency=2)
        chat.close()
    assert failed == 1
    assert [(r.label, r.teacher) for r in out] == [(1.0, True), (0.0, True), (1.0, False),
                                                   (1.0, True)]  # fmt: skip
    capped, _ = teacher_label(_never_called(), rows[:2], limit=1)
    assert capped == rows[:2]  # the query's two pairs do not fit a budget of one


def _never_called() -> object:
    class Chat:
        def complete(self, *a: object, **kw: object) -> object:
            raise AssertionError("the teacher was asked beyond its budget")

    return Chat()


def test_a_cross_encoder_checkpoint_keeps_its_head_and_can_be_cut(tmp_path: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from rl_training.auxiliary.reranker import load_base
    from tests.conftest import build_tiny_model

    base = build_tiny_model(tmp_path / "ce", BertForSequenceClassification, BertConfig,
                            num_labels=1)  # fmt: skip
    head = BertForSequenceClassification.from_pretrained(str(base)).classifier.weight
    ce = load_base(base, 1, 64, "cpu")
    hf = ce[0].model
    assert hf.config.num_hidden_layers == 1 and len(hf.bert.encoder.layer) == 1
    assert torch.equal(hf.classifier.weight, head)  # the trained head, not a new one
    assert len(ce.predict([("q", "a passage")], show_progress_bar=False)) == 1


def test_reranker_bad_input_is_named(corpus_store: tuple[Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rl_training.auxiliary.reranker import RerankerConfig, train
    from ui.cli import app

    tmp, store = corpus_store
    with Index(load_settings(data_dir=tmp), store, create=False) as idx:
        with pytest.raises(InputError, match="of 100"):
            train(idx, RerankerConfig(out=tmp_path / "r", min_documents=500))
        with pytest.raises(ConfigError, match="served LLM"):
            train(idx, RerankerConfig(out=tmp_path / "r", teacher=True))
    with pytest.raises(ConfigError, match="only 6 layers"):
        from retrieval.embedders import default_model_path
        from rl_training.auxiliary.reranker import load_base

        load_base(default_model_path(), 12, 128, "cpu")
    with pytest.raises(ConfigError, match="not a model folder"):
        RerankerConfig(out=tmp_path / "r", base=tmp_path)
    with pytest.raises(ConfigError, match=r"candidates \(3\) must exceed negatives \(3\)"):
        RerankerConfig(out=tmp_path / "r", candidates=3)
    res = CliRunner().invoke(app, ["train", "reranker", "--out", str(tmp_path / "r"),
                                   "--store", str(store), "--teacher"])  # fmt: skip
    assert res.exit_code == 1 and "needs a served LLM" in res.output
