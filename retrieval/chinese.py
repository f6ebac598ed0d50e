"""Chinese text for the sparse (BM25) branch: words, not whole runs of characters.

Chinese is written without spaces, so a tokenizer that splits on white space and punctuation
sees a whole clause as one "word" and BM25 can match nothing inside it. :func:`segment` puts
spaces between Chinese words - with jieba's search-mode segmentation (a maintained segmenter;
fine-grained words plus their compounds) when it is installed, else overlapping character
bigrams - and leaves every other character as it was, so English text is unchanged. The same
function runs on documents and queries, on both stores.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable

CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
"""A run of Chinese characters (the one pattern evidex uses for Chinese)."""
_CJK = CJK_RUN
_LOCK = threading.Lock()
_CUT: Callable[[str], list[str]] | None = None


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds Chinese characters.

    >>> has_cjk("aspirin"), has_cjk("阿司匹林 aspirin")
    (False, True)
    """
    return _CJK.search(text) is not None


def bigrams(run: str) -> list[str]:
    """Overlapping character bigrams of a Chinese run (the run itself when shorter).

    >>> bigrams("肝硬化"), bigrams("肝")
    (['肝硬', '硬化'], ['肝'])
    """
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _cutter() -> Callable[[str], list[str]]:
    global _CUT
    with _LOCK:
        if _CUT is None:
            try:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _CUT = jieba.lcut_for_search
            except ImportError:  # pragma: no cover - jieba is a core dependency
                _CUT = bigrams
        return _CUT


def words(text: str) -> list[str]:
    """``text`` cut between words (jieba's precise mode; else one piece per character):
    the pieces join back to ``text``.

    >>> words("氯丙嗪的不良反应")
    ['氯丙嗪', '的', '不良反应']
    """
    return list(_words(text))


@functools.lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:  # the verifier cuts the same clauses many times
    _cutter()
    try:
        import jieba
    except ImportError:  # pragma: no cover - jieba is a core dependency
        return tuple(text)
    return tuple(w for w in jieba.lcut(text) if w)


def segment(text: str) -> str:
    """``text`` with its Chinese runs split into space-separated words.

    >>> segment("Aspirin 81 mg")
    'Aspirin 81 mg'
    >>> segment("长期服用氯丙嗪后出现的不良反应").split()[:3]
    ['长期', '服用', '氯丙嗪']
    """
    if not has_cjk(text):
        return text
    cut = _cutter()
    return _CJK.sub(lambda m: " " + " ".join(w for w in cut(m.group(0)) if w.strip()) + " ", text)


_TOKEN = re.compile(r"\w", re.UNICODE)
_STOP = frozenset(
    "的 了 和 与 及 是 在 有 为 或 中 对 其 之 以 于 下 上 哪 哪一 哪项 什么 何 吗 呢 不 一 应 可 "
    "最 该".split()
)


@functools.lru_cache(maxsize=4096)
def terms(text: str) -> frozenset[str]:
    """The words of ``text`` for a lexical match: segmented Chinese words (one-character
    function words dropped) and lower-cased other words.

    >>> sorted(terms("长期服用氯丙嗪的不良反应"))[:3]
    ['不良', '不良反应', '反应']
    """
    out: set[str] = set()
    for w in segment(text).lower().split():
        w = w.strip("，。！？；：、（）()[]【】“”\"',.;:!?-")
        if w and _TOKEN.search(w) and w not in _STOP and not (len(w) == 1 and has_cjk(w)):
            out.add(w)
    return frozenset(out)


def overlap(query: str, text: str) -> float:
    """The share of the query's words that ``text`` contains (0-1): a relevance that reads
    Chinese when the embedding model cannot.

    >>> overlap("氯丙嗪的不良反应", "长期服用氯丙嗪后出现的不良反应")
    1.0
    >>> overlap("氯丙嗪的不良反应", "阿司匹林预防卒中")
    0.0
    """
    q = terms(query)
    return len(q & terms(text)) / len(q) if q else 0.0
