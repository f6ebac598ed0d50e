"""The :class:`Assistant`: it orchestrates the stages of an answer, each in its own module -
plan (:mod:`planner`), gather (:mod:`answer.gather`: retrieve per subtask, fuse, score
relevance, select), compose (:mod:`answer.compose`: generate; or :mod:`answer.digest`: quote
the sources' own sentences when no model synthesizes) and check (:mod:`answer.check`: every
citation against its source).

:class:`Assistant` is the Python API::

    from answer import Assistant

    with Assistant.from_settings() as assistant:      # or Assistant.from_toml("evidex.toml")
        answer = assistant.ask("Does aspirin prevent a first stroke?",
                               patient={"age": 72, "sex": "female"},
                               filters={"year_from": 2010})
        print(answer.render())
        for piece in assistant.stream("..."):          # tokens, then the Answer
            ...

Safety rules enforced by code, whatever the model writes: a citation can only name a source
that was retrieved and numbered; every cited sentence is checked against its passage and
unsupported ones are removed (or flagged); with no relevant evidence, or no supported
statement, the answer abstains (with a served model, the digest of the sources is shown under
the abstention as "what the sources say"); a digest quotes only sentences that occur verbatim
in their passage; every answer carries the clinician-review notice; text in a
retrieved document is quoted data (instruction-like sentences are withheld from the model).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from answer import compose, consensus, digest, gather
from answer.check import check_citations
from answer.compose import sanitize_passage
from answer.llm import load_chat
from answer.patient import Patient, load_patient
from answer.types import Answer, Citation, Consensus, Digest, Reference, RemovedClaim, Usage
from answer.verify import (
    NOT_CHECKED,
    AcrossLanguages,
    JudgeVerifier,
    NliVerifier,
    SimilarityVerifier,
    Verifier,
)
from planner.chat import ChatError, ChatModel, ChatResult
from planner.planner import Planner
from planner.types import Plan
from retrieval.errors import EvidexError, InputError
from retrieval.filters import SearchFilters
from retrieval.ranking import check_query
from retrieval.search import FiltersLike, Searcher, as_filters
from retrieval.settings import Settings, load_settings
from retrieval.stores.base import StoreError
from retrieval.types import ScoredPassage

__all__ = ["AnswerError", "Assistant", "sanitize_passage"]

log = logging.getLogger(__name__)

PatientLike = Patient | Mapping[str, Any] | Path | str | None


class AnswerError(EvidexError, RuntimeError):
    """The question cannot be answered at all (no index, empty store, bad input)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class _Run:
    """Mutable state of one question while it goes through the stages."""

    question: str
    settings: Settings
    patient: Patient | None
    filters: SearchFilters | None
    answer_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    timings: dict[str, float] = field(default_factory=dict)
    usage: list[Usage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    plan: Plan | None = None
    candidates: list[gather.Candidate] = field(default_factory=list)
    left_out: list[ScoredPassage] = field(default_factory=list)

    def add_usage(self, stage: str, calls: Sequence[ChatResult]) -> None:
        for c in calls:
            self.usage.append(
                Usage(
                    stage=stage,
                    model=c.model,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                )
            )


class Assistant:
    """Evidence-grounded answers with verified citations over an evidex index."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Path | None = None,
        chat: ChatModel | None = None,
        searcher: Searcher | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        try:
            self.searcher = searcher or Searcher(self.settings, store)
        except StoreError as exc:
            raise AnswerError(
                f"{exc}: ingest a corpus first (evidex ingest ... or evidex demo)"
            ) from exc
        self._chat = chat
        self._chat_error: str | None = None
        self._verifier = verifier

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> Assistant:
        """From settings (default: evidex.toml / EVIDEX_* variables)."""
        return cls(settings, **kwargs)

    @classmethod
    def from_toml(cls, path: Path | str, **kwargs: Any) -> Assistant:
        """From a TOML settings file."""
        return cls(load_settings(Path(path)), **kwargs)

    # -- parts, built on first use ---------------------------------------------------------

    @property
    def chat(self) -> ChatModel | None:
        """The chat model, or None when it cannot be loaded (the reason is a warning)."""
        if self._chat is None and self._chat_error is None:
            try:
                self._chat = load_chat(self.settings.llm)
            except ChatError as exc:
                self._chat_error = str(exc)
                log.warning("chat model unavailable: %s", exc)
        return self._chat

    @property
    def verifier(self) -> Verifier:
        """The configured verifier; a claim over a source in the other language (Chinese,
        English) goes to the served model as judge, or is reported as not checked."""
        if self._verifier is None:
            v = self.settings.answer.verify
            base: Verifier
            if v.kind == "nli":
                base = NliVerifier(v)
            elif v.kind == "judge" and self.chat is not None:
                base = JudgeVerifier(self.chat)
            else:
                index = self.searcher.index
                base = SimilarityVerifier(index.embedder, v, multilingual=index.multilingual)
            across = base if isinstance(base, JudgeVerifier) else self._served_judge
            self._verifier = AcrossLanguages(base, across)
        return self._verifier

    def _served_judge(self) -> Verifier | None:
        """The served chat model as a judge (not the tiny packaged one, which cannot)."""
        chat = self.chat
        if chat is None or getattr(chat, "is_default_embedded", False):
            return None
        return JudgeVerifier(chat)

    @property
    def digest_only(self) -> bool:
        """Whether answers are evidence digests (``answer.mode``; 'auto' means digest with
        the packaged embedded model, which rarely restates its sources faithfully)."""
        mode = self.settings.answer.mode
        if mode != "auto":
            return mode == "digest"
        if self._chat is not None:  # a model given to the Assistant says what it is
            return bool(getattr(self._chat, "is_default_embedded", False))
        return self._default_embedded

    @property
    def _default_embedded(self) -> bool:
        llm = self.settings.llm
        return llm.kind == "embedded" and llm.model_path is None

    def settings_hash(self) -> str:
        raw = self.settings.model_dump_json(exclude={"data_dir", "chat"})
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    # -- public API -----------------------------------------------------------------------

    def ask(
        self, question: str, patient: PatientLike = None, filters: FiltersLike = None
    ) -> Answer:
        """Plan, retrieve, generate and verify; returns the answer (or an abstention)."""
        result: Answer | None = None
        for item in self._run(question, patient, filters, stream=False):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result

    async def aask(
        self, question: str, patient: PatientLike = None, filters: FiltersLike = None
    ) -> Answer:
        """:meth:`ask` without blocking the event loop."""
        return await asyncio.to_thread(self.ask, question, patient, filters)

    def stream(
        self, question: str, patient: PatientLike = None, filters: FiltersLike = None
    ) -> Iterator[str | Answer]:
        """Answer tokens as the model writes them (reasoning held back), then the verified
        :class:`Answer`, whose ``text`` replaces the streamed draft (unsupported sentences
        removed)."""
        yield from self._run(question, patient, filters, stream=True)

    def close(self) -> None:
        self.searcher.close()
        close = getattr(self._chat, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages ---------------------------------------------------------------------------

    def _prepare(self, question: str, patient: PatientLike, filters: FiltersLike) -> _Run:
        try:
            question = check_query(question, self.settings.search.max_query_chars, "question")
        except InputError as exc:
            raise AnswerError(str(exc)) from exc
        pat = patient if isinstance(patient, Patient) or patient is None else load_patient(patient)
        if pat is not None and pat.empty:
            pat = None
        try:
            user_filters = as_filters(filters)
        except ValueError as exc:
            raise AnswerError(f"invalid filters: {exc}") from exc
        if pat is not None:
            base = user_filters.model_dump() if user_filters else {}
            base.update({k: v for k, v in pat.filters().model_dump().items() if v is not None})
            user_filters = SearchFilters.model_validate(base)
        run = _Run(question, self.settings, pat, user_filters)
        if pat is not None and pat.omitted:
            run.warnings.append(
                "patient context cut to the most recent entries ("
                + "; ".join(pat.omitted)
                + "): check the full record for older history"
            )
        return run

    def _run(
        self, question: str, patient: PatientLike, filters: FiltersLike, *, stream: bool
    ) -> Iterator[str | Answer]:
        t_start = time.perf_counter()
        run = self._prepare(question, patient, filters)
        log.info("answer %s: question of %d characters", run.answer_id, len(run.question))
        info = self.searcher.index.store.info()
        if info is None:
            raise AnswerError(
                "the index is empty: ingest a corpus first (evidex ingest ... or evidex demo)"
            )

        # 1. plan (a digest of the packaged embedded model needs no model at all)
        t0 = time.perf_counter()
        quiet = self.digest_only and self._chat is None and self._default_embedded
        chat = None if quiet else self.chat
        if chat is None and not quiet:
            run.warnings.append(f"chat model unavailable: {self._chat_error}")
        summary = run.patient.summary() if run.patient else None
        planner = Planner(chat, self.settings.planner)
        outcome = planner.plan(run.question, summary)
        run.plan = outcome.plan
        run.add_usage("plan", outcome.calls)
        run.timings["plan"] = _ms(t0)

        # 2. gather the evidence, with follow-up rounds for subtasks missing it
        t0 = time.perf_counter()
        a = self.settings.answer
        queries = [q for sub in run.plan.subtasks for q in sub.queries] or [run.question]
        notes = {n for q in queries if (n := self.searcher.index.language_note(q))}
        run.warnings.extend(sorted(notes))
        try:
            by_sub = gather.retrieve(self.searcher, list(run.plan.ordered()), run.filters,
                                     a.k_per_query)  # fmt: skip
            for round_no in range(1, self.settings.planner.follow_up_rounds + 1):
                missing = [
                    s
                    for s in run.plan.subtasks
                    if not gather.has_evidence(by_sub.get(s.id, []), a.min_relevance)
                ]
                if not missing:
                    break
                extra, calls = planner.follow_up(run.plan, missing, round_no)
                run.add_usage("follow_up", calls)
                if not extra:
                    break
                run.plan = run.plan.model_copy(
                    update={"follow_ups": (*run.plan.follow_ups, *extra)}
                )
                found = gather.retrieve(self.searcher, extra, run.filters, a.k_per_query)
                for sub in extra:
                    parent = sub.id.split(".f")[0]
                    by_sub.setdefault(parent, []).extend(found.get(sub.id, []))
        except StoreError as exc:
            raise AnswerError(str(exc)) from exc
        if a.exclude_retracted:  # retracted evidence is never cited
            by_sub, run.left_out = gather.drop_retracted(by_sub)
            run.warnings.extend(gather.retraction_warning(p) for p in run.left_out)
        selected = gather.select(by_sub, a.max_sources)
        run.timings["retrieve"] = _ms(t0)

        # 3. abstain, or compose: quote the evidence (a digest) or generate
        kept = [c for c in selected if c.relevance >= a.min_relevance]
        relevant = [c.passage for c in kept]
        if not relevant:
            yield self._finish(
                run,
                t_start,
                passages=gather.closest(by_sub),
                abstain="no relevant evidence was found in the index for this question",
            )
            return
        run.candidates = kept
        if self.digest_only:
            yield self._digest(run, t_start)
            return
        sources = compose.Sources.of(relevant, a.max_passage_chars)
        run.warnings.extend(sources.warnings)
        language = run.plan.language
        unsupported_language = language not in self.settings.llm.languages
        if unsupported_language:
            run.warnings.append(
                f"the chat model is configured for {', '.join(self.settings.llm.languages)}; "
                f"the question looks {'Chinese' if language == 'zh' else 'non-English'}: "
                "showing the top evidence without a generated synthesis"
            )
        if chat is None or unsupported_language:
            yield self._digest(run, t_start, degraded=True)
            return
        t0 = time.perf_counter()
        msgs = compose.messages(run.question, sources, language=language, patient=summary)
        result: ChatResult | None = None
        try:
            for piece in compose.generate(chat, msgs, a.max_tokens, stream=stream):
                if isinstance(piece, ChatResult):
                    result = piece
                else:
                    yield piece
        except ChatError as exc:
            run.warnings.append(f"the model failed, showing an evidence digest instead: {exc}")
            run.timings["generate"] = _ms(t0)
            yield self._digest(run, t_start, degraded=True)
            return
        assert result is not None
        run.add_usage("generate", [result])
        run.timings["generate"] = _ms(t0)
        if result.finish_reason == "length":
            run.warnings.append(
                "the answer was cut at answer.max_tokens; its last sentence dropped"
            )

        # 4. check every citation against its source
        t0 = time.perf_counter()
        checked = check_citations(result.text, sources, self.verifier, a.verify,
                                  cut=result.finish_reason == "length")  # fmt: skip
        run.timings["verify"] = _ms(t0)
        made = getattr(self.verifier, "calls", None)
        if made:
            run.add_usage("verify", list(made))
            clear = getattr(self.verifier, "clear_calls", None) or made.clear
            clear()
        unchecked = [r for r in checked.removed if r.reason.startswith("not checked")]
        if any(r.reason == NOT_CHECKED for r in unchecked):
            run.warnings.append(
                f"{len(unchecked)} sentence(s) cite a source in another language and were not "
                "checked, so they are left out: configure a served model (llm.kind = "
                "'openai') to judge them"
            )
        elif unchecked:
            run.warnings.append(f"{len(unchecked)} sentence(s) left out: {unchecked[0].reason}")
        passages = list(sources.passages)
        if not checked.supported:
            say = self._build_digest(run, sources, label="")
            yield self._finish(run, t_start, passages=passages, raw=result,
                               removed=checked.removed, sources_say=say,
                               abstain="no statement in the generated "
                               "answer was supported by the retrieved evidence")  # fmt: skip
            return
        agree = self._consensus(run, chat, sources, checked.citations)
        yield self._finish(run, t_start, passages=passages, text=checked.text, raw=result,
                           citations=checked.citations, removed=checked.removed,
                           consensus=agree)  # fmt: skip

    def _consensus(
        self,
        run: _Run,
        chat: ChatModel | None,
        sources: compose.Sources,
        citations: Sequence[Citation],
    ) -> Consensus | None:
        """The cited sources' stances (a served model), or a note saying why there are none.
        The model sees the sources as shown to the generator (instruction-like text withheld)."""
        if not self.settings.answer.consensus:
            return None
        if chat is None and self.settings.llm.kind == "openai":
            return Consensus(available=False, note=consensus.FAILED)
        if chat is None or getattr(chat, "is_default_embedded", False):
            return Consensus(available=False, note=consensus.UNAVAILABLE)
        cited = sorted({c.marker for c in citations})
        t0 = time.perf_counter()
        shown = [
            (n, p.doc_id, f"{p.heading()[0][:200]}\n{sources.shown[n - 1]}")
            for n, p in ((n, sources.passages[n - 1]) for n in cited)
        ]
        found, call = consensus.assess(chat, run.question, shown)
        run.timings["consensus"] = _ms(t0)
        if call is not None:
            run.add_usage("consensus", [call])
        if found.contradiction:
            run.warnings.append("the cited sources disagree: " + found.summary.split(": ", 2)[-1])
        return found

    def _build_digest(
        self, run: _Run, sources: compose.Sources, *, label: str | None = None
    ) -> Digest | None:
        t0 = time.perf_counter()
        assert run.plan is not None
        items = [
            (n, c.passage, shown, {i.split(".f")[0] for i in c.subtasks}, c.relevance)
            for n, (c, shown) in enumerate(zip(run.candidates, sources.shown, strict=True), 1)
        ]
        lexical = bool(self.searcher.index.language_note(run.question))
        out = digest.build(run.plan.subtasks, items, self.searcher.index.embedder,
                           self.settings.answer.digest, label=label, lexical=lexical,
                           language=run.plan.language)  # fmt: skip
        run.timings["digest"] = _ms(t0)
        return out

    def _digest(self, run: _Run, t_start: float, *, degraded: bool = False) -> Answer:
        """The evidence digest: the sources' sentences that answer the question, quoted
        verbatim with their citations, without a model's synthesis. Each source is read
        whole (its document's chunks, up to ``answer.digest.max_chunks``), so that the
        conclusion of an abstract is there to quote."""
        cfg = self.settings.answer.digest
        t0 = time.perf_counter()
        try:
            gather.whole_documents(self.searcher, run.candidates, cfg.max_chunks)
        except StoreError as exc:  # the retrieved chunks alone still make a digest
            log.warning("could not read whole documents for the digest: %s", exc)
        run.timings["expand"] = _ms(t0)
        sources = compose.Sources.of([c.passage for c in run.candidates], cfg.max_chars)
        run.warnings.extend(sources.warnings)
        found = self._build_digest(run, sources)
        if found is None:
            return self._finish(run, t_start, passages=list(sources.passages), degraded=degraded,
                                abstain="the relevant sources have no sentence long enough "
                                "to quote")  # fmt: skip
        if degraded and self._chat is not None:  # a served model that failed
            agree: Consensus | None = Consensus(available=False, note=consensus.FAILED)
            agree = agree if self.settings.answer.consensus else None
        else:
            agree = self._consensus(run, self._chat, sources, found.citations)
        return self._finish(run, t_start, passages=list(sources.passages), text=found.text,
                            citations=found.citations, degraded=degraded,
                            digest=True, consensus=agree)  # fmt: skip

    def _finish(
        self,
        run: _Run,
        t_start: float,
        *,
        passages: Sequence[ScoredPassage],
        text: str = "",
        raw: ChatResult | None = None,
        citations: Sequence[Citation] = (),
        removed: Sequence[RemovedClaim] = (),
        abstain: str = "",
        degraded: bool = False,
        digest: bool = False,
        sources_say: Digest | None = None,
        consensus: Consensus | None = None,
    ) -> Answer:
        cited = {c.marker for c in citations}
        references = tuple(Reference.of(n, p, cited=n in cited) for n, p in enumerate(passages, 1))
        if abstain:
            text = (
                "Insufficient evidence: evidex cannot give a supported answer to this question "
                f"({abstain})."
            )
            if references:
                text += " The closest sources retrieved are listed for your review."
        run.timings["total"] = _ms(t_start)
        chat = self._chat
        models = {"embedding": self.searcher.index.embedder.name}
        if chat is not None:
            models["chat"] = chat.name
        if self._verifier is not None:
            models["verifier"] = self._verifier.name
        answer = Answer(
            answer_id=run.answer_id,
            created_at=_now(),
            question=run.question,
            text=text,
            raw_text=raw.text if raw else "",
            reasoning=raw.reasoning if raw and self.settings.answer.show_reasoning else "",
            abstained=bool(abstain),
            abstain_reason=abstain,
            degraded=degraded,
            digest=digest,
            sources_say=sources_say,
            consensus=consensus,
            left_out=tuple(run.left_out),
            warnings=tuple(dict.fromkeys(run.warnings)),
            citations=tuple(citations),
            removed=tuple(removed),
            references=references,
            passages=tuple(passages),
            plan=run.plan,
            patient_context=run.patient is not None,
            timings_ms=run.timings,
            usage=tuple(run.usage),
            models=models,
            settings_hash=self.settings_hash(),
        )
        log.info(
            "answer %s: abstained=%s degraded=%s digest=%s citations=%d removed=%d total=%.0f ms",
            answer.answer_id,
            answer.abstained,
            answer.degraded,
            answer.digest,
            len(answer.citations),
            len(answer.removed),
            run.timings["total"],
        )
        return answer


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)
