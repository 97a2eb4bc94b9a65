"""The edge aggregation stage: `flows` view in, one Polars row per distinct edge out.

Everything after this stage (exclusion, evaluation, rules, replay) works on edges, never on raw
rows, so the cost of the run is one vectorised GROUP BY in DuckDB plus work proportional to the
number of distinct edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import duckdb
import polars as pl

from flowfence.core import sql, times

_STR = pl.String()
_LIST = pl.List(pl.String())
_TS = pl.Datetime("us")

# Key columns identify an edge; measure columns are aggregated over its raw rows.
KEY_SCHEMA: dict[str, pl.DataType] = {
    "reporter": _STR,
    "action": _STR,
    "source_type": _STR,
    "source_namespace": _STR,
    "source_name_aggr": _STR,
    "source_ip": _STR,
    "source_labels": _LIST,
    "dest_type": _STR,
    "dest_namespace": _STR,
    "dest_name_aggr": _STR,
    "dest_ip": _STR,
    "dest_labels": _LIST,
    "dest_port": pl.Int32(),
    "proto": _STR,
    "dest_service_namespace": _STR,
    "dest_service_name": _STR,
    "dest_service_port_num": pl.Int32(),
    "dest_domains": _LIST,
    "enforced_policies": _LIST,
    "pending_policies": _LIST,
}
MEASURE_SCHEMA: dict[str, pl.DataType] = {
    "first_seen": _TS,
    "last_seen": _TS,
    "flows": pl.Int64(),
    "bytes": pl.Int64(),
    "packets": pl.Int64(),
    "days": pl.Int64(),
    "rows": pl.Int64(),
}
EDGE_SCHEMA: dict[str, pl.DataType] = {**KEY_SCHEMA, **MEASURE_SCHEMA}
KEY_COLUMNS: tuple[str, ...] = tuple(KEY_SCHEMA)
EDGE_QUERY = "state_edges"  # sql/state_edges.sql
# Rows per Arrow record batch fetched from DuckDB: small enough that one batch in flight (its
# Arrow buffers, before Polars takes the rows over) costs a few MB, not a table.
FETCH_ROWS = 65_536


def _naive_utc(value: datetime | None) -> datetime | None:
    # The `flows` view holds naive UTC timestamps; compare like with like.
    return value if value is None or value.tzinfo is None else times.naive_utc(value)


def aggregate(
    con: duckdb.DuckDBPyConnection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    ordered: bool = True,
) -> pl.DataFrame:
    """Aggregate the bound `flows` view into edges, sorted by key for deterministic output.

    The window belongs to the binding (`sources.bind_flows(..., since=, until=)`), which
    filters raw rows before it groups them; `since`/`until` here repeat it. A narrower window
    than the bound one would filter whole (key, hour) groups, not rows. ordered=False leaves
    the edges in DuckDB's order, which varies from run to run: for a caller whose output
    does not depend on it (replay sorts the few edges it lists), saving a sort of every edge.
    """
    # One edge query for every caller: the incremental runs' (which also lists the days each
    # edge was seen, for merging across reads); here without the extra row filter.
    window = {"since": _naive_utc(since), "until": _naive_utc(until), "end_before": None}
    frame = fetch(con, EDGE_QUERY, EDGE_SCHEMA, **window)
    return conform(frame) if ordered else cast(frame)


def fetch(
    con: duckdb.DuckDBPyConnection,
    name: str,
    schema: Mapping[str, pl.DataType],
    **params: Any,
) -> pl.DataFrame:
    """Query `name`'s rows as one Polars frame of `schema`'s columns (cast), unsorted.

    The result streams in Arrow record batches, each moved into Polars (which copies strings
    into its own layout) and released before the next: a whole Arrow table beside its Polars
    copy would hold the result twice outside DuckDB's memory limit."""
    query = sql.load(name)
    query.check(params)
    reader = con.sql(query.text, params=params or None).to_arrow_reader(FETCH_ROWS)
    cast = [pl.col(column).cast(dtype) for column, dtype in schema.items()]
    parts = [pl.DataFrame(pl.from_arrow(batch)).select(cast) for batch in reader]
    if not parts:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(parts, rechunk=False)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to EDGE_SCHEMA (DuckDB picks i32/i64 by input) and sort by the edge key."""
    return sort_by_key(cast(frame))


def cast(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame`'s EDGE_SCHEMA columns, cast to it, in their order."""
    if frame.height == 0:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    return frame.select([pl.col(name).cast(dtype) for name, dtype in EDGE_SCHEMA.items()])


def key_codes(frame: pl.DataFrame) -> pl.DataFrame:
    """The edge key of each row of `frame` as a few UInt64 columns (`_key0`, `_key1`, ...) that
    sort and group exactly as KEY_COLUMNS do with nulls last: each key column becomes its dense
    rank among the column's values (null: one past the largest), and the ranks are packed in
    column order into 64-bit words, each rank in just the bits its column needs.

    A sort or group-by over the 20 key columns themselves (strings, string lists) row-encodes
    every key, several times the edges' size; over the codes it costs ~24 bytes a row. The
    columns are ranked one at a time, so that only one column's ranking is in flight."""
    words: list[pl.Series] = []
    word: pl.Series | None = None
    used = 0
    for column in KEY_COLUMNS:  # 20 columns, not rows
        rank = dense_rank(frame.get_column(column))
        distinct = int(rank.max() or 0)  # type: ignore[arg-type]
        code = rank.fill_null(distinct + 1).cast(pl.UInt64)
        bits = (distinct + 1).bit_length()
        if word is not None and used + bits <= 64:
            word = word * (1 << bits) + code
            used += bits
        else:
            if word is not None:
                words.append(word)
            word, used = code, bits
    if word is not None:
        words.append(word)
    return pl.DataFrame([w.alias(f"_key{i}") for i, w in enumerate(words)])


def dense_rank(column: pl.Series) -> pl.Series:
    """`column.rank("dense")` (null stays null), ranked over the column's distinct values and
    joined back. A key column holds few distinct values (hundreds of namespaces, label sets,
    policy traces) among 500k+ edges, and Polars' own rank sorts every row: of a list column
    several times slower than hashing it."""
    values = column.to_frame("value")
    ranks = values.unique().with_columns(pl.col("value").rank("dense").alias("rank"))
    joined = values.join(ranks, on="value", how="left", nulls_equal=True, maintain_order="left")
    return joined.get_column("rank")


def sort_by_key(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` sorted by KEY_COLUMNS (nulls last, ties in their order), as
    `frame.sort(KEY_COLUMNS, nulls_last=True, maintain_order=True)` but ordered through
    `key_codes`; a frame already in order is returned as is, not copied."""
    if frame.height < 2:
        return frame
    codes = key_codes(frame)
    order = codes.with_row_index("_row").sort(codes.columns, maintain_order=True)["_row"]
    del codes
    return frame if order.is_sorted() else frame[order]


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=EDGE_SCHEMA)
