"""Ingestion on Ray Data (``evidex ingest ... --engine ray``).

The same parsers, chunker, point ids and payloads as the default engine, spread out:

1. the files not yet finished (a manifest in the store folder) become a dataset; parse tasks
   (``parse_workers`` at once) read them into documents, deletions and problems;
2. an actor pool (``embed_actors`` actors, each loading the model once; ``gpus_per_actor``
   GPUs each, CPU when 0) chunks the documents and computes their dense and BM25 vectors;
3. the points are written through :meth:`retrieval.index.Index.write` (which skips
   documents already stored whole and replaces changed ones): by the driver, a single
   writer, as the embedded Edge store allows one process; or, for a Qdrant server, by
   ``writers`` writer actors in parallel, each with its own client. A file's deletions are
   applied once all of its documents are written, and then the file is recorded in the
   manifest.

A killed job resumes: finished files are skipped; the file it was in is redone, and writing
is idempotent. A bad file is reported and skipped. Without ``address`` a local Ray cluster is
started; with it, an existing one is joined (``ray start --head`` on one node).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ingest.pipeline import IngestReport, files_by_kind, prepare
from ingest.records import Deletion, Problem
from ingest.sync import FileRecord, Manifest, default_manifest, sha256
from retrieval.embedders import LearnedSparseEmbedder, SparseVec
from retrieval.errors import ConfigError, ServiceError
from retrieval.index import Index, WriteResult
from retrieval.types import Chunk, Document, EvidenceLevel

log = logging.getLogger(__name__)

Vectors = dict[str, tuple[list[float], SparseVec]]
"""Dense and BM25 vectors by chunk id."""
Learned = dict[str, SparseVec]
"""A learned-sparse model's (BGE-M3's) own sparse vectors by chunk id."""


def connect(address: str | None, cpus: int, gpus_per_actor: float, actors: int) -> None:
    """Join the cluster at ``address`` (or start a local one with ``cpus`` CPUs), and check
    it has the GPUs asked for."""
    import ray

    if address and address != "auto":
        _probe(address)
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                # "local": a new cluster of its own, even where `ray start` runs one here
                ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                         log_to_driver=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ServiceError(
                f"cannot join the Ray cluster at {address!r}: {exc} (start one with "
                "`ray start --head`, or drop --address for a local one)"
            ) from exc
    if gpus_per_actor > 0:
        have = float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
        if have < gpus_per_actor * actors:
            raise ConfigError(
                f"--gpus-per-actor {gpus_per_actor} x {actors} actor(s) needs "
                f"{gpus_per_actor * actors:g} GPU(s); the cluster has {have:g} (use "
                "--gpus-per-actor 0 for CPU encoders)"
            )


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, naming the address, when nothing listens at ``HOST:PORT`` (Ray itself
    retries a dead address for minutes)."""
    import socket

    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT (the head "
            "node's address that `ray start --head` prints)"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ServiceError(
            f"no Ray cluster answers at {address!r} ({exc}): start one there with "
            "`ray start --head`, or drop --address for a local one"
        ) from None


def cpu_threads(address: str | None, actors: int) -> int:
    """Torch threads for each CPU encoder: the cores of a node shared by the actors on it
    (this machine's cores for a local cluster; the smallest node's for a joined one). Parse
    tasks run beside them, but parsing is some 100 times cheaper than encoding."""
    import ray

    if not address:
        return max(1, (os.cpu_count() or 1) // actors)
    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    cores = min((int(n["Resources"].get("CPU", 1)) for n in nodes), default=1)
    return max(1, cores // max(1, -(-actors // max(1, len(nodes)))))


def parse_file(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One file's records as rows (documents as JSON), then an end row with their count. An
    HTML, Markdown or PDF document takes the row's evidence level unless its file gave one."""
    from ingest.sources.files import records
    from ingest.sources.guidelines import with_level

    path, n = row["path"], 0
    level = EvidenceLevel(row["level"]) if row.get("level") else None
    for rec in records(row["kind"], [Path(path)], pmid_ids=bool(row["pmid_ids"])):
        if isinstance(rec, Document):
            n += 1
            if level is not None and rec.doc_id.startswith("guideline:"):
                rec = with_level(rec, level)
            yield {"file": path, "type": "doc", "body": rec.model_dump_json()}
        elif isinstance(rec, Deletion):
            yield {"file": path, "type": "delete", "body": json.dumps(list(rec.doc_ids))}
        elif isinstance(rec, Problem):
            yield {"file": path, "type": "problem", "body": json.dumps([rec.path, rec.where,
                                                                        rec.message])}  # fmt: skip
    yield {"file": path, "type": "end", "body": str(n)}


class Encoder:
    """A Ray Data actor: the model loaded once; chunks and vectors for a batch of rows."""

    def __init__(self, embedding_json: str, ingest_json: str, device: str, threads: int) -> None:
        import torch

        from ingest.chunking import Chunker
        from retrieval.embedders import Bm25Encoder, load_embedder
        from retrieval.settings import EmbeddingSettings, IngestSettings

        if threads > 0:  # Ray gives an actor of one CPU one torch thread
            torch.set_num_threads(threads)
        emb = EmbeddingSettings.model_validate_json(embedding_json)
        self.ingest = IngestSettings.model_validate_json(ingest_json)
        self.embedder = load_embedder(emb.model_copy(update={"device": device}))
        self.chunker = Chunker(self.embedder, self.ingest.chunking)
        self.bm25 = Bm25Encoder()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"file": [], "type": [], "body": []}

        def put(file: str, kind: str, body: str) -> None:
            out["file"].append(file)
            out["type"].append(kind)
            out["body"].append(body)

        docs: list[tuple[str, Document, list[Chunk]]] = []
        for file, kind, body in zip(batch["file"], batch["type"], batch["body"], strict=True):
            if kind != "doc":
                put(file, kind, body)
                continue
            prepared, notes, problem = prepare(
                Document.model_validate_json(body), self.chunker,
                self.ingest.max_chars_per_document, self.ingest.max_chunks_per_document,
            )  # fmt: skip
            for note in notes:
                put(file, "note", note)
            if prepared is None:
                assert problem is not None
                put(file, "problem", json.dumps([problem.path, problem.where, problem.message]))
                put(file, "done", "")  # counted: the document will not come
                continue
            docs.append((file, *prepared))
        texts = [c.embed_text for _, _, cs in docs for c in cs]
        dense = self.embedder.embed_documents(texts).tolist() if texts else []
        sparse = self.bm25.embed_documents(texts) if texts else []
        learned = (self.embedder.embed_sparse(texts) if texts and isinstance(
            self.embedder, LearnedSparseEmbedder) else None)  # fmt: skip
        i = 0
        for file, doc, chunks in docs:
            vecs = [[dense[i + j], sparse[i + j].indices, sparse[i + j].values]
                    + ([learned[i + j].indices, learned[i + j].values] if learned else [])
                    for j in range(len(chunks))]  # fmt: skip
            i += len(chunks)
            put(file, "doc", json.dumps({"doc": doc.model_dump_json(),
                                         "chunks": [c.model_dump_json() for c in chunks],
                                         "vectors": vecs}))  # fmt: skip
        return out


def ingest_ray(
    paths: Iterable[Path],
    index: Index,
    kind: str | None = None,
    *,
    address: str | None = None,
    parse_workers: int = 2,
    embed_actors: int = 1,
    gpus_per_actor: float = 0.0,
    batch_size: int = 512,
    writers: int = 1,
    pmid_ids: bool = False,
    evidence_level: EvidenceLevel | None = None,
    manifest: Path | None = None,
    progress: bool | None = None,
) -> IngestReport:
    """Ingest ``paths`` through Ray Data; one report, as the default engine gives.
    ``manifest``: the finished files (default ``<store>/ray-manifest.json``, or a file under
    the data folder for a Qdrant server). ``writers`` > 1 (a Qdrant server only): writer
    actors, each with its own client, write the points in parallel; otherwise the driver
    writes them."""
    import ray
    from tqdm import tqdm

    if min(parse_workers, embed_actors, batch_size, writers) < 1 or gpus_per_actor < 0:
        raise ConfigError(
            f"--parse-workers, --embed-actors, --batch-size and --writers must be positive "
            f"and --gpus-per-actor not negative, not {parse_workers}, {embed_actors}, "
            f"{batch_size}, {writers}, {gpus_per_actor}"
        )
    if writers > 1 and not (index.settings.store.kind == "qdrant" and index.settings.store.url):
        raise ConfigError(
            f'--writers {writers} needs a Qdrant server ([store] kind = "qdrant" and url): '
            f"the store at {index.where} takes one writing process; drop --writers"
        )
    files = [(k, f) for k, fs in files_by_kind(paths, kind) for f in fs]
    report = IngestReport()
    started = time.perf_counter()
    index.ensure_store()
    man = _PathManifest(manifest or default_manifest(index, "ray"), index.where,
                        index.embedder.name)  # fmt: skip
    todo = []
    for k, f in files:
        rec = man.done(f)
        if rec is None or (rec.size, rec.sha256) != (f.stat().st_size, sha256(f)):
            todo.append((k, f))
    if not todo:
        report.seconds = time.perf_counter() - started
        return report
    connect(address, parse_workers + embed_actors, gpus_per_actor, embed_actors)
    s = index.settings
    device = "cuda" if gpus_per_actor > 0 else "cpu"
    level = evidence_level.value if evidence_level else ""
    ds = ray.data.from_items([{"kind": k, "path": str(f), "pmid_ids": pmid_ids, "level": level}
                              for k, f in todo]).repartition(len(todo))  # fmt: skip
    ds = ds.flat_map(parse_file, compute=ray.data.TaskPoolStrategy(size=parse_workers))
    threads = cpu_threads(address, embed_actors) if gpus_per_actor == 0 else 0
    ds = ds.map_batches(
        Encoder, fn_constructor_kwargs={"embedding_json": s.embedding.model_dump_json(),
                                        "ingest_json": s.ingest.model_dump_json(),
                                        "device": device, "threads": threads},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=embed_actors),
        num_gpus=gpus_per_actor or None,
    )  # fmt: skip
    if writers > 1:
        key = s.store.api_key.get_secret_value() if s.store.api_key else None
        ds = ds.map_batches(
            Writer, fn_constructor_kwargs={"settings_json": s.model_dump_json(), "api_key": key,
                                           "model": index.embedder.name,
                                           "dim": index.embedder.dim,
                                           "learned_sparse": isinstance(
                                               index.embedder, LearnedSparseEmbedder)},
            batch_size=s.ingest.batch_docs, compute=ray.data.ActorPoolStrategy(size=writers),
        )  # fmt: skip
    expected: dict[str, int] = {}
    seen: dict[str, int] = {}
    deletions: dict[str, list[str]] = {}
    failed: set[str] = set()
    t0: dict[str, float] = {}
    bar = tqdm(desc="ingest (ray)", unit="doc", disable=None if progress is None else not progress)

    def count(file: str, c: dict[str, int]) -> None:
        """A file's documents written (by the driver or a writer actor): the report, the
        file's progress, the bar."""
        report.documents += c["documents"]
        report.written += c["written"]
        report.replaced += c["replaced"]
        report.unchanged += c["unchanged"]
        report.chunks += c["chunks"]
        seen[file] = seen.get(file, 0) + c["documents"]
        bar.update(c["documents"])

    try:
        for batch in ds.iter_batches(batch_size=s.ingest.batch_docs, batch_format="numpy"):
            items, vectors, learned, files_in = [], Vectors(), Learned(), []
            for file, kind_, body in zip(batch["file"], batch["type"], batch["body"],
                                         strict=True):  # fmt: skip
                file, body = str(file), str(body)
                t0.setdefault(file, time.perf_counter())
                if kind_ == "doc":
                    items.append(decode(body, vectors, learned))
                    files_in.append(file)
                elif kind_ == "wrote":  # by a writer actor
                    count(file, json.loads(body))
                elif kind_ == "done":
                    seen[file] = seen.get(file, 0) + 1
                elif kind_ == "delete":
                    deletions.setdefault(file, []).extend(json.loads(body))
                elif kind_ == "problem":
                    path, at, message = json.loads(body)
                    report.skipped += 1
                    report.problems.append(str(Problem(path, at, message)))
                    log.warning("skipped %s", report.problems[-1])
                    if not at or at.startswith("line "):
                        failed.add(file)  # the file could not be read through
                elif kind_ == "note":
                    report.notes.append(body)
                elif kind_ == "end":
                    expected[file] = int(body)
            if items:
                res = index.write(items, vectors, learned)
                for fname, c in tally(files_in, items, res).items():
                    count(fname, c)
            for name in [f for f, n in expected.items() if seen.get(f, 0) >= n]:
                _finish(index, man, name, deletions.pop(name, []), report, failed, t0)
                expected.pop(name)
        index.flush()
        index.store.optimize()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report


def decode(body: str, vectors: Vectors, learned: Learned) -> tuple[Document, list[Chunk]]:
    """An encoder's document row: the document and its chunks; their vectors go into
    ``vectors`` (and ``learned``, from a learned-sparse model) by chunk id."""
    d = json.loads(body)
    doc = Document.model_validate_json(d["doc"])
    chunks = [Chunk.model_validate_json(c) for c in d["chunks"]]
    for c, (dense, idx, val, *extra) in zip(chunks, d["vectors"], strict=True):
        vectors[c.chunk_id] = (dense, SparseVec(idx, val))
        if extra:
            learned[c.chunk_id] = SparseVec(extra[0], extra[1])
    return doc, chunks


def tally(files: list[str], items: list[tuple[Document, list[Chunk]]],
          res: WriteResult) -> dict[str, dict[str, int]]:  # fmt: skip
    """What one :meth:`Index.write` did, per file (``files[i]`` holds ``items[i]``)."""
    status = {**dict.fromkeys(res.written_docs, "written"),
              **dict.fromkeys(res.replaced_docs, "replaced"),
              **dict.fromkeys(res.unchanged_docs, "unchanged")}  # fmt: skip
    per: dict[str, dict[str, int]] = {}
    for file, (doc, chunks) in zip(files, items, strict=True):
        c = per.setdefault(file, dict.fromkeys(
            ("documents", "written", "replaced", "unchanged", "chunks"), 0))  # fmt: skip
        c["documents"] += 1
        c[status[doc.doc_id]] += 1
        c["chunks"] += len(chunks) if status[doc.doc_id] != "unchanged" else 0
    return per


class _GivenVectors:
    """The embedder of a writer actor: the model's name and size only (the vectors come
    computed); asked to embed, it says so."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim

    def embed_documents(self, texts: Any) -> Any:
        raise ConfigError(f"a Ray writer actor cannot embed ({len(texts)} text(s) came bare)")


class _GivenLearned(_GivenVectors):
    """The same for a learned-sparse model (its own sparse vectors come computed too)."""

    def embed_sparse(self, texts: Any) -> Any:
        return self.embed_documents(texts)


class Writer:
    """A Ray Data actor writing to a Qdrant server through its own client: a batch's
    documents through :meth:`Index.write` (the same skip and replace rules), a ``wrote`` row
    per file with what it did; other rows pass through to the driver."""

    def __init__(self, settings_json: str, api_key: str | None, model: str, dim: int,
                 learned_sparse: bool = False) -> None:  # fmt: skip
        from pydantic import SecretStr

        from retrieval.settings import Settings

        settings = Settings.model_validate_json(settings_json)
        if api_key:  # a SecretStr travels masked in JSON
            store = settings.store.model_copy(update={"api_key": SecretStr(api_key)})
            settings = settings.model_copy(update={"store": store})
        given = (_GivenLearned if learned_sparse else _GivenVectors)(model, dim)
        self.index = Index(settings, create=False, embedder=given)  # type: ignore[arg-type]

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"file": [], "type": [], "body": []}
        items, files, vectors, learned = [], [], Vectors(), Learned()
        for file, kind, body in zip(batch["file"], batch["type"], batch["body"], strict=True):
            if kind == "doc":
                items.append(decode(str(body), vectors, learned))
                files.append(str(file))
            else:
                out["file"].append(str(file))
                out["type"].append(str(kind))
                out["body"].append(str(body))
        res = self.index.write(items, vectors, learned)
        self.index.flush()
        for file, c in tally(files, items, res).items():
            out["file"].append(file)
            out["type"].append("wrote")
            out["body"].append(json.dumps(c))
        return out


class _PathManifest(Manifest):
    """The sync manifest keyed by whole paths (ingested files may share names)."""

    def done(self, path: Path) -> FileRecord | None:
        return self.files.get(str(Path(path).resolve()))


def _finish(index: Index, man: Manifest, file: str, deleted: list[str], report: IngestReport,
            failed: set[str], t0: dict[str, float]) -> None:  # fmt: skip
    """All of ``file``'s documents are written: apply its deletions, record it (unless it
    could not be read through: then it is redone next time)."""
    if deleted:
        report.deleted += index.delete(deleted)
    index.flush()
    if file in failed:
        return
    path = Path(file)
    seconds = round(time.perf_counter() - t0.get(file, time.perf_counter()), 2)
    man.add(FileRecord(str(path.resolve()), "baseline", path.stat().st_size, sha256(path), 0,
                       len(deleted), 0, seconds,
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))  # fmt: skip
