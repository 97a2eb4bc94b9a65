from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from flowfence.flows import edges, encodings, sources

_ROW = """
SELECT TIMESTAMP '2026-11-01 00:00:00' + to_minutes(i * 5) AS start_time,
       TIMESTAMP '2026-11-01 00:05:00' + to_minutes(i * 5) AS end_time,
       'wep' AS source_type, 'shop' AS source_namespace, 'web-*' AS source_name_aggr,
       '10.1.0.' || (i % 3)::VARCHAR AS source_ip, ['app=web'] AS source_labels,
       dt AS dest_type, 'db' AS dest_namespace, 'pg-*' AS dest_name_aggr,
       '10.2.0.' || (i % 2)::VARCHAR AS dest_ip, []::VARCHAR[] AS dest_labels,
       5432 AS dest_port, 'tcp' AS proto, 'allow' AS action, 'src' AS reporter,
       NULL::VARCHAR AS dest_service_namespace, NULL::VARCHAR AS dest_service_name,
       NULL::INTEGER AS dest_service_port_num, []::VARCHAR[] AS dest_domains,
       ['0|__PROFILE__|pro:kns.shop|allow|0'] AS enforced_policies,
       []::VARCHAR[] AS pending_policies,
       2::BIGINT AS num_flows, 100::BIGINT AS bytes_in, 50::BIGINT AS bytes_out,
       3::BIGINT AS packets_in, 1::BIGINT AS packets_out,
       1::BIGINT AS rows  -- a per-row view, as the Spark engine binds it
FROM range(n) t(i)
"""


def _flows(con: duckdb.DuckDBPyConnection, dest_type: str, n: int) -> None:
    con.execute(
        "CREATE OR REPLACE TABLE flows AS "
        + _ROW.replace("dt AS", "$dt AS").replace("range(n)", "range($n)"),
        {"dt": dest_type, "n": n},
    )


def test_pod_edges_collapse_ips_and_sum_measures() -> None:
    con = duckdb.connect()
    _flows(con, "wep", 576)  # two days of 5-minute rows
    out = edges.aggregate(con)
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["dest_ip"] is None and row["source_ip"] is None
    assert (row["flows"], row["bytes"], row["packets"], row["rows"]) == (1152, 86400, 2304, 576)
    assert row["days"] == 2
    assert row["first_seen"] == datetime(2026, 11, 1)
    assert row["last_seen"] == datetime(2026, 11, 3)
    assert out.schema == pl.Schema(edges.EDGE_SCHEMA)


def test_net_edges_keep_destination_ips_and_window_filters() -> None:
    con = duckdb.connect()
    _flows(con, "net", 288)
    out = edges.aggregate(con)
    assert sorted(out["dest_ip"].to_list()) == ["10.2.0.0", "10.2.0.1"]
    late = edges.aggregate(con, since=datetime(2026, 11, 1, 23, 0, tzinfo=UTC))
    assert int(late["rows"].sum()) == 13  # rows ending at or after 23:00
    none = edges.aggregate(con, until=datetime(2026, 10, 1, tzinfo=UTC))
    assert none.height == 0 and none.schema == pl.Schema(edges.EDGE_SCHEMA)


# --- the pre-aggregated `flows` view gives the edges the per-row view gives -------------------

_T0 = datetime(2026, 11, 1, 22, 0)
_LABELS = [["b=2", "a=1"], ["a=1", "b=2"], ["a=1", "-"], None, []]
_HITS = [["0|t|shop/t.p|allow|0"], ["-", "0|t|shop/t.p|allow|0"], None]
_KEY = st.fixed_dictionaries(
    {
        "source_type": st.sampled_from(["wep", "WEP", "net", "-"]),
        "source_namespace": st.sampled_from(["shop", "-", "", None]),
        "source_ip": st.sampled_from(["10.0.0.1", "10.0.0.2", "-", None]),
        "dest_type": st.sampled_from(["wep", "net", "Net"]),
        "dest_ip": st.sampled_from(["198.51.100.1", "198.51.100.2", "-"]),
        "dest_port": st.sampled_from([443, 5432, None]),
        "proto": st.sampled_from(["tcp", "TCP", "6", "udp"]),
        "action": st.sampled_from(["allow", "deny"]),
        "reporter": st.sampled_from(["src", "dst"]),
        "labels": st.sampled_from(_LABELS),
        "domains": st.sampled_from(["a.com,B.com", "b.com, a.com", "-", None]),
        "hits": st.sampled_from(_HITS),
        "host": st.sampled_from(["node-1", "node-2"]),
    }
)
# Rows share a few keys, so that many fall into the same (key, hour) group.
_MEASURES = st.fixed_dictionaries(
    {
        "key": st.integers(0, 3),
        "start": st.integers(0, 4 * 3600),  # seconds after 22:00, across midnight
        "length": st.integers(0, 900),
        "num_flows": st.sampled_from([None, 1, 3]),
        "bytes_in": st.sampled_from([None, 0, 100]),
    }
)


def _write_raw(path: Path, rows: list[dict[str, Any]]) -> None:
    starts = [int(_T0.replace(tzinfo=UTC).timestamp()) + r["start"] for r in rows]
    table = {
        "start_time": pa.array(starts, pa.int64()),
        "end_time": pa.array([s + r["length"] for s, r in zip(starts, rows, strict=True)]),
        "source_name_aggr": ["web-*"] * len(rows),
        "dest_namespace": ["db"] * len(rows),
        "dest_name_aggr": ["pg-*"] * len(rows),
        "source_labels": pa.array([r["labels"] for r in rows], pa.list_(pa.string())),
        "dest_domains": pa.array([r["domains"] for r in rows], pa.string()),
        "policies": pa.array([r["hits"] for r in rows], pa.list_(pa.string())),
        "dest_port": pa.array([r["dest_port"] for r in rows], pa.int32()),
        "num_flows": pa.array([r["num_flows"] for r in rows], pa.int64()),
        "bytes_in": pa.array([r["bytes_in"] for r in rows], pa.int64()),
        **{
            name: pa.array([r[name] for r in rows], pa.string())
            for name in (
                "source_type", "source_namespace", "source_ip", "dest_type", "dest_ip",
                "proto", "action", "reporter", "host",
            )
        },
    }  # fmt: skip
    pq.write_table(pa.table(table), path)


def _per_row(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The view as it was before the pre-aggregation: every raw row, `rows` = 1."""
    raw = con.read_parquet(str(path))
    contract = {*encodings.REQUIRED, *encodings.OPTIONAL}
    steps = encodings.plan(
        {c: t for c, t in zip(raw.columns, raw.types, strict=True) if c in contract}
    )
    con.register("flows", raw.select(*encodings.projection(steps)))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_KEY, min_size=4, max_size=4),
    st.lists(_MEASURES, min_size=1, max_size=40),
    st.sampled_from([None, 0, 1800, 7200]),
    st.sampled_from([None, 3600, 3 * 3600 + 1800]),
)
def test_grouped_view_gives_the_edges_of_the_per_row_view(
    keys: list[dict[str, Any]],
    measures: list[dict[str, Any]],
    since: int | None,
    until: int | None,
) -> None:
    rows = [{**keys[m["key"]], **m} for m in measures]
    lo = None if since is None else (_T0 + timedelta(seconds=since)).replace(tzinfo=UTC)
    hi = None if until is None else (_T0 + timedelta(seconds=until)).replace(tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.parquet"
        _write_raw(path, rows)
        grouped, reference = duckdb.connect(), duckdb.connect()
        sources.bind_flows(grouped, path, since=lo, until=hi)
        _per_row(reference, path)
        got = edges.aggregate(grouped, since=lo, until=hi)
        want = edges.aggregate(reference, since=lo, until=hi)
    assert_frame_equal(got, want)
    assert int(got["rows"].sum() or 0) == int(want["rows"].sum() or 0)
    # fewer view rows than raw rows whenever two raw rows share a key and an hour
    assert grouped.table("flows").count("*").fetchall()[0][0] <= len(rows)


def test_fetch_streams_record_batches_into_polars_cast_to_the_schema() -> None:
    """A result moves into Polars batch by batch (issue 12, memory): never as one Arrow table
    beside its Polars copy. The rows come back in FETCH_ROWS-row chunks (DuckDB's
    `.pl()` gives its own, larger batches), every row once, in the schema's types."""
    from flowfence.state.tables import ACTIVITY_SCHEMA

    con = duckdb.connect()
    rows = 3 * edges.FETCH_ROWS + 7
    i = pl.int_range(rows, eager=True)
    hourly = pl.DataFrame(
        {
            "reporter": "src",
            "source_type": "wep",
            "dest_type": "wep",
            "source_namespace": "ns-" + (i % 1000).cast(pl.String),
            "dest_namespace": None,
            "hour": i // 1000,
            "num_flows": 1,
        }
    ).select(
        pl.exclude("hour"),
        (pl.lit(datetime(2026, 11, 1)) + pl.duration(hours=pl.col("hour"))).alias("start_time"),
        (pl.lit(datetime(2026, 11, 1)) + pl.duration(hours=pl.col("hour"))).alias("end_time"),
    )
    con.register("flows_hourly", hourly)
    params: dict[str, Any] = {"since": None, "until": None, "end_before": None}
    frame = edges.fetch(con, "state_activity", ACTIVITY_SCHEMA, **params)
    assert frame.n_chunks() == -(-rows // edges.FETCH_ROWS)  # batches of FETCH_ROWS rows
    assert dict(frame.schema) == ACTIVITY_SCHEMA
    assert frame.height == rows
    assert frame.get_column("flows").sum() == rows
    assert frame.select(pl.struct("namespace", "hour").n_unique()).item() == rows


_WORDS = st.sampled_from(["", "a", "a=b", "b", "z"])
_TEXT = st.one_of(st.none(), _WORDS)
_LIST = st.one_of(st.none(), st.lists(st.one_of(st.none(), _WORDS), max_size=3))


def _key_frame(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """Edges whose keys vary in two string, two list and one integer column (the rest fixed)."""
    text, labels, port, domains, ip = zip(*rows, strict=True) if rows else ((),) * 5
    n = len(rows)
    fixed = {c: pl.Series(c, [None] * n, dtype=t) for c, t in edges.EDGE_SCHEMA.items()}
    varied = {
        "source_namespace": pl.Series(text, dtype=pl.String()),
        "source_labels": pl.Series(labels, dtype=pl.List(pl.String())),
        "dest_port": pl.Series(port, dtype=pl.Int32()),
        "dest_domains": pl.Series(domains, dtype=pl.List(pl.String())),
        "dest_ip": pl.Series(ip, dtype=pl.String()),
        "flows": pl.int_range(n, eager=True, dtype=pl.Int64()),  # tells ties apart
    }
    return pl.DataFrame({c: varied.get(c, s) for c, s in fixed.items()})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(_TEXT, _LIST, st.one_of(st.none(), st.integers(-3, 3)), _LIST, _TEXT),
        max_size=40,
    )
)
def test_sort_by_key_orders_as_a_sort_over_the_key_columns(rows: list[tuple[Any, ...]]) -> None:
    """Issue 12 (memory): edges are ordered through their packed key codes, never a row
    encoding of the 20 key columns; the order is the same as that sort's: nulls last (also
    null lists), empty and prefix lists before longer ones, ties in input order."""
    frame = _key_frame(rows)
    want = frame.sort(list(edges.KEY_COLUMNS), nulls_last=True, maintain_order=True)
    assert_frame_equal(edges.sort_by_key(frame), want)
    assert edges.sort_by_key(want) is want  # already in order: not copied


def test_key_codes_pack_the_key_into_few_64_bit_words() -> None:
    """Each key column takes the bits its distinct values need, so 20 columns fit in a few
    UInt64 words; equal keys get equal codes, and a column too wide for the current word
    starts the next one."""
    n = 70_000
    i = pl.int_range(n, eager=True)
    frame = _key_frame([(None, None, None, None, None)] * n).with_columns(
        ("ns-" + (i % 3).cast(pl.String)).alias("source_namespace"),
        *[  # four columns of 17 bits each: more than one word holds
            (f"{c}-" + ((i * 7) % 65_537).cast(pl.String)).alias(c)
            for c in ("source_name_aggr", "source_ip", "dest_name_aggr", "dest_ip")
        ],
    )
    codes = edges.key_codes(frame)
    assert codes.height == n
    assert set(codes.schema.values()) == {pl.UInt64()}
    assert 1 < codes.width <= 2
    keys = frame.select(edges.KEY_COLUMNS)
    assert codes.n_unique() == keys.n_unique()
    assert pl.concat([keys, codes], how="horizontal").n_unique() == keys.n_unique()


_ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.lists(st.one_of(_WORDS, _ANY_TEXT), max_size=4),
            st.lists(st.one_of(st.none(), _ANY_TEXT), max_size=3),
        ),
        max_size=30,
    )
)
def test_a_list_column_ranks_as_polars_ranks_it(values: list[list[str | None] | None]) -> None:
    """Issue 12 (steady hour): key_codes ranks a column over its distinct values, joined back
    to the rows; the ranks are Polars' own over the rows, also for prefixes, empty strings,
    control characters, empty and null lists and null elements, and for strings."""
    column = pl.Series("labels", values, dtype=pl.List(pl.String()))
    assert edges.dense_rank(column).to_list() == column.rank("dense").to_list()
    text = column.list.first()
    assert edges.dense_rank(text).to_list() == text.rank("dense").to_list()
