"""The edge aggregation on Apache Spark: flow-log Parquet in, the same edges frame out.

`aggregate_spark` stands in for `sources.bind_flows` + `edges.aggregate` when one machine is not
enough (`--engine spark`). It runs the queries in `sql/` translated to Spark SQL by
spark_sql.py, so both engines compute one definition of an edge; everything after the
aggregation (screening, exclusion, rules, rendering) stays in-process on the small edges frame.

Input: a local path or a Hadoop URI (`s3a://`, `hdfs://`, `file://`) to one Parquet file, a
directory, or a hive `date=YYYY-MM-DD[/hour=HH]` tree. Spark lists the files (one JVM call), the
driver keeps those whose partition span meets the window with the same rule as sources.py and
Spark reads only those. The encoding of each column is chosen from the Spark schema with
`encodings.plan`, once for the whole input: unlike the DuckDB engine, Spark reads every file
with one schema, so one run takes one encoding (docs/spark.md, "Limits").
Spark's `flows` view is per row (`rows` = 1, `encodings.projection`), not pre-aggregated like
DuckDB's: the edge query gives the same edges over both, and Spark's own shuffle does the
grouping.

`flowfence run --engine spark` is incremental: it opens the session (`session`), lists the
input through it (`list_files`: spark_files.py lists a Hadoop URL through the session's own
FileSystem), lets `incremental.plan` prune and pick the files, and reads exactly those
(`read_files`).

PySpark, py4j and sqlglot come with the `spark` extra and are imported where they are used, so
this module imports without them; spark_session.py starts Spark (naming the extra when part of
it is missing, finding Java) and turns Spark's failures into flowfence errors.

Timestamps: the `flows` view holds TIMESTAMP_NTZ in UTC, like DuckDB's naive TIMESTAMP. The
conversions that depend on a session time zone (Unix seconds -> TIMESTAMP -> TIMESTAMP_NTZ) run
in a child session whose time zone is UTC, which also keeps the `flows` view out of the caller's
session.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import polars as pl

from flowfence.core import times
from flowfence.core.errors import FlowInputError
from flowfence.flows import edges, encodings, sources, spark_files, spark_session, spark_sql
from flowfence.flows.spark_files import literal, partition_span, select_files

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.readwriter import DataFrameReader

_LISTED = 3


@dataclass(frozen=True)
class Scan:
    """What one Spark scan produced: the input as `sources.bind_flows` describes it, and edges.

    `source.files` are the files read after time pruning; unlike sources.py, files that hold no
    rows are counted too (Spark does not open footers on the driver to find out).
    """

    source: sources.FlowSource
    edges: pl.DataFrame


def aggregate_spark(
    flows: str | Path,
    *,
    since: datetime | None,
    until: datetime | None,
    master: str | None = None,
    session: SparkSession | None = None,
) -> pl.DataFrame:
    """The edges of the flow logs at `flows` with rows in [since, until), computed on Spark.

    Returns what `edges.aggregate` returns after `sources.bind_flows` on the same input: the
    same EDGE_SCHEMA frame, sorted by `edges.conform`. See `scan` for the arguments.
    """
    return scan(flows, since=since, until=until, master=master, session=session).edges


def scan(
    flows: str | Path,
    *,
    since: datetime | None,
    until: datetime | None,
    master: str | None = None,
    session: SparkSession | None = None,
) -> Scan:
    """`sources.bind_flows` + `edges.aggregate` on Spark in one call, for a notebook (the run
    lists and reads through `list_files` and `read_files` instead, to read incrementally).

    `since`/`until` are timezone-aware (None: open end). `session` is used as given (a test, a
    notebook); otherwise the active session, or a new one on `master` (None: what spark-submit
    or spark-defaults.conf configured, else local mode), stopped when done if this call started
    it. Raises FlowInputError for input that breaks the contract, RuntimeFailure when Spark
    fails for another reason.
    """
    lo, hi = times.window_bound(since, "since"), times.window_bound(until, "until")
    root = spark_files.root(flows)
    with spark_session.start(session, master) as spark, spark_session.errors(str(flows)):
        return _scan(_utc_session(spark), root, lo, hi, shown=str(flows))


@contextmanager
def session(master: str | None = None) -> Iterator[SparkSession]:
    """One Spark session for a whole run (the active one, or a new one stopped at the end).

    ConfigError naming the `spark` extra when PySpark or sqlglot is not installed.
    """
    with spark_session.start(None, master) as spark:
        yield spark


def list_files(flows: str | Path, spark: SparkSession) -> tuple[sources.FileInfo, ...]:
    """The listing `incremental.plan` takes, for `--engine spark`: a Hadoop filesystem URL
    (`s3a://`, `hdfs://`, `file://`, ...) through `spark`'s own FileSystem, local paths and
    `s3://` through `sources.list_files` (spark_files.py says why)."""
    if not sources.is_hadoop_url(flows):
        return sources.list_files(flows)[0]
    with spark_session.errors(str(flows)):
        return spark_files.list_files(spark, str(flows))


def read_files(
    files: Sequence[str],
    *,
    since: datetime,
    until: datetime,
    end_before: datetime | None,
    spark: SparkSession,
) -> tuple[sources.FlowSource, pl.DataFrame, pl.DataFrame]:
    """An incremental read on Spark: `sql/state_edges.sql` and `sql/state_activity.sql` over
    exactly `files` (what `incremental.read` does with DuckDB), for `--engine spark`.

    Returns the source, the edges with `day_list` and the hourly activity, unconformed.
    """
    from pyspark.errors import AnalysisException

    args = {
        "since": _instant(times.window_bound(since, "since")),
        "until": _instant(times.window_bound(until, "until")),
        "end_before": _instant(times.window_bound(end_before, "end_before")),
    }
    shown = files[0] if len(files) == 1 else f"{len(files)} files"
    with spark_session.errors(shown):
        child = _utc_session(spark)
        try:
            raw = _reader(child).parquet(*[literal(f) for f in files])
        except AnalysisException as exc:
            raise FlowInputError(f"flow logs: {shown}: {spark_session.first_line(exc)}") from exc
        view = raw.selectExpr(*spark_sql.projection(plan(raw, files)))
        view.createOrReplaceTempView("flows")
        view.createOrReplaceTempView("flows_hourly")  # per row: every grain is exact
        frames = []
        for name in ("state_edges", "state_activity"):
            if spark_sql.params(name) != set(args):
                raise AssertionError(f"sql/{name}.sql parameters drifted")
            frame = pl.from_arrow(child.sql(spark_sql.query(name), args=args).toArrow())
            if not isinstance(frame, pl.DataFrame):
                raise AssertionError("a Spark result is a table")
            frames.append(frame)
        contract = {*encodings.REQUIRED, *encodings.OPTIONAL}
        columns = frozenset(c for c in raw.columns if c in contract)
        hive = any(partition_span(f).start is not None for f in files)
        return sources.FlowSource(tuple(sorted(files)), hive, columns), frames[0], frames[1]


def _utc_session(spark: SparkSession) -> SparkSession:
    child = spark.newSession()
    child.conf.set("spark.sql.session.timeZone", "UTC")
    return child


def _scan(
    spark: SparkSession, root: str, lo: datetime | None, hi: datetime | None, *, shown: str
) -> Scan:
    from pyspark.errors import AnalysisException

    try:
        # inputFiles() gives URIs (%-escaped); Hadoop reads path strings literally.
        listed = [unquote(f) for f in _reader(spark).parquet(root).inputFiles()]
        if not listed:
            raise FlowInputError(f"flow logs: {shown}: no Parquet files (*.parquet) found")
        kept = select_files(listed, lo, hi)
        hive = any(partition_span(f).start is not None for f in listed)
        if not kept:
            return Scan(sources.FlowSource((), hive, frozenset()), edges.empty())
        # Reading the root again rather than naming thousands of files when nothing was pruned.
        paths = [root] if len(kept) == len(listed) else [literal(f) for f in kept]
        raw = _reader(spark).parquet(*paths)
    except AnalysisException as exc:  # no such path, no schema to infer
        raise FlowInputError(f"flow logs: {shown}: {spark_session.first_line(exc)}") from exc
    steps = plan(raw, kept)
    raw.selectExpr(*spark_sql.projection(steps)).createOrReplaceTempView("flows")
    args = {"since": _instant(lo), "until": _instant(hi), "end_before": None}
    declared = spark_sql.edges_params()
    if set(args) != declared:
        raise AssertionError(f"the edge query's parameters drifted: {sorted(declared)}")
    frame = pl.from_arrow(spark.sql(spark_sql.edges_query(), args=args).toArrow())
    if not isinstance(frame, pl.DataFrame):
        raise AssertionError("a Spark result is a table")
    contract = {*encodings.REQUIRED, *encodings.OPTIONAL}
    columns = frozenset(c for c in raw.columns if c in contract)
    return Scan(sources.FlowSource(tuple(kept), hive, columns), edges.conform(frame))


def _reader(spark: SparkSession) -> DataFrameReader:
    # recursiveFileLookup: no partition columns are inferred (the window does the pruning);
    # Spark skips names starting with `_` or `.` (_SUCCESS, _temporary/, .crc) like sources.py.
    return (
        spark.read.option("recursiveFileLookup", "true")
        .option("pathGlobFilter", "*.parquet")
        .option("mergeSchema", "false")
    )


def plan(raw: DataFrame, files: Sequence[str]) -> encodings.Plan:
    """The normalisation plan for raw flow logs as Spark reads them (`files` name them in errors).

    `encodings.plan` over the Spark schema spelled as DuckDB types, so the same Parquet file gets
    the same fragments on both engines.
    """
    contract = {*encodings.REQUIRED, *encodings.OPTIONAL}
    spark_types = {f.name: f.dataType for f in raw.schema.fields if f.name in contract}
    missing = [c for c in encodings.REQUIRED if c not in spark_types]
    if missing:
        label = "column" if len(missing) == 1 else "columns"
        named = ", ".join(files[:_LISTED]) + (
            f" and {len(files) - _LISTED} more file(s)" if len(files) > _LISTED else ""
        )
        raise FlowInputError(f"flow logs: missing required {label} {', '.join(missing)} in {named}")
    try:
        return encodings.plan({c: spark_sql.duckdb_type(t) for c, t in spark_types.items()})
    except encodings.WrongType as exc:
        kind = encodings.REQUIRED.get(exc.column) or encodings.OPTIONAL[exc.column]
        found = spark_types[exc.column].simpleString()
        raise FlowInputError(
            f"flow logs: {files[0]}: column {exc.column!r} has type {found}, "
            f"expected {encodings.EXPECTED[kind]}"
        ) from None


def _instant(moment: datetime | None) -> datetime | None:
    # PySpark turns a naive datetime into an instant in the Python process's local zone; an
    # aware one is unambiguous, and CAST(... AS TIMESTAMP_NTZ) in the UTC session gives UTC.
    return None if moment is None else moment.replace(tzinfo=UTC)
