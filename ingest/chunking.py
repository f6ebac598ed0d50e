"""Section- and sentence-aware chunking measured in the embedding model's own tokens.

Consecutive small sections are packed into one chunk (each keeps its label inline); a section
too long for one chunk is cut at sentence boundaries by llama-index's ``SentenceSplitter``
with the embedding tokenizer as its measure, and each piece repeats its section label. Every
chunk's embedded text starts with the (possibly shortened) document title and is checked to fit
the model's token limit, so nothing is silently truncated by the encoder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from retrieval.embedders import Embedder
from retrieval.errors import InputError
from retrieval.index import chunk_uuid
from retrieval.language import detect
from retrieval.settings import ChunkingSettings
from retrieval.types import Chunk, Document

log = logging.getLogger(__name__)

MIN_BODY_TOKENS = 32

_ZH_SENTENCE = re.compile(r".+?(?:[。！？；!?]+[”’」』）)]*|\.(?=\s)|$)\s*", re.DOTALL)
ZH_CLAUSES = "[^，、：,:]+[，、：,:]?|[，、：,:]"
"""Where a Chinese sentence too long for a chunk is cut first (a secondary regex)."""


def zh_sentences(text: str) -> list[str]:
    """Chinese sentences, each with its closing mark (and quote); English ``. `` counts too.

    >>> zh_sentences("高血压是常见病。应当规律服药；定期复查！Aspirin helps. 完")
    ['高血压是常见病。', '应当规律服药；', '定期复查！', 'Aspirin helps. ', '完']
    """
    return [m.group(0) for m in _ZH_SENTENCE.finditer(text) if m.group(0).strip()]


def zh_words(text: str) -> list[str]:
    """``text`` cut between words (jieba's precise mode), so the pieces join back to it.

    >>> "".join(zh_words("长期服用氯丙嗪后出现的不良反应")) == "长期服用氯丙嗪后出现的不良反应"
    True
    """
    from retrieval.chinese import words

    return words(text)


@dataclass(frozen=True)
class _Piece:
    label: str
    text: str
    page: int | None
    tokens: int

    @property
    def rendered(self) -> str:
        return f"{self.label}: {self.text}" if self.label else self.text


class ChunkingError(InputError):
    """A document cannot be cut to fit the model (e.g. the token limit is too small)."""


class Chunker:
    """Cuts :class:`Document` objects into :class:`Chunk` objects for one embedder."""

    def __init__(self, embedder: Embedder, settings: ChunkingSettings | None = None) -> None:
        self.embedder = embedder
        self.settings = settings or ChunkingSettings()
        self.limit = embedder.max_tokens
        self._special = embedder.count_tokens("")

    def _count(self, text: str) -> int:
        return len(self.embedder.tokenize(text))

    @lru_cache(maxsize=64)  # noqa: B019 - one chunker per job; budgets repeat
    def _splitter(self, chunk_size: int, chinese: bool = False) -> Any:
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.core.node_parser.text.utils import (
            split_by_char,
            split_by_regex,
            split_by_sep,
        )

        tok: Callable[[str], list[int]] = self.embedder.tokenize
        overlap = min(self.settings.overlap_tokens, chunk_size // 4)
        if not chinese:
            return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap, tokenizer=tok)
        splitter = SentenceSplitter(
            chunk_size=chunk_size,
            chunk_overlap=overlap,
            tokenizer=tok,
            chunking_tokenizer_fn=zh_sentences,
            secondary_chunking_regex=ZH_CLAUSES,
        )
        # between words before between characters: a term is never cut in two
        splitter._sub_sentence_split_fns = [
            split_by_regex(ZH_CLAUSES),
            split_by_sep(" "),
            zh_words,
            split_by_char(),
        ]
        return splitter

    def title_prefix(self, title: str) -> str:
        """The (possibly shortened) title line every chunk of a document starts with."""
        title = " ".join(title.split())
        if not title:
            return ""
        cap = self.settings.title_max_tokens
        if cap == 0:
            return ""
        ids = self.embedder.tokenize(title)
        if len(ids) > cap:
            words = title.split()
            while words and self._count(" ".join(words) + " …") > cap:
                words = words[: max(1, int(len(words) * 0.8))] if len(words) > 1 else []
            title = " ".join(words) + " …" if words else ""
        return f"{title}\n" if title else ""

    def chunk(self, doc: Document) -> list[Chunk]:
        """Chunks of ``doc`` in reading order; empty if the document has no text."""
        prefix = self.title_prefix(doc.title)
        budget = self.limit - self._special - (self._count(prefix) if prefix else 0) - 2
        if budget < MIN_BODY_TOKENS:
            raise ChunkingError(
                f"{doc.doc_id}: the embedding model reads only {self.limit} tokens; "
                "lower ingest.chunking.title_max_tokens or use a model with a longer limit"
            )
        pieces = self._pieces(doc, budget)
        groups = self._pack(pieces, budget)
        texts = [(g, "\n".join(p.rendered for p in g)) for g in groups]
        final: list[tuple[list[_Piece], str, int]] = []
        for group, body in texts:
            final.extend(self._fit(group, body, prefix, budget))
        content_hash = doc.content_hash()
        n = len(final)
        chunks = []
        for i, (group, body, n_tokens) in enumerate(final):
            embed_text = prefix + body
            labels = list(dict.fromkeys(p.label for p in group if p.label))
            chunks.append(
                Chunk(
                    chunk_id=chunk_uuid(doc.doc_id, content_hash, i),
                    doc_id=doc.doc_id,
                    index=i,
                    n_chunks=n,
                    text=body,
                    section="; ".join(labels),
                    page=group[0].page if group else None,
                    embed_text=embed_text,
                    n_tokens=n_tokens,
                    content_hash=content_hash,
                )
            )
        return chunks

    def _pieces(self, doc: Document, budget: int) -> list[_Piece]:
        out: list[_Piece] = []
        for sec in doc.sections:
            text = " ".join(sec.text.split())
            if not text:
                continue
            label = " ".join(sec.title.split())
            piece = _Piece(label, text, sec.page, 0)
            n = self._count(piece.rendered)
            if n <= budget:
                out.append(_Piece(label, text, sec.page, n))
                continue
            label_cost = self._count(f"{label}: ") if label else 0
            size = max(MIN_BODY_TOKENS, budget - label_cost)
            for part in self._splitter(size, detect(text) == "zh").split_text(text):
                part = part.strip()
                if part:
                    p = _Piece(label, part, sec.page, 0)
                    out.append(_Piece(label, part, sec.page, self._count(p.rendered)))
        return out

    @staticmethod
    def _pack(pieces: list[_Piece], budget: int) -> list[list[_Piece]]:
        groups: list[list[_Piece]] = []
        current: list[_Piece] = []
        used = 0
        for p in pieces:
            cost = p.tokens + (1 if current else 0)
            if current and used + cost > budget:
                groups.append(current)
                current, used = [], 0
                cost = p.tokens
            current.append(p)
            used += cost
        if current:
            groups.append(current)
        return groups

    def _fit(
        self, group: list[_Piece], body: str, prefix: str, budget: int
    ) -> list[tuple[list[_Piece], str, int]]:
        """Check the real token count of the joined text; re-split the rare overflow."""
        n = self.embedder.count_tokens(prefix + body)
        if n <= self.limit:
            return [(group, body, n)]
        smaller = max(MIN_BODY_TOKENS, int(budget * 0.85))
        if smaller >= budget:
            raise ChunkingError("cannot fit text into the embedding model's token limit")
        out: list[tuple[list[_Piece], str, int]] = []
        for part in self._splitter(smaller, detect(body) == "zh").split_text(body):
            out.extend(self._fit(group, part.strip(), prefix, smaller))
        return out
