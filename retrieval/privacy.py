"""Keeping patient identifiers out of logs and files: a redactor for free text, a logging filter
that applies it to every record, and private (700/600) data folders.

The redactor is a safety net, not a de-identification service: it replaces what looks like a
name (after a title, "patient", "name:", or before an age), a full date (a date of birth), an
MRN or other long number, a phone number and an e-mail address with a bracketed tag, and keeps
the clinical words (drugs, doses, labs, years) readable.

>>> redact("Mr. John Smith, DOB 04/12/1956, MRN 00123456, on metformin 500 mg")
'Mr. [NAME], DOB [DATE], MRN [ID], on metformin 500 mg'
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"  # January, Feb., ...
_WORD = r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?"  # Smith, O'Neil, Smith-Jones
_NAME = rf"{_WORD}(?:\s+[A-Z]\.)?(?:\s+{_WORD}){{0,2}}"  # John Q. Public

# Order matters: e-mails before names and numbers, dates before phone numbers and IDs.
_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[EMAIL]"),
    (re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"), "[DATE]"),
    (re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})\b"), "[DATE]"),
    (re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}}\b", re.I), "[DATE]"),
    (re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", re.I), "[DATE]"),
    (re.compile(r"\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日"), "[DATE]"),
    (
        re.compile(
            r"(?i)\b(MRN|MR\s?#|medical record(?: number| no\.?)?|patient id|hospital (?:no\.?|"
            r"number)|NHS(?: number| no\.?)?|SSN|record)(\s*[:#]?\s*)[A-Z0-9][A-Z0-9-]{3,}"
        ),
        r"\1\2[ID]",
    ),
    (re.compile(r"(病历号|住院号|身份证号?|门诊号)(\s*[:：]?\s*)[0-9A-Za-z-]{4,}"), r"\1\2[ID]"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[ID]"),  # US SSN
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), "[PHONE]"),  # a Chinese mobile number
    (
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)\s?|\d{2,5}[\s.-])\d{3,4}[\s.-]\d{3,5}\b"
        ),
        "[PHONE]",
    ),
    (re.compile(r"\b\d{6,}\b"), "[ID]"),  # any other long number: an MRN, an account
    (re.compile(rf"\b(Mr|Mrs|Ms|Miss|Mx|Dr|Prof)(\.?\s+){_NAME}"), r"\1\2[NAME]"),
    (
        re.compile(
            rf"(?i:\b(?:patient(?: name)?|pt|name|named|called|surname|first name)\b)"
            rf"(\s*[:=,]?\s+|\s*[:=]\s*){_NAME}"
        ),
        lambda m: m.group(0)[: m.start(1) - m.start(0)] + m.group(1) + "[NAME]",
    ),
    (
        re.compile(
            rf"\b{_NAME}(?=,?\s+(?:is\s+|was\s+)?(?:an?\s+)?\d{{1,3}}[- ]?(?:year|yo\b|y/o|y\.o\.))"
        ),
        "[NAME]",
    ),
    (
        re.compile(r"(患者|姓名|病人)(\s*[:：]?\s*)[\u4e00-\u9fff]{2,3}(?=[，,。\s、]|$)"),
        r"\1\2[NAME]",
    ),
)


def redact(text: str) -> str:
    """``text`` with what looks like a patient identifier replaced by a tag.

    >>> redact("Pt: Maria Garcia (maria.g@mail.com, 555-123-4567) seen 3 March 2024")
    'Pt: [NAME] ([EMAIL], [PHONE]) seen [DATE]'
    >>> redact("Jane Doe, a 67-year-old woman with eGFR 38 and HbA1c 7.2% since 2019")
    '[NAME], a 67-year-old woman with eGFR 38 and HbA1c 7.2% since 2019'
    >>> redact("患者张伟，男，病历号：A123456，手机13812345678")
    '患者[NAME]，男，病历号：[ID]，手机[PHONE]'
    """
    for pattern, tag in _RULES:
        text = pattern.sub(tag, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that runs :func:`redact` over every record's final message, so an
    identifier that slips into a log call (a question in an error, a file name) is not kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to every handler of ``logger`` (the root logger by
    default); idempotent."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def make_private(folder: Path) -> Path:
    """Create ``folder`` if needed and make it and everything in it private to this user:
    folders 700, files 600. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            _chmod(Path(root, name), 0o700)
        for name in files:
            _chmod(Path(root, name), 0o600)
    return folder


def _chmod(path: Path, mode: int) -> None:
    try:
        if not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except OSError:  # a file that vanished meanwhile, or another user's: nothing to keep
        pass
