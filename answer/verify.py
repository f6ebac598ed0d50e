"""Citation verification: does the cited passage support the sentence that cites it?

The answer text is split into sentences; each sentence's ``[n]`` markers are read (markers
that name no retrieved source are dropped: a citation to something not retrieved cannot
survive). Each (sentence, cited passage) pair is judged by a :class:`Verifier`:

- :class:`SimilarityVerifier` (default): cosine similarity between the sentence and the
  passage's best-matching sentence with the index's embedding model, plus the share of the
  sentence's content words found in the passage;
- :class:`NliVerifier`: an NLI cross-encoder (premise = passage, hypothesis = sentence);
- :class:`JudgeVerifier`: the chat model answers yes or no.

Chinese is read as Chinese: content words are jieba's words (a claim word counts when the
passage contains it), negation is a negating word (不, 未, 无法 ...; not the 不 of 不良反应),
a negated word must be negated in the passage too (and the reverse), and numbers next to
Chinese characters are numbers. With an English-only embedding model the
cosine of two Chinese texts is noise, so a Chinese claim over a Chinese passage is judged on
its words, negation and numbers alone (stricter: ``min_overlap_zh``).

A claim in one language over a passage in another (a Chinese sentence citing an English
abstract) cannot be judged by shared words: :class:`AcrossLanguages` sends those pairs to the
served model (:class:`JudgeVerifier`) and, without one, marks them *not checked*, a reason the
answer reports: never silently passed, never silently dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from planner.chat import ChatError, ChatMessage, ChatModel, ChatResult
from retrieval.chinese import CJK_RUN as _CJK_RUN
from retrieval.chinese import has_cjk
from retrieval.chinese import words as zh_words
from retrieval.embedders import Embedder
from retrieval.errors import ConfigError
from retrieval.language import detect
from retrieval.settings import VerifySettings

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*[,;–-]\s*\d{1,3})*)\]")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|et al|vs|approx|Fig|No|Dr|cf)\.$", re.IGNORECASE)
_SENT_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[\u3400-\u9fff]+")
# one-character function words and question words of Chinese, never content
_ZH_STOP = frozenset(
    """的 了 和 与 及 是 在 有 为 或 中 对 其 之 以 于 下 上 哪 哪一 哪项 哪个 什么 何 吗 呢 一 应
    可 最 该 这 那 其中 以及 并 而 则 即 等 也 都 被 把 将 从 由 到 给 但 若 如 因 所 者 本题 考查
    关于 属于 包括 可以 可能 一般 主要 通常 出现""".split()
)
_ZH_NEGATION = frozenset(
    """不 没 没有 无 未 非 否 勿 别 不能 不会 不是 不宜 不可 不应 不必 不用 不再 不要 无法 未能 未见
    并非 并未 并不 无效 无关 无需 不予 尚未""".split()
)
_STOP = frozenset(
    """a an and are as at be been but by can could did do does for from had has have in into is
    it its may might more most no not of on or than that the their there these they this those
    to was were which while who will with would also other such""".split()
)


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer; citation markers stay with the sentence before them.

    >>> split_sentences("Aspirin lowers risk [1]. It raises bleeding, e.g. in the gut. [2] Done")
    ['Aspirin lowers risk [1].', 'It raises bleeding, e.g. in the gut. [2]', 'Done']
    """
    text = " ".join(text.split())
    if not text:
        return []
    parts = _SENT_END.split(text)
    out: list[str] = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        lead = re.match(r"^((?:\[\d[\d,;\s–-]*\]\s*)+)(.*)$", part)
        if lead and out:  # "[2] Next sentence": the marker closes the previous sentence
            out[-1] = f"{out[-1]} {lead.group(1).strip()}"
            part = lead.group(2).strip()
            if not part:
                continue
        if out and (_ABBREV.search(out[-1]) or len(out[-1]) < 3):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def parse_markers(sentence: str) -> tuple[str, list[int]]:
    """The sentence without markers, and the numbers it cites in order.

    >>> parse_markers("Statins reduce events [1, 3][2].")
    ('Statins reduce events.', [1, 3, 2])
    >>> parse_markers("Range [2-4] works too")
    ('Range works too', [2, 3, 4])
    """
    numbers: list[int] = []
    for m in _MARKER.finditer(sentence):
        for piece in re.split(r"\s*[,;]\s*", m.group(1)):
            if re.fullmatch(r"\d+\s*[–-]\s*\d+", piece):
                lo, hi = (int(x) for x in re.split(r"\s*[–-]\s*", piece))
                numbers.extend(range(lo, min(hi, lo + 20) + 1))
            elif piece.strip().isdigit():
                numbers.append(int(piece))
    clean = _MARKER.sub("", sentence)
    clean = re.sub(r"\s+([.,;:!?。])", r"\1", clean).strip()
    return clean, list(dict.fromkeys(numbers))


def content_words(text: str) -> list[str]:
    """Lower-cased words without stop words (Chinese: jieba's words, function words out).

    >>> content_words("The risk of stroke is reduced by aspirin")
    ['risk', 'stroke', 'reduced', 'aspirin']
    >>> content_words("长期服用氯丙嗪可出现迟发性运动障碍")
    ['长期', '服用', '氯丙嗪', '迟发性', '运动障碍']
    """
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if _CJK_RUN.fullmatch(w):
            out.extend(z for z in zh_words(w) if z not in _ZH_STOP and z.strip())
        elif w not in _STOP:
            out.append(w)
    return out


def _stem(w: str) -> str:
    return w[:6] if len(w) > 6 else w


# Words a claim may add without adding content ("The study found that ...").
_GENERIC = frozenset(
    """study studies found find finds result results showed show shows shown suggest suggests
    suggested answer question evidence data authors author examined examine investigated
    investigate conclusion conclude paper report reported""".split()
)
_NEGATION = re.compile(
    r"\b(?:no|not|none|cannot|never|without|neither|nor|unable|fail(?:s|ed)? to)\b|n't\b",
    re.IGNORECASE,
)


def negated(text: str) -> bool:
    """Whether a sentence states something negatively (in English or Chinese).

    >>> negated("Aspirin did not reduce mortality"), negated("Aspirin reduced mortality")
    (True, False)
    >>> negated("阿司匹林未能降低死亡率"), negated("不良反应包括静坐不能"), negated("不良反应")
    (True, True, False)
    """
    if _NEGATION.search(text):
        return True
    return any(w in _ZH_NEGATION for run in _CJK_RUN.findall(text) for w in zh_words(run))


_CLAUSE = re.compile(r"[，,；;：:。！？!?\n]")


def zh_negation_agrees(claim: str, passage: str) -> bool:
    """Whether each clause of a Chinese claim holds as many negating words as the passage's
    clause that shares most of its words (a tie: any of them).

    >>> src = "铝盐是常用的混凝剂，对水质无不良影响。"
    >>> zh_negation_agrees("铝盐是常用的混凝剂", src)
    True
    >>> zh_negation_agrees("铝盐不是常用的混凝剂", src)
    False
    >>> zh_negation_agrees("硫酸铝对水质有不良影响", src)
    False
    """
    clauses = [c for c in _CLAUSE.split(passage) if c.strip()] or [passage]
    for part in _CLAUSE.split(claim):
        if not content_words(part):
            continue
        shares = [lexical_overlap(part, c) for c in clauses]
        top = max(shares)
        if not any(_negations(c) == _negations(part)
                   for c, x in zip(clauses, shares, strict=True) if x == top):  # fmt: skip
            return False
    return True


def _negations(text: str) -> int:
    """How many negating words a Chinese text holds (English ones count once)."""
    n = sum(w in _ZH_NEGATION for run in _CJK_RUN.findall(text) for w in zh_words(run))
    return n + bool(_NEGATION.search(text))


def lexical_overlap(claim: str, passage: str) -> float:
    """Share of the claim's content words (generic ones like 'study' aside) that occur in the
    passage, prefix-stemmed.

    >>> lexical_overlap("The study found aspirin reduced stroke", "Aspirin reduces stroke.")
    1.0
    >>> lexical_overlap("aspirin reduced stroke in WHO reports", "Aspirin reduces stroke.")
    0.75
    >>> lexical_overlap("服用氯丙嗪引起迟发性运动障碍", "长期服用氯丙嗪后出现的迟发性运动障碍")
    0.8
    """
    words = [w for w in content_words(claim) if w not in _GENERIC]
    if not words:
        return 0.0
    have = {_stem(w) for w in content_words(passage)}
    flat = passage.lower()  # a Chinese word counts when the passage holds it, however cut
    found = sum((w in flat) if _CJK_RUN.fullmatch(w) else (_stem(w) in have) for w in words)
    return found / len(words)


_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)?")
_CODE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{1,4}\d+(?:[.,/]\d+)*")


def unmatched_numbers(claim: str, passage: str) -> list[str]:
    """Numbers in the claim that the passage does not contain (a cheap hallucination check).

    >>> unmatched_numbers("mortality fell by 12% (OR 0.87)", "OR 0.87; a 12% fall")
    []
    >>> unmatched_numbers("OR 1.87", "OR 0.87")
    ['1.87']
    >>> unmatched_numbers("每日服用100mg", "阿司匹林每日100mg")
    []
    >>> unmatched_numbers("服用50mg", "服用5mg"), unmatched_numbers("H5N1禽流感", "H7N9禽流感")
    (['50'], ['H5'])
    """
    have = {n.replace(",", "") for n in _NUMBER.findall(passage)}
    out = [n for n in _NUMBER.findall(claim) if n.replace(",", "") not in have]
    flat = passage.lower()  # codes with numbers (H7N9, CD20, BP130/80, P208) as they are
    return out + [c for c in _CODE.findall(claim) if c.lower() not in flat]


@dataclass(frozen=True)
class Judgement:
    """A verifier's verdict on one (claim, passage) pair; ``unchecked`` says why no verdict
    could be reached (the claim then counts as unsupported, for that reason)."""

    supported: bool
    score: float
    evidence: str = ""
    unchecked: str = ""


class Verifier(Protocol):
    """Judges whether passages support claims."""

    name: str

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        """One judgement per (claim, passage) pair."""
        ...


class SimilarityVerifier:
    """A claim is supported by a passage when all four hold: its cosine similarity to the
    passage's best sentence reaches ``min_similarity``; ``min_overlap`` of its content words
    occur in the passage (invented details fail); it and that sentence agree on negation
    (reversed findings fail); every number in it occurs in the passage.

    Calibrated by hand on 62 claim-passage pairs that the embedded model produced for
    PubMedQA questions 40-70 (``bench/results/answer_eval.md``); it measures closeness to
    the passage's own words, so faithful restatements pass and free paraphrases may not.
    """

    def __init__(
        self,
        embedder: Embedder,
        settings: VerifySettings | None = None,
        *,
        multilingual: bool = False,
    ) -> None:
        self.embedder = embedder
        self.settings = settings or VerifySettings()
        self.multilingual = multilingual
        self.name = f"similarity:{embedder.name}"

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        if not pairs:
            return []
        claims = list(dict.fromkeys(c for c, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        sents = {p: split_sentences(p) or [p] for p in passages}
        flat = [s for p in passages for s in sents[p]]
        vecs = self.embedder.embed_documents(claims + flat)
        cv = {c: vecs[i] for i, c in enumerate(claims)}
        offset = len(claims)
        pv: dict[str, tuple[np.ndarray[Any, Any], list[str]]] = {}
        for p in passages:
            n = len(sents[p])
            pv[p] = (vecs[offset : offset + n], sents[p])
            offset += n
        s = self.settings
        out = []
        for claim, passage in pairs:
            mat, texts = pv[passage]
            if has_cjk(claim) and not self.multilingual:
                out.append(self._by_words(claim, passage, texts))
                continue
            sims = mat @ cv[claim]
            best = int(np.argmax(sims))
            cos = float(sims[best])
            supported = (
                cos >= s.min_similarity
                and lexical_overlap(claim, passage) >= s.min_overlap
                and negated(claim) == negated(texts[best])
                and not unmatched_numbers(claim, passage)
            )
            out.append(Judgement(supported, round(cos, 4), texts[best]))
        return out

    def _by_words(self, claim: str, passage: str, texts: list[str]) -> Judgement:
        """A Chinese claim when the embedding model cannot read Chinese: its best sentence is
        the one sharing most of its words; the score is the claim's share of words found."""
        shares = [lexical_overlap(claim, t) for t in texts]
        best = int(np.argmax(shares))
        overlap = lexical_overlap(claim, passage)
        supported = (
            overlap >= self.settings.min_overlap_zh
            and zh_negation_agrees(claim, passage)
            and not unmatched_numbers(claim, passage)
        )
        return Judgement(supported, round(overlap, 4), texts[best])


def crosses_languages(claim: str, passage: str) -> bool:
    """Whether a claim and its passage are in different languages (Chinese and English).

    >>> crosses_languages("阿司匹林可预防卒中", "Aspirin prevents stroke."), crosses_languages(
    ...     "Aspirin prevents stroke", "Aspirin reduced strokes (阿司匹林) in trials.")
    (True, False)
    """
    a, b = detect(claim), detect(passage)
    return a != b and {a, b} == {"en", "zh"}


NOT_CHECKED = (
    "not checked: the sentence and its source are in different languages, and no served "
    "model is configured to judge across them (llm.kind = 'openai', or verify.kind = 'judge')"
)


class AcrossLanguages:
    """Routes each (claim, passage) pair: same language to ``same``; a claim over a passage
    in the other language to ``across`` (the served model as judge), or, without one, an
    unsupported verdict that says it was not checked."""

    def __init__(
        self, same: Verifier, across: Verifier | Callable[[], Verifier | None] | None = None
    ) -> None:
        """``across``: the cross-language judge, or a function that gives it when first
        needed (the served model is not loaded for answers that never cross languages)."""
        self.same = same
        self._across = across
        self.name = same.name

    @property
    def across(self) -> Verifier | None:
        if callable(self._across) and not hasattr(self._across, "judge"):
            self._across = self._across()
            if self._across is not None:
                self.name = f"{self.same.name}+{self._across.name}"
        return self._across  # type: ignore[return-value]

    @property
    def calls(self) -> list[ChatResult]:
        """Model calls made for verdicts (the judge's), to count in the answer's usage."""
        out: list[ChatResult] = []
        for v in self._parts():
            out.extend(getattr(v, "calls", None) or [])
        return out

    def _parts(self) -> list[object]:
        return list({id(v): v for v in (self.same, self._across) if v is not None}.values())

    def clear_calls(self) -> None:
        for v in self._parts():
            calls = getattr(v, "calls", None)
            if isinstance(calls, list):
                calls.clear()

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        cross = [crosses_languages(c, p) for c, p in pairs]
        same = self.same.judge([pr for pr, x in zip(pairs, cross, strict=True) if not x])
        other = [pr for pr, x in zip(pairs, cross, strict=True) if x]
        judge = self.across if other else None
        if judge is not None:
            across = judge.judge(other)
        else:
            across = [Judgement(False, 0.0, unchecked=NOT_CHECKED) for _ in other]
        it_same, it_across = iter(same), iter(across)
        return [next(it_across) if x else next(it_same) for x in cross]


class NliVerifier:
    """An NLI cross-encoder (sentence-transformers ``CrossEncoder``) from a local path."""

    def __init__(self, settings: VerifySettings) -> None:
        if settings.model_path is None:
            raise ConfigError("verify.kind is 'nli' but verify.model_path is empty")
        from sentence_transformers import CrossEncoder

        self.settings = settings
        self.model = CrossEncoder(str(settings.model_path), device="cpu", local_files_only=True)
        labels = {int(k): str(v).lower() for k, v in self.model.config.id2label.items()}
        entail = [i for i, lab in labels.items() if lab.startswith("entail")]
        if not entail:
            raise ConfigError(
                f"the NLI model at {settings.model_path} has no 'entailment' label "
                f"(labels: {sorted(labels.values())})"
            )
        self.entail = entail[0]
        self.name = f"nli:{settings.model_path.name}"

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        if not pairs:
            return []
        logits = np.asarray(
            self.model.predict([(p, c) for c, p in pairs], apply_softmax=True, batch_size=16)
        )
        probs = logits.reshape(len(pairs), -1)[:, self.entail]
        return [
            Judgement(bool(p >= self.settings.min_entailment), round(float(p), 4)) for p in probs
        ]


class JudgeVerifier:
    """The chat model judges support (yes/no); an unreadable verdict counts as unsupported."""

    def __init__(self, chat: ChatModel) -> None:
        self.chat = chat
        self.name = f"judge:{chat.name}"
        self.calls: list[ChatResult] = []

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[Judgement]:
        out = []
        for claim, passage in pairs:
            messages = [
                ChatMessage(
                    role="system",
                    content="You check citations. Answer with one word: yes or no.",
                ),
                ChatMessage(
                    role="user",
                    content=f"<passage>\n{passage}\n</passage>\nClaim: {claim}\n"
                    "Does the passage support the claim?",
                ),
            ]
            try:
                res = self.chat.complete(messages, max_tokens=4, temperature=0.0)
            except ChatError as exc:
                log.warning("judge unavailable, citation counted unsupported: %s", exc)
                out.append(Judgement(False, 0.0, unchecked=f"not checked: the judge failed: {exc}"))
                continue
            self.calls.append(res)
            yes = res.text.strip().lower().startswith(("yes", "是"))
            out.append(Judgement(yes, 1.0 if yes else 0.0))
        return out
