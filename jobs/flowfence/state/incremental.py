"""What an incremental run reads, and how new evidence merges into the state.

Flow logs are read in units: a hive partition directory (`date=…/hour=…`, its span known from
the name) or, outside a hive tree, a single file. A unit is *sealed* once read for good: its
edges are merged into the state and its files recorded (size and mtime). A unit stays *open*
while late files may still arrive, that is while its end is within `lateArrivalGrace` of the
watermark (the end of the newest partition seen) or after `--now`; an open unit is read again,
completely, by every run until it seals, and its edges are never merged into the state. So a
file that lands late, or is rewritten, in an open partition is counted exactly once, and a run
reads only the units it has not sealed: the new ones plus those inside the grace window.

A new file, or a file whose size or mtime changed, in a unit already sealed arrived after the
grace window: it is not read (its flows could be counted twice) and the report says so. A file
outside a hive tree is its own unit: it seals once it was last modified more than the grace
before `--now` (until then, for instance under a `--now` in the past, it is read again).

Rows are taken when they end at or after the state's origin (the first run's `now -
initialLookback`) and start before `--now`. When a later run asks for more history than the
origin (a larger `initialLookback`), the sealed files are read once more for the rows ending
in [new origin, old origin) only, which no earlier read took.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from flowfence.flows import encodings, spark_engine
from flowfence.flows.edges import EDGE_QUERY, KEY_COLUMNS, fetch, key_codes, sort_by_key
from flowfence.flows.sources import FileInfo, bind_files
from flowfence.state.tables import ACTIVITY_SCHEMA, EDGES_SCHEMA, FILES_SCHEMA, State

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_SAMPLES = 5
# What merge_edges aggregates per edge (`days` is recomputed from `day_list`).
MEASURES = ("first_seen", "last_seen", "flows", "bytes", "packets", "rows", "day_list")


@dataclass(frozen=True)
class Plan:
    """The reads of one run. Times are naive UTC."""

    origin: datetime
    watermark: datetime | None
    seal: tuple[FileInfo, ...]  # read, then sealed
    open: tuple[FileInfo, ...]  # read, not sealed: read again next run
    backfill: tuple[FileInfo, ...]  # sealed files read again for rows ending before `before`
    backfill_before: datetime | None
    skipped: int  # sealed files, unchanged, not read
    late: tuple[str, ...]  # new or changed files in sealed units, not read (relative paths)


def _in_window(info: FileInfo, origin: datetime, now: datetime) -> bool:
    if info.start is None or info.end is None:
        return True
    return info.start < now and info.end > origin


def _closed(info: FileInfo, now: datetime, watermark: datetime | None, grace: timedelta) -> bool:
    """Whether a unit not yet sealed can be: no late file or row can still change it."""
    if info.end is None:
        # A file without a partition: closed once last written more than `grace` before
        # `--now` (its rows are older than its mtime, so none lies after --now either).
        written = datetime.fromtimestamp(info.mtime_ns / 1e9, UTC).replace(tzinfo=None)
        return written + grace <= now
    return info.end <= now and watermark is not None and info.end + grace <= watermark


def plan(
    listing: Sequence[FileInfo],
    prior: State,
    now: datetime,
    *,
    initial_lookback: timedelta,
    grace: timedelta,
) -> Plan:
    """Decide which files this run reads; `now` is naive UTC."""
    wanted = now - initial_lookback
    origin = wanted if prior.origin is None else min(prior.origin, wanted)
    window = [f for f in listing if _in_window(f, origin, now)]
    ends = [f.end for f in window if f.end is not None]
    watermark = max([*ends, *([prior.watermark] if prior.watermark else [])], default=None)
    sealed = {
        row["rel"]: (row["size"], row["mtime_ns"])
        for row in prior.files.select("rel", "size", "mtime_ns").iter_rows(named=True)
    }
    sealed_units = set(prior.files.get_column("unit").to_list())
    seal: list[FileInfo] = []
    still_open: list[FileInfo] = []
    late: list[str] = []
    skipped = 0
    for info in window:
        if info.unit in sealed_units:
            if sealed.get(info.rel) == (info.size, info.mtime_ns):
                skipped += 1
            else:
                late.append(info.rel)
        elif _closed(info, now, watermark, grace):
            seal.append(info)
        else:
            still_open.append(info)
    backfill: list[FileInfo] = []
    before = None
    if prior.origin is not None and origin < prior.origin:
        before = prior.origin
        backfill = [
            f
            for f in listing
            if f.unit in sealed_units
            and sealed.get(f.rel) == (f.size, f.mtime_ns)
            and _in_window(f, origin, before)
        ]
    return Plan(
        origin=origin,
        watermark=watermark,
        seal=tuple(seal),
        open=tuple(still_open),
        backfill=tuple(backfill),
        backfill_before=before,
        skipped=skipped,
        late=tuple(late),
    )


def sealed_files(
    prior: pl.DataFrame, sealed: Sequence[FileInfo], nonempty: Collection[str], generation: int
) -> pl.DataFrame:
    """The sealed-files table after this run (FILES_SCHEMA): `prior` plus `sealed`."""
    if not sealed:
        return prior
    added = pl.DataFrame(
        [
            (f.rel, f.unit, f.start, f.end, f.size, f.mtime_ns, f.path not in nonempty, generation)
            for f in sealed
        ],
        schema=FILES_SCHEMA,
        orient="row",
    )
    return pl.concat([prior, added]).sort("rel")


@dataclass(frozen=True)
class Batch:
    """What one read produced: edges (EDGES_SCHEMA, not yet screened), hourly activity, the
    files that held rows, and the rows and flows read (kept when the frames are dropped)."""

    edges: pl.DataFrame
    activity: pl.DataFrame
    nonempty: frozenset[str]
    rows: int
    flows: int

    @classmethod
    def of(cls, edges: pl.DataFrame, activity: pl.DataFrame, nonempty: frozenset[str]) -> Batch:
        return cls(edges, activity, nonempty, total(edges, "rows"), total(edges, "flows"))

    @property
    def files(self) -> int:
        return len(self.nonempty)

    def counted(self) -> Batch:
        """This batch without its edges and activity, its counts kept: once merged, the frames
        live on in the merge, and a batch kept for its counts must not hold a second copy."""
        return replace(
            self,
            edges=pl.DataFrame(schema=EDGES_SCHEMA),
            activity=pl.DataFrame(schema=ACTIVITY_SCHEMA),
        )


def total(edges: pl.DataFrame, column: str) -> int:
    """The sum of a count column of edges (0 for none)."""
    return int(edges.get_column(column).sum()) if edges.height else 0


def empty_batch() -> Batch:
    return Batch.of(
        pl.DataFrame(schema=EDGES_SCHEMA), pl.DataFrame(schema=ACTIVITY_SCHEMA), frozenset()
    )


def read(
    con: duckdb.DuckDBPyConnection | None,
    files: Iterable[FileInfo],
    *,
    since: datetime,
    until: datetime,
    end_before: datetime | None = None,
    spark: SparkSession | None = None,
    close: bool = False,
) -> Batch:
    """Aggregate `files` (rows ending in [since, end_before) and starting before `until`).

    With `spark` (a session: `--engine spark`) the same queries run on Spark instead of `con`.
    `close`: close `con` once the queries ran, before the edges are sorted, so that DuckDB's
    memory (the bound flows, its buffers) is released before Polars' sort copies the edges.
    """
    paths = [f.path for f in files]
    if not paths:
        return empty_batch()
    if spark is not None:
        read_by_spark = spark_engine.read_files(
            paths,
            since=since.replace(tzinfo=UTC),
            until=until.replace(tzinfo=UTC),
            end_before=end_before.replace(tzinfo=UTC) if end_before else None,
            spark=spark,
        )
        source_, edges_, activity_ = read_by_spark
        edges, activity = conform_edges(edges_), conform_activity(activity_)
        return Batch.of(edges, activity, frozenset(source_.files))
    if con is None:
        raise ValueError("incremental.read needs a DuckDB connection or a Spark session")
    # The window is applied to raw rows by the binding (the view is pre-aggregated per key
    # and hour); the queries' own filter only repeats it.
    try:
        source = bind_files(
            con,
            paths,
            since=since.replace(tzinfo=UTC),
            until=until.replace(tzinfo=UTC),
            end_before=end_before.replace(tzinfo=UTC) if end_before else None,
            columns=encodings.EDGE_COLUMNS,
        )
        params = {"since": since, "until": until, "end_before": end_before}
        edges = fetch(con, EDGE_QUERY, EDGES_SCHEMA, **params)
        activity = fetch(con, "state_activity", ACTIVITY_SCHEMA, **params)
    finally:
        if close:
            con.close()
    return Batch.of(conform_edges(edges), conform_activity(activity), frozenset(source.files))


def conform_edges(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to EDGES_SCHEMA and sort by the edge key (deterministic order)."""
    if frame.height == 0:
        return pl.DataFrame(schema=EDGES_SCHEMA)
    frame = frame.select([pl.col(n).cast(t) for n, t in EDGES_SCHEMA.items()])
    return sort_by_key(frame)


def conform_activity(frame: pl.DataFrame) -> pl.DataFrame:
    if frame.height == 0:
        return pl.DataFrame(schema=ACTIVITY_SCHEMA)
    frame = frame.select([pl.col(n).cast(t) for n, t in ACTIVITY_SCHEMA.items()])
    return frame.sort("namespace", "hour")


def merge_edges(*frames: pl.DataFrame) -> pl.DataFrame:
    """One row per edge key with the evidence of all `frames` merged: earliest first_seen,
    latest last_seen, summed counters, the union of the days (and `days` its length)."""
    parts = [f for f in frames if f.height]
    if not parts:
        return pl.DataFrame(schema=EDGES_SCHEMA)
    if len(parts) == 1:
        return parts[0]
    full = pl.concat([p.select(list(EDGES_SCHEMA)) for p in parts], rechunk=False)
    return _merged(full, key_codes(full))


def merge_twice(
    first: Sequence[pl.DataFrame], then: Sequence[pl.DataFrame]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(merge_edges(*first), merge_edges(*first, *then)), the keys coded once for both: the
    sealed edges after a run and the edges it learns from (the units still open added)."""
    head, tail = [f for f in first if f.height], [f for f in then if f.height]
    if len(head) < 2 or not tail:
        once = merge_edges(*head)
        return once, merge_edges(once, *tail)
    full = pl.concat([p.select(list(EDGES_SCHEMA)) for p in (*head, *tail)], rechunk=False)
    codes = key_codes(full)
    rows = sum(f.height for f in head)
    return _merged(full.slice(0, rows), codes.slice(0, rows)), _merged(full, codes)


def _merged(full: pl.DataFrame, codes: pl.DataFrame) -> pl.DataFrame:
    """The rows of `full` grouped by their key `codes` (edges.key_codes), in key order."""
    # The parts are chained, not copied (their chunks appended), and grouped by the codes of
    # their keys, not the keys: a group-by and sort over the 20 key columns row-encodes every
    # key, ~5x the edges' size. Only the result is materialised: each group's key gathered
    # from its first row, in key order.
    groups = (
        pl.concat([codes, full.select(list(MEASURES))], how="horizontal")
        .lazy()
        .with_row_index("_row")
        .group_by(codes.columns)
        .agg(
            pl.col("_row").first(),
            pl.col("first_seen").min(),
            pl.col("last_seen").max(),
            pl.col("flows").sum(),
            pl.col("bytes").sum(),
            pl.col("packets").sum(),
            pl.col("rows").sum(),
            pl.col("day_list").explode().drop_nulls().unique().sort(),
        )
        .sort(codes.columns)
        .drop(codes.columns)
        .with_columns(pl.col("day_list").list.len().cast(pl.Int64).alias("days"))
        .collect()
    )
    keys = full.select(list(KEY_COLUMNS))[groups.get_column("_row")]
    return pl.concat([keys, groups.drop("_row")], how="horizontal").select(
        [pl.col(n).cast(t) for n, t in EDGES_SCHEMA.items()]
    )


def merge_activity(*frames: pl.DataFrame) -> pl.DataFrame:
    parts = [f for f in frames if f.height]
    if not parts:
        return pl.DataFrame(schema=ACTIVITY_SCHEMA)
    if len(parts) == 1:
        return parts[0]
    merged = pl.concat(parts).group_by("namespace", "hour").agg(pl.col("flows").sum())
    return conform_activity(merged)


def late_note(plan: Plan) -> str | None:
    """A report warning for files that arrived after their partition sealed."""
    if not plan.late:
        return None
    shown = ", ".join(plan.late[:_SAMPLES])
    more = f" and {len(plan.late) - _SAMPLES} more" if len(plan.late) > _SAMPLES else ""
    return (
        f"{len(plan.late)} flow-log file(s) arrived or changed after their partition was "
        f"sealed (lateArrivalGrace) and were not read: {shown}{more}"
    )
