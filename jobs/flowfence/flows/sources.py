"""Binds Calico flow-log Parquet into a DuckDB connection as the normalised view `flows`.

This module owns the input contract (docs/flow-contract.md): which columns must be there,
which encodings are accepted (encodings.py picks the SQL fragment per Parquet type) and what
bad input looks like. Every problem with the input is reported as one FlowInputError naming
the path and the column, never as a DuckDB traceback.

Pruning happens in Python on `date=YYYY-MM-DD/hour=HH` directory names, so DuckDB is handed
an explicit file list and no path is ever written into SQL text. An `s3://bucket/prefix`
location is listed by objectstore.py and read through its s3fs filesystem, registered with the
connection (no httpfs download). In an ingest store, the files of inputs its manifest does not
commit yet are left out (core/ingest_commits.py): a run never reads rows an interrupted ingest
is about to delete.

The view is pre-aggregated (encodings.grouping, pregroup.py): raw rows in the window are
grouped on their raw key columns (the list and struct ones by a checked hash) and UTC day, the
normalising fragments run once per group, and the column `rows` says how many raw rows a view
row stands for (count them as sum(rows)). Binding materialises a temporary table, about one
row per edge and day, which every query after it reads; the files are read by it and by the
small lookups of the hashed columns, never by the queries. The hourly activity has its own
narrow view, `flows_hourly`. A caller that runs the edge query alone binds only its columns
(`columns=encodings.EDGE_COLUMNS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from flowfence.core import ingest_commits, objects, objectstore, partitions, times
from flowfence.core.errors import FlowInputError
from flowfence.flows import encodings, pregroup

REQUIRED_COLUMNS: tuple[str, ...] = tuple(encodings.REQUIRED)
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(encodings.OPTIONAL)

_VIEW = re.compile(r"[a-z_]+")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
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
    columns: frozenset[str] | None = None,
) -> FlowSource:
    """Bind the flow logs at `path` as temporary view `view`, rows in [since, until) only.

    A raw row is in the window when end_time >= since and start_time < until. The view holds
    one row per distinct raw key and UTC day of start_time (see the module docstring). Raises
    FlowInputError for input that breaks the contract; an empty window is an empty view.
    `columns`: only these view columns (`encodings.EDGE_COLUMNS` for the edge query alone),
    all of FLOWS_SCHEMA when None.
    """
    if not _VIEW.fullmatch(view):
        raise ValueError(f"bad view name {view!r}")
    lo, hi = times.window_bound(since, "since"), times.window_bound(until, "until")
    remote = objectstore.is_url(str(path))
    parts, hive = _remote_parts(str(path)) if remote else _list_parts(Path(path))
    kept = [p.path for p in parts if _overlaps(p, lo, hi)]
    _open_store(con, kept)
    rows = _row_counts(con, kept)
    if lo is None and hi is None and kept and sum(rows.values()) == 0:
        raise FlowInputError(f"flow logs: {path}: the Parquet files hold no rows")
    files = sorted(f for f in kept if rows[f] > 0)
    groups, found = _plan_files(con, files)
    _bind(con, view, groups, pregroup.Window(lo, hi), columns)
    return FlowSource(files=tuple(files), hive=hive, columns=frozenset(found))


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
    hidden = uncommitted([p.path for p in parts], ingest_commits.read_local)
    if not parts or len(hidden) == len(parts):
        note = ingest_commits.note(hidden)
        raise FlowInputError(f"flow logs: {root}: no Parquet files (*.parquet) found{note}")
    parts = [p for p in parts if p.path not in hidden]
    return parts, any(p.start is not None for p in parts)


def uncommitted(paths: list[str], read: Callable[[str, str], bytes | None]) -> set[str]:
    """The ingest-store files among `paths` not to read: not committed yet, or replaced by a
    compaction under way (the module doc, core/ingest_commits.py)."""
    try:
        return ingest_commits.uncommitted(paths, read)
    except ValueError as exc:
        raise FlowInputError(f"flow logs: {exc}") from None


def _remote_files(url: str) -> tuple[tuple[FileInfo, ...], bool]:
    """`list_files` for an `s3://` location: objectstore.py lists and reads the partitions."""
    root = objectstore.parse(url)
    fs = objectstore.filesystem()
    listed = objectstore.list_parquet(fs, root)

    def read(store: str, rel: str) -> bytes | None:
        blob = objects.read_object(fs, objectstore.parse(objectstore.SCHEME + store).join(rel))
        return None if blob is None else blob.data

    hidden = uncommitted([o.url.removeprefix(objectstore.SCHEME) for o in listed], read)
    if listed and len(hidden) == len(listed):
        note = ingest_commits.note(hidden)
        raise FlowInputError(f"flow logs: {url}: no Parquet files (*.parquet) found{note}")
    out = []
    for obj in listed:
        if obj.url.removeprefix(objectstore.SCHEME) in hidden:
            continue
        unit = (obj.rel.rpartition("/")[0] or ".") if obj.start is not None else obj.rel
        out.append(FileInfo(obj.url, obj.rel, unit, obj.start, obj.end, obj.size, obj.mtime_ns))
    return tuple(out), any(f.start is not None for f in out)


def _remote_parts(url: str) -> tuple[list[_Part], bool]:
    files, hive = _remote_files(url)
    return [_Part(f.path, f.start, f.end) for f in files], hive


def _open_store(con: duckdb.DuckDBPyConnection, files: Sequence[str]) -> None:
    """Let DuckDB read `s3://` files through objectstore's s3fs (httpfs needs a download)."""
    if any(objectstore.is_url(f) for f in files):
        objectstore.register(con, objectstore.filesystem())


def _partition(file: Path, dirs: Sequence[str]) -> _Part:
    """The span of a file under date=YYYY-MM-DD[/hour=HH]; other key=value dirs are ignored."""
    try:
        span = partitions.span("/".join([*dirs, file.name]))
    except ValueError as exc:
        raise FlowInputError(f"flow logs: {file.parent}: {exc}") from None
    return _Part(str(file)) if span is None else _Part(str(file), *span)


def _overlaps(part: _Part, lo: datetime | None, hi: datetime | None) -> bool:
    return partitions.meets(part.start, part.end, lo, hi)


def _unreadable(file: str, exc: duckdb.Error) -> FlowInputError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FlowInputError(f"flow logs: {file}: not a readable Parquet file ({reason})")


def _row_counts(con: duckdb.DuckDBPyConnection, files: list[str]) -> dict[str, int]:
    """Rows per file from the Parquet footers, one query; per file only to name a bad one."""
    if not files:
        return {}
    query = "SELECT file_name, num_rows FROM parquet_file_metadata($files)"
    try:
        found = con.sql(query, params={"files": [pregroup.pattern(f) for f in files]}).fetchall()
    except duckdb.Error:
        for file in files:
            try:
                con.sql(query, params={"files": [pregroup.pattern(file)]}).fetchall()
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
    groups: pregroup.Groups = {}
    found: set[str] = set()
    lacking: dict[str, list[str]] = {}
    for file in files:
        try:
            rel = con.read_parquet(pregroup.pattern(file), hive_partitioning=False)
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


def _bind(
    con: duckdb.DuckDBPyConnection,
    view: str,
    groups: pregroup.Groups,
    window: pregroup.Window,
    columns: frozenset[str] | None = None,
) -> None:
    """Materialise the pre-aggregated rows (one per raw key and day) as a temporary table and
    bind it as `view`: the files are read at bind time, however many queries follow; a large
    table spills to DuckDB's temp_directory like any other. The hourly activity view (`view`
    + "_hourly", a few columns per hour) is bound lazily: its one query reads the files'
    few columns it needs, cheaper than grouping every key per hour. `columns`: the view
    columns to bind (encodings.view_schema), all when None."""
    staged, table = f"flowfence_{view}_staged", f"flowfence_{view}"
    con.register(staged, pregroup.relation(con, groups, window, "day", columns, prefix=table))
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS FROM {staged}")
    finally:
        con.unregister(staged)
    con.register(view, con.table(table))
    con.register(f"{view}_hourly", pregroup.relation(con, groups, window, "hour", prefix=table))


# ---- incremental runs: list the files with their partition span, bind an explicit list ----


@dataclass(frozen=True)
class FileInfo:
    """One flow-log file as the incremental planner sees it.

    rel: the path relative to the listed root ('/'-separated; the file name for a single
    file). unit: what is sealed as a whole, the partition directory for hive files
    (`date=YYYY-MM-DD/hour=HH`, relative) or the file itself otherwise. start/end: the UTC
    span (naive) of the partition, None outside a hive tree.
    """

    path: str
    rel: str
    unit: str
    start: datetime | None
    end: datetime | None
    size: int
    mtime_ns: int


def is_hadoop_url(path: str | Path) -> bool:
    """A `scheme://` location other than `s3://` (`s3a://`, `hdfs://`, `file://`, ...): only
    the Spark engine lists and reads those, through Hadoop (spark_files.py)."""
    return isinstance(path, str) and bool(_URL.match(path)) and not objectstore.is_url(path)


def list_files(path: str | Path) -> tuple[tuple[FileInfo, ...], bool]:
    """Every flow-log file under `path` with its partition span, size and mtime, sorted by
    relative path, and whether the input is a hive tree. Same errors as `bind_flows`; a
    Hadoop filesystem URL is a FlowInputError pointing to `--engine spark`."""
    if objectstore.is_url(str(path)):
        return _remote_files(str(path))
    if is_hadoop_url(path):
        local = str(path).removeprefix("file://") if str(path).startswith("file:///") else None
        instead = f", or give the local path {local}" if local else ""
        raise FlowInputError(
            f"flow logs: {path}: a Hadoop filesystem URL, which only --engine spark lists and "
            f"reads (s3:// and local paths work with either engine){instead}"
        )
    root = Path(path)
    parts, hive = _list_parts(root)
    base = root.absolute() if root.is_dir() else root.absolute().parent
    out = []
    for part in parts:
        file = Path(part.path)
        rel = file.relative_to(base).as_posix()
        stat = file.stat()
        unit = file.parent.relative_to(base).as_posix() if part.start is not None else rel
        out.append(
            FileInfo(part.path, rel, unit, part.start, part.end, stat.st_size, stat.st_mtime_ns)
        )
    return tuple(sorted(out, key=lambda f: f.rel)), hive


def bind_files(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    end_before: datetime | None = None,
    view: str = "flows",
    columns: frozenset[str] | None = None,
) -> FlowSource:
    """Bind exactly `files` (absolute paths, e.g. from `list_files`) as view `view`, rows in
    [since, until) only, like `bind_flows` but without listing or pruning. `end_before`: only
    rows with end_time < end_before (a backfill reads the rows a previous read left out). No
    files, or files without rows, give an empty view. `columns` as for `bind_flows`."""
    if not _VIEW.fullmatch(view):
        raise ValueError(f"bad view name {view!r}")
    lo, hi = times.window_bound(since, "since"), times.window_bound(until, "until")
    wanted = sorted(set(files))
    _open_store(con, wanted)
    rows = _row_counts(con, wanted)
    kept = [f for f in wanted if rows[f] > 0]
    groups, found = _plan_files(con, kept)
    window = pregroup.Window(lo, hi, times.window_bound(end_before, "end_before"))
    _bind(con, view, groups, window, columns)
    return FlowSource(files=tuple(kept), hive=False, columns=frozenset(found))
