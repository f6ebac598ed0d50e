"""Chinese guideline and textbook-style sources on real CMExam explanations: Markdown, HTML and
JSONL files ingest with their language stored, long text is cut at Chinese sentence ends and
never inside a word, and a Chinese query finds them (the real MiniLM tokenizer measures the
chunks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.chunking import Chunker, zh_sentences
from ingest.pipeline import run_ingest
from ingest.sources import guidelines
from ingest.sources.files import records
from retrieval.chinese import words
from retrieval.filters import SearchFilters
from retrieval.index import Index
from retrieval.settings import load_settings
from retrieval.types import Document, Section
from tests.conftest import shared_path
from tests.ingest.test_guidelines_beir import pdf_file


def _explanations(n: int) -> list[dict]:
    rows = [json.loads(x) for x in shared_path("zh", "cmexam_dev.jsonl").read_text().splitlines()]
    return [r for r in rows if len(r.get("explanation") or "") > 60][:n]


@pytest.fixture(scope="module")
def minilm():  # the packaged model: its real tokenizer measures Chinese
    from retrieval.embedders import load_embedder
    from retrieval.settings import EmbeddingSettings

    return load_embedder(EmbeddingSettings())


def test_long_chinese_text_is_cut_at_sentence_ends(minilm) -> None:
    rows = _explanations(40)
    text = "".join(r["explanation"].strip() for r in rows)
    doc = Document(doc_id="zh:long", source="guideline", title="执业医师考试解析",
                   sections=(Section(title="解析", text=text),))  # fmt: skip
    chunks = Chunker(minilm).chunk(doc)
    assert len(chunks) >= 4
    sentences = {s.strip() for s in zh_sentences(" ".join(text.split()))}
    for c in chunks:
        assert c.n_tokens <= minilm.max_tokens
        body = c.text.removeprefix("解析: ")
        parts = [s.strip() for s in zh_sentences(body)]
        # every piece of a chunk is a whole sentence of the source (a sentence longer than a
        # chunk alone may be cut, at a clause or word boundary)
        whole = sum(p in sentences for p in parts)
        assert whole >= len(parts) - 2, (whole, parts)
    ends = sum(c.text.rstrip().endswith(("。", "！", "？", "；")) for c in chunks)
    assert ends >= len(chunks) - 1


def test_a_run_without_punctuation_is_cut_between_words(minilm) -> None:
    terms = "氯丙嗪迟发性运动障碍急性肌张力障碍帕金森综合征体位性低血压静坐不能抗胆碱药"
    text = terms * 14  # no sentence or clause mark: only words to cut at
    doc = Document(doc_id="zh:run", source="guideline", title="",
                   sections=(Section(text=text),))  # fmt: skip
    chunks = Chunker(minilm).chunk(doc)
    assert len(chunks) >= 2
    bounds, pos = set(), 0
    for w in words(text):
        pos += len(w)
        bounds.add(pos)
    start = 0
    for c in chunks[:-1]:  # each cut falls between two of jieba's words
        at = text.index(c.text, start) + len(c.text)
        assert at in bounds, (at, c.text[-8:], text[at : at + 8])
        start = at - len(c.text) // 2  # chunks may overlap a little


def _files(tmp: Path, rows: list[dict]) -> list[Path]:
    md = tmp / "hypertension.md"
    head = "---\nbody: 中华医学会\n---\n# 执业医师考试解析\n\n## 第一部分\n\n"
    md.write_text(head + rows[0]["explanation"] + "\n\n## 第二部分\n\n" + rows[1]["explanation"])
    html = tmp / "guide.html"
    html.write_text(f"<html lang='zh-CN'><head><title>药理学</title></head><body><h1>药理学</h1>"
                    f"<h2>解析</h2><p>{rows[2]['explanation']}</p></body></html>")  # fmt: skip
    jsonl = tmp / "textbook.jsonl"
    lines = [{"id": f"zh-{i}", "title": r["question"][:30],
              "sections": [{"title": "解析", "text": r["explanation"]}]}
             for i, r in enumerate(rows[3:], 3)]  # fmt: skip
    lines.append({"id": "en-1", "title": "Aspirin for stroke",
                  "text": "Low-dose aspirin reduces recurrent stroke after a transient "
                          "ischaemic attack."})  # fmt: skip
    lines.append({"id": "bad", "sections": "not a list"})
    jsonl.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    return [md, html, jsonl]


def test_chinese_files_ingest_with_language_and_are_found(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    rows = _explanations(12)
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    with Index(settings, tmp_path / "s") as idx:
        report = run_ingest(records("guidelines", _files(tmp_path, rows)), idx, progress=False)
        assert report.documents == 2 + 9 + 1  # md, html, 9 textbook lines, 1 English
        assert len(report.problems) == 1 and "sections" in report.problems[0]
        langs = idx.store.facet("language")  # chunks per stored language
        assert set(langs) == {"chi", "eng"} and langs["eng"] == 1 and langs["chi"] >= 12
        # a Chinese query (BM25 alone with the English-only model) finds its explanation
        hits = idx.search(rows[5]["question"], k=3)
        assert "guideline:jsonl:zh-5" in {h.doc_id for h in hits}
        # the language filter takes names and short codes
        zh = idx.search("stroke aspirin 卒中", k=20, filters=SearchFilters(languages=("zh",)))
        assert zh and all(h.language == "chi" for h in zh)
        en = idx.search("stroke aspirin", k=5, filters=SearchFilters(languages=("English",)))
        assert [h.doc_id for h in en] == ["guideline:jsonl:en-1"]
        md = idx.search(rows[0]["question"], k=5, filters=SearchFilters(bodies=("中华医学会",)))
        assert md and {h.doc_id.split("-")[0] for h in md} == {"guideline:md:hypertension"}
        again = run_ingest(records("guidelines", _files(tmp_path, rows)), idx, progress=False)
        assert again.written == 0 and again.unchanged == 12


def make_zh_pdf(pages: list[str]) -> bytes:
    """A PDF whose pages show Chinese text in a Type0 font (Identity-H) with a ToUnicode CMap,
    as PDF writers make them: what a real parser must decode."""
    chars = sorted({c for p in pages for c in p})
    cid = {c: i + 1 for i, c in enumerate(chars)}
    bf = "\n".join(f"<{cid[c]:04X}> <{ord(c):04X}>" for c in chars)
    cmap = ("/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Z def "
            "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
            f"{len(chars)} beginbfchar\n{bf}\nendbfchar endcmap CMapName currentdict /CMap "
            "defineresource pop end end")  # fmt: skip
    n_pages = len(pages)
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids ["
        + " ".join(f"{6 + 2 * i} 0 R" for i in range(n_pages))
        + f"] /Count {n_pages} >>",
        "<< /Type /Font /Subtype /Type0 /BaseFont /STSong /Encoding /Identity-H "
        "/DescendantFonts [4 0 R] /ToUnicode 5 0 R >>",
        "<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong /CIDSystemInfo << /Registry "
        "(Adobe) /Ordering (Identity) /Supplement 0 >> /DW 1000 >>",
        f"<< /Length {len(cmap)} >>\nstream\n{cmap}\nendstream",
    ]
    for i, text in enumerate(pages):
        hexed = "".join(f"{cid[c]:04X}" for c in text)
        stream = f"BT /F1 12 Tf 72 720 Td <{hexed}> Tj ET"
        objs.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {7 + 2 * i} 0 R >>"
        )
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    return pdf_file(objs)


def test_a_chinese_pdf_keeps_its_pages_and_language(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = _explanations(2)
    pdf = tmp_path / "textbook.pdf"
    pdf.write_bytes(make_zh_pdf([r["explanation"][:120] for r in rows]))
    (doc,) = list(guidelines.parse_pdf(pdf))
    assert [s.page for s in doc.sections] == [1, 2]
    assert [s.text for s in doc.sections] == [" ".join(r["explanation"][:120].split())
                                               for r in rows]  # fmt: skip
    settings = load_settings(data_dir=tmp_path, embedding={"model_path": tiny_model_dir})
    with Index(settings, tmp_path / "s") as idx:
        report = run_ingest(records("guidelines", [pdf]), idx, progress=False)
        assert report.documents == 1 and not report.problems
        hits = idx.search(rows[1]["question"], k=2)
        assert hits and hits[0].language == "chi"
        assert rows[1]["explanation"][:20] in hits[0].text
