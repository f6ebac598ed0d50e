"""Sizing an index before building it (``evidex index plan``).

From a number of documents and a few measured inputs, the chunks, bytes and time an index
takes::

    chunks        = documents * chunks_per_document
    dense float32 = chunks * dim * 4          dense int8 = chunks * dim (+ the float originals)
    HNSW links    = chunks * 2 * m * 4 * 1.1  (level 0 holds 2m links of 4 bytes; upper levels
                                               add about a tenth)
    BM25 vectors  = chunks * bm25_terms * 8   (4-byte index + 4-byte weight per term)
    payload       = chunks * payload_bytes
    RAM per shard = (int8 or float32 vectors + HNSW + BM25 + payload unless on disk) / shards
    disk per shard= (float32 [+ int8] + HNSW + BM25 + payload) * (1 + overhead) / shards
    ingest time   = chunks / encoder passages per second

Every shard is held ``replication`` times, so the cluster holds ``replication`` times the
per-shard figures for each shard. The measured defaults come from the real MEDLINE baseline
slice (604 citations, the packaged MiniLM's chunker): 1.92 chunks per citation, 1,690 payload
bytes and 50 BM25 terms per chunk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from retrieval.errors import ConfigError

CHUNKS_PER_DOCUMENT = 1.92
PAYLOAD_BYTES = 1_690
BM25_TERMS = 50
OVERHEAD = 0.2
"""Disk headroom for the write-ahead log and segment merges."""


@dataclass(frozen=True)
class PlanInputs:
    """What the plan is computed from."""

    documents: float
    chunks_per_document: float = CHUNKS_PER_DOCUMENT
    dim: int = 384
    payload_bytes: float = PAYLOAD_BYTES
    bm25_terms: float = BM25_TERMS
    shards: int = 1
    replication: int = 1
    quantization: str = "int8"
    hnsw_m: int = 16
    on_disk_payload: bool = True
    encoder_rate: float = 35_000.0
    """Passages per second the encoders sustain (all of them together)."""
    measured_from: str = "the MEDLINE baseline slice (defaults)"

    def __post_init__(self) -> None:
        if not self.documents > 0:
            raise ConfigError(f"documents must be positive, not {self.documents!r}")
        if not self.chunks_per_document > 0 or self.dim < 1:
            raise ConfigError(
                f"chunks_per_document and dim must be positive, not "
                f"{self.chunks_per_document!r} and {self.dim!r}"
            )
        if self.shards < 1 or self.replication < 1 or self.hnsw_m < 4:
            raise ConfigError(
                f"shards and replication must be at least 1 and hnsw_m at least 4, not "
                f"{self.shards!r}, {self.replication!r}, {self.hnsw_m!r}"
            )
        if self.quantization not in ("none", "int8"):
            raise ConfigError(f"quantization must be 'none' or 'int8', not {self.quantization!r}")
        if not self.encoder_rate > 0:
            raise ConfigError(f"encoder_rate must be positive, not {self.encoder_rate!r}")


@dataclass(frozen=True)
class CapacityPlan:
    """The computed sizes (bytes) and time (seconds)."""

    inputs: PlanInputs
    chunks: float
    dense_float32: float
    dense_int8: float
    hnsw: float
    bm25: float
    payload: float
    ram_per_shard: float
    disk_per_shard: float
    cluster_ram: float
    cluster_disk: float
    ingest_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(inputs: PlanInputs) -> CapacityPlan:
    """The sizes of an index of ``inputs.documents`` documents.

    >>> p = plan(PlanInputs(documents=1e6, chunks_per_document=2, dim=384, payload_bytes=1000,
    ...                     bm25_terms=50, shards=2, encoder_rate=10_000))
    >>> p.chunks, p.dense_float32 / 1e9, p.dense_int8 / 1e9, p.ingest_seconds
    (2000000.0, 3.072, 0.768, 200.0)
    >>> round(p.ram_per_shard / 1e9, 3)  # (int8 0.768 + HNSW 0.2816 + BM25 0.8) / 2 shards
    0.925
    """
    i = inputs
    chunks = i.documents * i.chunks_per_document
    f32 = chunks * i.dim * 4
    int8 = chunks * i.dim if i.quantization == "int8" else 0.0
    hnsw = chunks * 2 * i.hnsw_m * 4 * 1.1
    bm25 = chunks * i.bm25_terms * 8
    payload = chunks * i.payload_bytes
    searched = int8 if i.quantization == "int8" else f32
    ram = (searched + hnsw + bm25 + (0.0 if i.on_disk_payload else payload)) / i.shards
    disk = (f32 + int8 + hnsw + bm25 + payload) * (1 + OVERHEAD) / i.shards
    return CapacityPlan(
        inputs=i, chunks=chunks, dense_float32=f32, dense_int8=int8, hnsw=hnsw, bm25=bm25,
        payload=payload, ram_per_shard=ram, disk_per_shard=disk,
        cluster_ram=ram * i.shards * i.replication, cluster_disk=disk * i.shards * i.replication,
        ingest_seconds=chunks / i.encoder_rate,
    )  # fmt: skip


def measured(payloads: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Chunks per document, payload bytes and BM25 terms per chunk of a store's payloads.

    >>> measured([{"doc_id": "a", "text": "aspirin stroke"}, {"doc_id": "a", "text": "x"},
    ...           {"doc_id": "b", "text": "statins lower cholesterol"}])[0]
    1.5
    """
    import json

    from retrieval.embedders import Bm25Encoder

    if not payloads:
        raise ConfigError("the store is empty: nothing to measure (drop --store for defaults)")
    docs = {str(p.get("doc_id")) for p in payloads}
    size = sum(len(json.dumps(p).encode()) for p in payloads) / len(payloads)
    bm = Bm25Encoder()
    terms = sum(len(bm.embed_documents([str(p.get("text") or "")])[0].indices)
                for p in payloads) / len(payloads)  # fmt: skip
    return len(payloads) / len(docs), size, terms
