"""Which language a text or a document is in: Chinese, English (Latin script) or other.

A question's language decides what the model answers in (``llm.languages``) and how it is
searched; a document's language is stored with its chunks (``language``, MEDLINE's ISO 639-2
codes: ``eng``, ``chi``) so that search can filter by it and the verifier knows when a claim
and its source are in different languages. PubMed and PMC state the language; for a file or a
corpus line that does not, it is detected from the text.
"""

from __future__ import annotations

from typing import Literal

from retrieval.chinese import CJK_RUN
from retrieval.types import Document

Lang = Literal["en", "zh", "other"]

CODES: dict[str, str] = {"en": "eng", "zh": "chi"}
"""Short language (as :func:`detect` gives) -> the stored ISO 639-2/B code."""

_ALIASES = {
    "en": "eng", "eng": "eng", "english": "eng",
    "zh": "chi", "zho": "chi", "chi": "chi", "chinese": "chi", "zh-cn": "chi", "zh-hans": "chi",
    "zh-tw": "chi", "zh-hant": "chi", "cmn": "chi", "中文": "chi",
}  # fmt: skip


def detect(text: str) -> Lang:
    """'zh' when the text is mostly Chinese characters, 'en' for Latin script, else 'other'.

    >>> detect("Does aspirin prevent stroke?"), detect("阿司匹林能预防中风吗？")
    ('en', 'zh')
    >>> detect("Помогает ли аспирин?"), detect("服用 aspirin 81 mg 的患者")
    ('other', 'zh')
    """
    cjk = sum(len(run) for run in CJK_RUN.findall(text))
    latin = sum(c.isascii() and c.isalpha() for c in text)
    letters = sum(c.isalpha() for c in text)
    if cjk and cjk >= 0.3 * max(letters, 1):
        return "zh"
    if letters and latin >= 0.6 * letters:
        return "en"
    return "other"


def normalize_code(value: str) -> str:
    """A language name or code as stored (``eng``, ``chi``); other codes lower-cased.

    >>> normalize_code("zh"), normalize_code("English"), normalize_code("FRE")
    ('chi', 'eng', 'fre')
    """
    v = value.strip().lower()
    return _ALIASES.get(v, v)


def short(code: str | None) -> Lang:
    """The stored code as :func:`detect` names it.

    >>> short("chi"), short("eng"), short("ger"), short(None)
    ('zh', 'en', 'other', 'other')
    """
    c = normalize_code(code or "")
    return "zh" if c == "chi" else "en" if c == "eng" else "other"


def document_language(doc: Document, sample_chars: int = 2000) -> str | None:
    """The document's stated language (normalized), else the one its title and first text
    show: ``eng`` or ``chi``; None when neither is clear (another script, too little text).

    >>> from retrieval.types import Section
    >>> d = Document(doc_id="x", source="guideline", title="高血压防治指南",
    ...              sections=(Section(text="血压控制目标为130/80 mmHg。"),))
    >>> document_language(d)
    'chi'
    >>> document_language(d.model_copy(update={"language": "ENG"}))
    'eng'
    """
    if doc.language:
        return normalize_code(doc.language)
    parts = [doc.title]
    for sec in doc.sections:
        if sum(len(p) for p in parts) >= sample_chars:
            break
        parts.append(sec.text)
    text = " ".join(parts)[:sample_chars]
    if sum(c.isalpha() for c in text) < 4:
        return None
    return CODES.get(detect(text))
