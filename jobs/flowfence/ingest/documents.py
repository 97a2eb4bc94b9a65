"""Flow-log files that are not one flow per line: how `flowfence ingest` finds the flows in them.

Exports of Calico Enterprise flow logs come in several layouts besides Felix's JSON lines:

- a JSON array of documents (`[{...}, {...}]`, compact or pretty-printed), as Kibana, `jq -s`
  or an export script write it;
- an Elasticsearch / Linseed `_search` response, `{"took": ..., "hits": {"hits": [{"_source":
  {<flow>}}, ...]}}`, often pretty-printed;
- one pretty-printed document, or several one after the other (what `jq . flows.log` prints).

`layout` tells them from JSON lines by content, never by file name: the first non-blank
character `[` means documents, and so does a first line that is not a JSON value by itself (the
`{` opening a pretty-printed object). `values` then decodes the file as a stream of JSON values,
yielding each element of a top-level array separately, so a large array export is read with
bounded memory. A single value (one `_search` response) is held whole: one larger than
`MAX_VALUE_CHARS` is refused with a hint to convert it to JSON lines first. `expand` turns a
value into the flow documents it holds; the line parser uses it too, so a compact `_search`
response or array on one line is read the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any, Literal

Layout = Literal["lines", "documents"]

MAX_VALUE_CHARS = 256 << 20  # one JSON value held in memory; about 1-2 GB once decoded
SNIFF_BYTES = 1 << 16
_CHUNK = 1 << 20
_BLANK = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


class DocumentError(ValueError):
    """The rest of a documents file cannot be decoded; `line` is where decoding stopped."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line


def layout(head: bytes, whole: bool) -> Layout:
    """JSON lines or documents, from the first bytes of a (decompressed) file; `whole` says
    whether `head` is the entire file."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "documents"
    if not text.startswith(b"{"):
        return "lines"  # not JSON at all: the line parser reports it line by line
    first, newline, _ = text.partition(b"\n")
    if not newline and not whole:
        return "lines"  # a first line longer than the sniff is a long compact flow
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return "documents"
    return "lines"


def expand(value: Any) -> list[Any]:
    """The flow documents in one JSON value: an array's elements, a `_search` response's
    `hits.hits` (each hit keeps its `_source` wrapper, which the flow parser unwraps), or the
    value itself. Arrays of `_search` responses (saved scroll pages) are expanded too."""
    if isinstance(value, list):
        return [doc for item in value for doc in _hits(item)]
    return _hits(value)


def _hits(value: Any) -> list[Any]:
    if isinstance(value, dict) and "_source" not in value:
        hits = value.get("hits")
        if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
            return list(hits["hits"])
    return [value]


class _Reader:
    """A text stream decoded value by value; `line` is the 1-based line at `pos`."""

    def __init__(self, stream: IO[str], line: int) -> None:
        self.stream = stream
        self.buf = ""
        self.pos = 0
        self.line = line
        self.eof = False

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def more(self) -> bool:
        """Read more text; False at the end. Reads grow with the unread buffer, so a value
        retried after each read is decoded O(1) times on average."""
        if self.eof:
            return False
        if self.pos:
            self.buf, self.pos = self.buf[self.pos :], 0
        if len(self.buf) > MAX_VALUE_CHARS:
            raise DocumentError(
                self.line,
                f"one JSON value is larger than {MAX_VALUE_CHARS >> 20} MiB; convert the "
                "file to JSON lines first (jq -c '.hits.hits[]' for a _search response)",
            )
        chunk = self.stream.read(max(_CHUNK, len(self.buf)))
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def peek(self) -> str | None:
        """The next non-blank character (not consumed), or None at the end."""
        while True:
            self.advance(_BLANK.match(self.buf, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def value(self) -> Any:
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                line = self.line + self.buf.count("\n", self.pos, exc.pos)  # before more() moves it
                if self.more():
                    continue
                raise DocumentError(line, f"not JSON ({exc.msg})") from None
            except RecursionError:
                raise DocumentError(self.line, "JSON nested too deeply") from None
            except ValueError:  # an integer past Python's digit limit (4300): untrusted input
                if self.more():
                    continue
                raise DocumentError(self.line, "not JSON (an integer too long)") from None
            if end == len(self.buf) and self.more():
                continue  # a number or literal at the end of the buffer may go on
            self.advance(end)
            return value


def values(stream: IO[str], first_line: int = 1) -> Iterator[tuple[int, Any]]:
    """(line, value) for each top-level JSON value of the stream, and for each element of a
    top-level array; raises DocumentError where the stream stops being JSON."""
    reader = _Reader(stream, first_line)
    while (char := reader.peek()) is not None:
        if char == "[":
            yield from _array(reader)
        else:
            line = reader.line
            yield line, reader.value()


def _array(reader: _Reader) -> Iterator[tuple[int, Any]]:
    reader.advance(reader.pos + 1)
    char = reader.peek()
    if char == "]":
        reader.advance(reader.pos + 1)
        return
    while True:
        if char is None:
            raise DocumentError(reader.line, "not JSON (the array is not closed)")
        line = reader.line
        yield line, reader.value()
        char = reader.peek()
        if char == "]":
            reader.advance(reader.pos + 1)
            return
        if char != ",":
            raise DocumentError(reader.line, "not JSON (expected ',' or ']' in the array)")
        reader.advance(reader.pos + 1)
        char = reader.peek()
