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
with one schema, so one run takes one encoding (README.md, the Spark section, "Limits").
Spark's `flows` view is per row (`rows` = 1, `encodings.projection`), not pre-aggregated like
DuckDB's: the edge query gives the same edges over both, and Spark's own shuffle does the
grouping.

Timestamps: the `flows` view holds TIMESTAMP_NTZ in UTC, like DuckDB's naive TIMESTAMP. The
conversions that depend on a session time zone (Unix seconds -> TIMESTAMP -> TIMESTAMP_NTZ) run
in a child session whose time zone is UTC, which also keeps the `flows` view out of the caller's
session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import polars as pl
from py4j.protocol import Py4JError  # type: ignore[import-untyped]  # py4j ships no hints
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.readwriter import DataFrameReader

from flowfence.core import partitions
from flowfence.core.errors import FlowInputError, RuntimeFailure
from flowfence.flows import edges, encodings, sources, spark_sql

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# `s3a://bucket`, `file://`, `file:`: not urlsplit, which would cut a path at `#` or `?`.
_SCHEME_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?")
_HADOOP_GLOB = re.compile(r"([\\\[\]{}*?])")
_LISTED = 3


@dataclass(frozen=True)
class Span:
    """The UTC hours (or day) a hive partition holds, by start_time; None outside hive."""

    start: datetime | None = None
    end: datetime | None = None

    def meets(self, since: datetime | None, until: datetime | None) -> bool:
        if self.start is None or self.end is None:
            return True
        return (until is None or self.start < until) and (since is None or self.end > since)


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
    """`sources.bind_flows` + `edges.aggregate` on Spark, for `pipeline.compute` to call.

    `since`/`until` are timezone-aware (None: open end). `session` is used as given (a test, a
    notebook); otherwise the active session, or a new one on `master` (None: what spark-submit
    or spark-defaults.conf configured, else local mode), stopped when done if this call started
    it. Raises FlowInputError for input that breaks the contract, RuntimeFailure when Spark
    fails for another reason.
    """
    lo, hi = _utc(since, "since"), _utc(until, "until")
    root = _root(flows)
    with _spark(session, master) as spark, _errors(str(flows)):
        return _scan(_utc_session(spark), root, lo, hi, shown=str(flows))


@contextmanager
def session(master: str | None = None) -> Iterator[SparkSession]:
    """One Spark session for a whole run (the active one, or a new one stopped at the end)."""
    with _spark(None, master) as spark:
        yield spark


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
    args = {
        "since": _instant(_utc(since, "since")),
        "until": _instant(_utc(until, "until")),
        "end_before": _instant(_utc(end_before, "end_before")),
    }
    shown = files[0] if len(files) == 1 else f"{len(files)} files"
    with _errors(shown):
        child = _utc_session(spark)
        try:
            raw = _reader(child).parquet(*[_literal(f) for f in files])
        except AnalysisException as exc:
            raise FlowInputError(f"flow logs: {shown}: {_first_line(exc)}") from exc
        raw.selectExpr(*spark_sql.projection(plan(raw, files))).createOrReplaceTempView("flows")
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


@contextmanager
def _errors(shown: str) -> Iterator[None]:
    """Spark failures as flowfence errors: unreadable input is bad input, the rest runtime."""
    try:
        yield
    except PySparkException as exc:
        # A corrupt data page only shows when an executor reads it.
        if (exc.getCondition() or "").startswith("FAILED_READ_FILE"):
            reason = _first_line(exc)
            raise FlowInputError(f"flow logs: {shown}: cannot read: {reason}") from exc
        raise RuntimeFailure(f"spark: {_first_line(exc)}") from exc
    except Py4JError as exc:  # a JVM exception PySpark has no class for (SparkException, I/O)
        chain = _java_chain(exc) or [str(exc)]
        unreadable = next((m for m in chain if "[FAILED_READ_FILE" in m), None)
        if unreadable is not None:
            reason = _first_line(unreadable[unreadable.index("[") :])
            raise FlowInputError(f"flow logs: {shown}: cannot read: {reason}") from exc
        raise RuntimeFailure(f"spark: {_first_line(chain[-1])}") from exc


def _scan(
    spark: SparkSession, root: str, lo: datetime | None, hi: datetime | None, *, shown: str
) -> Scan:
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
        paths = [root] if len(kept) == len(listed) else [_literal(f) for f in kept]
        raw = _reader(spark).parquet(*paths)
    except AnalysisException as exc:  # no such path, no schema to infer
        raise FlowInputError(f"flow logs: {shown}: {_first_line(exc)}") from exc
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


def select_files(files: Sequence[str], since: datetime | None, until: datetime | None) -> list[str]:
    """The files whose hive partition span meets [since, until) (naive UTC), sorted.

    The rule of sources.py: every `date=`/`hour=` directory on the path counts, files outside
    hive partitions are always kept, a malformed partition name is an input error.
    """
    return sorted(f for f in files if partition_span(f).meets(since, until))


def partition_span(file: str) -> Span:
    """The span of a file under date=YYYY-MM-DD[/hour=HH]; other key=value dirs are ignored."""
    parent = PurePosixPath(_SCHEME_AUTHORITY.sub("", file)).parent.parts
    try:
        span = partitions.span("/".join([*parent, "file"]))
    except ValueError as exc:
        raise FlowInputError(f"flow logs: {file}: {exc}") from None
    return Span() if span is None else Span(*span)


@contextmanager
def _spark(session: SparkSession | None, master: str | None) -> Iterator[SparkSession]:
    if session is not None:
        yield session
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    builder = SparkSession.builder.appName("flowfence")
    if master is not None:
        builder = builder.master(master)
    started = builder.getOrCreate()
    try:
        yield started
    finally:
        started.stop()


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


def _root(flows: str | Path) -> str:
    """A Hadoop path: URIs as given, local paths made absolute (and checked, as sources.py does)."""
    text = str(flows)
    if _SCHEME.match(text):
        return _literal(text)
    local = Path(text)
    if not local.exists():
        raise FlowInputError(f"flow logs: {local}: no such file or directory")
    # Not Path.as_uri(): Hadoop would read its %-escapes literally.
    return _literal("file://" + local.absolute().as_posix())


def _literal(path: str) -> str:
    """Hadoop expands globs in every path it is given; escape them to match literally."""
    return _HADOOP_GLOB.sub(r"\\\1", path)


def _utc(moment: datetime | None, name: str) -> datetime | None:
    """Naive UTC, the way partition spans and the `flows` view are compared."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _instant(moment: datetime | None) -> datetime | None:
    # PySpark turns a naive datetime into an instant in the Python process's local zone; an
    # aware one is unambiguous, and CAST(... AS TIMESTAMP_NTZ) in the UTC session gives UTC.
    return None if moment is None else moment.replace(tzinfo=UTC)


def _java_chain(exc: Py4JError) -> list[str]:
    """The messages of a JVM exception and its causes, outermost first (the root cause last)."""
    found: list[str] = []
    throwable = getattr(exc, "java_exception", None)
    while throwable is not None and len(found) < 8:
        found.append(str(throwable.toString()))
        throwable = throwable.getCause()
    return found


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
