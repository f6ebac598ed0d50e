"""The index at scale: ``evidex index create`` (a collection laid out for a Qdrant server or
cluster) and ``evidex index plan`` (its size before it is built)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ui.cli.app import ConfigOpt, JsonOpt, StoreOpt, command, err, index_app, load, open_index, out


@command(index_app, "create")
def index_create(
    shards: Annotated[int | None, typer.Option(min=1, help="Shards of the collection.")] = None,
    replication: Annotated[
        int | None, typer.Option(min=1, help="Copies of each shard (replication factor).")
    ] = None,
    write_consistency: Annotated[
        int | None, typer.Option(min=1, help="Replicas that confirm each write.")
    ] = None,
    on_disk: Annotated[
        bool, typer.Option("--on-disk", help="Float vectors and payloads on disk.")
    ] = False,
    quantization: Annotated[
        str | None, typer.Option(help="'int8' (scalar, with rescoring) or 'none'.")
    ] = None,
    hnsw_m: Annotated[int | None, typer.Option(help="HNSW links per node.")] = None,
    hnsw_ef: Annotated[int | None, typer.Option(help="HNSW ef_construct.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the collection for the configured embedding model before ingesting, with the
    layout given here or under [store.cluster]; an existing one is checked, not changed."""
    if quantization not in (None, "none", "int8"):
        from retrieval.errors import UsageError

        raise UsageError(f"--quantization must be 'int8' or 'none', not {quantization!r}")
    settings = load(config, store)
    c = settings.store.cluster
    for key, value in (("shard_number", shards), ("replication_factor", replication),
                       ("write_consistency_factor", write_consistency),
                       ("quantization", quantization), ("hnsw_m", hnsw_m),
                       ("hnsw_ef_construct", hnsw_ef)):  # fmt: skip
        if value is not None:
            setattr(c, key, value)
    if on_disk:
        c.on_disk_vectors = c.on_disk_payload = True
    if settings.store.kind != "qdrant":
        err.print("[yellow]note: the embedded Edge store has one shard on this machine; the "
                  "layout applies to store.kind = 'qdrant' with a url[/]")  # fmt: skip
    index = open_index(settings, store, create=True)
    try:
        existed = index.store.info() is not None
        index.ensure_store()
        info = index.store.info()
    finally:
        index.close()
    layout = c.model_dump()
    if as_json:
        out.print_json(json.dumps({"store": index.where, "existed": existed,
                                   "info": info.to_dict() if info else None,
                                   "layout": layout}))  # fmt: skip
        return
    what = "checked the existing" if existed else "created the"
    out.print(f"{what} index at {index.where} for {info.embedding_model if info else '?'} "
              f"({info.dim if info else '?'}-d)")  # fmt: skip
    if existed:
        err.print("an existing collection keeps the layout it was created with")


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


@command(index_app, "plan")
def index_plan(
    documents: Annotated[float, typer.Option(help="Documents to index, e.g. 36e6 for PubMed.")],
    shards: Annotated[int, typer.Option(min=1, help="Shards.")] = 1,
    replication: Annotated[int, typer.Option(min=1, help="Copies of each shard.")] = 1,
    quantization: Annotated[str, typer.Option(help="'int8' or 'none'.")] = "int8",
    dim: Annotated[
        int | None, typer.Option(help="Vector dimension (default: the configured model's).")
    ] = None,
    chunks_per_document: Annotated[float | None, typer.Option(help="Measured chunks/doc.")] = None,
    payload_bytes: Annotated[float | None, typer.Option(help="Payload bytes per chunk.")] = None,
    encoder_rate: Annotated[
        float, typer.Option(help="Passages/s all encoders sustain (an H100 with MiniLM: ~35000).")
    ] = 35_000.0,
    hnsw_m: Annotated[int, typer.Option(help="HNSW links per node.")] = 16,
    measure: Annotated[
        bool, typer.Option("--measure", help="Measure chunks/doc and payload size on --store.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chunks, vector/HNSW/BM25/payload bytes, RAM and disk per shard, and ingestion time for
    N documents (formulas in retrieval.sizing; defaults measured on real MEDLINE records)."""
    from retrieval.sizing import BM25_TERMS, CHUNKS_PER_DOCUMENT, PAYLOAD_BYTES, PlanInputs, plan

    settings = load(config, store)
    cpd, size, terms = CHUNKS_PER_DOCUMENT, float(PAYLOAD_BYTES), float(BM25_TERMS)
    source = "the MEDLINE baseline slice (defaults)"
    if measure:
        from retrieval.sizing import measured

        index = open_index(settings, store, create=False)
        try:
            sample = [p for _, (_, p) in zip(range(20_000), index.store.payloads(), strict=False)]
            where = index.where
        finally:
            index.close()
        cpd, size, terms = measured(sample)
        source = f"{len(sample):,} chunks of {where}"
    if dim is None:
        dim = 1024 if settings.embedding.kind == "bge-m3" else 384
    inputs = PlanInputs(
        documents=documents, chunks_per_document=chunks_per_document or cpd, dim=dim,
        payload_bytes=payload_bytes or size, bm25_terms=terms, shards=shards,
        replication=replication, quantization=quantization, hnsw_m=hnsw_m,
        encoder_rate=encoder_rate, measured_from=source,
    )  # fmt: skip
    p = plan(inputs)
    if as_json:
        out.print_json(json.dumps(p.as_dict()))
        return
    from rich.table import Table

    t = Table(title=f"index plan: {documents:,.0f} documents, {shards} shard(s) x {replication}")
    t.add_column("what")
    t.add_column("size", justify="right")
    for label, value in (("chunks", f"{p.chunks:,.0f}"), ("dense float32", _gb(p.dense_float32)),
                         ("dense int8", _gb(p.dense_int8)), ("HNSW links", _gb(p.hnsw)),
                         ("BM25 vectors", _gb(p.bm25)), ("payload", _gb(p.payload)),
                         ("RAM per shard", _gb(p.ram_per_shard)),
                         ("disk per shard", _gb(p.disk_per_shard)),
                         ("cluster RAM", _gb(p.cluster_ram)), ("cluster disk", _gb(p.cluster_disk)),
                         ("ingestion", f"{p.ingest_seconds / 3600:,.1f} h at "
                                       f"{encoder_rate:,.0f} passages/s")):  # fmt: skip
        t.add_row(label, value)
    out.print(t)
    err.print(f"inputs: {inputs.chunks_per_document:.2f} chunks/document, "
              f"{inputs.payload_bytes:,.0f} payload bytes and {inputs.bm25_terms:.0f} BM25 terms "
              f"per chunk, from {inputs.measured_from}; {dim}-d")  # fmt: skip
