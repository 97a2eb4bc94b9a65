"""`flowfence ingest`: Calico flow logs as Calico writes them -> the partitioned Parquet store.

Inputs, plain or gzip, are recognised by content (documents.py), never by file name: JSON
lines, i.e. Calico Enterprise / Cloud flow logs (`flows.log`, or Elasticsearch / Linseed
`_source` hits one a line; enterprise.py) and Goldmane NDJSON from its push emitter
(goldmane.py); or documents: a JSON array of flow documents or hits, an Elasticsearch
`_search` response (`hits.hits[]._source`), pretty-printed objects. `--format auto` decides per
document: an object with a `Key` is a Goldmane flow, anything else an Enterprise flow log.

Each file is read twice, both times streaming. A scan (scan.py) hashes it (sha256) and finds
where its last complete line ends. Then a whole JSON-lines Enterprise file in Felix's shape
goes through DuckDB in one COPY (fast.py); any other file, or one the fast path refuses (a
malformed line, another shape), is parsed in Python (write.py), `CHUNK_ROWS` rows per COPY.
Either way the rows land in staging with bounded memory, and the store (store.py) commits
them together with the file's manifest entry, so:

- a file whose checksum is in the manifest is skipped: ingesting twice adds nothing;
- a plain file that grew (Felix appends to `flows.log`, then rotates it to `flows.log.1`)
  is recognised by the checksum of its first bytes, and only the new lines are read;
- an unterminated last line that does not parse is left for the next run (Felix may be
  writing it), and reported as pending bytes.

Malformed lines (or documents) are counted, the first few reported with file and line number,
and the rest of the file is ingested. A line longer than `max_line` bytes (64 MiB unless
`--max-line-bytes` says otherwise) is malformed too, read past without being held whole, so
memory stays bounded whatever the input. A file in which nothing could be read (every line or
document malformed: not a flow log, or a layout ingest does not know) fails: nothing is stored
for it, the summary names the first reasons and the command exits 2. A file with no flows
(empty, as Felix starts `flows.log` after rotating it, or an export that matched nothing) is
not a failure.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import duckdb

from flowfence.core import database, times
from flowfence.core.errors import BadInput
from flowfence.ingest import documents
from flowfence.ingest import fast as ingest_fast
from flowfence.ingest import scan as ingest_scan
from flowfence.ingest.enterprise import enterprise_row
from flowfence.ingest.goldmane import goldmane_row
from flowfence.ingest.rows import Row
from flowfence.ingest.store import CompactResult, Entry, Store
from flowfence.ingest.write import (
    CHUNK_ROWS,
    SAMPLES,
    Malformed,
    Parse,
    Tally,
    write_documents,
    write_lines,
)

Format = Literal["auto", "enterprise", "goldmane"]
FORMATS: tuple[str, ...] = get_args(Format)
Status = Literal["ingested", "appended", "skipped", "failed"]
Parser = Literal["duckdb", "python"]  # which path read a file: ingest_fast.py or line by line

# The fast path's read_json needs about 200 MB per thread. With two threads, 512 MB and
# partitioned writes flushed every 32,768 rows (DuckDB buffers 524,288 by default, and that
# buffer grows with the file), one process stays near 500 MB resident whatever the input
# size (bench/INGEST.md).
DUCKDB_MEMORY_LIMIT = "512MB"
DUCKDB_THREADS = 2
DUCKDB_FLUSH_ROWS = 32_768
# read_json refuses a line longer than about this, whatever its maximum_object_size says.
DUCKDB_LINE_CAP = 32 << 20


@dataclass(frozen=True)
class FileResult:
    source: str
    status: Status
    lines: int = 0
    rows: int = 0
    malformed: int = 0
    pending_bytes: int = 0
    message: str = ""
    parser: Parser | None = None


@dataclass(frozen=True)
class IngestSummary:
    files: tuple[FileResult, ...]
    samples: tuple[Malformed, ...]
    compaction: CompactResult | None = None

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def malformed(self) -> int:
        return sum(f.malformed for f in self.files)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)


def parse_format(name: str) -> Format:
    for fmt in get_args(Format):
        if name == fmt:
            return cast(Format, fmt)
    raise BadInput(f"--format: {name!r} is not one of {', '.join(FORMATS)}")


def row_parser(fmt: Format) -> Parse:
    """A decoded flow document -> row; raises LineError (a ValueError) naming the bad field."""

    def auto(doc: Any) -> Row:
        if isinstance(doc, dict) and ("Key" in doc or "key" in doc):
            return goldmane_row(doc)
        return enterprise_row(doc)

    if fmt == "enterprise":
        return enterprise_row
    if fmt == "goldmane":
        return goldmane_row
    if fmt == "auto":
        return auto
    raise BadInput(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")


def connect(store: Store) -> duckdb.DuckDBPyConnection:
    """A DuckDB for the writes: bounded memory and threads, spilling into _ingest/tmp."""
    return database.connect(
        database.Resources(DUCKDB_MEMORY_LIMIT, DUCKDB_THREADS, store.tmp),
        partitioned_write_flush_threshold=DUCKDB_FLUSH_ROWS,
        preserve_insertion_order=False,
    )


def now_text() -> str:
    return times.rfc3339(times.now())


def ingest_file(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: Format,
    *,
    chunk_rows: int = CHUNK_ROWS,
    sample_room: int = SAMPLES,
    max_line: int = ingest_scan.MAX_LINE_BYTES,
) -> tuple[FileResult, list[Malformed]]:
    """Ingest one file (see the module doc); a file that cannot be read is a `failed` result."""
    source = str(path)
    try:
        head, whole = ingest_scan.head(path, documents.SNIFF_BYTES)
        layout = documents.layout(head, whole)
        entries = store.entries()
        found = ingest_scan.scan(path, entries, whole=layout == "documents")
        if found.full in entries or found.sha256 in entries:
            return FileResult(source, "skipped", pending_bytes=found.size - found.end), []
        staging = store.new_staging()
        try:
            parser: Parser = "duckdb"
            tally = None
            if layout == "lines":
                tally = _fast(store, con, path, fmt, found, staging, max_line)
                staging = staging if tally is not None else store.new_staging()
            if tally is None:
                parser = "python"
                tally = _parse(store, con, path, fmt, found, layout, staging, chunk_rows,
                               sample_room, max_line)  # fmt: skip
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except (OSError, EOFError) as exc:  # unreadable, or a gzip stream cut short
        return FileResult(source, "failed", message=f"{type(exc).__name__}: {exc}"), []
    if tally.rows == 0 and tally.malformed and not found.resume:
        shutil.rmtree(staging, ignore_errors=True)
        return FileResult(source, "failed", lines=tally.lines, malformed=tally.malformed,
                          message=_nothing_read(tally)), tally.samples  # fmt: skip
    earlier = found.resume.lines if found.resume else 0
    entry = Entry(
        sha256=found.sha256,
        source=source,
        head="" if found.gzip else found.head,
        format="gzip" if found.gzip else "file",
        size=found.end,
        lines=earlier + tally.lines,
        rows=tally.rows,
        malformed=tally.malformed,
        ingested_at=now_text(),
    )
    if not store.commit(staging, entry):
        return FileResult(source, "skipped", pending_bytes=found.size - found.end), []
    result = FileResult(
        source,
        "appended" if found.resume else "ingested",
        lines=tally.lines,
        rows=tally.rows,
        malformed=tally.malformed,
        pending_bytes=found.size - found.end,
        parser=parser,
    )
    return result, tally.samples


def _parse(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: Format,
    found: ingest_scan.Scan,
    layout: documents.Layout,
    staging: Path,
    chunk_rows: int,
    sample_room: int,
    max_line: int,
) -> Tally:
    """The file parsed in Python into `staging`: as documents, or line by line. A documents
    file whose very first value does not decode is read line by line after all: it may be
    JSON lines whose first line is broken, and the line parser reports each bad line."""
    offset = found.resume.size if found.resume else 0
    first = found.resume.lines + 1 if found.resume else 1
    parse = row_parser(fmt)
    if layout == "documents":
        with ingest_scan.text(path, found, offset) as stream:
            docs = write_documents(store, con, staging, found.sha256, stream, parse, str(path),
                                   first_line=first, sample_room=sample_room)  # fmt: skip
        docs.lines = found.lines - (first - 1)
        if docs.rows or not docs.malformed:
            return docs
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    lines = ingest_scan.numbered(path, found, offset, first, max_line)
    tally = write_lines(store, con, staging, found.sha256, lines, parse, str(path),
                        chunk_rows=chunk_rows, sample_room=sample_room)  # fmt: skip
    # Nothing either way: the documents reading says better why (one line at a time, a
    # pretty-printed file is all "not JSON").
    return tally if layout == "lines" or tally.rows else docs


def _nothing_read(tally: Tally) -> str:
    first = "; ".join(f"line {m.line}: {m.reason}" for m in tally.samples[:3])
    return f"no flow record could be read ({tally.malformed} malformed): {first}"


def _fast(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: Format,
    found: ingest_scan.Scan,
    staging: Path,
    max_line: int,
) -> Tally | None:
    """The whole file through DuckDB (ingest_fast.py), or None (staging discarded) when it is
    not fast-path material: Goldmane lines, a malformed line, a tail to resume or to leave, a
    line over `max_line` (DuckDB reads lines up to about 32 MiB whatever it is told: the line
    parser reports the longer ones; the scan measures plain files only)."""
    if fmt == "goldmane" or found.resume is not None or found.end != found.size:
        return None
    if found.longest > max_line or (found.gzip and max_line < DUCKDB_LINE_CAP):
        return None
    try:
        rows = ingest_fast.copy_enterprise(
            con,
            path,
            compressed=found.gzip,
            staging=staging,
            sha256=found.sha256,
        )
    except duckdb.Error:
        rows = None
    # A file that grew while DuckDB read it may have given rows past the scanned end.
    if rows is None or path.stat().st_size != found.size:
        shutil.rmtree(staging, ignore_errors=True)
        return None
    return Tally(lines=found.lines if not found.gzip else rows, rows=rows)


def list_sources(sources: Sequence[Path]) -> list[Path]:
    """Files as given; directories walked recursively, skipping hidden and `_` entries and
    Parquet files (a store inside a source directory is not input)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            for path in sorted(source.rglob("*")):
                rel = path.relative_to(source).parts
                hidden = any(p.startswith((".", "_")) for p in rel)
                if path.is_file() and not hidden and path.suffix != ".parquet":
                    files.append(path)
        elif source.exists():
            files.append(source)
        else:
            raise BadInput(f"ingest: {source}: no such file or directory")
    return files


def ingest(
    sources: Sequence[Path],
    store_root: Path,
    *,
    fmt: Format = "auto",
    compact: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    max_line: int = ingest_scan.MAX_LINE_BYTES,
) -> IngestSummary:
    """Ingest every source file into the store at `store_root`; see the module doc."""
    row_parser(fmt)  # checks the format before anything is read
    if max_line < 1:
        raise BadInput("ingest: --max-line-bytes must be positive")
    files = list_sources(sources)
    store = Store(store_root)
    results: list[FileResult] = []
    samples: list[Malformed] = []
    con = connect(store)
    try:
        with store.locked():
            pass  # recovers what an interrupted writer left before anything is read
        for path in files:
            result, found = ingest_file(
                store,
                con,
                path,
                fmt,
                chunk_rows=chunk_rows,
                sample_room=SAMPLES - len(samples),
                max_line=max_line,
            )
            results.append(result)
            samples.extend(found)
        compaction = store.compact(con) if compact else None
    finally:
        con.close()
    return IngestSummary(tuple(results), tuple(samples), compaction)


def summary_json(summary: IngestSummary) -> dict[str, Any]:
    out: dict[str, Any] = {
        "files": {s: summary.count(s) for s in get_args(Status)},
        "rows": summary.rows,
        "malformed": summary.malformed,
        "malformed_samples": [vars(m) for m in summary.samples],
        "sources": [vars(f) for f in summary.files],
    }
    if summary.compaction is not None:
        out["compaction"] = vars(summary.compaction)
    return out
