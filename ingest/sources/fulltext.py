"""PMC full text for PubMed records: fetch the JATS article of each record with a PMCID
(E-utilities ``efetch db=pmc``; only the open-access subset has a body) and merge it into the
PubMed record, so that an article is one document and one reference (PMID and PMCID
together) whose body passages compete with its abstract in the search.

The live job (:func:`ingest.sources.entrez.fetch_records`) caches the replies beside its
PubMed batches (``pmc_<batch>_<n>.xml``), so a re-run replays them instead of asking NCBI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from ingest.records import Problem, Record
from ingest.sources import pmc
from retrieval.errors import EvidexError
from retrieval.types import Document, Section

log = logging.getLogger(__name__)

Fetch = Callable[[Sequence[str], int], bytes]
"""Fetches the JATS ``pmc-articleset`` of these PMCIDs (the ``n``-th request of the batch;
the caller caches by it)."""


def merge(pubmed: Document, article: Document) -> Document:
    """The PubMed record with the PMC article's body appended (its abstract, already in the
    record, is not repeated): PubMed's id, metadata and notices, the PMCID added.

    >>> from retrieval.types import Section as S
    >>> pm = Document(doc_id="pmid:1", source="pubmed", pmid="1", title="T",
    ...               sections=(S(title="RESULTS", text="r"),))
    >>> art = Document(doc_id="pmc:PMC9", source="pmc", pmid="1", pmcid="PMC9",
    ...                sections=(S(title="Abstract", text="a"), S(title="Methods", text="m")))
    >>> d = merge(pm, art)
    >>> d.doc_id, d.pmcid, [s.title for s in d.sections], d.extra["full_text"]
    ('pmid:1', 'PMC9', ['RESULTS', 'Full text > Methods'], 'pmc')
    """
    body = tuple(
        Section(title=f"Full text > {s.title}" if s.title else "Full text", text=s.text)
        for s in article.sections
        if not s.title.startswith("Abstract")
    )
    return pubmed.model_copy(
        update={
            "pmcid": article.pmcid or pubmed.pmcid,
            "sections": (*pubmed.sections, *body),
            "extra": {**pubmed.extra, "full_text": "pmc", "pmc_url": article.url},
        }
    )


def with_full_text(records: Sequence[Record], fetch: Fetch, *, batch: int = 20) -> Iterator[Record]:
    """``records`` with the PMC full text merged into each PubMed document that has a
    PMCID and an open-access body; the others pass unchanged (a record without a body is
    logged, a bad reply is reported as a problem and its records keep their abstracts)."""
    wanted = [r for r in records if isinstance(r, Document) and r.pmcid]
    found: dict[str, Document] = {}
    problems: list[Problem] = []
    for n, start in enumerate(range(0, len(wanted), batch)):
        ids = [str(d.pmcid) for d in wanted[start : start + batch]]
        where = f"PMC efetch {ids[0]}..{ids[-1]}"
        try:
            data = fetch(ids, n)
        except EvidexError as exc:  # NCBI refused or is down: the abstracts still land
            problems.append(Problem(where, "", f"cannot fetch the full text: {exc}"))
            continue
        for rec in pmc.parse_bytes(data, where):
            if isinstance(rec, Problem):
                problems.append(rec)
            elif isinstance(rec, Document):
                for key in (rec.pmcid, rec.pmid and f"pmid:{rec.pmid}"):
                    if key:
                        found[key] = rec
    for rec in records:
        if isinstance(rec, Document) and rec.pmcid:
            art = found.get(rec.pmcid) or (found.get(f"pmid:{rec.pmid}") if rec.pmid else None)
            if art is not None and pmc.has_body(art):
                rec = merge(rec, art)
            else:
                log.info("%s (%s): no open-access full text; the abstract only", rec.doc_id,
                         rec.pmcid)  # fmt: skip
        yield rec
    yield from problems
