"""The row shape `flowfence ingest` writes, and the checked conversions the line parsers share.

Both input formats (Calico Enterprise JSON lines, Goldmane NDJSON) become rows of `COLUMNS`:
the raw Calico flow-log column names of docs/flow-contract.md, values as Calico writes them
(`-` placeholders stay, `sources.py` normalises them). Policy traces are stored already
resolved into `policies {enforced_policies, pending_policies}` so every stored file has one
Parquet schema, whatever shape the input had.

Flow-log content is untrusted: every value is type-checked here and a value of the wrong type
makes the whole line malformed (`LineError`), so nothing but strings, integers and lists of
strings reaches the Parquet writer. Strings are stored as data, never put into SQL or paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from flowfence.core import times

# Unix seconds outside [2000-01-01, 2200-01-01) are not a flow log's; they would also make
# nonsense partitions.
MIN_EPOCH = 946_684_800
MAX_EPOCH = 7_258_118_400
MAX_TEXT = 4096  # longer strings are not Calico's (names are at most 253 characters)

_TEXT_LIST = pa.list_(pa.string())
POLICIES_TYPE = pa.struct([("enforced_policies", _TEXT_LIST), ("pending_policies", _TEXT_LIST)])

# (column, Arrow type), in the order written.
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("start_time", pa.int64()),
    ("end_time", pa.int64()),
    ("source_type", pa.string()),
    ("source_namespace", pa.string()),
    ("source_name_aggr", pa.string()),
    ("source_ip", pa.string()),
    ("source_labels", _TEXT_LIST),
    ("dest_type", pa.string()),
    ("dest_namespace", pa.string()),
    ("dest_name_aggr", pa.string()),
    ("dest_ip", pa.string()),
    ("dest_labels", _TEXT_LIST),
    ("dest_port", pa.int64()),
    ("proto", pa.string()),
    ("action", pa.string()),
    ("reporter", pa.string()),
    ("dest_service_namespace", pa.string()),
    ("dest_service_name", pa.string()),
    ("dest_service_port", pa.string()),
    ("dest_service_port_num", pa.int64()),
    ("dest_domains", _TEXT_LIST),
    ("enforced_policies", _TEXT_LIST),  # written as policies.enforced_policies
    ("pending_policies", _TEXT_LIST),  # written as policies.pending_policies
    ("num_flows", pa.int64()),
    ("num_flows_started", pa.int64()),
    ("num_flows_completed", pa.int64()),
    ("bytes_in", pa.int64()),
    ("bytes_out", pa.int64()),
    ("packets_in", pa.int64()),
    ("packets_out", pa.int64()),
    ("host", pa.string()),
)
NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
Row = tuple[Any, ...]  # one value per COLUMNS entry


class LineError(ValueError):
    """A line that is not a flow of the expected format; the message says why."""


@dataclass(frozen=True)
class LongLine:
    """A line longer than `limit` bytes, skipped without being held whole (scan.numbered):
    malformed."""

    limit: int


def text(value: Any, field: str) -> str | None:
    if value is None or (isinstance(value, str) and len(value) <= MAX_TEXT):
        return value
    if isinstance(value, str):
        raise LineError(f"{field}: string longer than {MAX_TEXT} characters")
    raise LineError(f"{field}: expected a string, got {type(value).__name__}")


def integer(value: Any, field: str) -> int | None:
    """An integer, an integral float or a decimal string (protobuf JSON writes int64 as text)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise LineError(f"{field}: expected a number, got a boolean")
    integral = isinstance(value, float) and value.is_integer()
    digits = isinstance(value, str) and value.lstrip("-").isdigit() and len(value) <= 20
    if isinstance(value, int):
        number = value
    elif integral or digits:
        number = int(value)
    else:
        raise LineError(f"{field}: expected an integer, got {value!r:.40}")
    if not -(2**63) <= number < 2**63:
        raise LineError(f"{field}: {number} is out of range")
    return number


def epoch(value: Any, field: str) -> int:
    """Unix seconds (integer, integral float or decimal string) or RFC 3339 text with a zone."""
    if value is None:
        raise LineError(f"{field}: missing")
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        try:
            moment = times.parse(value)
        except times.MissingOffset:
            raise LineError(f"{field}: time without a zone: {value!r:.40}") from None
        except times.TimeError:
            raise LineError(
                f"{field}: not Unix seconds or an RFC 3339 time: {value!r:.40}"
            ) from None
        if moment.microsecond:
            raise LineError(f"{field}: fractional seconds are not Calico's: {value!r:.40}")
        seconds = int(moment.timestamp())
    else:
        number = integer(value, field)
        assert number is not None
        seconds = number
    if not MIN_EPOCH <= seconds < MAX_EPOCH:
        raise LineError(f"{field}: {seconds} is not a time between 2000 and 2200")
    return seconds


def texts(value: Any, field: str) -> list[str] | None:
    """A list of strings (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise LineError(f"{field}: expected a list of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or len(item) > MAX_TEXT:
            raise LineError(f"{field}: expected a list of strings, found {item!r:.40}")
    return value


def labels(value: Any, field: str) -> list[str] | None:
    """`{labels: [k=v, ...]}` (Enterprise), a list of `k=v` (Goldmane) or a `{k: v}` map."""
    if isinstance(value, dict):
        if "labels" in value and len(value) == 1:
            return texts(value["labels"], field)
        pairs = []
        for key, item in value.items():
            if not isinstance(item, str):
                raise LineError(f"{field}: label {key!r:.40} has a non-string value")
            pairs.append(f"{key}={item}")
        return texts(pairs, field)
    return texts(value, field)


class RowBuffer:
    """Rows collected column by column until `table()` turns them into one Arrow table."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, row: Row) -> None:
        self.rows.append(row)

    def table(self) -> pa.Table:
        """The buffered rows with `policies` as a struct; the buffer is emptied."""
        columns: Sequence[Sequence[Any]] = (
            list(zip(*self.rows, strict=True)) if self.rows else [[] for _ in COLUMNS]
        )
        self.rows = []
        arrays = {
            name: pa.array(col, type=ty) for (name, ty), col in zip(COLUMNS, columns, strict=True)
        }
        policies = pa.StructArray.from_arrays(
            [arrays.pop("enforced_policies"), arrays.pop("pending_policies")],
            fields=list(POLICIES_TYPE),
        )
        out = {}
        for name in NAMES:
            if name == "enforced_policies":
                out["policies"] = policies
            elif name != "pending_policies":
                out[name] = arrays[name]
        return pa.table(out)
