"""Binds Calico flow-log Parquet into a DuckDB connection as the normalised view `flows`.

This module owns the input contract (docs/flow-contract.md): which columns must be there,
which encodings are accepted (encodings.py picks the SQL fragment per Parquet type) and what
bad input looks like. Every problem with the input is reported as one FlowInputError naming
the path and the column, never as a DuckDB traceback.

Pruning happens in Python on `date=YYYY-MM-DD/hour=HH` directory names, so DuckDB is handed
an explicit file list and no path is ever written into SQL text. The view is a temporary view
over a relation: nothing is materialised, DuckDB reads only the columns a query needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from flowfence import encodings
from flowfence.errors import FlowInputError

REQUIRED_COLUMNS: tuple[str, ...] = tuple(encodings.REQUIRED)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(encodings.OPTIONAL)

_VIEW = re.compile(r"[a-z_]+")
_DATE = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_HOUR = re.compile(r"hour=(\d{2})")
_GLOB = re.compile(r"([\[*?])")
_LISTED = 3  # files named in a message before "and N more"


@dataclass(frozen=True)
class FlowSource:
    """What bind_flows bound.

    files: the Parquet files the view reads (after time pruning, without zero-row files),
    sorted. hive: True when the input was a date=YYYY-MM-DD[/hour=HH] tree. columns: the
    contract columns (required and optional) found in at least one of those files.
    """

    files: tuple[str, ...]
    hive: bool
    columns: frozenset[str]


@dataclass(frozen=True)
class _Part:
    """One Parquet file and, when it sits in a hive partition, the UTC span that covers."""

    path: str
    start: datetime | None = None
    end: datetime | None = None


def bind_flows(
    con: duckdb.DuckDBPyConnection,
    path: str | Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    view: str = "flows",
) -> FlowSource:
    """Bind the flow logs at `path` as temporary view `view`, rows in [since, until) only.

    A row is in the window when end_time >= since and start_time < until. Raises
    FlowInputError for input that breaks the contract; an empty window is an empty view.
    """
    if not _VIEW.fullmatch(view):
        raise ValueError(f"bad view name {view!r}")
    lo, hi = _utc(since, "since"), _utc(until, "until")
    parts, hive = _list_parts(Path(path))
    kept = [p.path for p in parts if _overlaps(p, lo, hi)]
    rows = _row_counts(con, kept)
    if lo is None and hi is None and kept and sum(rows.values()) == 0:
        raise FlowInputError(f"flow logs: {path}: the Parquet files hold no rows")
    files = sorted(f for f in kept if rows[f] > 0)
    groups, found = _plan_files(con, files)
    rel = _relation(con, groups)
    if lo is not None:
        rel = rel.filter(duckdb.ColumnExpression("end_time") >= duckdb.ConstantExpression(lo))
    if hi is not None:
        rel = rel.filter(duckdb.ColumnExpression("start_time") < duckdb.ConstantExpression(hi))
    con.register(view, rel)
    return FlowSource(files=tuple(files), hive=hive, columns=frozenset(found))


def _utc(moment: datetime | None, name: str) -> datetime | None:
    """A naive UTC datetime, so DuckDB compares TIMESTAMP with TIMESTAMP, not TIMESTAMPTZ."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _list_parts(root: Path) -> tuple[list[_Part], bool]:
    if not root.exists():
        raise FlowInputError(f"flow logs: {root}: no such file or directory")
    if root.is_file():
        return [_Part(str(root.absolute()))], False
    parts = []
    top = root.absolute()
    for file in sorted(top.rglob("*.parquet")):
        relative = file.relative_to(top).parts
        # Spark and Hadoop leave _temporary/ and .crc siblings; they are never flow data.
        if not file.is_file() or any(p.startswith((".", "_")) for p in relative):
            continue
        # The whole path counts, so pointing at .../date=2024-01-01 still prunes by hour.
        parts.append(_partition(file, file.parent.parts))
    if not parts:
        raise FlowInputError(f"flow logs: {root}: no Parquet files (*.parquet) found")
    return parts, any(p.start is not None for p in parts)


def _partition(file: Path, dirs: Sequence[str]) -> _Part:
    """The span of a file under date=YYYY-MM-DD[/hour=HH]; other key=value dirs are ignored."""
    day: date | None = None
    hour: int | None = None
    for name in dirs:
        if name.startswith("date="):
            match = _DATE.fullmatch(name)
            try:
                day = date.fromisoformat(match.group(1)) if match else None
            except ValueError:
                day = None
            if day is None:
                raise FlowInputError(
                    f"flow logs: {file.parent}: bad partition directory {name!r}, "
                    "expected date=YYYY-MM-DD"
                )
        elif name.startswith("hour="):
            match = _HOUR.fullmatch(name)
            if day is None or match is None or int(match.group(1)) > 23:
                raise FlowInputError(
                    f"flow logs: {file.parent}: bad partition directory {name!r}, "
                    "expected hour=00..23 inside date=YYYY-MM-DD"
                )
            hour = int(match.group(1))
    if day is None:
        return _Part(str(file))
    start = datetime(day.year, day.month, day.day)
    if hour is None:
        return _Part(str(file), start, start + timedelta(days=1))
    start += timedelta(hours=hour)
    return _Part(str(file), start, start + timedelta(hours=1))


def _overlaps(part: _Part, lo: datetime | None, hi: datetime | None) -> bool:
    """Partitions hold rows by start_time; keep those whose span meets [lo, hi)."""
    if part.start is None or part.end is None:
        return True
    return (hi is None or part.start < hi) and (lo is None or part.end > lo)


def _pattern(file: str) -> str:
    """DuckDB treats every listed path as a glob; bracket the metacharacters to match literally."""
    return _GLOB.sub(r"[\1]", file)


def _unreadable(file: str, exc: duckdb.Error) -> FlowInputError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FlowInputError(f"flow logs: {file}: not a readable Parquet file ({reason})")


def _row_counts(con: duckdb.DuckDBPyConnection, files: list[str]) -> dict[str, int]:
    """Rows per file from the Parquet footers, one query; per file only to name a bad one."""
    if not files:
        return {}
    query = "SELECT file_name, num_rows FROM parquet_file_metadata($files)"
    try:
        found = con.sql(query, params={"files": [_pattern(f) for f in files]}).fetchall()
    except duckdb.Error:
        for file in files:
            try:
                con.sql(query, params={"files": [_pattern(file)]}).fetchall()
            except duckdb.Error as exc:
                raise _unreadable(file, exc) from None
        raise
    counts = {str(name): int(rows) for name, rows in found}
    return {f: counts.get(f, 0) for f in files}


def _plan_files(
    con: duckdb.DuckDBPyConnection, files: list[str]
) -> tuple[dict[tuple[encodings.Plan, tuple[str, ...]], list[str]], set[str]]:
    """Group files by normalisation plan (and exact input types, so a group reads as one)."""
    contract = {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS}
    groups: dict[tuple[encodings.Plan, tuple[str, ...]], list[str]] = {}
    found: set[str] = set()
    lacking: dict[str, list[str]] = {}
    for file in files:
        try:
            rel = con.read_parquet(_pattern(file), hive_partitioning=False)
            types = {c: t for c, t in zip(rel.columns, rel.types, strict=True) if c in contract}
        except duckdb.Error as exc:
            raise _unreadable(file, exc) from None
        found |= types.keys()
        missing = [c for c in REQUIRED_COLUMNS if c not in types]
        if missing:
            lacking[file] = missing
            continue
        try:
            steps = encodings.plan(types)
        except encodings.WrongType as exc:
            raise FlowInputError(f"flow logs: {file}: {exc}") from None
        used = tuple(str(types[c]) for _, _, c in steps if c is not None)
        groups.setdefault((steps, used), []).append(file)
    if lacking:
        raise _missing(lacking)
    return groups, found


def _missing(lacking: dict[str, list[str]]) -> FlowInputError:
    columns = sorted({c for cols in lacking.values() for c in cols}, key=REQUIRED_COLUMNS.index)
    named = list(lacking)[:_LISTED]
    more = len(lacking) - len(named)
    where = ", ".join(named) + (f" and {more} more file(s)" if more else "")
    label = "column" if len(columns) == 1 else "columns"
    return FlowInputError(f"flow logs: missing required {label} {', '.join(columns)} in {where}")


def _relation(
    con: duckdb.DuckDBPyConnection,
    groups: dict[tuple[encodings.Plan, tuple[str, ...]], list[str]],
) -> duckdb.DuckDBPyRelation:
    rel: duckdb.DuckDBPyRelation | None = None
    for (steps, _), files in groups.items():
        scan = con.read_parquet([_pattern(f) for f in files], hive_partitioning=False)
        part = scan.select(*encodings.projection(steps))
        rel = part if rel is None else rel.union(part)
    if rel is None:
        rel = con.sql(encodings.sections()["empty"])
    got = tuple(zip(rel.columns, map(str, rel.types), strict=True))
    if got != encodings.FLOWS_SCHEMA:
        raise AssertionError(f"flows_normalise.sql drifted from FLOWS_SCHEMA: {got}")
    return rel
