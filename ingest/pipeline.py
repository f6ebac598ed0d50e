"""Batch ingestion: records -> chunks -> index, with progress, a report and resumability.

Parsing and chunking run in a background thread while the main thread embeds and writes, so
the encoder is kept busy. Each batch is written through :meth:`retrieval.index.Index.write`,
which skips documents already stored whole and replaces changed or partial ones: re-running a
job adds nothing, and a job killed at any point resumes to exactly the points a clean run
gives.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.chunking import Chunker, ChunkingError
from ingest.records import Deletion, InputError, Problem, Record
from retrieval.index import Index
from retrieval.language import document_language
from retrieval.types import Chunk, Document, EvidenceLevel

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What an ingestion job did."""

    documents: int = 0
    written: int = 0
    replaced: int = 0
    unchanged: int = 0
    chunks: int = 0
    deleted: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Indexed with a change the reader should know of (a document cut to the size cap)."""
    seconds: float = 0.0

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "written": self.written,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "chunks": self.chunks,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "errors": self.problems,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 2),
        }


_Batch = list[tuple[Document, list[Chunk]]]
_Item = tuple[
    str, Any
]  # ("batch", _Batch) | ("delete", Deletion) | ("problem", Problem) | ("note", str)
_END = ("end", None)


def cap_document(doc: Document, max_chars: int) -> tuple[Document, bool]:
    """``doc`` with at most ``max_chars`` characters of section text (later sections dropped,
    the last kept one cut), and whether anything was cut.

    >>> from retrieval.types import Section
    >>> d = Document(doc_id="x", source="beir", sections=(Section(text="a" * 6),
    ...              Section(text="b" * 6)))
    >>> capped, cut = cap_document(d, 8)
    >>> [s.text for s in capped.sections], cut
    (['aaaaaa', 'bb'], True)
    >>> cap_document(d, 100)[1]
    False
    """
    if sum(len(s.text) for s in doc.sections) <= max_chars:
        return doc, False
    kept, left = [], max_chars
    for sec in doc.sections:
        if left <= 0:
            break
        kept.append(
            sec if len(sec.text) <= left else sec.model_copy(update={"text": sec.text[:left]})
        )
        left -= len(sec.text)
    return doc.model_copy(update={"sections": tuple(kept)}), True


def prepare(
    doc: Document, chunker: Chunker, max_chars: int, max_chunks: int
) -> tuple[tuple[Document, list[Chunk]] | None, list[str], Problem | None]:
    """A document as it is indexed: its language settled, its text capped, its chunks (at
    most ``max_chunks``); with notes of what was cut, or the problem that stopped it."""
    notes = []
    language = document_language(doc)  # stated (normalized) or detected
    if language != doc.language:
        doc = doc.model_copy(update={"language": language})
    doc, cut = cap_document(doc, max_chars)
    if cut:
        notes.append(f"{doc.doc_id}: text cut to {max_chars:,} characters "
                     "(ingest.max_chars_per_document)")  # fmt: skip
    try:
        chunks = chunker.chunk(doc)
    except ChunkingError as exc:
        return None, notes, Problem(doc.doc_id, "", str(exc))
    if len(chunks) > max_chunks:
        notes.append(f"{doc.doc_id}: {len(chunks):,} chunks, the first {max_chunks:,} "
                     "indexed (ingest.max_chunks_per_document)")  # fmt: skip
        chunks = chunks[:max_chunks]
    return (doc, chunks), notes, None


def _produce(
    records: Iterable[Record],
    chunker: Chunker,
    batch_docs: int,
    out: queue.Queue[_Item],
    stop: threading.Event,
    max_chars: int = 300_000,
    max_chunks: int = 400,
) -> None:
    batch: dict[str, tuple[Document, list[Chunk]]] = {}

    def put(item: _Item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    try:
        for rec in records:
            if stop.is_set():
                return
            if isinstance(rec, Document):
                prepared, notes, problem = prepare(rec, chunker, max_chars, max_chunks)
                for note in notes:
                    put(("note", note))
                if prepared is None:
                    put(("problem", problem))
                    continue
                rec, chunks = prepared
                batch.pop(rec.doc_id, None)  # a later copy in the same input wins
                batch[rec.doc_id] = (rec, chunks)
                if len(batch) >= batch_docs:
                    if not put(("batch", list(batch.values()))):
                        return
                    batch = {}
            elif isinstance(rec, Deletion):
                if batch:
                    put(("batch", list(batch.values())))
                    batch = {}
                put(("delete", rec))
            else:
                put(("problem", rec))
        if batch:
            put(("batch", list(batch.values())))
    except BaseException as exc:  # surface parser crashes in the main thread
        put(("error", exc))
    finally:
        put(_END)


def run_ingest(
    records: Iterable[Record],
    index: Index,
    *,
    batch_docs: int | None = None,
    progress: bool | None = None,
    desc: str = "ingest",
) -> IngestReport:
    """Run a whole job and return its report. Problems are logged and counted, never fatal."""
    from tqdm import tqdm

    report = IngestReport()
    started = time.perf_counter()
    index.ensure_store()
    chunker = Chunker(index.embedder, index.settings.ingest.chunking)
    q: queue.Queue[_Item] = queue.Queue(maxsize=4)
    stop = threading.Event()
    size = batch_docs or index.settings.ingest.batch_docs
    worker = threading.Thread(
        target=_produce,
        args=(
            records,
            chunker,
            size,
            q,
            stop,
            index.settings.ingest.max_chars_per_document,
            index.settings.ingest.max_chunks_per_document,
        ),
        name="evidex-parse",
        daemon=True,
    )
    worker.start()
    bar = tqdm(
        desc=desc,
        unit="doc",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    try:
        for kind, payload in _drain(q):
            if kind == "batch":
                res = index.write(payload)
                report.documents += len(payload)
                report.written += len(res.written_docs)
                report.replaced += len(res.replaced_docs)
                report.unchanged += len(res.unchanged_docs)
                report.chunks += res.chunks
                log.info(
                    "wrote batch: %d documents, %d chunks (%d unchanged)",
                    len(payload),
                    res.chunks,
                    len(res.unchanged_docs),
                )
                bar.update(len(payload))
                bar.set_postfix(chunks=report.chunks, skipped=report.skipped, refresh=False)
            elif kind == "delete":
                n = index.delete(list(payload.doc_ids))
                report.deleted += n
                log.info(
                    "deleted %d of %d documents listed in %s",
                    n,
                    len(payload.doc_ids),
                    payload.origin,
                )
            elif kind == "problem":
                report.skipped += 1
                report.problems.append(str(payload))
                log.warning("skipped %s", payload)
            elif kind == "note":
                report.notes.append(str(payload))
                log.warning("%s", payload)
            elif kind == "error":
                raise payload
        index.flush()
        index.store.optimize()
    finally:
        stop.set()
        bar.close()
        worker.join(timeout=5)
    report.seconds = time.perf_counter() - started
    return report


def _drain(q: queue.Queue[_Item]) -> Iterator[_Item]:
    while True:
        item = q.get()
        if item[0] == "end":
            return
        yield item


def files_by_kind(paths: Iterable[Path], kind: str | None = None) -> list[tuple[Any, list[Path]]]:
    """Each path's kind (``kind``, or detected per path) and its files; a path that does not
    exist, or an unknown kind, is an :class:`InputError` raised before anything is read."""
    from ingest.sources.files import KINDS, Kind, detect_kind, expand

    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown corpus kind {kind!r}: use one of {', '.join(KINDS)}")
    groups: list[tuple[Any, list[Path]]] = []
    for p in map(Path, paths):
        k: Kind = kind or (detect_kind(p) if p.exists() else "beir")
        groups.append((k, expand(k, [p])))  # (expand names a missing path)
    return groups


def ingest_paths(
    paths: Iterable[Path],
    index: Index,
    kind: str | None = None,
    *,
    batch_docs: int | None = None,
    desc: str | None = None,
    evidence_level: EvidenceLevel | None = None,
    pmid_ids: bool = False,
) -> IngestReport:
    """Ingest files and folders of one ``kind`` (pubmed, pmc, guidelines, beir), or of the
    kind detected for each path when ``kind`` is None; one report for them all.
    ``evidence_level`` applies to HTML, Markdown and PDF files that declare none;
    ``pmid_ids`` says a BEIR corpus is PubMed-based (its ``_id`` values are PMIDs).

    A path that does not exist is an :class:`ingest.records.InputError` raised before
    anything is written; unreadable files inside are reported and skipped.
    """
    from ingest.sources.files import records

    groups = files_by_kind(paths, kind)

    def all_records() -> Iterator[Record]:
        from ingest.sources.guidelines import with_level

        for k, files in groups:
            for rec in records(k, files, pmid_ids=pmid_ids):
                # an HTML, Markdown or PDF file ("guideline:..." ids) takes the command's level
                file_doc = isinstance(rec, Document) and rec.doc_id.startswith("guideline:")
                if evidence_level and file_doc:
                    rec = with_level(rec, evidence_level)  # type: ignore[arg-type]
                yield rec

    label = desc or f"ingest {kind or ', '.join(dict.fromkeys(k for k, _ in groups))}"
    return run_ingest(all_records(), index, batch_docs=batch_docs, desc=label)
