"""Parsed flow documents -> rows in a staging directory, for `flowfence ingest` and `receive`.

JSON lines (one flow a line, or a compact array / `_search` response on one line) and
documents files (documents.py) go through the same loop: each decoded value is expanded into
flow documents, each document parsed into a row, `chunk_rows` rows written per COPY. A value or
document that does not parse is counted as malformed, the first few with their line numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import duckdb

from flowfence.ingest import documents
from flowfence.ingest.rows import LineError, LongLine, Row, RowBuffer
from flowfence.ingest.store import Store

Parse = Callable[[Any], Row]  # a decoded flow document -> row; LineError when it is not one
CHUNK_ROWS = 100_000
SAMPLES = 5


@dataclass(frozen=True)
class Malformed:
    source: str
    line: int
    reason: str


@dataclass
class Tally:
    """One parse: lines read, rows written, malformed lines and the first of them."""

    lines: int = 0
    rows: int = 0
    malformed: int = 0
    samples: list[Malformed] = field(default_factory=list)


def write_lines(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    sha256: str,
    lines: Iterable[tuple[int, bytes | LongLine]],
    parse: Parse,
    source: str,
    *,
    chunk_rows: int = CHUNK_ROWS,
    sample_room: int = SAMPLES,
) -> Tally:
    """Parse numbered JSON lines into `staging`, one COPY per `chunk_rows` rows. A line holds
    one flow, or several when it is a compact array or `_search` response (documents.expand).
    A line the reader skipped as too long (LongLine) is malformed."""
    tally = Tally()

    def decoded() -> Iterator[tuple[int, Any]]:
        for number, line in lines:
            tally.lines += 1
            if isinstance(line, LongLine):
                yield number, _Bad(f"line longer than {line.limit} bytes")
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, UTF-8
                yield number, _Bad(_reason(exc))

    _write(store, con, staging, sha256, decoded(), parse, source, tally, chunk_rows, sample_room)
    return tally


def write_documents(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    sha256: str,
    stream: IO[str],
    parse: Parse,
    source: str,
    *,
    first_line: int = 1,
    sample_room: int = SAMPLES,
) -> Tally:
    """Parse a documents file (documents.py: an array, `_search` responses, pretty-printed
    objects) into `staging`. Where the text stops being JSON the rest of the file is one
    malformed entry: there is no next line to resume from."""
    tally = Tally()

    def decoded() -> Iterator[tuple[int, Any]]:
        try:
            yield from documents.values(stream, first_line)
        except documents.DocumentError as exc:
            yield exc.line, _Bad(str(exc))
        except UnicodeDecodeError as exc:
            yield 0, _Bad(_reason(exc))

    _write(store, con, staging, sha256, decoded(), parse, source, tally, CHUNK_ROWS, sample_room)
    return tally


@dataclass(frozen=True)
class _Bad:
    reason: str


def _write(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    sha256: str,
    values: Iterable[tuple[int, Any]],
    parse: Parse,
    source: str,
    tally: Tally,
    chunk_rows: int,
    sample_room: int,
) -> None:
    buffer = RowBuffer()
    chunk = 0

    def flush() -> None:
        nonlocal chunk
        table = buffer.table()
        con.register("ingest_chunk", table)
        try:
            store.write_chunk(con, staging, sha256, chunk)
        finally:
            con.unregister("ingest_chunk")
        chunk += 1

    def bad(number: int, reason: str) -> None:
        tally.malformed += 1
        if len(tally.samples) < sample_room:
            tally.samples.append(Malformed(source, number, reason))

    for number, value in values:
        if isinstance(value, _Bad):
            bad(number, value.reason)
            continue
        for doc in documents.expand(value):
            try:
                buffer.append(parse(doc))
            except (ValueError, RecursionError) as exc:  # LineError
                bad(number, _reason(exc))
                continue
            tally.rows += 1
            if len(buffer) >= chunk_rows:
                flush()
    if len(buffer):
        flush()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LineError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"not JSON ({exc})"
