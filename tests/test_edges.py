from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import polars as pl

from flowfence import edges

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
       3::BIGINT AS packets_in, 1::BIGINT AS packets_out
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
