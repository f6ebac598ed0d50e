"""Guideline sources (USPSTF, MedQuAD, HTML, Markdown, PDF) and BEIR corpora."""

from __future__ import annotations

import gzip
import io
import itertools
import json
from pathlib import Path

from ingest.records import Problem
from ingest.sources import beir, guidelines
from ingest.sources.files import detect_kind, expand, records
from retrieval.types import Document, EvidenceLevel, Source
from tests.conftest import shared_path


def test_uspstf_keeps_grade_age_and_sex() -> None:
    recs = list(guidelines.parse_uspstf(shared_path("guidelines", "uspstf_recommendations.json")))
    assert len(recs) == 137 and all(isinstance(r, Document) for r in recs)
    docs = {r.doc_id: r for r in recs if isinstance(r, Document)}
    d = docs["uspstf:426"]
    assert d.extra["grade"] == "A" and d.extra["sex"] == "female"
    assert (d.extra["age_min"], d.extra["age_max"]) == (21.0, 30.0)
    assert d.evidence_level == EvidenceLevel.GUIDELINE and d.source == Source.GUIDELINE
    assert d.sections[0].title == "Recommendation" and "<br>" not in d.text
    assert {r.extra["grade"] for r in docs.values()} >= {"A", "B", "C", "D", "I"}


def test_medquad_jsonl_gz_and_xml() -> None:
    f = shared_path("guidelines", "medquad", "medquad_answered.jsonl.gz")
    recs = list(itertools.islice(guidelines.parse_jsonl(f, guidelines.medquad_to_document), 50))
    assert len(recs) == 50 and all(isinstance(r, Document) for r in recs)
    d = recs[0]
    assert d.source == Source.MEDQUAD and d.title.startswith("What is") and d.url
    xml_dir = shared_path("guidelines", "medquad", "xml_samples")
    xml = [r for f in sorted(xml_dir.glob("*.xml")) for r in guidelines.parse_medquad_xml(f)]
    ids = [r.doc_id for r in xml if isinstance(r, Document)]
    assert len(ids) > 10 and len(ids) == len(set(ids))  # ids unique across MedQuAD folders


def test_jsonl_bad_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "corpus.jsonl"
    f.write_bytes(
        b'{"_id": "1", "title": "A", "text": "Fine text."}\n'
        b'{"_id": "2", "title": \n'
        b'{"_id": "3", "title": "", "text": ""}\n'
        b"[1, 2]\n"
        b'{"_id": "4", "text": "caf\xe9"}\n'
        b'{"_id": "5", "text": "Also fine."}\n'
    )
    recs = list(beir.parse_file(f))
    assert [r.doc_id for r in recs if isinstance(r, Document)] == ["beir:1", "beir:5"]
    where = [(p.where, p.message.split(":")[0]) for p in recs if isinstance(p, Problem)]
    assert where == [
        ("line 2", "invalid JSON"),
        ("line 3", "document '3' has no text"),
        ("line 4", "expected a JSON object"),
        ("line 5", "not UTF-8 at byte 25"),
    ]
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(f.read_bytes() * 50)[:-30])
    assert any(
        isinstance(r, Problem) and "truncated" in r.message
        for r in guidelines.parse_jsonl(gz, beir.beir_to_document)
    )


def test_beir_corpus() -> None:
    path = shared_path("pubmedqa", "beir_dev", "corpus.jsonl")
    recs = list(beir.parse_file(path.parent, pmid_ids=True))
    assert len(recs) == 1000 and all(isinstance(r, Document) for r in recs)
    d = recs[0]
    assert isinstance(d, Document) and d.doc_id == "pmid:21645374" and d.year == 2011
    assert d.extra["corpus_id"] == "21645374" and "Apoptosis" in d.mesh_terms
    assert d.url == "https://pubmed.ncbi.nlm.nih.gov/21645374/"
    assert detect_kind(path) == "beir" and detect_kind(path.parent) == "beir"


def test_numeric_beir_ids_link_to_pubmed_only_when_the_source_is_pubmed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ui.cli import app

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"_id": "4983", "title": "A SciFact-style claim", "text": "Vitamin C and colds."}\n'
        '{"_id": "77", "title": "States its PMID", "text": "Aspirin.", "metadata": {"pmid": '
        '"21645374", "url": "javascript:alert(1)"}}\n'
        '{"_id": "doc-x", "title": "Not numeric", "text": "Zinc.", "metadata": {"url": '
        '"https://example.org/zinc"}}\n'
    )
    plain = {d.doc_id: d for d in records("beir", [corpus]) if isinstance(d, Document)}
    assert plain["beir:4983"].pmid is None and plain["beir:4983"].url is None
    assert plain["pmid:21645374"].url == "https://pubmed.ncbi.nlm.nih.gov/21645374/"
    assert plain["beir:doc-x"].url == "https://example.org/zinc"
    # declared PubMed-based: numeric ids link; a non-numeric one is that line's problem
    declared = list(records("beir", [corpus], pmid_ids=True))
    assert {d.doc_id for d in declared if isinstance(d, Document)} == {"pmid:4983", "pmid:21645374"}
    (bad,) = [r for r in declared if isinstance(r, Problem)]
    assert bad.where == "line 3" and "not a PMID" in bad.message
    # the command line: plain by default, --pmid-ids when the operator says so
    store = tmp_path / "s"
    res = CliRunner().invoke(app, ["ingest", "beir", str(corpus), "--store", str(store), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["written"] == 3
    res = CliRunner().invoke(app, ["search", "Vitamin C colds", "--store", str(store), "--json"])
    hit = json.loads(res.stdout)["results"][0]
    assert hit["doc_id"] == "beir:4983" and hit["pmid"] is None


GUIDE_MD = """# Hypertension in adults

Intro paragraph about blood pressure.

## Diagnosis

Confirm with out-of-office measurements.

### Ambulatory monitoring

Use 24-hour ambulatory monitoring when available.

## Treatment

Start with lifestyle changes; add thiazide diuretics, ACE inhibitors or calcium-channel blockers.
"""

GUIDE_HTML = """<html><head><title>Type 2 diabetes guideline</title></head><body>
<h1>Type 2 diabetes guideline</h1><p>Scope of this guideline.</p>
<h2>Diagnosis</h2><p>HbA1c of 6.5% or higher confirms diabetes.</p>
<h3>Screening</h3><ul><li>Screen adults aged 35 to 70 with overweight.</li></ul>
<h2>Treatment</h2><p>Metformin is first-line.</p><table><tr><td>SGLT2 inhibitors</td></tr></table>
</body></html>"""


def test_markdown_sections_follow_headings(tmp_path: Path) -> None:
    f = tmp_path / "htn.md"
    f.write_text(GUIDE_MD)
    (doc,) = list(guidelines.parse_markdown(f))
    assert isinstance(doc, Document) and doc.title == "Hypertension in adults"
    labels = [s.title for s in doc.sections]
    assert labels == ["", "Diagnosis", "Diagnosis > Ambulatory monitoring", "Treatment"]
    assert doc.sections[2].text == "Use 24-hour ambulatory monitoring when available."
    # a Markdown file is not a guideline by being one: it says so, or the command does
    assert doc.evidence_level == EvidenceLevel.OTHER and doc.publication_types == ()


def test_html_sections_follow_headings(tmp_path: Path) -> None:
    f = tmp_path / "t2d.html"
    f.write_text(GUIDE_HTML)
    (doc,) = list(guidelines.parse_html(f))
    assert isinstance(doc, Document) and doc.title == "Type 2 diabetes guideline"
    got = [(s.title, s.text) for s in doc.sections]
    assert got == [
        ("", "Scope of this guideline."),
        ("Diagnosis", "HbA1c of 6.5% or higher confirms diabetes."),
        ("Diagnosis > Screening", "Screen adults aged 35 to 70 with overweight."),
        ("Treatment", "Metformin is first-line. SGLT2 inhibitors"),
    ]


def make_pdf(pages: list[str]) -> bytes:
    """A small but real PDF (one Helvetica text line per page), built byte by byte."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for i, text in enumerate(pages):
        page_no, _content_no = 4 + 2 * i, 5 + 2 * i
        kids.append(f"{page_no} 0 R")
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objs.append("")  # placeholder to keep numbering simple
        objs[page_no - 2 : page_no - 1] = []
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    return pdf_file(objs)


def pdf_file(objs: list[str]) -> bytes:
    """A PDF file of these objects (object 1 the catalog), with its cross-reference table."""
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_pdf_pages_are_kept(tmp_path: Path) -> None:
    f = tmp_path / "asthma.pdf"
    f.write_bytes(
        make_pdf(
            [
                "Asthma guideline: inhaled corticosteroids are first line.",
                "Page two: review inhaler technique at every visit.",
            ]
        )
    )
    (doc,) = list(guidelines.parse_pdf(f))
    assert isinstance(doc, Document)
    assert [(s.page, s.title) for s in doc.sections] == [(1, "Page 1"), (2, "Page 2")]
    assert "inhaled corticosteroids" in doc.sections[0].text
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nnot really")
    assert isinstance(next(iter(guidelines.parse_pdf(broken))), Problem)


def test_folder_expansion_and_mixed_guidelines(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.md").write_text(GUIDE_MD)
    (tmp_path / "g" / "b.html").write_text(GUIDE_HTML)
    (tmp_path / "g" / "c.pdf").write_bytes(make_pdf(["Text on a page."]))
    (tmp_path / "g" / "empty.md").write_text("")
    (tmp_path / "g" / "u.json").write_text(
        json.dumps(
            {
                "specificRecommendations": [
                    {
                        "id": 1,
                        "title": "T",
                        "grade": "B",
                        "sex": "men",
                        "ageRange": [50, 75],
                        "text": "<p>Screen.</p>",
                    }
                ]
            }
        )
    )
    files = expand("guidelines", [tmp_path / "g"])
    recs = list(records("guidelines", files))
    assert sum(isinstance(r, Document) for r in recs) == 4
    (p,) = [r for r in recs if isinstance(r, Problem)]
    assert p.path.endswith("empty.md") and p.message == "empty file"


def test_evidence_level_and_grade_from_the_file_or_the_command(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    from ingest.pipeline import ingest_paths
    from retrieval.index import Index
    from retrieval.settings import load_settings

    g = tmp_path / "g"
    g.mkdir()
    (g / "declared.md").write_text(
        "---\nevidence-level: systematic review\ngrade: b\nbody: NICE\nyear: 2021\n---\n" + GUIDE_MD
    )
    (g / "meta.html").write_text(
        GUIDE_HTML.replace(
            "<head>",
            '<head><meta name="evidence-level" content="practice guideline">'
            '<meta name="grade" content="Strong"><meta name="dc.publisher" content="ADA">',
        )
    )
    (g / "plain.md").write_text(GUIDE_MD)
    (g / "bad.md").write_text("---\nevidence-level: folklore\ngrade: Z\n---\n" + GUIDE_MD)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(["Asthma text."]))))
    writer.add_metadata({"/EvidenceLevel": "guideline", "/Grade": "I"})
    with (g / "tagged.pdf").open("wb") as fh:
        writer.write(fh)
    (g / "plain.pdf").write_bytes(make_pdf(["Other text here."]))

    docs = {d.extra["file"]: d for f in sorted(g.iterdir())
            for d in records("guidelines", [f]) if isinstance(d, Document)}  # fmt: skip
    md = docs["declared.md"]
    assert (md.evidence_level, md.extra["grade"], md.extra["body"], md.year) == (
        EvidenceLevel.SYSTEMATIC_REVIEW, "B", "NICE", 2021)  # fmt: skip
    assert "evidence-level" not in md.sections[0].text  # the front matter is not text
    html = docs["meta.html"]
    assert (html.evidence_level, html.extra["grade"], html.extra["body"]) == (
        EvidenceLevel.GUIDELINE, "strong", "ADA")  # fmt: skip
    assert html.publication_types == ("Practice Guideline",)
    assert (docs["tagged.pdf"].evidence_level, docs["tagged.pdf"].extra["grade"]) == (
        EvidenceLevel.GUIDELINE, "I")  # fmt: skip
    for name in ("plain.md", "plain.pdf", "bad.md"):  # nothing (valid) declared: 'other'
        assert docs[name].evidence_level == EvidenceLevel.OTHER, name
    assert docs["bad.md"].extra["grade"] is None

    # the command's level applies to the files that declare none; declared ones keep theirs
    settings = load_settings(data_dir=tmp_path, store={"path": tmp_path / "store"})
    with Index(settings, tmp_path / "store") as idx:
        ingest_paths([g], idx, "guidelines", evidence_level=EvidenceLevel.GUIDELINE)
        levels = {h.title: h.evidence_level for h in idx.search("asthma diabetes hypertension",
                                                                 k=20, max_per_doc=1)}  # fmt: skip
        assert idx.stats().documents == 6
    assert set(levels.values()) <= {"practice_guideline", "systematic_review"}
    assert levels["Hypertension in adults"] in ("practice_guideline", "systematic_review")


def test_grade_filter_on_uspstf(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ui.cli import app

    runner = CliRunner()
    store = tmp_path / "store"
    uspstf = shared_path("guidelines", "uspstf_recommendations.json")
    res = runner.invoke(app, ["ingest", "guidelines", str(uspstf), "--store", str(store)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", "cancer screening", "--grade", "a", "--grade", "B",
                              "-k", "10", "--json", "--store", str(store)])  # fmt: skip
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)["results"]
    assert hits and {h["grade"] for h in hits} <= {"A", "B"}
    args = ["search", "cancer screening", "-k", "10", "--json", "--store", str(store)]
    all_hits = json.loads(runner.invoke(app, args).stdout)["results"]
    assert {h["grade"] for h in all_hits} - {"A", "B"}  # the filter removed something
    res = runner.invoke(app, ["search", "x", "--grade", "Z", "--store", str(store)])
    assert res.exit_code == 2 and "unknown grade 'Z'" in res.stderr
    res = runner.invoke(app, ["search", "cancer screening", "--store", str(store)])
    assert "grade " in res.stdout  # shown on hits
    res = runner.invoke(app, ["ingest", "guidelines", str(uspstf), "--evidence-level", "x",
                              "--store", str(store)])  # fmt: skip
    assert res.exit_code == 2 and "--evidence-level" in res.stderr
