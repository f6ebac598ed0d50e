"""The redactor on real-looking clinical notes (English and Chinese), the logging filter on a
real logger, and private folders."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from retrieval.privacy import RedactingFilter, make_private, redact

# (note, identifiers that must go, clinical facts that must stay)
NOTES = [
    (
        "Mrs. Ellen Walsh, DOB 02/11/1951, MRN: 40123987, seen in clinic on March 3, 2024. "
        "eGFR 38 mL/min, on metformin 500 mg twice daily; should she start empagliflozin?",
        ["Walsh", "Ellen", "02/11/1951", "40123987", "March 3, 2024"],
        ["eGFR 38 mL/min", "metformin 500 mg", "empagliflozin"],
    ),
    (
        "Patient name: Rajesh Kumar. Phone (415) 555-0132, e-mail r.kumar@example.org. "
        "HbA1c 8.1% in 2023, LDL 4.2 mmol/L. Statin for primary prevention?",
        ["Rajesh", "Kumar", "555-0132", "r.kumar@example.org"],
        ["HbA1c 8.1% in 2023", "LDL 4.2 mmol/L", "Statin"],
    ),
    (
        "Tom O'Neil, a 72-year-old man, hospital no. 7731-2290, admitted 2024-01-17 with AF "
        "(CHA2DS2-VASc 4). Call +44 20 7946 0958. Apixaban 5 mg or dose reduction?",
        ["O'Neil", "7731-2290", "2024-01-17", "7946 0958"],
        ["72-year-old man", "CHA2DS2-VASc 4", "Apixaban 5 mg"],
    ),
    (
        "Pt Mary-Jane Smith-Jones (NHS number 943 476 5919), born 14th July 1948, BP 162/94. "
        "Dr. Patel asks about chlorthalidone 12.5 mg.",
        ["Mary-Jane", "Smith-Jones", "943 476 5919", "14th July 1948", "Patel"],
        ["BP 162/94", "chlorthalidone 12.5 mg"],
    ),
    (
        "患者王秀英，女，68岁，病历号：ZY20240315，出生日期1956年4月2日，电话13912345678。"
        "2型糖尿病，二甲双胍 0.5 g，是否加用SGLT2抑制剂？",
        ["王秀英", "ZY20240315", "1956年4月2日", "13912345678"],
        ["68岁", "2型糖尿病", "二甲双胍 0.5 g", "SGLT2"],
    ),
    (
        "Named John Baker, SSN 123-45-6789, account 88812345; warfarin INR 3.4 after "
        "ciprofloxacin 500 mg for 7 days.",
        ["John Baker", "123-45-6789", "88812345"],
        ["warfarin INR 3.4", "ciprofloxacin 500 mg for 7 days"],
    ),
]


@pytest.mark.parametrize(("note", "gone", "kept"), NOTES)
def test_identifiers_go_and_clinical_facts_stay(
    note: str, gone: list[str], kept: list[str]
) -> None:
    out = redact(note)
    for secret in gone:
        assert secret not in out, (secret, out)
    for fact in kept:
        assert fact in out, (fact, out)
    assert "[" in out


def test_plain_clinical_questions_are_left_alone() -> None:
    for q in (
        "Do SGLT2 inhibitors reduce heart failure admissions in type 2 diabetes?",
        "Aspirin for primary prevention in adults aged 60 to 69 (USPSTF 2022)?",
        "Parkinson disease: levodopa 100 mg vs pramipexole as first-line therapy?",
    ):
        assert redact(q) == q
    # it errs on the side of masking: any long number goes, a PMID too
    assert redact("What does PMID 27797938 say?") == "What does PMID [ID] say?"


def test_the_logging_filter_redacts_every_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("evidex.test.privacy")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("could not answer %r for %s", "Mrs. Ellen Walsh MRN 40123987", "x@y.org")
    finally:
        logger.removeHandler(handler)
    assert seen == ["could not answer 'Mrs. [NAME] MRN [ID]' for [EMAIL]"]


def test_make_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "index").mkdir(parents=True)
    (data / "audit.jsonl").write_text("{}\n")
    (data / "index" / "segment.bin").write_bytes(b"x")
    for p in (data, data / "index"):
        p.chmod(0o755)
    (data / "audit.jsonl").chmod(0o644)
    make_private(data)
    assert (data.stat().st_mode & 0o777) == 0o700
    assert ((data / "index").stat().st_mode & 0o777) == 0o700
    assert ((data / "audit.jsonl").stat().st_mode & 0o777) == 0o600
    assert ((data / "index" / "segment.bin").stat().st_mode & 0o777) == 0o600
