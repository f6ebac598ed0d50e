"""How the command line prints the library's typed results (tables, panels, JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from ui.cli.app import err, out

REPORT_KEYS = ("documents", "written", "replaced", "unchanged", "chunks", "deleted", "skipped",
               "seconds", "docs_per_s")  # fmt: skip


def ingest_report(report: Any, as_json: bool, where: str) -> None:
    """An :class:`ingest.pipeline.IngestReport` as a table (or JSON), skipped inputs listed."""
    data = report.as_dict()
    if as_json:
        out.print_json(json.dumps({**data, "store": where}))
        return
    t = Table(title="ingestion report", show_header=False)
    for key in REPORT_KEYS:
        t.add_row(key.replace("_", "/"), str(data[key]))
    t.add_row("store", where)
    out.print(t)
    problems(report.problems, 20)
    for note in report.notes[:20]:
        err.print(f"[yellow]note[/] {escape(note)}", highlight=False)


def problems(items: Sequence[Any], most: int) -> None:
    for p in items[:most]:
        err.print(f"[yellow]skipped[/] {escape(str(p))}", highlight=False)
    if len(items) > most:
        err.print(f"[yellow]... and {len(items) - most} more skipped inputs[/]")


def index_stats(stats: Any, as_json: bool) -> None:
    """An :class:`retrieval.types.IndexStats`."""
    if as_json:
        out.print_json(stats.model_dump_json())
        return
    t = Table(title=f"index at {stats.store}")
    t.add_column("source")
    t.add_column("documents", justify="right")
    t.add_column("chunks", justify="right")
    for src, row in stats.sources.items():
        t.add_row(src, str(row.documents), str(row.chunks))
    t.add_row("[b]total", f"[b]{stats.documents}", f"[b]{stats.chunks}")
    out.print(t)
    out.print(
        f"embedding model: {stats.embedding_model} ({stats.dim}-d); sparse: {stats.sparse_model}"
    )


def hits(found: Iterable[Any], as_json: bool, question: str, why: bool = False) -> None:
    """Search hits (:class:`retrieval.types.ScoredPassage`), best first."""
    found = list(found)
    if as_json:
        out.print_json(
            json.dumps({"query": question, "results": [h.model_dump(mode="json") for h in found]})
        )
        return
    if not found:
        out.print("no matching passages")
        return
    for rank, h in enumerate(found, 1):
        ident = f"PMID {h.pmid}" if h.pmid else h.doc_id
        level = h.evidence_level.replace("_", " ")
        grade = f"grade {h.grade}" if h.grade else ""
        meta = " · ".join(str(x) for x in (ident, h.year, level, grade) if x)
        heading, from_text = h.heading()
        shown = f"“{heading}” (untitled)" if from_text else heading or "(untitled)"
        out.print(
            f"[bold]{rank}.[/] [cyan]{escape(shown)}[/]  [dim]{escape(meta)} · "
            f"score {h.score:.4f}[/]",
            highlight=False,
        )
        text = h.text if len(h.text) <= 400 else h.text[:400] + " …"
        if h.retracted:
            out.print("   [bold red]RETRACTED[/]: do not rely on this record", highlight=False)
        for n in h.notices:
            out.print(f"   [red]{escape(n.label())}[/]", highlight=False)
        out.print(f"   {escape(text)}", highlight=False)
        if h.url:
            out.print(f"   [link={h.url}]{escape(h.url)}[/link]", highlight=False)
        if why:
            parts = ", ".join(f"{k} {v:.4g}" for k, v in h.score_parts.items())
            out.print(f"   [dim]why: {parts}[/]", highlight=False)


def answer_json(answer: Any) -> None:
    data = answer.model_dump(mode="json")
    data["references"] = [
        {**r, "label": ref.label()}
        for r, ref in zip(data["references"], answer.references, strict=True)
    ]
    out.print_json(json.dumps(data, ensure_ascii=False))


SOURCES_SAY = "What the sources say"


def answer(answer: Any, reasoning: bool) -> None:
    """An :class:`answer.types.Answer`: the text, the references, warnings and the notice."""
    from rich.panel import Panel

    style = "yellow" if answer.abstained else "cyan" if answer.digest else "green"
    title = (
        "Insufficient evidence"
        if answer.abstained
        else "Evidence digest (model unavailable)"
        if answer.degraded
        else "Evidence digest"
        if answer.digest
        else "Answer"
    )
    if reasoning and answer.reasoning:
        out.print(
            Panel(escape(answer.reasoning), title="Reasoning", border_style="dim"), soft_wrap=False
        )
    agree = answer.consensus
    if agree is not None:
        color = "red" if agree.contradiction else "green" if agree.available else "dim"
        out.print(f"[{color}]{escape(agree.summary or agree.note)}[/]", highlight=False)
    out.print(Panel(escape(answer.text), title=title, border_style=style), soft_wrap=False)
    if answer.sources_say is not None:
        out.print(
            Panel(escape(answer.sources_say.text), title=SOURCES_SAY, border_style="cyan"),
            soft_wrap=False,
        )
    refs = answer.cited_references or list(answer.references)
    if refs:
        out.print("[bold]References[/]" if answer.cited_references else "[bold]Sources reviewed[/]")
        for r in refs:
            bits = [b for b in (r.shown_title(), r.journal, str(r.year or "")) if b]
            out.print(
                f"  [{r.marker}] {escape('. '.join(bits))}. {r.label()}. "
                f"[dim]{r.evidence_level.replace('_', ' ')}"
                f"{f', grade {r.grade}' if r.grade else ''}[/] "
                f"{'[bold red]RETRACTED[/] ' if r.retracted else ''}{r.url or ''}",
                highlight=False,
            )
    for c in answer.citations:
        if c.status == "unsupported":
            out.print(f"  [yellow]citation [{c.marker}] {c.status}[/]: {escape(c.sentence)}")
    for w in answer.warnings:
        out.print(f"[yellow]note:[/] {escape(w)}", highlight=False)
    if answer.removed:
        out.print(f"[dim]{len(answer.removed)} unsupported sentence(s) removed.[/]")
    out.print(f"[bold]{escape(answer.notice)}[/]")


RETRIEVAL_COLUMNS = ("recall@10", "ndcg@10", "mrr@100", "p50_ms", "p95_ms", "queries")


def retrieval_results(results: Mapping[str, Any], as_json: bool, title: str) -> None:
    """``evidex eval retrieval``: one row per method."""
    rows = {name: r.as_dict() for name, r in results.items()}
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table(title=title)
    t.add_column("method")
    for col in RETRIEVAL_COLUMNS:
        t.add_column(col, justify="right")
    t.add_column("median ms per stage")
    for name, r in rows.items():
        stages = " · ".join(f"{k} {v:.1f}" for k, v in r.get("stages_ms", {}).items())
        t.add_row(name, *(str(r[c]) for c in RETRIEVAL_COLUMNS), stages)
    out.print(t)


def qa_runs(runs: Sequence[Any], title: str) -> None:
    """``evidex eval qa``: every run in the results folder."""
    t = Table(title=title)
    for col in ("benchmark", "model", "rag", "items", "accuracy %", "mean score %"):
        t.add_column(col, justify="left" if col in ("benchmark", "model") else "right")
    for s in runs:
        t.add_row(s.benchmark, s.model, "yes" if s.rag else "no", f"{s.items}/{s.total}",
                  f"{100 * s.accuracy:.1f}", f"{100 * s.mean_score:.1f}")  # fmt: skip
    out.print(t)


def qa_diffs(diffs: Any) -> None:
    """``evidex eval qa --compare``: accuracy per benchmark in two runs and the difference."""
    from rich.table import Table

    table = Table(title="evidex eval qa --compare (B minus A)")
    for col in ("benchmark", "A", "accuracy A", "B", "accuracy B", "difference"):
        table.add_column(col)
    for d in diffs:
        sign = "green" if d.delta > 0 else "red" if d.delta < 0 else "dim"
        table.add_row(d.benchmark, d.a, f"{d.accuracy_a:.1%} ({d.items_a})", d.b,
                      f"{d.accuracy_b:.1%} ({d.items_b})",
                      f"[{sign}]{100 * d.delta:+.1f} pts[/]")  # fmt: skip
    out.print(table)
