"""evidex ingestion: parsers for PubMed, PMC, guidelines and BEIR corpora, chunking, and
batch jobs that write through :class:`retrieval.index.Index`.

Rooms: ``sources/`` (one parser module per source, ``files`` to find and dispatch files,
``entrez`` for live PubMed), ``chunking`` (section- and sentence-aware chunks that fit the
embedding model), ``evidence`` (evidence levels), ``records`` (what parsers yield besides
documents), ``pipeline`` (the batch job: :func:`ingest.pipeline.ingest_paths` and
:func:`ingest.pipeline.run_ingest`, with the :class:`ingest.pipeline.IngestReport`).
"""
