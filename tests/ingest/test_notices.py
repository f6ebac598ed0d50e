"""Retractions, errata and expressions of concern: parsed from real PubMed XML and MEDLINE
records with the fields added as PubMed writes them, stored and filterable in the index,
shown on search hits, never cited by an answer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from answer import Assistant
from ingest.pipeline import ingest_paths
from ingest.sources.medline import parse_file as parse_medline
from ingest.sources.pubmed_xml import parse_file as parse_xml
from retrieval.filters import SearchFilters
from retrieval.index import Index
from retrieval.settings import load_settings
from retrieval.types import Document
from tests.conftest import shared_path
from tests.scripted_chat import ScriptedChat

FIX = ("pubmed", "fixtures")
RETRACTED_PMID = "27797938"  # the first article of pubmed4.xml
NOTICE = (
    '<CommentsCorrections RefType="RetractionIn"><RefSource>Int J Epidemiol. '
    '2019;48(2):655</RefSource><PMID Version="1">30535384</PMID></CommentsCorrections>'
)


def retracted_copy(dst: Path) -> Path:
    """pubmed4.xml as a PubMed update file brings it: the article revised with the
    'Retracted Publication' type and a RetractionIn comment."""
    text = shared_path(*FIX, "biopython_Entrez", "pubmed4.xml").read_text("utf-8")
    text = text.replace(
        "<PublicationTypeList>",
        '<PublicationTypeList>\n<PublicationType UI="D016441">Retracted Publication'
        "</PublicationType>",
        1,
    )
    text = text.replace("<CommentsCorrectionsList>", "<CommentsCorrectionsList>" + NOTICE, 1)
    dst.write_text(text, "utf-8")
    return dst


def test_pubmed_xml_notices(tmp_path: Path) -> None:
    (doc,) = [r for r in parse_xml(retracted_copy(tmp_path / "u.xml")) if isinstance(r, Document)]
    assert doc.pmid == RETRACTED_PMID and "Retracted Publication" in doc.publication_types
    assert doc.extra["status"] == "retracted" and doc.extra["retracted"] is True
    assert doc.extra["notices"] == [{"kind": "RetractionIn", "pmid": "30535384",
                                     "source": "Int J Epidemiol. 2019;48(2):655"}]  # fmt: skip
    (plain,) = [r for r in parse_xml(shared_path(*FIX, "biopython_Entrez", "pubmed4.xml"))
                if isinstance(r, Document)]  # fmt: skip
    assert "notices" not in plain.extra  # an ordinary record: nothing added, same hash as before
    assert plain.content_hash() != doc.content_hash()  # the revised record is new content


def test_medline_notices(tmp_path: Path) -> None:
    text = shared_path(*FIX, "biopython_Medline", "pubmed_result1.txt").read_text("utf-8")
    text = re.sub(r"^(PT  - .*)$", r"\1\nPT  - Retracted Publication", text, count=1, flags=re.M)
    text = text.rstrip("\n") + (
        "\nRIN - J Clin Invest. 2020;130(3):1573. PMID: 32115432"
        "\nECI - J Clin Invest. 2019;129(1):470. PMID: 30601141\n"
    )
    (path := tmp_path / "retracted.txt").write_text(text, "utf-8")
    (doc,) = [r for r in parse_medline(path) if isinstance(r, Document)]
    assert doc.extra["retracted"] is True and doc.extra["status"] == "retracted"
    assert [(n["kind"], n["pmid"]) for n in doc.extra["notices"]] == [
        ("RetractionIn", "32115432"), ("ExpressionOfConcernIn", "30601141")
    ]  # fmt: skip


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    """Two PubMed files ingested, then an update file that retracts one record."""
    tmp = tmp_path_factory.mktemp("notices")
    settings = load_settings(data_dir=tmp, store={"path": tmp / "store"})
    with Index(settings) as idx:
        ingest_paths([shared_path(*FIX, "biopython_Entrez", f"pubmed{n}.xml") for n in (4, 5)],
                     idx, "pubmed")  # fmt: skip
        before = idx.store.point_ids()
        update = ingest_paths([retracted_copy(tmp / "update.xml")], idx, "pubmed")
        after = idx.store.point_ids()
    return settings, {"replaced": update.replaced, "written": update.written,
                      "kept": len(before & after), "before": len(before)}  # fmt: skip


def test_an_update_file_retracts_an_indexed_record(indexed: tuple[Any, dict[str, Any]]) -> None:
    settings, update = indexed
    assert update["replaced"] == 1 and update["written"] == 0
    assert 0 < update["kept"] < update["before"]  # the other record's points stay as they were
    with Index(settings, create=False) as idx:
        hits = idx.search("telomere length TERT pancreatic cancer", k=3)
        kept = idx.search("telomere length TERT pancreatic cancer", k=3,
                          filters=SearchFilters(exclude_retracted=True))  # fmt: skip
    hit = next(h for h in hits if h.pmid == RETRACTED_PMID)
    assert hit.retracted and hit.status == "retracted"
    assert [n.label() for n in hit.notices] == [
        "Retraction in PMID 30535384 (Int J Epidemiol. 2019;48(2):655)"
    ]
    assert all(not h.retracted for h in hits if h.pmid != RETRACTED_PMID)
    assert kept and RETRACTED_PMID not in {h.pmid for h in kept}
    import json

    from typer.testing import CliRunner

    from ui.cli import app

    args = ["search", "telomere length TERT pancreatic cancer", "--store",
            str(settings.store.path), "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    found = {h["pmid"]: h for h in json.loads(res.stdout)["results"]}
    assert found[RETRACTED_PMID]["retracted"] is True
    notice = {
        "kind": "RetractionIn",
        "pmid": "30535384",
        "source": "Int J Epidemiol. 2019;48(2):655",
    }
    assert found[RETRACTED_PMID]["notices"] == [notice]
    res = CliRunner().invoke(app, [*args[:-1], "--exclude-retracted", "--json"])
    assert RETRACTED_PMID not in {h["pmid"] for h in json.loads(res.stdout)["results"]}
    human = CliRunner().invoke(app, args[:-1])
    assert "RETRACTED" in human.stdout and "Retraction in PMID 30535384" in human.stdout


def test_answers_never_cite_a_retracted_record(indexed: tuple[Any, dict[str, Any]]) -> None:
    settings, _ = indexed
    question = "Is leucocyte telomere length associated with pancreatic cancer risk?"
    reply = "Telomere length was associated with pancreatic cancer risk [1]."
    with Assistant(settings, chat=ScriptedChat(reply)) as assistant:
        answer = assistant.ask(question)
        assert RETRACTED_PMID not in {r.pmid for r in answer.references}
        assert RETRACTED_PMID not in {p.pmid for p in answer.passages}
        assert any(w.startswith(f"PMID {RETRACTED_PMID} was retrieved but left out: it is "
                                "retracted (Retraction in PMID 30535384")
                   for w in answer.warnings), answer.warnings  # fmt: skip
        (gone,) = answer.left_out  # the left-out record, with its notice, for the chat
        assert gone.pmid == RETRACTED_PMID and gone.retracted and gone.notices
        assistant.settings.answer.exclude_retracted = False  # shown, and marked, when allowed
        shown = assistant.ask(question)
    flagged = [r for r in shown.references if r.pmid == RETRACTED_PMID]
    assert flagged and flagged[0].retracted and flagged[0].notices[0].pmid == "30535384"
