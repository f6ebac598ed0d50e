"""Training data: converters from the shared benchmarks to chat records and verl's RL parquet
schema (``export``, ``agentic``), the typed training row (``rows.RLRow``), curation
(``curate``: the chain of ``filters``), difficulty and the SFT mix."""
