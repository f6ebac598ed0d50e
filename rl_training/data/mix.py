"""Difficulty-weighted sampling of an SFT mix with per-category and per-language balance.

The WiNGPT-3.0 report's SFT set: about 1.4M items, 50% general, 18% maths, 14% code and 18%
medical. :class:`MixConfig` holds those shares (change them freely); within a category the
quota is split over languages (equally, or by ``language_shares``), and within a (category,
language) cell items are drawn without replacement with probability proportional to their
difficulty weight (advanced items are preferred). Cells short of items give all they have and
the shortfall is reported, never silently filled.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from retrieval.errors import ConfigError
from retrieval.language import detect as detect_language
from rl_training.data.difficulty import question_of
from rl_training.data.filters import Record

MEDICAL_SOURCES = {"medqa", "medmcqa", "mmlu_med", "cmexam", "cmmlu", "pubmedqa", "medcalc"}


@dataclass
class MixConfig:
    """How many items to draw and in what proportions."""

    total: int = 1_400_000
    """Items in the mix."""
    category_shares: dict[str, float] = field(
        default_factory=lambda: {"general": 0.50, "maths": 0.18, "code": 0.14, "medical": 0.18}
    )
    """Share of the mix per category (must sum to 1)."""
    difficulty_weights: dict[str, float] = field(
        default_factory=lambda: {"basic": 1.0, "intermediate": 2.0, "advanced": 3.0}
    )
    """Relative chance of drawing an item of each difficulty; unlabelled items weigh 1."""
    language_shares: dict[str, float] | None = None
    """Share of each category per language; None splits every category equally over the
    languages present in it."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name, shares in (
            ("category_shares", self.category_shares),
            ("language_shares", self.language_shares or {"": 1.0}),
        ):
            if any(v < 0 for v in shares.values()) or not math.isclose(sum(shares.values()), 1):
                raise ConfigError(f"{name} must be non-negative and sum to 1, got {shares}")
        if any(w <= 0 for w in self.difficulty_weights.values()):
            raise ConfigError(f"difficulty_weights must be positive, got {self.difficulty_weights}")
        if self.total < 0:
            raise ConfigError(f"total must be >= 0, got {self.total}")


def category_of(record: Record) -> str:
    """``record['category']``, else 'medical' for evidex's medical data sources, else
    'general'."""
    if record.get("category"):
        return str(record["category"])
    source = str(record.get("data_source", "")).split("/", 1)[-1]
    return "medical" if source in MEDICAL_SOURCES else "general"


def language_of(record: Record) -> str:
    """``record['language']``, else detected from the question ('en', 'zh' or 'other')."""
    return str(record.get("language") or detect_language(question_of(record)))


def _quotas(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder rounding: the quotas sum to ``total`` exactly."""
    raw = {k: total * v for k, v in shares.items()}
    q = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (q[k] - raw[k], k))[: total - sum(q.values())]:
        q[k] += 1
    return q


@dataclass
class MixReport:
    """What the sample holds and where it fell short of the config."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    shortfall: Counter[tuple[str, str]] = field(default_factory=Counter)
    unused_categories: Counter[str] = field(default_factory=Counter)

    def by(self, axis: int) -> Counter[str]:
        """Totals by category (0), language (1) or difficulty (2)."""
        out: Counter[str] = Counter()
        for key, n in self.counts.items():
            out[key[axis]] += n
        return out


def weighted_sample(
    records: Iterable[Record], config: MixConfig
) -> tuple[list[dict[str, Any]], MixReport]:
    """Draw ``config.total`` records in the configured proportions (see the module doc)."""
    cells: dict[str, dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        cells[category_of(r)][language_of(r)].append(r)
    rng = random.Random(config.seed)
    rep = MixReport()
    for cat in cells:
        if cat not in config.category_shares:
            rep.unused_categories[cat] = sum(len(v) for v in cells[cat].values())
    out: list[dict[str, Any]] = []
    for cat, quota in _quotas(config.total, config.category_shares).items():
        langs = cells.get(cat, {})
        if config.language_shares is not None:
            shares = dict(config.language_shares)
        else:
            shares = {lang: 1 / len(langs) for lang in langs} if langs else {}
        if not shares:
            rep.shortfall[(cat, "*")] += quota
            continue
        lang_quota = _quotas(quota, shares)
        # A language short of items hands its remainder to the others in the category.
        spare = 0
        for lang in sorted(lang_quota, key=lambda lg: len(langs.get(lg, [])) - lang_quota[lg]):
            want = lang_quota[lang]
            pool = langs.get(lang, [])
            take = min(len(pool), want + spare)
            spare = want + spare - take
            for r in _draw(pool, take, config.difficulty_weights, rng):
                out.append(dict(r))
                rep.counts[(cat, lang, str(r.get("difficulty", "unlabelled")))] += 1
        if spare:
            rep.shortfall[(cat, "*")] += spare
    rng.shuffle(out)
    return out, rep


def _draw(
    pool: list[Record], k: int, weights: Mapping[str, float], rng: random.Random
) -> list[Record]:
    """Weighted sampling without replacement (Efraimidis-Spirakis keys u ** (1 / w))."""
    if k >= len(pool):
        return list(pool)
    keyed = [
        (rng.random() ** (1 / weights.get(str(r.get("difficulty")), 1.0)), i)
        for i, r in enumerate(pool)
    ]
    keyed.sort(reverse=True)
    return [pool[i] for _, i in keyed[:k]]
