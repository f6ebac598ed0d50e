"""Keeping an index in sync with PubMed's annual baseline and daily update files
(``evidex sync pubmed``).

PubMed publishes a baseline (``pubmed26n0001.xml.gz`` ... ``n1274``: every citation once) and
then update files (``pubmed26n1275.xml.gz`` ...) in which a citation may come again, revised, or
be deleted (``DeleteCitation``). Applied in order, they give today's PubMed:

- files are processed one at a time, baseline files first and then update files, each in name
  order (the sequence numbers continue from the baseline into the updates);
- a revised citation replaces the chunks of the old one (its content hash changed), a deleted
  one is removed, an unchanged one is left alone;
- every finished file is recorded in a manifest (name, size, SHA-256, what it did), so the next
  run does only new files, and a killed run redoes only the file it was in (idempotently);
- a file that cannot be read through (corrupt gzip, truncated XML) is reported and not recorded.
  A bad baseline file is skipped and the others go on (each citation is in one baseline file);
  a bad update file stops the run there, since later files may revise what it holds - fix or
  re-download it and run again;
- a baseline file that arrives after updates were applied is refused: it would bring back
  citations as they were before their revisions.

The manifest records the store it belongs to (where it is and the embedding model); a manifest
of another store is refused. ``--from-ftp URL`` first downloads the files the folders lack from
an NCBI-style listing (``.../baseline/``, ``.../updatefiles/``), each checked against its
``.md5``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ingest.pipeline import run_ingest
from ingest.records import InputError, Problem, Record
from retrieval.errors import ConfigError, EvidexError
from retrieval.index import Index

log = logging.getLogger(__name__)

PUBMED_FILE = re.compile(r"^pubmed\d{2}n(\d{4,})\.xml(\.gz)?$")
"""An NCBI PubMed baseline or update file name; the group is its sequence number."""

Stage = Literal["baseline", "update"]


class SyncError(EvidexError):
    """The sync cannot go on as asked; the message says what to do."""


@dataclass
class FileRecord:
    """One finished file in the manifest."""

    name: str
    stage: Stage
    size: int
    sha256: str
    documents: int
    deleted: int
    skipped: int
    seconds: float
    finished: str


@dataclass
class SyncReport:
    """What one ``sync`` run did."""

    processed: list[str] = field(default_factory=list)
    already_done: int = 0
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    """Update files after a failed one: left for the next run."""
    documents: int = 0
    written: int = 0
    replaced: int = 0
    deleted: int = 0
    skipped: int = 0
    downloaded: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequence(path: Path) -> int:
    """The sequence number of a PubMed file name.

    >>> sequence(Path("pubmed26n1275.xml.gz")), sequence(Path("medline16n0902.xml.gz"))
    (1275, 902)
    """
    m = PUBMED_FILE.match(path.name) or re.search(r"n(\d{4,})\.xml", path.name)
    if not m:
        raise InputError(f"{path.name} is not a PubMed file name (pubmedYYnNNNN.xml.gz)")
    return int(m.group(1))


def pubmed_files(folder: Path | None) -> list[Path]:
    """The ``*.xml`` / ``*.xml.gz`` files of a folder in sequence order."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of PubMed files")
    files = [p for p in folder.iterdir() if p.is_file() and re.search(r"\.xml(\.gz)?$", p.name)]
    return sorted(files, key=lambda p: (sequence(p), p.name))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- the manifest --------------------------------------------------------------------------------


class Manifest:
    """The finished files of one store, as JSON (written whole after every file)."""

    def __init__(self, path: Path, store: str, model: str) -> None:
        self.path = Path(path)
        self.store, self.model = store, model
        self.files: dict[str, FileRecord] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.files = {r["name"]: FileRecord(**r) for r in data["files"]}
                theirs = (str(data["store"]), str(data["embedding_model"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise SyncError(f"{self.path} is not a sync manifest: {exc}") from exc
            if theirs != (store, model):
                raise SyncError(
                    f"{self.path} belongs to the store {theirs[0]} ({theirs[1]}), not {store} "
                    f"({model}): give this store's manifest (--manifest) or a new path"
                )

    def done(self, path: Path) -> FileRecord | None:
        return self.files.get(path.name)

    def add(self, rec: FileRecord) -> None:
        self.files[rec.name] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {"store": self.store, "embedding_model": self.model,
                "files": [asdict(r) for r in self.files.values()]}  # fmt: skip
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(self.path)  # atomic: a killed run leaves the old manifest or the new one

    @property
    def last_update(self) -> int | None:
        seqs = [sequence(Path(r.name)) for r in self.files.values() if r.stage == "update"]
        return max(seqs) if seqs else None


def default_manifest(index: Index, job: str = "sync") -> Path:
    """``<store>/<job>-manifest.json`` for a store folder; for a Qdrant server (or its
    in-memory mode), a file under the data folder named for its URL and collection."""
    if index.where != ":memory:" and "://" not in index.where:
        return Path(index.where) / f"{job}-manifest.json"
    name = re.sub(r"[^A-Za-z0-9]+", "-", f"{index.where}-{index.settings.store.collection}")
    return Path(index.settings.data_dir) / job / f"{name.strip('-')}.json"


# -- syncing -------------------------------------------------------------------------------------


def _file_failure(problems: list[Problem]) -> Problem | None:
    """The problem that stopped a file from being read through (not one bad record)."""
    return next((p for p in problems if not p.where or p.where.startswith("line ")), None)


def _watch(records: Iterator[Record], seen: list[Problem]) -> Iterator[Record]:
    for r in records:
        if isinstance(r, Problem):
            seen.append(r)
        yield r


def sync_pubmed(
    index: Index,
    baseline: Path | None,
    updates: Path | None,
    *,
    manifest: Path | None = None,
    progress: bool | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> SyncReport:
    """Apply the files of ``baseline`` and then ``updates`` not yet in the manifest."""
    from ingest.sources.files import records

    if baseline is None and updates is None:
        raise InputError("give --baseline DIR, --updates DIR or both")
    base_files, update_files = pubmed_files(baseline), pubmed_files(updates)
    if not base_files and not update_files:
        raise InputError(f"no PubMed .xml or .xml.gz files in {baseline or ''} {updates or ''}")
    index.ensure_store()
    man = Manifest(manifest or default_manifest(index), index.where, index.embedder.name)
    last = man.last_update
    late = [p.name for p in base_files if not man.done(p)]
    if late and last is not None:
        raise SyncError(
            f"{len(late)} baseline file(s) not yet applied ({late[0]} ...) but update files up to "
            f"n{last:04d} already are: applying them now would undo those revisions. Start a new "
            "store (and manifest) for a new baseline"
        )
    report = SyncReport()
    started = time.perf_counter()
    plan: list[tuple[Stage, Path]] = [("baseline", p) for p in base_files]
    plan += [("update", p) for p in update_files]
    for i, (stage, path) in enumerate(plan):
        size, digest = path.stat().st_size, sha256(path)
        rec = man.done(path)
        if rec is not None:
            if (rec.size, rec.sha256) != (size, digest):
                log.warning("%s differs from the copy applied on %s: it is applied again",
                            path.name, rec.finished)  # fmt: skip
            else:
                report.already_done += 1
                continue
        if on_file:
            on_file(path)
        seen: list[Problem] = []
        t0 = time.perf_counter()
        done = run_ingest(_watch(records("pubmed", [path]), seen), index, progress=progress,
                          desc=f"sync {path.name}")  # fmt: skip
        report.documents += done.documents
        report.written += done.written
        report.replaced += done.replaced
        report.deleted += done.deleted
        report.skipped += done.skipped
        failure = _file_failure(seen)
        if failure is not None:
            report.failed.append(f"{path.name}: {failure.message}")
            log.error("%s could not be read through: %s", path.name, failure.message)
            if stage == "update":
                report.waiting = [p.name for _, p in plan[i + 1 :]]
                break
            continue
        man.add(FileRecord(path.name, stage, size, digest, done.documents, done.deleted,
                           done.skipped, round(time.perf_counter() - t0, 2),
                           time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))  # fmt: skip
        report.processed.append(path.name)
        log.info("%s applied: %d documents, %d deleted", path.name, done.documents, done.deleted)
    report.seconds = round(time.perf_counter() - started, 2)
    return report


# -- downloading ---------------------------------------------------------------------------------


def _listing(client: Any, url: str) -> list[str]:
    resp = client.get(url)
    if resp.status_code != 200:
        raise SyncError(f"{url} answered {resp.status_code}: is it the PubMed FTP folder?")
    names = re.findall(r'href="(pubmed\d{2}n\d{4,}\.xml\.gz)"', resp.text)
    return sorted(set(names))


def _fetch_one(client: Any, url: str, name: str, folder: Path, max_bytes: int) -> None:
    """Download ``url + name`` into ``folder`` as ``name.part``, check it against
    ``name.md5``, then rename it; a file that does not match is deleted."""
    md5 = client.get(url + name + ".md5")
    want = re.search(r"\b([0-9a-f]{32})\b", md5.text) if md5.status_code == 200 else None
    if want is None:
        raise SyncError(f"{url}{name}.md5 is missing or unreadable: {name} not downloaded")
    part = folder / f"{name}.part"
    h = hashlib.md5()  # NCBI publishes MD5 checksums
    n = 0
    try:
        with client.stream("GET", url + name) as resp, part.open("wb") as out:
            if resp.status_code != 200:
                raise SyncError(f"{url}{name} answered {resp.status_code}")
            for block in resp.iter_bytes(1 << 20):
                n += len(block)
                if n > max_bytes:
                    raise SyncError(f"{url}{name} is over {max_bytes:,} bytes: refused")
                h.update(block)
                out.write(block)
        if h.hexdigest() != want.group(1):
            raise SyncError(f"{url}{name} does not match its .md5: not kept; run again")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(folder / name)


def download_missing(
    base_url: str,
    folder: Path,
    sub: str,
    *,
    timeout_s: float = 60.0,
    max_bytes: int = 200 * 1024**2,
    limit: int | None = None,
) -> list[str]:
    """Download the files of ``base_url/sub/`` that ``folder`` lacks (at most ``limit``),
    each verified against its ``.md5``; the names downloaded."""
    import httpx

    folder.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{sub}/"
    got: list[str] = []
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=True) as client:
            names = [n for n in _listing(client, url) if not (folder / n).exists()]
            for name in names[:limit]:
                _fetch_one(client, url, name, folder, max_bytes)
                got.append(name)
                log.info("downloaded %s", name)
    except httpx.HTTPError as exc:
        raise SyncError(f"cannot download from {url}: {exc}") from exc
    return got


def check_folders(baseline: Path | None, updates: Path | None, from_ftp: str | None) -> None:
    """Bad combinations of the command's options, before anything runs."""
    if from_ftp and not re.match(r"^(https?|ftp)://", from_ftp):
        raise ConfigError(f"--from-ftp must be an http(s):// or ftp:// URL, not {from_ftp!r}")
    if from_ftp and from_ftp.startswith("ftp://"):
        raise ConfigError(
            "--from-ftp: use NCBI's HTTPS mirror of the same folders, "
            "https://ftp.ncbi.nlm.nih.gov/pubmed/ (plain FTP is not supported)"
        )
    for p in (baseline, updates):
        if p is not None and p.exists() and not p.is_dir():
            raise InputError(f"{p} is not a folder")
