"""Citation verification: does the cited passage support the sentence that cites it?

The answer text is split into sentences; each sentence's ``[n]`` markers are read (markers
that name no retrieved source are dropped: a citation to something not retrieved cannot
survive). Each (sentence, cited passage) pair is judged by a :class:`Verifier`:

- :class:`SimilarityVerifier` (default): cosine similarity between the sentence and the
  passage's best-matching sentence with the index's embedding model, plus the share of the
  sentence's content words found in the passage;
- :class:`NliVerifier`: an NLI cross-encoder (premise = passage, hypothesis = sentence);
- :class:`JudgeVerifier`: the chat model answers yes or no.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from planner.chat import ChatError, ChatMessage, ChatModel, ChatResult
from retrieval.embedders import Embedder
from retrieval.errors import ConfigError
from retrieval.settings import VerifySettings

log = logging.getLogger(__name__)

_MARKER = re.compile(r"\s*\[(\d{1,3}(?:\s*[,;–-]\s*\d{1,3})*)\]")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|et al|vs|approx|Fig|No|Dr|cf)\.$", re.IGNORECASE)
_SENT_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[\u3400-\u9fff]")
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
    """Lower-cased words without stop words (Chinese: single characters).

    >>> content_words("The risk of stroke is reduced by aspirin")
    ['risk', 'stroke', 'reduced', 'aspirin']
    """
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


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
    """Whether a sentence states something negatively.

    >>> negated("Aspirin did not reduce mortality"), negated("Aspirin reduced mortality")
    (True, False)
    """
    return bool(_NEGATION.search(text))


def lexical_overlap(claim: str, passage: str) -> float:
    """Share of the claim's content words (generic ones like 'study' aside) that occur in the
    passage, prefix-stemmed.

    >>> lexical_overlap("The study found aspirin reduced stroke", "Aspirin reduces stroke.")
    1.0
    >>> lexical_overlap("aspirin reduced stroke in WHO reports", "Aspirin reduces stroke.")
    0.75
    """
    words = {_stem(w) for w in content_words(claim) if w not in _GENERIC}
    if not words:
        return 0.0
    have = {_stem(w) for w in content_words(passage)}
    return len(words & have) / len(words)


_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")


def unmatched_numbers(claim: str, passage: str) -> list[str]:
    """Numbers in the claim that the passage does not contain (a cheap hallucination check).

    >>> unmatched_numbers("mortality fell by 12% (OR 0.87)", "OR 0.87; a 12% fall")
    []
    >>> unmatched_numbers("OR 1.87", "OR 0.87")
    ['1.87']
    """
    have = {n.replace(",", "") for n in _NUMBER.findall(passage)}
    return [n for n in _NUMBER.findall(claim) if n.replace(",", "") not in have]


@dataclass(frozen=True)
class Judgement:
    """A verifier's verdict on one (claim, passage) pair."""

    supported: bool
    score: float
    evidence: str = ""


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

    def __init__(self, embedder: Embedder, settings: VerifySettings | None = None) -> None:
        self.embedder = embedder
        self.settings = settings or VerifySettings()
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
                out.append(Judgement(False, 0.0))
                continue
            self.calls.append(res)
            yes = res.text.strip().lower().startswith(("yes", "是"))
            out.append(Judgement(yes, 1.0 if yes else 0.0))
        return out
