"""Adapting the bi-encoder to the corpus it serves (``evidex train retriever``).

No labelled queries are needed: each document of the store gives a pseudo-query - its title
(the passage is then its text without the title), or, for an untitled document, one of its
sentences (inverse cloze: the query is a sentence, the passage the rest of its chunk) - and a
hard negative is mined by BM25 from the same store (a document the query's words find that is
not its own). BEIR-format supervised pairs (``queries.jsonl``, ``qrels/*.tsv``,
``corpus.jsonl``) and passages cited in answers clinicians rated helpful can be added. The loss
is sentence-transformers' ``MultipleNegativesRankingLoss`` (in-batch negatives plus the mined
hard one) with a no-duplicates batch sampler; the result is a sentence-transformers folder
usable by path in ``[embedding]`` (and then ``evidex index reembed``).
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrieval.errors import ConfigError, InputError
from retrieval.index import Index

log = logging.getLogger(__name__)

Origin = Literal["title", "cloze", "pairs", "feedback"]


@dataclass(frozen=True)
class TrainPair:
    """One training example: a query, its passage and (optionally) a hard negative."""

    query: str
    positive: str
    doc_id: str
    origin: Origin
    negative: str = ""


@dataclass
class RetrieverConfig:
    """Fine-tuning the retriever (``evidex train retriever``)."""

    out: Path = field(metadata={"help": "Where the adapted sentence-transformers model goes."})
    base: Path | None = field(
        default=None,
        metadata={"help": "Model to start from (a sentence-transformers folder). Empty: the "
                          "configured embedding model (the packaged MiniLM by default)."},
    )  # fmt: skip
    epochs: float = field(default=1.0, metadata={"help": "Passes over the pairs."})
    batch_size: int = field(
        default=32, metadata={"help": "Pairs per step; each pair's in-batch negatives."}
    )
    lr: float = field(default=3e-5, metadata={"help": "Learning rate (AdamW)."})
    max_pairs: int = field(default=50_000, metadata={"help": "Most training pairs used."})
    hard_negatives: bool = field(
        default=True, metadata={"help": "Mine one BM25 hard negative per pair from the store."}
    )
    min_documents: int = field(
        default=20, metadata={"help": "Fewest usable documents to train on."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of sampling and training."})
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu' or 'cuda'."})
    train_max_tokens: int | None = field(
        default=None,
        metadata={"help": "Cut training texts to this many tokens (faster on a CPU); the saved "
                          "model keeps its own limit. Empty: the model's limit."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.train_max_tokens is not None and self.train_max_tokens < 16:
            raise ConfigError(
                f"train_max_tokens must be at least 16, not {self.train_max_tokens!r}"
            )
        self.base = Path(self.base) if self.base else None
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, not {self.epochs!r}")
        if self.batch_size < 2:
            raise ConfigError(
                f"batch_size must be at least 2 (in-batch negatives), not {self.batch_size!r}"
            )
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr!r}")
        if self.max_pairs < 1 or self.min_documents < 1:
            raise ConfigError(
                f"max_pairs and min_documents must be positive, not {self.max_pairs!r} and "
                f"{self.min_documents!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', not {self.device!r}")
        if self.base is not None and not (self.base / "config.json").exists():
            raise ConfigError(f"base model {self.base} is not a model folder (no config.json)")


@dataclass
class RetrieverReport:
    """What a training run used and made."""

    out: str
    base: str
    pairs: int
    by_origin: dict[str, int]
    with_negative: int
    documents: int
    skipped_documents: int
    seconds: float
    pairs_per_s: float
    device: str
    dim: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the store's documents -----------------------------------------------------------------


def documents(index: Index) -> dict[str, list[dict[str, Any]]]:
    """The store's chunks by document, in reading order (payloads)."""
    docs: dict[str, list[dict[str, Any]]] = {}
    for _, p in index.store.payloads():
        docs.setdefault(str(p.get("doc_id") or ""), []).append(p)
    docs.pop("", None)
    for chunks in docs.values():
        chunks.sort(key=lambda p: int(p.get("chunk_index") or 0))
    return docs


def _body(p: dict[str, Any]) -> str:
    return " ".join(str(p.get("text") or "").split())


def _sentences(text: str) -> list[str]:
    from answer.verify import split_sentences

    return [s for s in split_sentences(text) if len(s.split()) >= 5 or len(s) >= 12]


def pseudo_queries(
    docs: dict[str, list[dict[str, Any]]], rng: random.Random
) -> tuple[list[TrainPair], int]:
    """One pair per usable document: its title and first chunk, else a sentence of a chunk
    and the rest of that chunk (inverse cloze); and how many documents had no usable text.

    >>> docs = {"a": [{"title": "Aspirin after stroke", "text": "Aspirin cut recurrence."}],
    ...         "b": [{"title": "", "text": "Statins lower LDL cholesterol in adults. "
    ...                "They also reduce major vascular events by a fifth."}], "c": [{}]}
    >>> pairs, skipped = pseudo_queries(docs, random.Random(0))
    >>> [(p.doc_id, p.origin) for p in pairs], skipped
    ([('a', 'title'), ('b', 'cloze')], 1)
    >>> pairs[1].query in docs["b"][0]["text"], pairs[1].query in pairs[1].positive
    (True, False)
    """
    out: list[TrainPair] = []
    skipped = 0
    for doc_id, chunks in docs.items():
        title = " ".join(str(chunks[0].get("title") or "").split())
        bodies = [b for b in (_body(p) for p in chunks) if b]
        if not bodies:
            skipped += 1
            continue
        if len(title.split()) >= 3 or (len(title) >= 6 and not title.isascii()):
            out.append(TrainPair(title, bodies[0], doc_id, "title"))
            continue
        body = rng.choice(bodies)
        sents = _sentences(body)
        if len(sents) < 2:
            skipped += 1
            continue
        q = rng.choice(sents)
        rest = " ".join(s for s in _sentences(body) if s != q) or body.replace(q, " ")
        out.append(TrainPair(q, " ".join(rest.split()), doc_id, "cloze"))
    return out, skipped


def mine_negatives(
    index: Index, pairs: Sequence[TrainPair], rng: random.Random, k: int = 8
) -> list[TrainPair]:
    """Each pair with a hard negative: one of the top BM25 hits for its query that belongs to
    another document (the very first such hit is skipped when there are others: it is the
    likeliest to be relevant after all)."""
    from dataclasses import replace

    from tqdm import tqdm

    out = []
    for p in tqdm(pairs, desc="mine negatives", unit="query", disable=None):
        hits = index.search(p.query, k=k, mode="sparse", rerank=False, ranking=False)
        others = [h for h in hits if h.doc_id != p.doc_id and h.text.strip()]
        if not others:
            out.append(p)
            continue
        pick = rng.choice(others[1:]) if len(others) > 1 else others[0]
        out.append(replace(p, negative=" ".join(pick.text.split())))
    return out


# -- supervised pairs and feedback -----------------------------------------------------------


def beir_pairs(folder: Path, exclude: Iterable[str] = ()) -> list[TrainPair]:
    """Supervised (query, relevant document) pairs of a BEIR folder (every qrels file with a
    positive score); queries in ``exclude`` (evaluation queries) are left out."""
    from retrieval.evaluation import read_qrels, read_queries
    from retrieval.jsonl import iter_jsonl

    folder = Path(folder)
    qfile, corpus = folder / "queries.jsonl", folder / "corpus.jsonl"
    qrels = sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    if not qfile.exists() or not corpus.exists() or not qrels:
        raise InputError(
            f"{folder} is not a BEIR folder: it needs queries.jsonl, corpus.jsonl and qrels/*.tsv"
        )
    skip = set(exclude)
    queries = read_queries(qfile)
    docs = {str(r["_id"]): " ".join(f"{r.get('title') or ''} {r.get('text') or ''}".split())
            for _, r in iter_jsonl(corpus)}  # fmt: skip
    out = []
    for f in qrels:
        for qid, judged in read_qrels(f).items():
            if qid in skip or qid not in queries:
                continue
            out += [TrainPair(queries[qid], docs[did], f"beir:{did}", "pairs")
                    for did, score in judged.items() if score > 0 and did in docs]  # fmt: skip
    if not out:
        raise InputError(f"{folder}: no usable (query, relevant document) pairs in its qrels")
    return out


def feedback_pairs(db: Path, index: Index) -> list[TrainPair]:
    """(question, cited passage) for every citation of an answer a clinician rated helpful;
    the passage is the cited document's chunk that holds the cited sentence's words best."""
    from retrieval.chinese import overlap

    if not Path(db).exists():
        raise InputError(f"no feedback database at {db}: clinicians' ratings come from the chat")
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT question, citations FROM feedback WHERE rating = 1 AND abstained = 0"
        ).fetchall()
    out = []
    for question, raw in rows:
        for c in json.loads(raw or "[]"):
            if c.get("status") == "unsupported":
                continue
            chunks = index.document(str(c.get("doc_id")), limit=50)
            if not chunks:
                continue
            want = str(c.get("sentence") or "")
            best = max(chunks, key=lambda p: overlap(want, p.text) if want else 0.0)
            out.append(TrainPair(str(question), " ".join(best.text.split()), best.doc_id,
                                 "feedback"))  # fmt: skip
    if not out:
        raise InputError(
            f"{db} holds no helpful-rated answer with citations: nothing to learn from feedback"
        )
    return out


# -- training ----------------------------------------------------------------------------------


def pick_device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no GPU is visible (use --device cpu)")
    return choice


def train_retriever(
    pairs: Sequence[TrainPair], cfg: RetrieverConfig, *, documents: int = 0, skipped: int = 0
) -> RetrieverReport:
    """Fine-tune the bi-encoder on ``pairs`` with MultipleNegativesRankingLoss."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    from retrieval.embedders import default_model_path

    if len(pairs) < 2:
        raise InputError(f"{len(pairs)} training pair(s): too few to train on")
    base = cfg.base or default_model_path()
    device = pick_device(cfg.device)
    rng = random.Random(cfg.seed)
    pairs = list(pairs)
    rng.shuffle(pairs)
    pairs = pairs[: cfg.max_pairs]
    negatives = all(p.negative for p in pairs)
    data: dict[str, list[str]] = {
        "anchor": [p.query for p in pairs],
        "positive": [p.positive for p in pairs],
    }
    if negatives:
        data["negative"] = [p.negative for p in pairs]
    model = SentenceTransformer(str(base), device=device, local_files_only=True)
    own_limit = model.max_seq_length
    if cfg.train_max_tokens:
        model.max_seq_length = min(own_limit or cfg.train_max_tokens, cfg.train_max_tokens)
    loss = MultipleNegativesRankingLoss(model)
    cfg.out.mkdir(parents=True, exist_ok=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(cfg.out / ".checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=max(1, int(0.1 * len(pairs) / cfg.batch_size)),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=max(1, len(pairs) // cfg.batch_size // 10),
        report_to=[],
        seed=cfg.seed,
        use_cpu=device == "cpu",
        dataloader_drop_last=len(pairs) > cfg.batch_size,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(data), loss=loss
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model.max_seq_length = own_limit  # it embeds whole chunks, as the store's were
    model.save(str(cfg.out))
    by_origin: dict[str, int] = {}
    for p in pairs:
        by_origin[p.origin] = by_origin.get(p.origin, 0) + 1
    report = RetrieverReport(
        out=str(cfg.out), base=str(base), pairs=len(pairs), by_origin=by_origin,
        with_negative=sum(bool(p.negative) for p in pairs) if negatives else 0,
        documents=documents, skipped_documents=skipped, seconds=round(seconds, 2),
        pairs_per_s=round(len(pairs) * cfg.epochs / seconds, 2) if seconds else 0.0,
        device=device, dim=int(model.get_embedding_dimension() or 0),
    )  # fmt: skip
    meta = {**report.as_dict(), "config": {k: str(v) for k, v in asdict(cfg).items()}}
    (cfg.out / "evidex_retriever.json").write_text(json.dumps(meta, indent=1))
    return report


def collect_pairs(
    index: Index,
    rng: random.Random,
    *,
    min_documents: int,
    max_pairs: int,
    pairs_dirs: Sequence[Path] = (),
    feedback_db: Path | None = None,
    exclude_queries: Iterable[str] = (),
) -> tuple[list[TrainPair], int, int]:
    """The training pairs both ranking models learn from: the store's pseudo-queries, BEIR
    pairs and helpful-rated feedback, shuffled and cut to ``max_pairs``; with the number of
    documents and of documents without usable text. Refused when fewer than
    ``min_documents`` documents have usable text."""
    docs = documents(index)
    pairs, skipped = pseudo_queries(docs, rng)
    usable = len(docs) - skipped
    if usable < min_documents:
        raise InputError(
            f"the store has {usable} document(s) with usable text (of {len(docs)}); training "
            f"needs at least {min_documents} (--min-documents): ingest more first"
        )
    exclude = list(exclude_queries)
    for d in pairs_dirs:
        pairs += beir_pairs(d, exclude)
    if feedback_db is not None:
        pairs += feedback_pairs(feedback_db, index)
    rng.shuffle(pairs)
    return pairs[:max_pairs], len(docs), skipped


def adapt(
    index: Index,
    cfg: RetrieverConfig,
    *,
    pairs_dirs: Sequence[Path] = (),
    feedback_db: Path | None = None,
    exclude_queries: Iterable[str] = (),
) -> RetrieverReport:
    """The whole job: pseudo-queries from ``index`` (with BM25 hard negatives), plus BEIR
    pairs and helpful-rated feedback when given; then training."""
    rng = random.Random(cfg.seed)
    pairs, n_docs, skipped = collect_pairs(
        index, rng, min_documents=cfg.min_documents, max_pairs=cfg.max_pairs,
        pairs_dirs=pairs_dirs, feedback_db=feedback_db, exclude_queries=exclude_queries,
    )  # fmt: skip
    usable = n_docs - skipped
    if cfg.hard_negatives:
        pairs = mine_negatives(index, pairs, rng)
        missing = sum(not p.negative for p in pairs)
        if missing:  # MNRL needs the same columns in every row
            if missing < 0.05 * len(pairs):
                log.info("%d pair(s) without a hard negative left out", missing)
                pairs = [p for p in pairs if p.negative]
            else:
                log.info("%d pair(s) without a hard negative: in-batch negatives only", missing)
                pairs = [TrainPair(p.query, p.positive, p.doc_id, p.origin) for p in pairs]
    log.info("training the retriever on %d pairs from %d documents", len(pairs), usable)
    return train_retriever(pairs, cfg, documents=n_docs, skipped=skipped)
