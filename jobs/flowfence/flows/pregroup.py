"""The pre-aggregated relation behind the `flows` views, with nested keys grouped by hash.

sources.py binds the views; this module builds the relation they read: per group of files
that share a plan, the window filter on raw rows, the GROUP BY of encodings.grouping (raw key
and UTC day or hour), then the normalising select once per group.

Four raw key columns hold lists or structs (both label sets, the domains, the policy hits).
As GROUP BY keys they make every hash-table row several hundred bytes wide and every probe a
comparison of lists, and once the table outgrows DuckDB's memory limit the whole
pre-aggregation spills. Measured on 20M rows with 505k distinct keys (memory_limit 1GB, two
threads): the raw keys with four measures took 26.8 s and wrote 2.9 GB to the temp
directory; with the four columns replaced by their hashes, 8.0 s and nothing written. So
those columns are grouped on their 64-bit hash (encodings.grouping's `hashed`), and each
group gets its value back from a lookup: the distinct (hash, value) pairs of the same files,
a few thousand rows. Only when the keys are many (`_many_keys`, a sample of the rows): with
few keys, grouping on the values is cheaper than the lookups' extra read.

A hash that two values share would merge two different edges into one. Each lookup is
therefore checked before it is used, and a column with any shared hash is grouped on its
value, as before: slower, never wrong. Flow logs are untrusted, and DuckDB's hash is not
keyed, so a crafted collision is possible; it costs that column its speed-up, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from flowfence.flows import encodings


@dataclass(frozen=True)
class Window:
    """The rows a view holds: end_time >= lo, start_time < hi, end_time < end_before (naive
    UTC, None for an open end). Applied to raw rows, before they are grouped."""

    lo: datetime | None = None
    hi: datetime | None = None
    end_before: datetime | None = None


_GLOB = re.compile(r"([\[*?])")

Rel = duckdb.DuckDBPyRelation
# Grouping by hash pays for its lookups (an extra read of the nested columns) only when the
# keys are many: a by-value hash table of few keys is small whatever the row count. Measured
# (two threads, memory_limit 1GB): on the large topology the first 100k rows of an hourly file
# hold 75k distinct keys, and hashing took replay's bind and edge query from 31.2 s to 16.5 s
# on 20M rows; on the small synthetic topology they hold 1.6k, and hashing took the same step
# from 2.8 s to 4.4 s on 10M rows. A wrong guess towards hashing costs a read; the other way,
# a table that outgrows the memory limit.
SAMPLE_ROWS = 100_000
HASH_FROM = 10_000
_TIMES = ("start_time", "end_time")

Groups = dict[tuple[encodings.Plan, tuple[str, ...]], list[str]]


def pattern(file: str) -> str:
    """DuckDB treats every listed path as a glob; bracket the metacharacters to match literally."""
    return _GLOB.sub(r"[\1]", file)


def relation(
    con: duckdb.DuckDBPyConnection,
    groups: Groups,
    window: Window,
    grain: str,
    columns: frozenset[str] | None = None,
    *,
    prefix: str = "flowfence_flows",
) -> duckdb.DuckDBPyRelation:
    """The view over all file groups: per group, the window filter on raw rows, the
    pre-aggregation of encodings.grouping (raw keys, nested ones by hash, and `grain`), the
    nested values joined back, then the normalising fragments once per group. `prefix` names
    the lookup tables (temporary tables of this connection, `<prefix>_<group>_<column>`)."""
    rel: duckdb.DuckDBPyRelation | None = None
    for index, ((steps, _), files) in enumerate(groups.items()):
        patterns = [pattern(f) for f in files]

        def read(patterns: list[str] = patterns, steps: encodings.Plan = steps) -> Rel:
            return _in_window(con.read_parquet(patterns, hive_partitioning=False), steps, window)

        nested = encodings.nested_keys(steps, grain, columns)
        many = bool(nested) and _many_keys(
            read, encodings.grouping(steps, grain, columns, frozenset(nested))
        )
        tables = lookups(con, read, nested, f"{prefix}_{index}") if many else {}
        plan = encodings.grouping(steps, grain, columns, frozenset(tables))
        keys = ", ".join(f'"{k}"' for k in plan.keys)
        part = read().select(*plan.rows).aggregate(list(plan.measures), keys)
        for column, table in sorted(tables.items()):
            part = part.join(con.table(table), encodings.hash_key(column), how="left")
            # A group whose hash has no value in the lookup (the hash was not a function of
            # the value, or a file changed between the reads) stops the bind: read as null,
            # its labels or policies would silently become empty.
            found = encodings.fragment("hash_found", _found(column))
            part = part.filter(duckdb.SQLExpression(found))
        part = part.select(*plan.view)
        rel = part if rel is None else rel.union(part)
    schema = encodings.view_schema(encodings.bound_columns(grain, columns))
    if rel is None:
        rel = con.sql(encodings.sections()["empty"]).select(
            *(duckdb.ColumnExpression(name) for name, _ in schema)
        )
    got = tuple(zip(rel.columns, map(str, rel.types), strict=True))
    if got != schema:
        raise AssertionError(f"flows_normalise.sql drifted from FLOWS_SCHEMA: {got}")
    return rel


def _many_keys(read: Callable[[], Rel], hashed: encodings.Grouping) -> bool:
    """Whether the first SAMPLE_ROWS rows `read` gives hold HASH_FROM distinct keys or more
    (nested columns by hash, so the sample is cheap to group)."""
    keys = [duckdb.ColumnExpression(k) for k in hashed.keys if k != "grain"]
    sample = read().limit(SAMPLE_ROWS).select(*hashed.rows).select(*keys).distinct()
    found = sample.aggregate("count(*)").fetchall()
    return int(found[0][0]) >= HASH_FROM


def _in_window(rel: Rel, steps: encodings.Plan, window: Window) -> Rel:
    """The raw rows of `rel` in `window`, compared on the plan's normalised times."""
    times = {out: encodings.fragment(s, c) for out, s, c in steps if out in _TIMES}
    start = duckdb.SQLExpression(times["start_time"])
    end = duckdb.SQLExpression(times["end_time"])
    if window.lo is not None:
        rel = rel.filter(end >= duckdb.ConstantExpression(window.lo))
    if window.hi is not None:
        rel = rel.filter(start < duckdb.ConstantExpression(window.hi))
    if window.end_before is not None:
        rel = rel.filter(end < duckdb.ConstantExpression(window.end_before))
    return rel


def _found(column: str) -> str:
    # The lookup's marker column: TRUE on each of its rows, NULL after a join that missed.
    return f"__found_{column}"


def lookups(
    con: duckdb.DuckDBPyConnection,
    read: Callable[[], Rel],
    columns: Sequence[str],
    prefix: str,
) -> dict[str, str]:
    """For each raw column of `columns`, the distinct (hash, value) pairs of the rows `read`
    gives (the same rows the grouping reads), as temporary table `<prefix>_<column>` with a
    marker column; returns {column: table} for the columns whose every hash stands for one
    value (the others are left to group on their value)."""
    usable: dict[str, str] = {}
    for column in columns:
        table = f"{prefix}_{column}"
        name = encodings.hash_key(column)
        pairs = read().select(
            duckdb.SQLExpression(encodings.fragment("row_hash", column)).alias(name),
            duckdb.ColumnExpression(column),
            duckdb.ConstantExpression(True).alias(_found(column)),
        )
        staged = f"{table}_staged"
        con.register(staged, pairs.distinct())
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS FROM {staged}")
        finally:
            con.unregister(staged)
        shared = con.table(table).aggregate(f'count(*) - count(DISTINCT "{name}")').fetchall()
        if shared[0][0] == 0:
            usable[column] = table
        else:
            con.execute(f"DROP TABLE {table}")
    return usable
