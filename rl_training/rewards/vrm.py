r"""The verifier-based reward model (VRM) of the WiNGPT-3.0 report (Appendix B).

A judge model, served over the OpenAI-compatible API (vLLM), reads the dialogue history, the
current question, an excellent (reference) answer and the predicted answer, and scores the
prediction 1 (correct) or 0 in ``\boxed{}``. The prediction's reasoning (``<think>``) is
stripped first: the judge sees only the answer. A missing or malformed score counts as 0 and
is counted. Requests run in batches under a concurrency limit, with retries (through
:class:`answer.llm.OpenAIChat`), and replies are cached on disk keyed by the judge model and
the exact prompt, so a re-run costs nothing.

In verl: ``compute_score`` below is a ``custom_reward_function`` for rows whose
``reward_model.style`` is ``model``; given verl's ``reward_router_address`` (the judge served
by verl's reward-model router) it talks to that, else to ``base_url``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.chat import ChatError, ChatMessage, ChatModel
from retrieval.errors import InputError
from rl_training.data.rows import environment_of, history_of
from rl_training.rewards.extract import last_boxed, strip_reasoning

log = logging.getLogger(__name__)

PROMPT = r"""You are a professional evaluation expert who must assess the quality of the "predicted answer" based on the following four core elements:

- Dialogue History (contextual information)
- Current Question (the specific request made by the user)
- Excellent Answer (a high-quality reference answer that has been reviewed)
- Predicted Answer (the answer to be evaluated)

### Scoring Criteria:
- 1 point: Indicates high-quality answers that are equivalent or close to the "excellent answer," meeting user needs;
- 0 points: Indicates low-quality answers that contain hallucinations, omissions, errors, or fail to meet user needs;

> Note: The "excellent answer" has undergone rigorous review and is considered to be of high standard quality, serving as a benchmark for judgment.

Please output your evaluation results in the following structure:

---

### Dialogue History (in chronological order, from earliest to latest)
...
<<history>>
...

### Current Question
...
user: <<question>>
...

### Excellent Answer (Reference Answer)
...
assistant: <<reference>>
...

### Predicted Answer (Answer to Evaluate)
...
assistant: <<prediction>>
...

---

### Evaluation Analysis

[Perform item-by-item comparative analysis here]

---

### Predicted Answer Evaluation Score

\boxed{Prediction answer evaluation score}"""  # noqa: E501 (the report's lines, word for word)
"""The report's Appendix B prompt, word for word (its wrapped lines joined); the four
``<<...>>`` slots are where the report says "{Insert ...}"."""


@dataclass(frozen=True)
class VRMItem:
    """One prediction to judge."""

    question: str
    reference: str
    prediction: str
    history: tuple[tuple[str, str], ...] = ()
    """Earlier turns as (role, content) pairs."""


@dataclass(frozen=True)
class VRMResult:
    score: float
    parsed: bool
    """False when the judge's reply held no valid boxed score (the score is then 0)."""
    cached: bool = False
    error: str | None = None
    """Set when the judge could not be reached (the score is then 0 and nothing is cached)."""


def parse_score(reply: str) -> float | None:
    r"""The judge's score: the last ``\boxed{}`` after any reasoning, 0 or 1; None when it
    is missing or malformed.

    >>> parse_score("The answers agree. \\boxed{1}")
    1.0
    >>> parse_score("<think>\\boxed{0}</think> \\boxed{1.0}")
    1.0
    >>> parse_score("\\boxed{\\text{0}}"), parse_score("\\boxed{0.5}"), parse_score("no box")
    (0.0, None, None)
    """
    boxed = last_boxed(strip_reasoning(reply))
    if boxed is None:
        return None
    value = re.sub(r"\\text\{([^{}]*)\}|\\mathbf\{([^{}]*)\}", r"\1\2", boxed).strip()
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number in (0.0, 1.0) else None


def render_prompt(item: VRMItem) -> str:
    """The Appendix B prompt for one item: the dialogue history as ``role: text`` lines, and
    the reference and predicted answers without their reasoning (the report removes the CoT
    from both).

    >>> p = render_prompt(VRMItem("Dose?", "<think>x</think>5 mg", "5 mg", (("user", "Hi"),)))
    >>> "user: Hi" in p, "user: Dose?" in p, "assistant: 5 mg" in p, "<think>" in p
    (True, True, True, False)
    """
    slots = {
        "history": "\n".join(f"{role}: {text}" for role, text in item.history) or "(none)",
        "question": item.question,
        "reference": strip_reasoning(item.reference) or item.reference,
        "prediction": strip_reasoning(item.prediction) or "(no answer)",
    }
    out = PROMPT
    for name, value in slots.items():  # one pass per slot: text in a slot is never re-read
        out = out.replace(f"<<{name}>>", value.replace("<<", "< <"))
    return out


class _Cache:
    """SQLite cache of judge replies, keyed by model and prompt."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT)")
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, reply: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (key, reply))
            self._db.commit()

    def close(self) -> None:
        self._db.close()


@dataclass
class VRMConfig:
    """Where the judge is and how hard to push it."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """The judge's OpenAI-compatible endpoint (vLLM: ``vllm serve MODEL``)."""
    model: str = "default"
    """Model name sent to the endpoint."""
    api_key: str | None = None
    concurrency: int = 8
    """Requests in flight at once."""
    batch_size: int = 256
    """Items submitted together; a batch finishes before the next starts."""
    retries: int = 3
    timeout_s: float = 120.0
    max_tokens: int = 1024
    cache_dir: Path | None = None
    """Folder of the on-disk reply cache; None disables it."""


@dataclass
class VerifierRewardModel:
    """Scores predictions against excellent answers with a judge model."""

    config: VRMConfig = field(default_factory=VRMConfig)
    chat: ChatModel | None = None
    """The judge; default: :class:`answer.llm.OpenAIChat` on ``config.base_url``."""
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.chat is None:
            from pydantic import SecretStr

            from answer.llm import OpenAIChat
            from retrieval.settings import LLMSettings

            self.chat = OpenAIChat(
                LLMSettings(
                    kind="openai",
                    base_url=self.config.base_url,
                    model=self.config.model,
                    api_key=SecretStr(self.config.api_key) if self.config.api_key else None,
                    retries=self.config.retries,
                    timeout_s=self.config.timeout_s,
                    temperature=0.0,
                    max_tokens=self.config.max_tokens,
                )
            )
        self._cache = (
            _Cache(self.config.cache_dir / "vrm.sqlite") if self.config.cache_dir else None
        )
        self._stats_lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _key(self, prompt: str) -> str:
        name = self.chat.name if self.chat else self.config.model
        return hashlib.sha256(json.dumps([name, prompt]).encode()).hexdigest()

    def _judge(self, item: VRMItem) -> VRMResult:
        prompt = render_prompt(item)
        key = self._key(prompt)
        reply = self._cache.get(key) if self._cache else None
        cached = reply is not None
        if reply is None:
            assert self.chat is not None
            try:
                result = self.chat.complete(
                    [ChatMessage(role="user", content=prompt)],
                    max_tokens=self.config.max_tokens,
                    temperature=0.0,
                )
            except ChatError as exc:
                self._count("errors")
                log.warning("VRM judge failed: %s", exc)
                return VRMResult(0.0, parsed=False, error=str(exc))
            self._count("requests")
            # Keep the judge's reasoning: parse_score reads the box after it.
            reply = (
                f"<think>{result.reasoning}</think>{result.text}"
                if result.reasoning
                else result.text
            )
            if self._cache:
                self._cache.put(key, reply)
        else:
            self._count("cache hits")
        score = parse_score(reply)
        if score is None:
            self._count("malformed")
            log.debug("VRM reply without a valid boxed score: %.200s", reply)
        return VRMResult(score or 0.0, parsed=score is not None, cached=cached)

    def score(
        self,
        question: str,
        reference: str,
        prediction: str,
        history: Sequence[tuple[str, str]] = (),
    ) -> VRMResult:
        return self._judge(VRMItem(question, reference, prediction, tuple(history)))

    def score_batch(
        self, items: Sequence[VRMItem], progress: Callable[[int], Any] | None = None
    ) -> list[VRMResult]:
        """Judge many items, ``config.concurrency`` at a time, in input order."""
        out: list[VRMResult] = []
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            for i in range(0, len(items), self.config.batch_size):
                batch = items[i : i + self.config.batch_size]
                out.extend(pool.map(self._judge, batch))
                if progress:
                    progress(len(batch))
        return out

    def record_scorer(self) -> Callable[[Sequence[Mapping[str, Any]]], list[float]]:
        """A scorer for :func:`rl_training.data.filters.reward_model_filter`: the record's
        last assistant turn judged against its ``reward_model.ground_truth`` (the excellent
        answer), with the earlier turns as history."""

        def scorer(records: Sequence[Mapping[str, Any]]) -> list[float]:
            return [r.score for r in self.score_batch([item_of(rec) for rec in records])]

        return scorer

    def close(self) -> None:
        if self._cache:
            self._cache.close()
        close = getattr(self.chat, "close", None)
        if close:
            close()


def item_of(record: Mapping[str, Any]) -> VRMItem:
    """A chat record as a VRM item (see :meth:`VerifierRewardModel.record_scorer`)."""
    msgs = [(str(m.get("role")), str(m.get("content") or "")) for m in record.get("messages", [])]
    reference = (record.get("reward_model") or {}).get("ground_truth")
    if not reference:
        raise InputError(
            "record has no reward_model.ground_truth (the excellent answer) to judge against"
        )
    last_a = max((i for i, (role, _) in enumerate(msgs) if role == "assistant"), default=None)
    if last_a is None:
        raise InputError("record has no assistant turn to judge")
    last_u = max((i for i, (role, _) in enumerate(msgs[:last_a]) if role == "user"), default=None)
    if last_u is None:
        raise InputError("record has no user question before the assistant turn")
    history = tuple(m for m in msgs[:last_u] if m[0] != "system")
    return VRMItem(msgs[last_u][1], str(reference), msgs[last_a][1], history)


_JUDGES: dict[tuple[str, str, str], VerifierRewardModel] = {}
_JUDGES_LOCK = threading.Lock()


def judge_for(
    base_url: str | None = None,
    model: str = "default",
    cache_dir: str | Path | None = None,
    reward_router_address: str | None = None,
    **config: Any,
) -> VerifierRewardModel:
    """One shared judge per endpoint, model and cache (verl calls the reward per sample)."""
    if reward_router_address:
        base_url = (
            reward_router_address
            if "://" in reward_router_address
            else (f"http://{reward_router_address}/v1")
        )
    if not base_url:
        raise InputError(
            "no judge for the verifier reward: set reward_kwargs.base_url (an OpenAI-compatible "
            "endpoint such as vLLM's) or run verl with a reward model router"
        )
    key = (base_url, model, str(cache_dir or ""))
    with _JUDGES_LOCK:
        if key not in _JUDGES:
            _JUDGES[key] = VerifierRewardModel(
                VRMConfig(
                    base_url=base_url,
                    model=model,
                    cache_dir=Path(cache_dir) if cache_dir else None,
                    **config,
                )
            )
        return _JUDGES[key]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    *,
    base_url: str | None = None,
    model: str = "default",
    cache_dir: str | None = None,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    **_: Any,
) -> dict[str, Any]:
    """verl ``custom_reward_function`` for ``reward_model.style == "model"`` rows: the
    row's ``extra_info.question`` (and optional ``extra_info.history``: [[role, text], ...])
    with ``ground_truth`` as the excellent answer. For diagnostic-chain rows (S4) the predicted
    answer is the whole consultation (:func:`rl_training.envs.diagnosis.show_process`), so the
    verifier judges the diagnostic process as well as its conclusion."""
    info = dict(extra_info or {})
    if environment_of(data_source) == "diagnosis":  # S4: the verifier sees the whole process
        from rl_training.envs.diagnosis import show_process

        diagnosis = last_boxed(strip_reasoning(solution_str)) or "(none)"
        solution_str = show_process(solution_str, diagnosis)
    judge = judge_for(base_url, model, cache_dir, reward_router_address)
    res = judge.score(str(info.get("question", "")), str(ground_truth), solution_str,
                      history_of(info))  # fmt: skip
    return {"score": res.score, "acc": res.score == 1.0, "vrm_parsed": res.parsed}
