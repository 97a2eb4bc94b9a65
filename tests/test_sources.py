"""The flow-log input contract: encodings, pruning and bad-input messages (sources.py)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flowfence.core import sql
from flowfence.core.errors import ExitCode, FlowInputError
from flowfence.flows import edges
from flowfence.flows.encodings import EDGE_COLUMNS, FLOWS_SCHEMA, grouping, plan, view_schema
from flowfence.flows.sources import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    FlowSource,
    bind_files,
    bind_flows,
)

T0 = datetime(2024, 3, 1, 10, 0)  # naive UTC
EPOCH = int(T0.replace(tzinfo=UTC).timestamp())


def required(n: int = 1, **over: Any) -> dict[str, Any]:
    """Columns for n rows with every required column, in a plain encoding."""
    cols: dict[str, Any] = {
        "start_time": pa.array([T0] * n, pa.timestamp("us")),
        "end_time": pa.array([T0 + timedelta(minutes=5)] * n, pa.timestamp("us")),
        "source_type": ["wep"] * n,
        "source_namespace": ["shop"] * n,
        "source_name_aggr": ["web-*"] * n,
        "dest_type": ["wep"] * n,
        "dest_namespace": ["db"] * n,
        "dest_name_aggr": ["pg-*"] * n,
        # from 1: port 0 is normalised to NULL ("no port"), which would sort last
        "dest_port": pa.array(list(range(1, n + 1)), pa.int32()),
        "proto": ["tcp"] * n,
        "action": ["allow"] * n,
        "reporter": ["src"] * n,
    }
    cols.update(over)
    return cols


def write(path: Path, cols: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def bind(path: Path, **kw: Any) -> tuple[duckdb.DuckDBPyConnection, FlowSource]:
    con = duckdb.connect()
    return con, bind_flows(con, path, **kw)


def column(con: duckdb.DuckDBPyConnection, name: str, view: str = "flows") -> list[Any]:
    rel = con.table(view).order("dest_port").select(duckdb.ColumnExpression(name))
    return [row[0] for row in rel.fetchall()]


def schema(con: duckdb.DuckDBPyConnection, view: str = "flows") -> tuple[tuple[str, str], ...]:
    rel = con.table(view)
    return tuple(zip(rel.columns, map(str, rel.types), strict=True))


def raw_rows(con: duckdb.DuckDBPyConnection, view: str = "flows") -> int:
    """The raw rows behind the (pre-aggregated) view."""
    return int(con.table(view).aggregate("coalesce(sum(rows), 0)").fetchall()[0][0])


def bad(path: Path, **kw: Any) -> str:
    with pytest.raises(FlowInputError) as info:
        bind(path, **kw)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    return str(info.value)


# --- the view ---------------------------------------------------------------------------------


def test_required_only_file_gets_documented_defaults(tmp_path: Path) -> None:
    con, src = bind(write(tmp_path / "f.parquet", required(2)))
    assert schema(con) == FLOWS_SCHEMA
    assert src.columns == frozenset(REQUIRED_COLUMNS)
    assert src.hive is False
    # The flows table is built by a parallel aggregation: its rows come in no fixed order.
    first = con.table("flows").order("dest_port").fetchall()[0]
    row = dict(zip(con.table("flows").columns, first, strict=True))
    assert row["start_time"] == T0
    assert row["dest_port"] == 1
    for name in ("source_labels", "dest_labels", "dest_domains"):
        assert row[name] == []
    assert row["enforced_policies"] == [] and row["pending_policies"] == []
    assert row["num_flows"] == 1
    for name in ("num_flows_started", "bytes_in", "bytes_out", "packets_in", "packets_out"):
        assert row[name] == 0
    for name in ("source_ip", "dest_ip", "dest_service_name", "dest_service_port", "host"):
        assert row[name] is None
    assert row["dest_service_port_num"] is None


def test_flows_summary_query_runs_over_the_view(tmp_path: Path) -> None:
    con, _ = bind(write(tmp_path / "f.parquet", required(3, num_flows=pa.array([2, 3, 4]))))
    summary = sql.relation(con, "flows_summary").fetchall()[0]
    assert summary[:2] == (3, 9)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (pa.array([T0], pa.timestamp("us")), T0),
        (pa.array([T0], pa.timestamp("s")), T0),
        (pa.array([T0], pa.timestamp("ns")), T0),
        (pa.array([T0.replace(tzinfo=UTC)], pa.timestamp("us", tz="UTC")), T0),
        (
            pa.array([T0.replace(tzinfo=UTC)], pa.timestamp("ms", tz="Asia/Kolkata")),
            T0,
        ),
        (pa.array([EPOCH], pa.int64()), T0),
        (pa.array([EPOCH], pa.int32()), T0),
        (pa.array([EPOCH + 0.25], pa.float64()), T0 + timedelta(milliseconds=250)),
    ],
    ids=["ts-us", "ts-s", "ts-ns", "tstz-utc", "tstz-kolkata", "epoch-i64", "epoch-i32", "float"],
)
def test_time_encodings_become_utc_timestamps(tmp_path: Path, array: Any, expected: Any) -> None:
    f = write(tmp_path / "f.parquet", required(1, start_time=array, end_time=array))
    con = duckdb.connect()
    # The session zone must not leak into the result: normalisation is UTC by construction.
    con.execute("SET TimeZone = 'America/New_York'")
    bind_flows(con, f)
    assert column(con, "start_time") == [expected]
    assert column(con, "end_time") == [expected]
    assert schema(con) == FLOWS_SCHEMA


def test_proto_names_and_numbers(tmp_path: Path) -> None:
    names = ["TCP", "udp", "Icmp", "icmp6", "ipv6-icmp", "17", "gre", "-"]
    numbers = [6, 17, 1, 58, 132, 136, 47, None]
    write(tmp_path / "a.parquet", required(8, proto=names))
    con, _ = bind(tmp_path / "a.parquet")
    assert column(con, "proto") == ["tcp", "udp", "icmp", "icmpv6", "icmpv6", "udp", "gre", None]
    write(tmp_path / "b.parquet", required(8, proto=pa.array(numbers, pa.uint8())))
    con, _ = bind(tmp_path / "b.parquet")
    assert column(con, "proto") == ["tcp", "udp", "icmp", "icmpv6", "sctp", "udplite", "47", None]


LABELS = [["b=2", "a=1", "-", ""], None, [], ["app=x"]]
EXPECTED_LABELS = [["a=1", "b=2"], [], [], ["app=x"]]


@pytest.mark.parametrize("encoding", ["list", "struct", "map"])
def test_label_encodings(tmp_path: Path, encoding: str) -> None:
    if encoding == "list":
        arr = pa.array(LABELS, pa.list_(pa.string()))
    elif encoding == "struct":
        struct = pa.struct([("labels", pa.list_(pa.string()))])
        arr = pa.array([None if v is None else {"labels": v} for v in LABELS], struct)
    else:
        maps = [[("b", "2"), ("a", "1")], None, [], [("app", "x")]]
        arr = pa.array(maps, pa.map_(pa.string(), pa.string()))
    con, _ = bind(write(tmp_path / "f.parquet", required(4, source_labels=arr, dest_labels=arr)))
    assert column(con, "source_labels") == EXPECTED_LABELS
    assert column(con, "dest_labels") == EXPECTED_LABELS
    assert schema(con) == FLOWS_SCHEMA


HITS = ["0|tier1|shop/tier1.a|pass|0", "1|__PROFILE__|__PROFILE__.kns.shop|allow|0"]
PENDING = ["0|namespace-isolation|shop/namespace-isolation.staged:p|allow|1"]


def test_policies_as_plain_list_count_as_enforced(tmp_path: Path) -> None:
    arr = pa.array([[*HITS, "-"], None], pa.list_(pa.string()))
    con, src = bind(write(tmp_path / "f.parquet", required(2, policies=arr)))
    assert column(con, "enforced_policies") == [HITS, []]
    assert column(con, "pending_policies") == [[], []]
    assert "policies" in src.columns


@pytest.mark.parametrize(
    ("fields", "rows", "enforced", "pending"),
    [
        (
            ["enforced_policies", "pending_policies", "transit_policies"],
            [{"enforced_policies": HITS, "pending_policies": PENDING, "transit_policies": []}],
            [HITS],
            [PENDING],
        ),
        (["all_policies"], [{"all_policies": HITS}], [HITS], [[]]),
        (
            ["enforced_policies", "all_policies"],
            [{"enforced_policies": None, "all_policies": HITS}, {"enforced_policies": PENDING}],
            [HITS, PENDING],
            [[], []],
        ),
        (["pending_policies"], [{"pending_policies": ["-"]}], [[]], [[]]),
        (["transit_policies"], [{"transit_policies": HITS}], [[]], [[]]),
    ],
    ids=["full", "all-only", "all-fallback-per-row", "pending-none-marker", "transit-only"],
)
def test_policies_as_struct(
    tmp_path: Path, fields: list[str], rows: list[Any], enforced: Any, pending: Any
) -> None:
    struct = pa.struct([(name, pa.list_(pa.string())) for name in fields])
    arr = pa.array(rows, struct)
    con, _ = bind(write(tmp_path / "f.parquet", required(len(rows), policies=arr)))
    assert column(con, "enforced_policies") == enforced
    assert column(con, "pending_policies") == pending


def test_domains_as_list_or_comma_string(tmp_path: Path) -> None:
    as_list = pa.array([["b.com", "A.com ", "b.com", "-"], None], pa.list_(pa.string()))
    as_text = ["b.com, A.com,,b.com,-", "-"]
    con, _ = bind(write(tmp_path / "l.parquet", required(2, dest_domains=as_list)))
    assert column(con, "dest_domains") == [["a.com", "b.com"], []]
    con, _ = bind(write(tmp_path / "t.parquet", required(2, dest_domains=as_text)))
    assert column(con, "dest_domains") == [["a.com", "b.com"], []]


def test_strings_none_markers_and_lower_casing(tmp_path: Path) -> None:
    cols = required(
        3,
        source_type=["WEP", "Net", "hep"],
        source_namespace=["-", "", "shop"],
        dest_namespace=[None, "-", "db"],
        source_name_aggr=["-", "pvt", "web-*"],
        action=["Allow", "DENY", "Block"],  # unknown actions are kept, lower-cased
        reporter=["SRC", "dst", "fwd"],
        source_ip=["-", "10.0.0.1", None],
        dest_service_name=["-", "", "pg"],
        dest_service_port=["-", "*", "sql"],
        dest_service_port_num=pa.array([None, 5432, 70000], pa.int64()),
        host=["-", "node-1", ""],
    )
    con, _ = bind(write(tmp_path / "f.parquet", cols))
    assert column(con, "source_type") == ["wep", "net", "hep"]
    assert column(con, "source_namespace") == [None, None, "shop"]
    assert column(con, "dest_namespace") == [None, None, "db"]
    assert column(con, "source_name_aggr") == [None, "pvt", "web-*"]
    assert column(con, "action") == ["allow", "deny", "block"]
    assert column(con, "reporter") == ["src", "dst", "fwd"]
    assert column(con, "source_ip") == [None, "10.0.0.1", None]
    assert column(con, "dest_service_name") == [None, None, "pg"]
    assert column(con, "dest_service_port") == [None, "*", "sql"]
    assert column(con, "dest_service_port_num") == [None, 5432, 70000]
    assert column(con, "host") == [None, "node-1", None]


def test_counters_accept_any_numeric_type(tmp_path: Path) -> None:
    cols = required(
        2,
        num_flows=pa.array([None, 7], pa.int32()),
        num_flows_started=pa.array([1, None], pa.uint64()),
        bytes_in=pa.array([1.0, 2.0], pa.float64()),
        packets_out=pa.array([3, 4], pa.int16()),
        dest_port=pa.array([80, 443], pa.uint16()),
    )
    con, _ = bind(write(tmp_path / "f.parquet", cols))
    assert column(con, "num_flows") == [1, 7]
    assert column(con, "num_flows_started") == [1, 0]
    assert column(con, "bytes_in") == [1, 2]
    assert column(con, "packets_out") == [3, 4]
    assert column(con, "dest_port") == [80, 443]
    assert schema(con) == FLOWS_SCHEMA


def test_all_null_optional_column_counts_as_absent(tmp_path: Path) -> None:
    cols = required(1, source_labels=pa.array([None], pa.null()), host=pa.array([None]))
    con, _ = bind(write(tmp_path / "f.parquet", cols))
    assert column(con, "source_labels") == [[]]
    assert column(con, "host") == [None]


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    cols = required(1, process_name=["curl"], tcp_mean_rtt=pa.array([[1, 2]]), date=["x"])
    con, src = bind(write(tmp_path / "f.parquet", cols))
    assert schema(con) == FLOWS_SCHEMA
    assert "process_name" not in src.columns and "date" not in src.columns


def _same_key(minutes: list[int], **over: Any) -> dict[str, Any]:
    """Rows of one raw key starting `minutes` after T0, each lasting 5 minutes."""
    n = len(minutes)
    starts = [T0 + timedelta(minutes=m) for m in minutes]
    cols = required(
        n,
        start_time=pa.array(starts, pa.timestamp("us")),
        end_time=pa.array([s + timedelta(minutes=5) for s in starts], pa.timestamp("us")),
        dest_port=pa.array([5432] * n, pa.int32()),
        num_flows=pa.array([None, *range(2, n + 1)], pa.int64()),
        bytes_in=pa.array([10] * n, pa.int64()),
    )
    cols.update(over)
    return cols


def test_view_groups_raw_rows_per_key_and_utc_day(tmp_path: Path) -> None:
    # 10:00, 10:20, 10:40 and 11:10 on one day, 23:50 the day before (UTC): two view rows for
    # five raw rows in `flows`; the hourly view keeps the hours apart.
    con, _ = bind(write(tmp_path / "f.parquet", _same_key([0, 20, 40, 70, -610])))
    got = con.sql(
        "SELECT start_time, end_time, num_flows, bytes_in, rows FROM flows ORDER BY start_time"
    ).fetchall()
    assert got == [
        (T0 - timedelta(minutes=610), T0 - timedelta(minutes=605), 5, 10, 1),
        (T0, T0 + timedelta(minutes=75), 1 + 2 + 3 + 4, 40, 4),
    ]
    hourly = con.sql(
        "SELECT start_time, end_time, num_flows, rows FROM flows_hourly ORDER BY start_time"
    ).fetchall()
    assert hourly == [
        (T0 - timedelta(minutes=610), T0 - timedelta(minutes=605), 5, 1),
        (T0, T0 + timedelta(minutes=45), 1 + 2 + 3, 3),
        (T0 + timedelta(minutes=70), T0 + timedelta(minutes=75), 4, 1),
    ]
    assert set(con.table("flows_hourly").columns) < set(con.table("flows").columns)
    assert sql.relation(con, "flows_summary").fetchall()[0][:2] == (5, 15)


def test_view_keeps_ips_of_net_endpoints_only(tmp_path: Path) -> None:
    # Pod IPs would split the groups and no query reads them; a `net` peer's IP is its identity.
    cols = _same_key(
        [0, 1, 2, 3],
        source_type=["wep", "wep", "NET", "net"],
        source_ip=["10.0.0.1", "10.0.0.2", "198.51.100.1", "198.51.100.2"],
        dest_ip=["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.3"],
    )
    con, _ = bind(write(tmp_path / "f.parquet", cols))
    got = con.sql("SELECT source_type, source_ip, dest_ip, rows FROM flows ORDER BY ALL")
    assert got.fetchall() == [
        ("net", "198.51.100.1", None, 1),
        ("net", "198.51.100.2", None, 1),
        ("wep", None, None, 2),
    ]


def test_window_and_end_before_filter_raw_rows_before_grouping(tmp_path: Path) -> None:
    f = write(tmp_path / "f.parquet", _same_key([0, 20, 40]))  # end 10:05, 10:25, 10:45
    con = duckdb.connect()
    since = (T0 + timedelta(minutes=10)).replace(tzinfo=UTC)
    bind_flows(con, f, since=since)
    assert con.sql("SELECT start_time, rows FROM flows").fetchall() == [
        (T0 + timedelta(minutes=20), 2)
    ]
    end_before = (T0 + timedelta(minutes=30)).replace(tzinfo=UTC)
    bind_files(con, [str(f)], since=since, until=since + timedelta(hours=1), end_before=end_before)
    assert con.sql("SELECT start_time, end_time, num_flows, rows FROM flows").fetchall() == [
        (T0 + timedelta(minutes=20), T0 + timedelta(minutes=25), 2, 1)
    ]
    with pytest.raises(ValueError, match="timezone-aware"):
        bind_files(con, [str(f)], end_before=T0)


def test_contract_lists_are_disjoint_and_complete() -> None:
    assert not set(REQUIRED_COLUMNS) & set(OPTIONAL_COLUMNS)
    assert len(REQUIRED_COLUMNS) == 12 and len(OPTIONAL_COLUMNS) == 18


def test_view_name_is_validated_and_rebinding_replaces(tmp_path: Path) -> None:
    f = write(tmp_path / "f.parquet", required(2))
    g = write(tmp_path / "g" / "g.parquet", required(5))
    con = duckdb.connect()
    with pytest.raises(ValueError, match="view"):
        bind_flows(con, f, view="flows; DROP TABLE x")
    bind_flows(con, f, view="raw_flows")
    assert len(column(con, "dest_port", view="raw_flows")) == 2
    bind_flows(con, g, view="raw_flows")
    assert len(column(con, "dest_port", view="raw_flows")) == 5
    with pytest.raises(ValueError, match="timezone-aware"):
        bind_flows(con, f, since=T0)


# --- files, directories, partitions -----------------------------------------------------------


def test_directory_is_read_recursively_skipping_hidden_and_temporary(tmp_path: Path) -> None:
    write(tmp_path / "a.parquet", required(1))
    write(tmp_path / "deep" / "er" / "b.parquet", required(2))
    write(tmp_path / "_temporary" / "c.parquet", required(4))
    write(tmp_path / ".cache" / "d.parquet", required(8))
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "notes.txt").write_text("not flow data")
    con, src = bind(tmp_path)
    assert src.files == (str(tmp_path / "a.parquet"), str(tmp_path / "deep" / "er" / "b.parquet"))
    assert src.hive is False
    assert raw_rows(con) == 3


def test_single_file_and_glob_characters_in_names(tmp_path: Path) -> None:
    weird = write(tmp_path / "we[1]rd" / "flows*?.parquet", required(1))
    # A sibling the unescaped pattern would also match must not be read.
    write(tmp_path / "we1rd" / "flowsXY.parquet", required(5))
    con, src = bind(weird)
    assert src.files == (str(weird),)
    assert raw_rows(con) == 1
    con, src = bind(weird.parent)
    assert src.files == (str(weird),)


def hive_tree(root: Path) -> dict[str, Path]:
    """Three hourly partitions on 2024-03-01 and one daily partition on 2024-03-02."""
    files = {}
    for hour in (9, 10, 11):
        start = T0.replace(hour=hour)
        cols = required(
            2,
            start_time=pa.array([start, start + timedelta(minutes=30)], pa.timestamp("us")),
            end_time=pa.array(
                [start + timedelta(minutes=5), start + timedelta(minutes=35)], pa.timestamp("us")
            ),
            dest_port=pa.array([hour * 100, hour * 100 + 30], pa.int32()),
        )
        files[f"h{hour}"] = write(root / "date=2024-03-01" / f"hour={hour:02}" / "p.parquet", cols)
    day2 = required(1, start_time=pa.array([EPOCH + 86400]), end_time=pa.array([EPOCH + 86700]))
    files["d2"] = write(root / "date=2024-03-02" / "p.parquet", day2)
    return files


def test_hive_tree_without_window_reads_everything(tmp_path: Path) -> None:
    files = hive_tree(tmp_path)
    con, src = bind(tmp_path)
    assert src.hive is True
    assert src.files == tuple(sorted(str(p) for p in files.values()))
    assert raw_rows(con) == 7


def test_hive_pruning_by_hour_and_row_filter(tmp_path: Path) -> None:
    files = hive_tree(tmp_path)
    since = datetime(2024, 3, 1, 10, 10, tzinfo=UTC)
    until = datetime(2024, 3, 1, 11, 0, tzinfo=UTC)
    con, src = bind(tmp_path, since=since, until=until)
    assert src.files == (str(files["h10"]),)
    # Partition 10 is read; its 10:00-10:05 row ends before `since` and is filtered out.
    assert column(con, "dest_port") == [1030]


def test_hive_pruning_with_offset_timezone_and_daily_partition(tmp_path: Path) -> None:
    files = hive_tree(tmp_path)
    plus2 = timezone(timedelta(hours=2))
    con, src = bind(tmp_path, since=datetime(2024, 3, 2, 2, 0, tzinfo=plus2))  # 00:00 UTC
    assert src.files == (str(files["d2"]),)
    assert column(con, "start_time") == [T0 + timedelta(days=1)]


def test_window_pointing_into_a_date_directory_still_prunes_hours(tmp_path: Path) -> None:
    files = hive_tree(tmp_path)
    until = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    con, src = bind(tmp_path / "date=2024-03-01", until=until)
    assert src.hive is True
    assert src.files == (str(files["h9"]),)
    assert column(con, "dest_port") == [900, 930]


def test_window_with_no_partitions_left_is_an_empty_view(tmp_path: Path) -> None:
    hive_tree(tmp_path)
    con, src = bind(tmp_path, since=datetime(2030, 1, 1, tzinfo=UTC))
    assert src.files == () and src.columns == frozenset()
    assert schema(con) == FLOWS_SCHEMA
    assert con.table("flows").fetchall() == []
    assert sql.relation(con, "flows_summary").fetchall()[0][0] == 0


def test_mixed_encodings_across_files_are_normalised_per_file(tmp_path: Path) -> None:
    struct = pa.struct([("labels", pa.list_(pa.string()))])
    write(
        tmp_path / "a.parquet",
        required(
            1,
            source_labels=pa.array([{"labels": ["b=1", "a=1"]}], struct),
            proto=pa.array([17], pa.int64()),
        ),
    )
    write(
        tmp_path / "b.parquet",
        required(
            1,
            start_time=pa.array([EPOCH]),
            end_time=pa.array([EPOCH + 300.0]),
            source_labels=pa.array([["a=1", "b=1"]]),
            dest_port=pa.array([1], pa.int64()),
            policies=pa.array([HITS]),
        ),
    )
    write(tmp_path / "c.parquet", required(1, dest_port=pa.array([2], pa.int16())))
    con, src = bind(tmp_path)
    assert column(con, "source_labels") == [["a=1", "b=1"], ["a=1", "b=1"], []]
    assert column(con, "proto") == ["udp", "tcp", "tcp"]
    assert column(con, "end_time") == [T0 + timedelta(minutes=5)] * 3
    assert column(con, "enforced_policies") == [[], HITS, []]
    assert "policies" in src.columns and "source_labels" in src.columns


# --- bad input --------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    msg = bad(tmp_path / "nope")
    assert str(tmp_path / "nope") in msg and "no such file" in msg


def test_directory_without_parquet_files(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    msg = bad(tmp_path)
    assert str(tmp_path) in msg and "no Parquet files" in msg


def test_file_that_is_not_parquet(tmp_path: Path) -> None:
    f = tmp_path / "flows.parquet"
    f.write_text("start_time,end_time\n1,2\n")
    msg = bad(f)
    assert str(f) in msg and "not a readable Parquet file" in msg


def test_truncated_parquet_among_good_files(tmp_path: Path) -> None:
    good = write(tmp_path / "a.parquet", required(50))
    cut = tmp_path / "b.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    msg = bad(tmp_path)
    assert str(cut) in msg and "not a readable Parquet file" in msg
    assert str(good) not in msg


def test_missing_required_column_names_the_files(tmp_path: Path) -> None:
    write(tmp_path / "ok.parquet", required(1))
    cols = required(1)
    del cols["dest_port"]
    write(tmp_path / "x1.parquet", cols)
    write(tmp_path / "x2.parquet", cols)
    msg = bad(tmp_path)
    assert "missing required column dest_port" in msg
    assert str(tmp_path / "x1.parquet") in msg and str(tmp_path / "x2.parquet") in msg
    assert "ok.parquet" not in msg


def test_several_missing_columns_in_many_files(tmp_path: Path) -> None:
    cols = required(1)
    del cols["proto"], cols["reporter"]
    for i in range(5):
        write(tmp_path / f"f{i}.parquet", cols)
    msg = bad(tmp_path)
    assert "missing required columns proto, reporter" in msg
    assert str(tmp_path / "f0.parquet") in msg and "and 2 more file(s)" in msg


@pytest.mark.parametrize(
    ("name", "array", "found"),
    [
        ("dest_port", pa.array([[80]], pa.list_(pa.int32())), "INTEGER[]"),
        ("start_time", pa.array(["yesterday"]), "VARCHAR"),
        ("end_time", pa.array(["2024-03-01T10:00:00Z"]), "VARCHAR"),
        ("proto", pa.array([6.0]), "DOUBLE"),
        ("action", pa.array([1]), "BIGINT"),
        ("source_labels", pa.array([{"app": "x"}]), "STRUCT(app VARCHAR)"),
        ("dest_labels", pa.array([[1, 2]]), "BIGINT[]"),
        ("policies", pa.array([{"hits": ["x"]}]), "STRUCT(hits VARCHAR[])"),
        ("policies", pa.array([{"enforced_policies": "x"}]), "STRUCT(enforced_policies VARCHAR)"),
        ("dest_domains", pa.array([1]), "BIGINT"),
        ("bytes_in", pa.array(["12"]), "VARCHAR"),
        ("reporter", pa.array([None], pa.null()), "NULL"),
    ],
)
def test_wrong_type_names_file_column_and_type(
    tmp_path: Path, name: str, array: Any, found: str
) -> None:
    f = write(tmp_path / "f.parquet", required(1, **{name: array}))
    msg = bad(f)
    assert f"{f}: column {name!r} has type {found}" in msg
    assert "expected" in msg


def test_wrong_type_in_one_file_of_many(tmp_path: Path) -> None:
    write(tmp_path / "a.parquet", required(1))
    f = write(tmp_path / "b.parquet", required(1, dest_port=pa.array(["80"])))
    msg = bad(tmp_path)
    assert f"{f}: column 'dest_port' has type VARCHAR, expected a number" in msg


def test_zero_rows_overall_is_an_error_without_window(tmp_path: Path) -> None:
    empty = pa.table(required(0))
    pq.write_table(empty, tmp_path / "a.parquet")
    pq.write_table(empty, tmp_path / "b.parquet")
    msg = bad(tmp_path)
    assert str(tmp_path) in msg and "no rows" in msg
    # With a window, nothing to read is an answer, not an error.
    con, src = bind(tmp_path, since=datetime(2024, 1, 1, tzinfo=UTC))
    assert src.files == () and schema(con) == FLOWS_SCHEMA


def test_zero_row_files_are_skipped_next_to_data(tmp_path: Path) -> None:
    # pandas-style empty frames often carry NULL-typed columns; they hold nothing to check.
    pq.write_table(pa.table({"start_time": pa.array([], pa.null())}), tmp_path / "empty.parquet")
    good = write(tmp_path / "good.parquet", required(1))
    con, src = bind(tmp_path)
    assert src.files == (str(good),)
    assert raw_rows(con) == 1


@pytest.mark.parametrize("name", ["date=2024-13-01", "date=yesterday", "date=2024-03-01/hour=24"])
def test_bad_partition_directory(tmp_path: Path, name: str) -> None:
    write(tmp_path / name / "p.parquet", required(1))
    msg = bad(tmp_path)
    assert "bad partition directory" in msg and name.split("/")[-1] in msg


# --- properties -------------------------------------------------------------------------------

_ATOM = st.text(st.characters(codec="utf-8", exclude_characters="\x00="), min_size=0, max_size=6)
_LABELSET = st.dictionaries(_ATOM.filter(lambda k: k != ""), _ATOM, max_size=5)


@settings(max_examples=40, deadline=None)
@given(st.lists(_LABELSET, min_size=1, max_size=6))
def test_labels_round_trip_through_every_encoding(labelsets: list[dict[str, str]]) -> None:
    n = len(labelsets)
    as_text = [[f"{k}={v}" for k, v in d.items()] for d in labelsets]
    struct = pa.struct([("labels", pa.list_(pa.string()))])
    encodings = {
        "list": pa.array(as_text, pa.list_(pa.string())),
        "struct": pa.array([{"labels": v} for v in as_text], struct),
        "map": pa.array([list(d.items()) for d in labelsets], pa.map_(pa.string(), pa.string())),
    }
    expected = [sorted(v) for v in as_text]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, arr) in enumerate(encodings.items()):
            ports = pa.array([i * 1000 + r + 1 for r in range(n)], pa.int32())
            write(Path(tmp) / f"{name}.parquet", required(n, dest_labels=arr, dest_port=ports))
        con, _ = bind(Path(tmp))
        assert column(con, "dest_labels") == expected * 3


@settings(max_examples=30, deadline=None)
@example(protos=[6, 17, 1, 58, 132, 136, 0, 255], seconds=[0, 1, EPOCH, 4_000_000_000] * 2)
@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=8),
    st.lists(st.integers(0, 4_000_000_000), min_size=1, max_size=8),
)
def test_proto_and_time_encodings_agree(protos: list[int], seconds: list[int]) -> None:
    n = min(len(protos), len(seconds))
    protos, seconds = protos[:n], seconds[:n]
    naive = [datetime(1970, 1, 1) + timedelta(seconds=s) for s in seconds]
    variants = [
        {"proto": pa.array(protos, pa.uint8()), "start_time": pa.array(seconds, pa.int64())},
        {"proto": [str(p) for p in protos], "start_time": pa.array(seconds, pa.float64())},
        {"proto": pa.array(protos, pa.int64()), "start_time": pa.array(naive, pa.timestamp("s"))},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for i, cols in enumerate(variants):
            ports = pa.array([i * 1000 + r + 1 for r in range(n)], pa.int32())
            write(Path(tmp) / f"v{i}.parquet", required(n, dest_port=ports, **cols))
        con, _ = bind(Path(tmp))
        got_proto = column(con, "proto")
        got_time = column(con, "start_time")
    names = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 136: "udplite"}
    assert got_proto == [names.get(p, str(p)) for p in protos] * 3
    assert got_time == naive * 3


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["tcp", "udp", "icmp", "sctp", "udplite"]), st.randoms())
def test_proto_names_any_case(name: str, rnd: Any) -> None:
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in name)
    with tempfile.TemporaryDirectory() as tmp:
        con, _ = bind(write(Path(tmp) / "f.parquet", required(1, proto=[mixed])))
        assert column(con, "proto") == [name]


# --- the edge columns alone (encodings.EDGE_COLUMNS) --------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    hosts=st.lists(st.sampled_from(["node-1", "node-2", "-", ""]), min_size=1, max_size=8),
    ports=st.lists(st.sampled_from(["http", "grpc", "-"]), min_size=1, max_size=8),
)
def test_edge_columns_view_gives_the_edges_of_the_full_view(
    hosts: list[str], ports: list[str]
) -> None:
    """Rows that differ only in columns no edge query reads (host, the service port's name,
    the started/completed counters) are one view row when only EDGE_COLUMNS are bound, and the
    edges and the summary's row count are those of the full view."""
    n = max(len(hosts), len(ports))
    cols = required(
        n,
        dest_port=pa.array([80] * n, pa.int32()),
        host=[hosts[i % len(hosts)] for i in range(n)],
        dest_service_port=[ports[i % len(ports)] for i in range(n)],
        num_flows=pa.array(range(1, n + 1), pa.int64()),
        num_flows_started=pa.array(range(n), pa.int64()),
        bytes_in=pa.array([10 * i for i in range(n)], pa.int64()),
    )
    with tempfile.TemporaryDirectory() as tmp:
        f = write(Path(tmp) / "f.parquet", cols)
        full, lean = duckdb.connect(), duckdb.connect()
        bind_flows(full, f)
        bind_flows(lean, f, columns=EDGE_COLUMNS)
        assert schema(lean) == view_schema(EDGE_COLUMNS)
        assert {"host", "dest_service_port", "num_flows_started"}.isdisjoint(
            lean.table("flows").columns
        )
        assert lean.sql("SELECT count(*), sum(rows) FROM flows").fetchall() == [(1, n)]
        distinct = len({(hosts[i % len(hosts)], ports[i % len(ports)]) for i in range(n)})
        assert full.sql("SELECT count(*) FROM flows").fetchall() == [(distinct,)]
        assert edges.aggregate(lean).equals(edges.aggregate(full))
        summary = sql.load("flows_summary").text
        assert lean.sql(summary).fetchall() == full.sql(summary).fetchall()


def test_a_grouping_needs_both_times_and_the_row_count(tmp_path: Path) -> None:
    rel = duckdb.connect().read_parquet(str(write(tmp_path / "f.parquet", required(1))))
    steps = plan(dict(zip(rel.columns, rel.types, strict=True)))
    assert grouping(steps, "day", EDGE_COLUMNS).keys == grouping(steps, "day").keys
    with pytest.raises(ValueError, match="rows"):
        grouping(steps, "day", frozenset({"start_time", "end_time", "dest_port"}))
    with pytest.raises(ValueError, match="start_time"):
        grouping(steps, "day", frozenset({"end_time", "rows", "dest_port"}))
    with pytest.raises(ValueError, match="end_time"):
        grouping(steps, "day", frozenset({"start_time", "rows", "dest_port"}))
