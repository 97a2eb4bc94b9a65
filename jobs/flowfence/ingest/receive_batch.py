"""One pushed batch, HTTP aside: inflating a gzip body and writing its NDJSON into the store.

The ASGI app (receive_app.py) calls these in a worker thread; `Refused` carries the HTTP status
a bad batch is answered with.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import zlib
from dataclasses import dataclass
from http import HTTPStatus

import duckdb

from flowfence.ingest import convert as ingest
from flowfence.ingest import write
from flowfence.ingest.store import Entry, Store


class Refused(Exception):
    """A request answered with `status` and `{"error": reason}`; nothing of it was stored."""

    def __init__(self, status: HTTPStatus, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class BatchResult:
    """One request body: `stored` False when it was a duplicate or held no valid flow."""

    sha256: str
    stored: bool
    duplicate: bool
    lines: int
    rows: int
    malformed: int
    samples: tuple[write.Malformed, ...]


def ingest_batch(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    body: bytes,
    parse: write.Parse,
    source: str,
) -> BatchResult:
    """Write one NDJSON body (already decompressed) into the store, durably, or recognise it
    as one already stored (a sender retrying after a lost acknowledgement)."""
    sha = hashlib.sha256(body).hexdigest()
    if sha in store.entries():
        return BatchResult(sha, False, True, 0, 0, 0, ())
    staging = store.new_staging()
    try:
        lines = enumerate(io.BytesIO(body), start=1)
        tally = write.write_lines(store, con, staging, sha, lines, parse, source)
        if tally.rows == 0:
            shutil.rmtree(staging, ignore_errors=True)
            samples = tuple(tally.samples)
            return BatchResult(sha, False, False, tally.lines, 0, tally.malformed, samples)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry = Entry(
        sha256=sha,
        source=source,
        format="batch",
        size=len(body),
        lines=tally.lines,
        rows=tally.rows,
        malformed=tally.malformed,
        ingested_at=ingest.now_text(),
    )
    stored = store.commit(staging, entry)
    return BatchResult(
        sha, stored, not stored, tally.lines, tally.rows, tally.malformed, tuple(tally.samples)
    )


def inflate(body: bytes, limit: int) -> bytes:
    """A gzip body inflated, every member of it: a writer that appends makes several (`cat
    a.gz b.gz`), and acknowledging only the first would drop the rest. Anything after a member
    that is not another member (bar the NUL padding `gzip` itself skips) refuses the batch;
    the total may not inflate past `limit` (413)."""
    parts: list[bytes] = []
    total = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(rest, limit + 1 - total)
        except zlib.error as exc:
            raise Refused(HTTPStatus.BAD_REQUEST, f"bad gzip body: {exc}") from None
        total += len(data)
        parts.append(data)
        if total > limit or inflater.unconsumed_tail:
            raise Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"gzip body inflates past {limit} bytes"
            )
        if not inflater.eof:
            raise Refused(HTTPStatus.BAD_REQUEST, "gzip body is truncated")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):
            return b"".join(parts)
        if not rest.startswith(b"\x1f\x8b"):
            raise Refused(
                HTTPStatus.BAD_REQUEST, "bad gzip body: data after a member is not a gzip member"
            )
