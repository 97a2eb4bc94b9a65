"""The first, streaming pass over an input file of `flowfence ingest`.

It hashes the file (sha256), measures its longest line, finds where
its last complete line ends (an unterminated last line that does not parse is left for the next
run: Felix may still be writing it), counts the lines, and recognises an earlier, shorter
version of the same file in the manifest (Felix appends to `flows.log` and rotates it to
`flows.log.1`): an entry whose first bytes hash the same and whose sha256 equals the hash of
this file's prefix of that length. `numbered` then yields the lines to parse, from that prefix
on, never past the end found here, and skips a line longer than the limit without holding it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flowfence.ingest.rows import LongLine
from flowfence.ingest.store import Entry

HEAD_BYTES = 4096  # the prefix whose checksum finds an earlier, shorter copy of a file
MAX_TAIL = 1 << 20  # an unterminated last line longer than this is not tried as JSON
_BLOCK = 1 << 20
# A JSON line is held whole and decoded (several times its size in memory), so a longer one is
# skipped in _BLOCK pieces and reported as malformed: memory stays bounded whatever the input.
# 64 MiB holds a compact `_search` response of 10,000 hits (Elasticsearch's default
# max_result_window) on one line.
MAX_LINE_BYTES = 64 << 20


@dataclass(frozen=True)
class Scan:
    gzip: bool
    size: int
    end: int  # bytes consumed: through the last complete (or parseable) line
    sha256: str  # of bytes [0, end)
    full: str  # of the whole file
    resume: Entry | None  # an earlier, shorter version of this file already ingested
    head: str  # sha256 of the first min(HEAD_BYTES, end) bytes
    lines: int  # lines in [0, end) (plain files; 0 for gzip)
    longest: int  # bytes in the longest line, its newline not counted (plain files; 0 for gzip)


def scan(path: Path, entries: dict[str, Entry], *, whole: bool = False) -> Scan:
    """The scan of `path`; `whole` (a documents file, documents.py) takes every byte, leaving
    no unterminated tail for later: such a file is not appended to line by line."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        size = os.fstat(handle.fileno()).st_size
        compressed = head[:2] == b"\x1f\x8b"
        candidates = {} if compressed else _candidates(head, size, entries)
        handle.seek(0)
        digest = hashlib.sha256()
        at_newline = digest.copy()
        pos = last_newline = newlines = longest = run = 0
        prefixes: dict[int, str] = {}
        stops = sorted(candidates)
        while True:
            block = handle.read(_BLOCK if not stops else min(_BLOCK, stops[0] - pos))
            if not block:
                break
            cut = -1 if compressed else block.rfind(b"\n")
            if cut >= 0:
                # split and len run in C: no Python loop over the lines
                parts = block.split(b"\n")
                inner = max(map(len, parts[1:-1]), default=0)
                longest = max(longest, run + len(parts[0]), inner)
                run = len(parts[-1])
                newlines += len(parts) - 1
                digest.update(block[: cut + 1])
                at_newline, last_newline = digest.copy(), pos + cut + 1
                digest.update(block[cut + 1 :])
            else:
                digest.update(block)
                run += len(block)
            pos += len(block)
            while stops and pos == stops[0]:
                prefixes[stops.pop(0)] = digest.copy().hexdigest()
        size = pos
        full = digest.hexdigest()
        end, sha = size, full
        tail = not whole and not compressed and last_newline < size
        if tail and not _parses(handle, last_newline, size):
            end, sha = last_newline, at_newline.hexdigest()
    matches = [candidates[s] for s, h in prefixes.items() if candidates[s].sha256 == h]
    resume = max(matches, key=lambda e: e.size) if matches else None
    head_sha = hashlib.sha256(head[: min(HEAD_BYTES, end)]).hexdigest()
    lines = 0 if compressed else newlines + (1 if end > last_newline else 0)
    longest = 0 if compressed else max(longest, run)
    return Scan(compressed, size, end, sha, full, resume, head_sha, lines, longest)


def _candidates(head: bytes, size: int, entries: dict[str, Entry]) -> dict[int, Entry]:
    """Entries of shorter inputs that start with the same bytes as this file, by size."""
    found: dict[int, Entry] = {}
    for entry in entries.values():
        if entry.format != "file" or not 0 < entry.size < size:
            continue
        if hashlib.sha256(head[: min(HEAD_BYTES, entry.size)]).hexdigest() == entry.head:
            found[entry.size] = entry
    return found


def _parses(handle: IO[bytes], start: int, end: int) -> bool:
    if end - start > MAX_TAIL:
        return False
    handle.seek(start)
    try:
        json.loads(handle.read(end - start))
    except (ValueError, RecursionError):
        return False
    return True


def head(path: Path, size: int) -> tuple[bytes, bool]:
    """The first `size` bytes of the file, decompressed when it is gzip, and whether that is
    all of it."""
    with path.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=handle) if compressed else handle
        first = stream.read(size + 1)
    return first[:size], len(first) <= size


def _scanned(
    handle: IO[bytes], scan: Scan, offset: int, buffer: int = io.DEFAULT_BUFFER_SIZE
) -> gzip.GzipFile | io.BufferedReader:
    """The bytes of an open file from `offset` to the end the scan hashed; a gzip file
    decompressed whole."""
    if scan.gzip:
        return gzip.GzipFile(fileobj=handle)
    handle.seek(offset)
    return io.BufferedReader(_Limited(handle, scan.end - offset), buffer)


@contextmanager
def text(path: Path, scan: Scan, offset: int) -> Iterator[IO[str]]:
    """The file from `offset` to the scanned end as UTF-8 text (a BOM at the start skipped),
    decompressed when it is gzip."""
    with path.open("rb") as handle:
        raw = _scanned(handle, scan, offset)
        with io.TextIOWrapper(raw, encoding="utf-8-sig" if offset == 0 else "utf-8") as stream:
            yield stream


class _Limited(io.RawIOBase):
    """At most `left` bytes of a binary stream: never past the end the scan hashed."""

    def __init__(self, inner: IO[bytes], left: int) -> None:
        self.inner = inner
        self.left = left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        data = self.inner.read(min(len(view), self.left))
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)


def numbered(
    path: Path, scan: Scan, offset: int, first: int, max_line: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | LongLine]]:
    """The lines from `offset` to the scanned end, numbered from `first`; a line longer than
    `max_line` bytes (its newline not counted) is read past in bounded pieces and given as a
    LongLine instead."""
    with path.open("rb") as handle:
        stream = _scanned(handle, scan, offset, _BLOCK)
        number = first
        while line := stream.readline(max_line + 1):
            if len(line) > max_line and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):
                    line = stream.readline(_BLOCK)
                yield number, LongLine(max_line)
            else:
                yield number, line
            number += 1
