"""``evidex sync pubmed``: apply PubMed's baseline and update files in order, once each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ui.cli.app import (
    EXIT_SKIPPED,
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    command,
    err,
    load,
    open_index,
    out,
    sync_app,
)


@command(sync_app, "pubmed")
def sync_pubmed(
    baseline: Annotated[
        Path | None, typer.Option(help="Folder of baseline files (pubmedYYnNNNN.xml.gz).")
    ] = None,
    updates: Annotated[Path | None, typer.Option(help="Folder of daily update files.")] = None,
    from_ftp: Annotated[
        str | None,
        typer.Option(
            "--from-ftp",
            help="First download the files the folders lack from this PubMed folder URL "
            "(e.g. https://ftp.ncbi.nlm.nih.gov/pubmed/: its baseline/ and updatefiles/), "
            "each checked against its .md5.",
        ),
    ] = None,
    max_downloads: Annotated[
        int | None, typer.Option(min=1, help="With --from-ftp: most files to download now.")
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="The sync manifest (default: <store>/sync-manifest.json)."),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply baseline then update files not applied yet: revised citations replace the old
    ones, deleted ones go; a re-run does only new files. Exits 3 when a file failed."""
    from ingest.sync import check_folders, download_missing, sync_pubmed

    check_folders(baseline, updates, from_ftp)
    settings = load(config, store)
    downloaded: list[str] = []
    if from_ftp:
        if baseline is None and updates is None:
            from retrieval.errors import UsageError

            raise UsageError("--from-ftp needs --baseline DIR and/or --updates DIR to fill")
        for folder, sub in ((baseline, "baseline"), (updates, "updatefiles")):
            if folder is not None:
                downloaded += download_missing(from_ftp, folder, sub, limit=max_downloads)
    index = open_index(settings, store, create=True)
    try:
        report = sync_pubmed(index, baseline, updates, manifest=manifest)
    finally:
        index.close()
    report.downloaded = downloaded
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        out.print(f"applied {len(report.processed)} file(s) ({report.already_done} already "
                  f"applied): {report.documents:,} documents ({report.written:,} new, "
                  f"{report.replaced:,} revised), {report.deleted:,} deleted, {report.skipped:,} "
                  f"skipped, in {report.seconds:.0f} s")  # fmt: skip
        if downloaded:
            err.print(f"downloaded {len(downloaded)} file(s): {', '.join(downloaded[:5])}"
                      + (" ..." if len(downloaded) > 5 else ""))  # fmt: skip
        for f in report.failed:
            err.print(f"[red]failed[/] {f}", highlight=False)
        if report.waiting:
            err.print(f"[yellow]{len(report.waiting)} later update file(s) wait until it is "
                      "fixed or re-downloaded: run again then[/]")  # fmt: skip
    if report.failed:
        raise typer.Exit(EXIT_SKIPPED)
