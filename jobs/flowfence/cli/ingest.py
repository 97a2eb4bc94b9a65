"""`flowfence ingest`: convert Calico flow logs (JSON lines or JSON exports) into the partitioned
Parquet store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flowfence.cli.options import parse_size
from flowfence.core import objectstore
from flowfence.core.errors import BadInput
from flowfence.ingest import convert as core
from flowfence.ingest import store_s3


def _text(summary: core.IngestSummary, store: Path | str) -> str:
    lines = [
        f"ingested {summary.count('ingested')} files, appended {summary.count('appended')}, "
        f"skipped {summary.count('skipped')} already in the store, "
        f"failed {summary.count('failed')}: {summary.rows} rows into {store}, "
        f"{summary.malformed} malformed lines"
    ]
    for sample in summary.samples:
        lines.append(f"  malformed: {sample.source}:{sample.line}: {sample.reason}")
    for result in summary.files:
        if result.status == "failed":
            lines.append(f"  failed: {result.source}: {result.message}")
        if result.pending_bytes:
            lines.append(
                f"  pending: {result.source}: {result.pending_bytes} bytes after the last "
                "complete line, left for the next run"
            )
    if summary.compaction is not None:
        c = summary.compaction
        lines.append(
            f"compacted {c.partitions} partitions: {c.files_before} files -> {c.files_after}"
        )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        out: Annotated[
            str,
            typer.Option(
                "--out",
                help="The store, a directory or s3://bucket/prefix: "
                "date=YYYY-MM-DD/hour=HH/*.parquet plus _ingest/.",
            ),
        ],
        sources: Annotated[
            list[Path] | None,
            typer.Argument(
                help=(
                    "Flow-log files, plain or gzip, or directories of them, recognised by "
                    "content: JSON lines (Calico Enterprise flows.log, Elasticsearch _source "
                    "hits, Goldmane NDJSON), a JSON array of flows, an Elasticsearch _search "
                    "response (hits.hits[]._source), or pretty-printed flow documents."
                ),
                show_default=False,
            ),
        ] = None,
        fmt: Annotated[
            str,
            typer.Option(
                "--format",
                help="auto (per flow: an object with Key is Goldmane), enterprise or goldmane.",
            ),
        ] = "auto",
        compact: Annotated[
            bool,
            typer.Option("--compact", help="Afterwards merge each partition's files into one."),
        ] = False,
        output: Annotated[
            str, typer.Option("--output", help="Summary on stdout: text or json.")
        ] = "text",
        max_line: Annotated[
            str,
            typer.Option(
                "--max-line-bytes",
                help="A JSON line longer than this (64MiB, 1024, ...) is malformed: counted, "
                "reported and skipped without being held in memory.",
            ),
        ] = "64MiB",
    ) -> None:
        """Convert Calico flow logs into hive-partitioned Parquet that `run --flows` reads.

        Idempotent: files already ingested (same sha256) are skipped; a file that grew since
        is read from where the last run stopped. Malformed lines are counted and skipped; a
        file in which nothing could be read fails the command (exit 2) and is named.
        """
        parsed = core.parse_format(fmt)
        limit = parse_size(max_line, "--max-line-bytes")
        if output not in ("text", "json"):
            raise BadInput(f"--output: {output!r} is not text or json")
        if not sources and not compact:
            raise BadInput("ingest: give at least one SOURCE (or --compact alone)")
        if objectstore.is_url(out):
            summary = store_s3.ingest_to(
                sources or [], out, fmt=parsed, compact=compact, max_line=limit
            )
        else:
            summary = core.ingest(
                sources or [], Path(out), fmt=parsed, compact=compact, max_line=limit
            )
        if output == "json":
            typer.echo(json.dumps(core.summary_json(summary), indent=2, sort_keys=True))
        else:
            typer.echo(_text(summary, out))
        failed = [f.source for f in summary.files if f.status == "failed"]
        if failed:
            raise BadInput(f"ingest: {len(failed)} file(s) could not be read: {', '.join(failed)}")
