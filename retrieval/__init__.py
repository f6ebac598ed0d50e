"""evidex retrieval: the index (embedders, Qdrant stores, chunk writing) and search.

This is the lowest package: it owns the error family (:mod:`retrieval.errors`), the shared
types (:mod:`retrieval.types`), the settings (:mod:`retrieval.settings`) and the JSONL reader
and writer (:mod:`retrieval.jsonl`) that every other package builds on. A search runs through
:class:`retrieval.index.Index` as the named steps of :mod:`retrieval.ranking`;
:class:`retrieval.search.Searcher` is the thread-safe API and :mod:`retrieval.service` its
HTTP face; :mod:`retrieval.evaluation` measures it.
"""
