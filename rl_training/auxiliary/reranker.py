"""Training the reranker evidex serves (``evidex train reranker``).

A cross-encoder reads a query and a passage together. It is initialized from the packaged
MiniLM (or any local checkpoint; a new one-logit head) and trained on the same data as the
retriever - the store's pseudo-queries (titles, inverse-cloze sentences), BEIR pairs and
helpful-rated feedback - with negatives mined where the reranker will meet them: among the
first-stage hybrid hits of the query that belong to other documents. The loss is
sentence-transformers' ``BinaryCrossEntropyLoss`` (positives weighted by the number of
negatives per query).

A small shape for a CPU: ``layers`` keeps only the first transformer layers of the base model
(MiniLM has 6), cutting the latency of reranking in proportion. The latency of reranking
``rerank.candidates`` passages is measured after training and recorded beside the model.

Distillation: with a served LLM as teacher, the labels of (query, passage) pairs are the
teacher's pointwise relevance grades (0-3, scaled to 0-1) instead of the binary "its own
document or not"; a pair the teacher fails on keeps its binary label.
"""

from __future__ import annotations

import json
import logging
import random
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from planner.chat import ChatError, ChatMessage, ChatModel
from retrieval.errors import ConfigError, InputError
from retrieval.index import Index
from rl_training.auxiliary.retriever import TrainPair, collect_pairs, pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankExample:
    """One labelled (query, passage) pair; ``label`` is 1/0 (own document or a mined
    negative) or a teacher's grade scaled to [0, 1]."""

    query: str
    passage: str
    label: float
    positive: bool
    teacher: bool = False


@dataclass
class RerankerConfig:
    """Training the reranker (``evidex train reranker``)."""

    out: Path = field(metadata={"help": "Where the trained CrossEncoder folder goes."})
    base: Path | None = field(
        default=None,
        metadata={"help": "Checkpoint to start from (a transformers or sentence-transformers "
                          "folder). Empty: the packaged MiniLM."},
    )  # fmt: skip
    layers: int | None = field(
        default=None,
        metadata={"help": "Keep only the first N transformer layers (a faster reranker on a "
                          "CPU). Empty: all of the base model's layers."},
    )  # fmt: skip
    negatives: int = field(
        default=3, metadata={"help": "Hard negatives per query, from its first-stage hits."}
    )
    candidates: int = field(
        default=30,
        metadata={"help": "First-stage hits the negatives are drawn from (as many as the "
                          "reranker reads at search time)."},
    )  # fmt: skip
    epochs: float = field(default=1.0, metadata={"help": "Passes over the examples."})
    batch_size: int = field(default=32, metadata={"help": "(query, passage) pairs per step."})
    lr: float = field(default=5e-5, metadata={"help": "Learning rate (AdamW)."})
    max_pairs: int = field(default=20_000, metadata={"help": "Most queries used."})
    max_length: int = field(
        default=256, metadata={"help": "Tokens of query and passage read together."}
    )
    min_documents: int = field(
        default=20, metadata={"help": "Fewest usable documents to train on."}
    )
    validation: float = field(
        default=0.1,
        metadata={"help": "Share of queries held out to check the reranker and choose its "
                          "blend weight with the first stage (at most 300)."},
    )  # fmt: skip
    teacher: bool = field(
        default=False,
        metadata={"help": "Label pairs with the served LLM's relevance grades (distillation)."},
    )
    teacher_max: int = field(
        default=2_000, metadata={"help": "Most (query, passage) pairs the teacher labels."}
    )
    teacher_concurrency: int = field(
        default=4, metadata={"help": "Teacher requests in flight at once."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of sampling and training."})
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu' or 'cuda'."})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.base = Path(self.base) if self.base else None
        if self.layers is not None and self.layers < 1:
            raise ConfigError(f"layers must be at least 1, not {self.layers!r}")
        if self.negatives < 1:
            raise ConfigError(f"negatives must be at least 1, not {self.negatives!r}")
        if self.candidates <= self.negatives:
            raise ConfigError(
                f"candidates ({self.candidates!r}) must exceed negatives ({self.negatives!r})"
            )
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be positive, not {self.epochs!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, not {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, not {self.lr!r}")
        if not 32 <= self.max_length <= 512:
            raise ConfigError(f"max_length must be 32 to 512 tokens, not {self.max_length!r}")
        if self.max_pairs < 1 or self.min_documents < 1 or self.teacher_max < 1:
            raise ConfigError(
                f"max_pairs, min_documents and teacher_max must be positive, not "
                f"{self.max_pairs!r}, {self.min_documents!r} and {self.teacher_max!r}"
            )
        if not 0 < self.validation < 0.5:
            raise ConfigError(f"validation must be between 0 and 0.5, not {self.validation!r}")
        if self.teacher_concurrency < 1:
            raise ConfigError(
                f"teacher_concurrency must be positive, not {self.teacher_concurrency!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', not {self.device!r}")
        if self.base is not None and not (self.base / "config.json").exists():
            raise ConfigError(f"base model {self.base} is not a model folder (no config.json)")


@dataclass
class RerankerReport:
    """What a training run used and made."""

    out: str
    base: str
    layers: int
    queries: int
    examples: int
    positives: int
    by_origin: dict[str, int]
    teacher_labelled: int
    teacher_failed: int
    documents: int
    skipped_documents: int
    seconds: float
    pairs_per_s: float
    device: str
    latency_ms: float
    latency_passages: int
    held_out: int
    """Held-out queries whose own document is among their first-stage candidates."""
    first_stage_mrr: float
    """MRR of the own document among the candidates, in the first stage's order."""
    reranker_mrr: float
    """The same, ordered by the reranker alone."""
    blended_mrr: float
    """The same, ordered by the chosen blend."""
    weight: float
    """The blend of reranker and first stage that ranked the held-out queries best."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- examples ----------------------------------------------------------------------------------


def mine_candidates(
    index: Index, pairs: Sequence[TrainPair], rng: random.Random, negatives: int, k: int
) -> list[list[str]]:
    """For each pair, up to ``negatives`` passages of other documents among the query's first
    ``k`` hybrid hits (the reranker's candidates; no reranker, no bonuses). The best-ranked
    other document is skipped when enough others remain: it is the likeliest to be relevant
    after all."""
    from tqdm import tqdm

    out = []
    for p in tqdm(pairs, desc="mine candidates", unit="query", disable=None):
        hits = index.search(p.query, k=k, rerank=False, ranking=False, max_per_doc=1)
        others = list(dict.fromkeys(" ".join(h.text.split()) for h in hits
                                    if h.doc_id != p.doc_id and h.text.strip()))  # fmt: skip
        others = [t for t in others if t != p.positive]
        if len(others) > negatives:
            others = others[1:]
        out.append(rng.sample(others, min(negatives, len(others))))
    return out


def examples(pairs: Sequence[TrainPair], negatives: Sequence[Sequence[str]]) -> list[RerankExample]:
    """Each pair's positive (label 1) and its mined negatives (label 0).

    >>> ex = examples([TrainPair("q", "pos", "d1", "title")], [["neg a", "neg b"]])
    >>> [(e.passage, e.label) for e in ex]
    [('pos', 1.0), ('neg a', 0.0), ('neg b', 0.0)]
    """
    out = []
    for p, negs in zip(pairs, negatives, strict=True):
        out.append(RerankExample(p.query, p.positive, 1.0, True))
        out += [RerankExample(p.query, n, 0.0, False) for n in negs]
    return out


# -- the teacher ---------------------------------------------------------------------------------

TEACHER_SYSTEM = (
    "You judge search results for clinicians. Grade how well the passage answers the query: "
    "3 = it answers the query, 2 = relevant, it partly answers it, 1 = the same topic but it "
    'does not answer it, 0 = unrelated. Reply with JSON only: {"grade": N}.'
)
TEACHER_SCHEMA = {
    "type": "object",
    "properties": {"grade": {"type": "integer", "minimum": 0, "maximum": 3}},
    "required": ["grade"],
}
_GRADE = re.compile(r'"grade"\s*:\s*"?([0-3])\b|^\s*([0-3])\s*$')


def parse_grade(text: str) -> int | None:
    """The teacher's grade in its reply, or None when it gave none.

    >>> parse_grade('{"grade": 2}'), parse_grade(" 3 "), parse_grade('{"grade": 7}')
    (2, 3, None)
    >>> parse_grade("The passage is relevant.") is None
    True
    """
    m = _GRADE.search(text.strip())
    return int(m.group(1) or m.group(2)) if m else None


def teacher_label(
    chat: ChatModel,
    rows: Sequence[RerankExample],
    *,
    limit: int,
    concurrency: int = 4,
    rng: random.Random | None = None,
) -> tuple[list[RerankExample], int]:
    """``rows`` with up to ``limit`` of them relabelled by the teacher's grade / 3 (whole
    queries are sampled, so a query's positive and negatives are graded together); and how
    many requests failed (those rows keep their binary label)."""
    from tqdm import tqdm

    by_query: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_query.setdefault(r.query, []).append(i)
    queries = list(by_query)
    (rng or random.Random(0)).shuffle(queries)
    chosen: list[int] = []
    for q in queries:
        if len(chosen) + len(by_query[q]) <= limit:
            chosen += by_query[q]

    def grade(i: int) -> int | None:
        r = rows[i]
        user = f"Query: {r.query}\n\nPassage: {r.passage}"
        try:
            res = chat.complete(
                [
                    ChatMessage(role="system", content=TEACHER_SYSTEM),
                    ChatMessage(role="user", content=user),
                ],
                max_tokens=16,
                temperature=0.0,
                json_schema=TEACHER_SCHEMA,
            )
        except ChatError as exc:
            log.warning("the teacher failed on a pair: %s", exc)
            return None
        return parse_grade(res.text)

    out = list(rows)
    failed = 0
    with ThreadPoolExecutor(concurrency) as pool:
        grades = pool.map(grade, chosen)
        bar = tqdm(zip(chosen, grades, strict=True), total=len(chosen), desc="teacher",
                   disable=None)  # fmt: skip
        for i, g in bar:
            if g is None:
                failed += 1
            else:
                out[i] = replace(rows[i], label=g / 3, teacher=True)
    return out, failed


# -- training -------------------------------------------------------------------------------------


def load_base(base: Path, layers: int | None, max_length: int, device: str) -> Any:
    """A one-score CrossEncoder from ``base``, cut to its first ``layers`` layers.

    A cross-encoder checkpoint (``*ForSequenceClassification``) is loaded as it is, head
    included. Any other encoder (the packaged MiniLM, a sentence-transformers or transformers
    folder) gets a mean-pooling layer and a new linear head: a bi-encoder like MiniLM was
    trained with mean pooling, and its [CLS] vector barely varies between inputs (a head on
    it does not learn).
    """
    import transformers
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sentence_transformers.base.modules import Dense

    config = json.loads((base / "config.json").read_text())
    own = int(config.get("num_hidden_layers") or 0)
    if layers is not None and own and layers > own:
        raise ConfigError(f"layers={layers} but {base} has only {own} layers")
    kwargs = {"num_hidden_layers": layers} if layers else {}
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # cut layers
    try:
        if any(a.endswith("ForSequenceClassification") for a in config.get("architectures", [])):
            return CrossEncoder(str(base), max_length=max_length, device=device,
                                local_files_only=True, config_kwargs=kwargs)  # fmt: skip
        encoder = SentenceTransformer(str(base), device=device, local_files_only=True,
                                      config_kwargs=kwargs)  # fmt: skip
    finally:
        transformers.logging.set_verbosity(level)
    from sentence_transformers.sentence_transformer.modules import Pooling

    first: Any = encoder[0]
    pool = next((m for m in encoder if isinstance(m, Pooling)), None)
    dim = int(encoder.get_embedding_dimension() or 0)
    if pool is None or pool.pooling_mode != "mean":
        pool = Pooling(dim, pooling_mode="mean")
    first.max_seq_length = max_length
    head = Dense(dim, 1, activation_function=None, module_output_name="scores")
    return CrossEncoder(modules=[first, pool, head], device=device)


def measure_latency(model: Any, passages: Sequence[str], query: str, runs: int = 5) -> float:
    """Median milliseconds to score ``passages`` against ``query`` (one warm-up run first)."""
    pairs = [(query, p) for p in passages]
    model.predict(pairs, batch_size=32, show_progress_bar=False)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(pairs, batch_size=32, show_progress_bar=False)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The blend weights :func:`validate` tries (the reranker's share of the relevance)."""
MIN_GAIN = 0.005
"""MRR a larger weight must add on the held-out queries to be chosen over a smaller one."""


def _reciprocal_rank(scores: Any) -> float:
    """1 / the rank of the first score (ties count against it).

    >>> _reciprocal_rank([0.9, 0.1]), _reciprocal_rank([0.2, 0.5, 0.2])
    (1.0, 0.3333333333333333)
    """
    first = scores[0]
    return 1.0 / (1 + sum(bool(s >= first) for s in scores[1:]))


def validate(
    index: Index, model: Any, held: Sequence[TrainPair], candidates: int
) -> tuple[int, float, float, float, float]:
    """The held-out queries as search runs them: each query's first-stage candidates (hybrid,
    one per document, no bonuses) scored by ``w * reranker + (1 - w) * fused relevance`` for
    each weight of :data:`WEIGHTS`; the own document's reciprocal rank averaged.

    Returns the queries measured (those whose document is among their candidates), the MRR of
    the first stage, of the reranker alone, of the chosen blend, and its weight: the smallest
    within :data:`MIN_GAIN` of the best (the first stage is the proven one, and the
    reranker costs latency). An inverse-cloze query's sentence is
    cut out of the candidates the reranker reads (the first stage has already seen it), so
    that the reranker cannot win by spotting it."""
    import numpy as np
    import torch

    mrr = dict.fromkeys(WEIGHTS, 0.0)
    n = 0
    for p in held:
        hits = index.search(p.query, k=candidates, rerank=False, ranking=False, max_per_doc=1)
        own = p.doc_id.split(":", 1)[-1]
        first = [i for i, h in enumerate(hits) if h.doc_id.split(":", 1)[-1] == own]
        if not first:
            continue
        n += 1
        order = [first[0], *(i for i in range(len(hits)) if i != first[0])]
        texts = [" ".join(hits[i].text.split()).replace(p.query, " ") for i in order]
        rel = np.asarray([hits[i].score for i in order], dtype=float)
        rel = rel / (rel.max() or 1.0)
        rr = np.asarray(model.predict([(p.query, t) for t in texts], show_progress_bar=False,
                                      activation_fn=torch.nn.Sigmoid()))  # fmt: skip
        for w in WEIGHTS:
            mrr[w] += _reciprocal_rank(list(w * rr + (1 - w) * rel))
    if not n:
        return 0, 0.0, 0.0, 0.0, 0.0
    top = max(mrr.values())
    best = min(w for w in WEIGHTS if mrr[w] >= top - MIN_GAIN * n)
    return n, mrr[0.0] / n, mrr[1.0] / n, mrr[best] / n, best


def _layers(model: Any) -> int:
    hf = model[0].model
    return int(getattr(getattr(hf, "config", None), "num_hidden_layers", 0) or 0)


def train_reranker(
    rows: Sequence[RerankExample],
    cfg: RerankerConfig,
    *,
    origins: dict[str, int] | None = None,
    documents: int = 0,
    skipped: int = 0,
    teacher_failed: int = 0,
    held_out: Sequence[TrainPair] = (),
    index: Index | None = None,
) -> RerankerReport:
    """Fine-tune a cross-encoder on labelled ``rows`` with BinaryCrossEntropyLoss; then
    check it on ``held_out`` queries through ``index``'s first stage (see :func:`validate`;
    without them the weight is 1, the reranker alone)."""
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from retrieval.embedders import default_model_path

    positives = sum(r.positive for r in rows)
    if positives < 2 or positives == len(rows):
        raise InputError(
            f"{len(rows)} example(s), {positives} positive: training needs at least two "
            "queries with a mined negative"
        )
    base = cfg.base or default_model_path()
    device = pick_device(cfg.device)
    rows = list(rows)
    random.Random(cfg.seed).shuffle(rows)
    model = load_base(base, cfg.layers, cfg.max_length, device)
    neg_per_pos = (len(rows) - positives) / positives
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(neg_per_pos))
    data = Dataset.from_dict({"query": [r.query for r in rows],
                              "passage": [r.passage for r in rows],
                              "label": [float(r.label) for r in rows]})  # fmt: skip
    cfg.out.mkdir(parents=True, exist_ok=True)
    steps = max(1, len(rows) // cfg.batch_size)
    args = CrossEncoderTrainingArguments(
        output_dir=str(cfg.out / ".checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        warmup_steps=max(1, int(0.1 * steps * cfg.epochs)),
        save_strategy="no",
        logging_steps=max(1, steps // 10),
        report_to=[],
        seed=cfg.seed,
        use_cpu=device == "cpu",
    )
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=loss)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model.save(str(cfg.out))
    sample = [r.passage for r in rows[:30]]
    latency = measure_latency(model, sample, rows[0].query) if sample else 0.0
    measured, first_mrr, rr_mrr, blend_mrr, weight = (
        validate(index, model, held_out, cfg.candidates) if held_out and index is not None
        else (0, 0.0, 0.0, 0.0, 1.0)
    )  # fmt: skip
    report = RerankerReport(
        out=str(cfg.out), base=str(base),
        layers=_layers(model),
        queries=positives, examples=len(rows), positives=positives,
        by_origin=dict(origins or {}), teacher_labelled=sum(r.teacher for r in rows),
        teacher_failed=teacher_failed, documents=documents, skipped_documents=skipped,
        seconds=round(seconds, 2),
        pairs_per_s=round(len(rows) * cfg.epochs / seconds, 2) if seconds else 0.0,
        device=device, latency_ms=round(latency, 1), latency_passages=len(sample),
        held_out=measured, first_stage_mrr=round(first_mrr, 4), reranker_mrr=round(rr_mrr, 4),
        blended_mrr=round(blend_mrr, 4), weight=weight,
    )  # fmt: skip
    meta = {**report.as_dict(), "config": {k: str(v) for k, v in asdict(cfg).items()}}
    (cfg.out / "evidex_reranker.json").write_text(json.dumps(meta, indent=1))
    return report


def train(
    index: Index,
    cfg: RerankerConfig,
    *,
    pairs_dirs: Sequence[Path] = (),
    feedback_db: Path | None = None,
    exclude_queries: Iterable[str] = (),
    teacher: ChatModel | None = None,
) -> RerankerReport:
    """The whole job: the retriever's training pairs from ``index`` (plus BEIR pairs and
    feedback when given), negatives from each query's first-stage hits, the teacher's labels
    when ``cfg.teacher``; then training."""
    if cfg.teacher and teacher is None:
        raise ConfigError(
            "teacher labels need a served LLM: set llm.kind = 'openai' and llm.base_url"
        )
    rng = random.Random(cfg.seed)
    pairs, n_docs, skipped = collect_pairs(
        index, rng, min_documents=cfg.min_documents, max_pairs=cfg.max_pairs,
        pairs_dirs=pairs_dirs, feedback_db=feedback_db, exclude_queries=exclude_queries,
    )  # fmt: skip
    negs = mine_candidates(index, pairs, rng, cfg.negatives, cfg.candidates)
    kept = [(p, n) for p, n in zip(pairs, negs, strict=True) if n]
    if len(kept) < len(pairs):
        log.info("%d quer(ies) without another document among their hits left out",
                 len(pairs) - len(kept))  # fmt: skip
    n_held = min(300, int(len(kept) * cfg.validation))
    held, kept = kept[:n_held], kept[n_held:]
    rows = examples([p for p, _ in kept], [n for _, n in kept])
    failed = 0
    if cfg.teacher and teacher is not None:
        rows, failed = teacher_label(teacher, rows, limit=cfg.teacher_max,
                                     concurrency=cfg.teacher_concurrency, rng=rng)  # fmt: skip
        if failed:
            log.warning("the teacher failed on %d of its pairs: they keep binary labels", failed)
    origins: dict[str, int] = {}
    for p, _ in kept:
        origins[p.origin] = origins.get(p.origin, 0) + 1
    log.info("training the reranker on %d examples of %d queries", len(rows), len(kept))
    return train_reranker(rows, cfg, origins=origins, documents=n_docs, skipped=skipped,
                          teacher_failed=failed, held_out=[p for p, _ in held],
                          index=index)  # fmt: skip
