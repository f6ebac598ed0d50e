"""The verifier on Chinese claims: CMExam explanations as sources, claims made from them.

From ``../shared/data/zh/cmexam_dev.jsonl`` (rows with an explanation): for each of N rows,
claims that its explanation supports (one of its own sentences; the question stem with the
correct option, as a model might answer) and claims it does not (the same kinds over the
topic-nearest *other* explanation; a sentence with a number changed; a sentence with its
first 是 negated). Each is judged by the default similarity verifier with the packaged
English-only MiniLM, which for Chinese goes by jieba's words, negation and numbers; the
share passing is given for several ``verify.min_overlap_zh`` values, and, as the baseline,
for the verifier before (single characters as words, MiniLM cosine).

Usage: python bench/zh_verify.py [--rows 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"

from answer.verify import SimilarityVerifier, split_sentences  # noqa: E402
from bench.ingest_throughput import machine  # noqa: E402
from retrieval.chinese import overlap  # noqa: E402
from retrieval.embedders import load_embedder  # noqa: E402
from retrieval.settings import EmbeddingSettings, VerifySettings  # noqa: E402


def claim_sets(n: int) -> dict[str, list[tuple[str, str]]]:
    rows = [json.loads(x) for x in (SHARED / "zh" / "cmexam_dev.jsonl").read_text().splitlines()]
    rows = [r for r in rows if len(r.get("explanation") or "") > 60]
    pool, rows = rows[: n * 3], rows[:n]
    rng = random.Random(0)
    out: dict[str, list[tuple[str, str]]] = {
        k: [] for k in ("own sentence", "question + answer", "other's sentence",
                        "question + answer, other source", "number changed", "negated")
    }  # fmt: skip
    for r in rows:
        own = r["explanation"]
        other = max((x["explanation"] for x in pool if x["explanation"] != own),
                    key=lambda e: overlap(r["question"], e))  # fmt: skip
        mine = [s for s in split_sentences(own) if len(s) >= 10]
        theirs = [s for s in split_sentences(other) if len(s) >= 10]
        opts = r.get("options") if isinstance(r.get("options"), dict) else {}
        qa = r["question"].rstrip("。？?（）() ") + "：" + str(opts.get(r["answer"][:1], "")) + "。"
        out["question + answer"].append((qa, own))
        out["question + answer, other source"].append((qa, other))
        if mine:
            s = rng.choice(mine)
            out["own sentence"].append((s, own))
            num = [x for x in mine if re.search(r"\d", x)]
            if num:
                out["number changed"].append((re.sub(r"\d+", "9973", num[0], count=1), own))
            neg = [x for x in mine if "是" in x and "不是" not in x]
            if neg:
                out["negated"].append((neg[0].replace("是", "不是", 1), own))
        if theirs:
            out["other's sentence"].append((rng.choice(theirs), own))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "zh_verify.md")
    args = ap.parse_args()
    sets = claim_sets(args.rows)
    emb = load_embedder(EmbeddingSettings())
    thresholds = (0.6, 0.7, 0.8, 0.9)
    table: dict[str, list[float]] = {}
    for name, pairs in sets.items():
        row = []
        for t in thresholds:
            v = SimilarityVerifier(emb, VerifySettings(min_overlap_zh=t))
            row.append(sum(j.supported for j in v.judge(pairs)) / max(len(pairs), 1))
        table[name] = row
    # the baseline: the verifier as it was (Chinese single characters, MiniLM's cosine)
    before: dict[str, float] = {}
    import answer.verify as av

    saved = av.content_words, av.has_cjk
    av.content_words = lambda text: [w for w in re.findall(r"[a-z0-9]+|[\u3400-\u9fff]",
                                                           text.lower())]  # fmt: skip
    av.has_cjk = lambda text: False
    try:
        v = SimilarityVerifier(emb, VerifySettings())
        for name, pairs in sets.items():
            before[name] = sum(j.supported for j in v.judge(pairs)) / max(len(pairs), 1)
    finally:
        av.content_words, av.has_cjk = saved
    lines = [
        "# The verifier on Chinese claims (CMExam explanations)",
        "",
        f"{dt.date.today().isoformat()} · {machine()} · `python bench/zh_verify.py --rows "
        f"{args.rows}` · packaged all-MiniLM-L6-v2 (English-only), verify.kind = similarity",
        "",
        "Share of claims judged supported (higher is right for the first two rows, lower for "
        "the rest).",
        "",
        "| claim | n | "
        + " | ".join(f"min_overlap_zh {t}" for t in thresholds)
        + " | before (characters + cosine) |",
        "|---|---|" + "---|" * len(thresholds) + "---|",
    ]
    for name, row in table.items():
        lines.append(f"| {name} | {len(sets[name])} | " + " | ".join(f"{x:.3f}" for x in row)
                     + f" | {before[name]:.3f} |")  # fmt: skip
    lines += [
        "",
        "The default is 0.8: a claim must use the source's words, as the English verifier's "
        "min_overlap asks. A free paraphrase fails (the question + answer row shows how often "
        "a stem-and-option restatement does); a served model as judge (verify.kind = 'judge') "
        "reads paraphrases.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
