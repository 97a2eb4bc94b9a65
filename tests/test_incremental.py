"""Incremental runs: only unread data is read, evidence merges exactly, reruns change nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import FlowLog
from hypothesis import given, settings
from hypothesis import strategies as st
from test_state_support import (
    LINKS,
    T0,
    RunCli,
    comparable,
    flow_rows,
    has_rule,
    ok,
    outputs,
    report,
    rules_of,
    run_args,
    scope_file,
    state_table,
    statuses,
    steady,
    tree,
    write_hour,
)

from flowfence.fixtures.generate import generate
from flowfence.render import yaml_text
from flowfence.run import quiet
from flowfence.state import incremental
from flowfence.state.tables import EDGES_SCHEMA


def test_incremental_equals_full_recomputation(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    generate("demo", flows, seed=5, rows=2400, start=T0, hours=48)
    inc, full = tmp_path / "inc", tmp_path / "full"
    short = scope_file(tmp_path / "short.yaml", initialLookback="24h")
    # Files after --now exist already; each run reads only what starts before its clock.
    for hours in (24, 29.5, 36, 47, 48):
        ok(run_cli(run_args(flows, inc, T0 + timedelta(hours=hours), "--config", short)))
    wide = scope_file(tmp_path / "wide.yaml", initialLookback="48h")
    ok(run_cli(run_args(flows, full, T0 + timedelta(hours=48), "--config", wide)))
    assert comparable(inc) == comparable(full)
    assert report(inc)["excluded"] == report(full)["excluded"]
    # Evidence merged over five reads equals one read: flows, bytes and days included.
    sealed_inc = state_table(inc, "edges")
    assert sealed_inc.equals(state_table(full, "edges"))
    assert state_table(inc, "activity").equals(state_table(full, "activity"))
    assert state_table(inc, "runs").height == 5


def test_same_data_twice_changes_nothing(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 24, LINKS)
    out = tmp_path / "out"
    now = T0 + timedelta(hours=24)
    ok(run_cli(run_args(flows, out, now)))
    before = tree(out)
    again = ok(run_cli(run_args(flows, out, now, "--output", "json")))
    assert json.loads(again.out)["incremental"]["generation"] == 1  # nothing committed
    # Outputs and state, byte for byte, beside the marker of a run that changed nothing.
    marker = f"state/{quiet.MARKER}"
    assert {k: v for k, v in tree(out).items() if k != marker} == before
    assert marker in tree(out)
    before = tree(out)
    stopped = ok(run_cli(run_args(flows, out, now)))
    assert "Nothing new since" in stopped.out
    assert tree(out) == before
    # Identical inputs into a fresh directory give identical bytes.
    other = tmp_path / "other"
    ok(run_cli(run_args(flows, other, now)))
    assert outputs(other) == outputs(out)


def test_reads_only_unread_files_plus_open_partitions(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 24, LINKS)
    out = tmp_path / "out"
    first = json.loads(
        ok(run_cli(run_args(flows, out, T0 + timedelta(hours=24), "--output", "json"))).out
    )
    # lateArrivalGrace 1h: the newest partition stays open, the 23 before it are sealed.
    assert first["input"]["files"] == 24
    assert first["incremental"]["sealed_files"] == 23
    assert first["incremental"]["open_files"] == 1
    steady(flows, T0 + timedelta(hours=24), 2, LINKS)
    second = json.loads(
        ok(run_cli(run_args(flows, out, T0 + timedelta(hours=26), "--output", "json"))).out
    )
    assert second["input"]["files"] == 26  # the report describes all the evidence
    assert second["incremental"]["sealed_files"] == 25
    # What each run read is logged in the state: the second read the two new files only; the
    # partition the first left open, unchanged since, it sealed from the state's copy of it.
    runs = state_table(out, "runs").rows(named=True)
    assert [(r["files_read"], r["files_sealed"]) for r in runs] == [(24, 23), (2, 2)]
    files = state_table(out, "files")
    assert files.height == 25 and files.get_column("rel").n_unique() == 25


def test_late_files_in_an_open_partition_count_once(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 24, LINKS)
    out, full = tmp_path / "out", tmp_path / "full"
    now = T0 + timedelta(hours=24)
    ok(run_cli(run_args(flows, out, now)))
    last_hour = T0 + timedelta(hours=23, minutes=30)
    # A late file lands in the newest (still open) partition, and its first file is
    # rewritten with more rows: both must be counted exactly once.
    write_hour(
        flows,
        flow_rows(
            last_hour,
            source_namespace="web",
            dest_namespace="api",
            source_name_aggr="web-*",
            dest_name_aggr="api-*",
            dest_port=8080,
        ),
        name="late",
    )
    rows = flow_rows(
        last_hour - timedelta(minutes=5),
        source_namespace="api",
        dest_namespace="db",
        source_name_aggr="api-*",
        dest_name_aggr="db-*",
        dest_port=5432,
    )
    write_hour(flows, rows * 3, name="flows")
    again = json.loads(ok(run_cli(run_args(flows, out, now, "--output", "json"))).out)
    assert again["incremental"]["late_files"] == 0
    ok(run_cli(run_args(flows, full, now)))
    assert comparable(out) == comparable(full)
    web = {r["peer"]: r["evidence"]["flows"] for r in rules_of(out, "web")}
    assert web == {r["peer"]: r["evidence"]["flows"] for r in rules_of(full, "web")}


def test_late_file_in_a_sealed_partition_is_reported_not_read(
    tmp_path: Path, run_cli: RunCli
) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 24, LINKS)
    out = tmp_path / "out"
    now = T0 + timedelta(hours=24)
    ok(run_cli(run_args(flows, out, now)))
    policies = outputs(out)
    late = flow_rows(
        T0 + timedelta(hours=3),
        source_namespace="web",
        dest_namespace="db",
        source_name_aggr="web-*",
        dest_name_aggr="db-*",
        dest_port=5432,
    )
    write_hour(flows, late, name="late")
    data = json.loads(ok(run_cli(run_args(flows, out, now, "--output", "json"))).out)
    assert data["incremental"]["late_files"] == 1
    assert any("date=2026-10-01/hour=03/late.parquet" in w for w in data["warnings"])
    assert not has_rule(out, "web", "egress", "db", "TCP", "5432")
    assert {k: v for k, v in outputs(out).items() if k.startswith("policies/")} == {
        k: v for k, v in policies.items() if k.startswith("policies/")
    }


def _pair(src: str, dst: str, port: int, at: timedelta) -> list[dict[str, Any]]:
    return flow_rows(
        T0 + at,
        source_namespace=src,
        dest_namespace=dst,
        source_name_aggr=f"{src}-*",
        dest_name_aggr=f"{dst}-*",
        dest_port=port,
    )


def test_a_namespace_selected_later_gets_its_own_lookback(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 100, [("web", "api", 8080)])
    write_hour(flows, _pair("late", "api", 1001, timedelta(hours=2)), name="old")
    write_hour(flows, _pair("late", "api", 1005, timedelta(hours=60)), name="new")
    out = tmp_path / "out"
    without = scope_file(
        tmp_path / "a.yaml",
        initialLookback="48h",
        namespaceSpec={"selector": "projectcalico.org/name != 'late'"},
    )
    ok(run_cli(run_args(flows, out, T0 + timedelta(hours=48), "--config", without)))
    assert "late" not in statuses(out)
    everyone = scope_file(
        tmp_path / "b.yaml", initialLookback="48h", namespaceSpec={"selector": "all()"}
    )
    ok(run_cli(run_args(flows, out, T0 + timedelta(hours=100), "--config", everyone)))
    # `late` joined at hour 100: it learns from hour 52 on, although the state holds hour 2.
    assert has_rule(out, "late", "egress", "api", "TCP", "1005")
    assert not has_rule(out, "late", "egress", "api", "TCP", "1001")
    assert statuses(out)["late"][0] == "Learning"
    # `api` learned since the first run's lookback: both of late's connections are in.
    assert has_rule(out, "api", "ingress", "late", "TCP", "1001")


def test_a_larger_lookback_backfills_exactly(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 75, [("web", "api", 8080)])
    write_hour(flows, _pair("old", "api", 2001, timedelta(hours=5)), name="old")
    out, full = tmp_path / "out", tmp_path / "full"
    day = scope_file(tmp_path / "day.yaml", initialLookback="24h")
    # Not on the hour: partition 48 straddles the first origin and is read in part.
    first = T0 + timedelta(hours=72, minutes=30)
    ok(run_cli(run_args(flows, out, first, "--config", day)))
    web_before = rules_of(out, "web")
    assert "old" not in statuses(out)
    wide = scope_file(tmp_path / "wide.yaml", initialLookback="72h")
    later = first + timedelta(hours=1)
    ok(run_cli(run_args(flows, out, later, "--config", wide)))
    assert state_table(out, "runs").row(-1, named=True)["backfill_files"] >= 1
    assert has_rule(out, "old", "egress", "api", "TCP", "2001")
    # `web` keeps its own window: same rules, still not Learning.
    assert [r["peer"] for r in rules_of(out, "web")] == [r["peer"] for r in web_before]
    assert statuses(out)["web"][0] == "Stabilizing"
    # The state equals one read of the whole 72 hours.
    ok(run_cli(run_args(flows, full, later, "--config", wide)))
    assert state_table(out, "edges").equals(state_table(full, "edges"))


def test_now_before_the_state_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 4, LINKS)
    out = tmp_path / "out"
    ok(run_cli(run_args(flows, out, T0 + timedelta(hours=4))))
    before = tree(out)
    result = run_cli(run_args(flows, out, T0 + timedelta(hours=3)))
    assert result.code == 2
    assert "before the last run recorded in the state" in result.err
    assert tree(out) == before


@pytest.mark.parametrize("where", ["--state", "FLOWFENCE_STATE"])
def test_state_can_live_elsewhere(
    tmp_path: Path, run_cli: RunCli, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flows = tmp_path / "flows"
    steady(flows, T0, 3, LINKS)
    out, state = tmp_path / "out", tmp_path / "elsewhere"
    extra: list[str] = []
    if where == "--state":
        extra = ["--state", str(state)]
    else:
        monkeypatch.setenv("FLOWFENCE_STATE", str(state))
    ok(run_cli(run_args(flows, out, T0 + timedelta(hours=3), *extra)))
    assert (state / "manifest.json").is_file()
    assert not (out / "state").exists()


def test_unchanged_manifests_are_not_rendered_again(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    dumped: list[str] = []
    real = yaml_text.dump

    def counting(doc: dict[str, Any]) -> bytes:
        dumped.append(doc["kind"])
        return real(doc)

    monkeypatch.setattr(yaml_text, "dump", counting)
    flows = tmp_path / "flows"
    steady(flows, T0, 6, LINKS)
    out = tmp_path / "out"
    scope = scope_file(tmp_path / "scope.yaml")
    for hours in (6, 13):  # Learning, then Stable: every policy changes
        ok(run_cli(run_args(flows, out, T0 + timedelta(hours=hours), "--config", scope)))

    def policies() -> dict[str, bytes]:
        return {k: v for k, v in outputs(out).items() if k.startswith("policies/")}

    expected = policies()
    dumped.clear()
    ok(run_cli(run_args(flows, out, T0 + timedelta(hours=14), "--config", scope)))
    assert "StagedNetworkPolicy" not in dumped  # all three were reused
    assert policies() == expected
    # A policy edited by hand is written again.
    web = out / "policies" / "web.yaml"
    web.write_text(web.read_text().replace("Allow", "Deny"))
    ok(run_cli(run_args(flows, out, T0 + timedelta(hours=15), "--config", scope)))
    assert dumped.count("StagedNetworkPolicy") == 1
    assert policies() == expected


def test_a_flat_file_seals_once_old_enough(tmp_path: Path, run_cli: RunCli) -> None:
    flows = tmp_path / "flows"
    rows = flow_rows(
        T0 + timedelta(hours=1),
        source_namespace="web",
        dest_namespace="api",
        source_name_aggr="web-*",
        dest_name_aggr="api-*",
        dest_port=8080,
    )
    FlowLog().write(flows / "flat.parquet", rows)
    out = tmp_path / "out"
    # --now in the past of the file's mtime: it may still change, read it again each run.
    for hours in (2, 3):
        ok(run_cli(run_args(flows, out, T0 + timedelta(hours=hours))))
        assert report(out)["incremental"]["open_files"] == 1
    assert state_table(out, "files").height == 0
    assert has_rule(out, "web", "egress", "api", "TCP", "8080")
    # --now well after its mtime (plus lateArrivalGrace): sealed, never read again.
    later = datetime.now(UTC) + timedelta(hours=2)
    wide = scope_file(tmp_path / "wide.yaml", initialLookback=f"{24 * 400}h")
    ok(run_cli(run_args(flows, out, later, "--config", wide)))
    assert state_table(out, "files").get_column("rel").to_list() == ["flat.parquet"]
    again = ok(run_cli(run_args(flows, out, later + timedelta(hours=1), "--config", wide)))
    assert "Read 0 files (0 rows) this run" in again.out
    assert report(out)["incremental"]["open_files"] == 0
    assert has_rule(out, "web", "egress", "api", "TCP", "8080")


def test_a_read_can_close_its_connection_before_sorting(tmp_path: Path) -> None:
    """Issue 12 (memory): `close=True` hands DuckDB's memory back once the queries ran, before
    Polars sorts the edges; the batch is the same as one read on a connection left open."""
    import duckdb

    from flowfence.core.database import connect
    from flowfence.flows import sources
    from flowfence.state import incremental

    flows = tmp_path / "flows"
    generate("demo", flows, seed=3, rows=600, start=T0, hours=2)
    files = sources.list_files(flows)[0]
    window: dict[str, Any] = {"since": T0.replace(tzinfo=None), "until": datetime(2030, 1, 1)}
    kept_open = connect()
    closed = connect()
    expected = incremental.read(kept_open, files, **window)
    batch = incremental.read(closed, files, **window, close=True)
    assert expected.edges.height > 0
    assert batch.edges.equals(expected.edges) and batch.activity.equals(expected.activity)
    assert batch.nonempty == expected.nonempty
    kept_open.execute("SELECT 1")
    with pytest.raises(duckdb.ConnectionException):
        closed.execute("SELECT 1")


def test_the_computation_keeps_the_reads_counts_not_their_frames(tmp_path: Path) -> None:
    """Issue 12 (memory): once merged, a read's edges live on in the merge only; what the run
    keeps of its reads (for the run log and the summary) is their counts."""
    from flowfence.config.settings import load_settings
    from flowfence.run import pipeline

    flows = tmp_path / "flows"
    generate("demo", flows, seed=4, rows=1200, start=T0, hours=24)
    request = pipeline.RunRequest(
        flows=flows, out=tmp_path / "out", settings=load_settings(None, None),
        now=T0 + timedelta(hours=24),
    )  # fmt: skip
    computation = pipeline.compute(request)
    reads = computation.reads
    assert reads is not None
    assert all(b.edges.height == 0 and b.activity.height == 0 for b in reads.batches)
    # The open hours (inside the grace) were read too: their counts are kept, not their edges.
    assert reads.seal.rows > 0 and reads.open.rows > 0
    assert sum(b.rows for b in reads.batches) == computation.report.input["rows"]
    assert sum(b.flows for b in reads.batches) == computation.report.input["flows"]
    assert reads.seal.files + reads.open.files == computation.report.input["files"]


def _edge_part(rows: Sequence[tuple[str | None, list[str] | None, int, date]]) -> pl.DataFrame:
    """Edges (EDGES_SCHEMA, sorted) of (source namespace, source labels, flows, day) rows."""
    n = len(rows)
    frame = pl.DataFrame({c: pl.Series(c, [None] * n, dtype=t) for c, t in EDGES_SCHEMA.items()})
    if not n:
        return incremental.conform_edges(frame)
    ns, labels, flows, day = zip(*rows, strict=True)
    return incremental.conform_edges(
        frame.with_columns(
            pl.Series("source_namespace", ns, dtype=pl.String()),
            pl.Series("source_labels", labels, dtype=pl.List(pl.String())),
            pl.Series("flows", flows, dtype=pl.Int64()),
            pl.Series("rows", flows, dtype=pl.Int64()),
            pl.Series("day_list", [[d] for d in day], dtype=pl.List(pl.Date())),
            pl.Series("days", [1] * n, dtype=pl.Int64()),
        )
    )


def test_merge_edges_sums_each_key_once_in_key_order() -> None:
    """Issue 12 (memory): merge_edges groups by packed key codes, not the 20 key columns, and
    gathers each merged key from its first row; the result is still one row per key (null and
    empty lists being keys of their own), the evidence merged, in key order."""
    d1, d2 = date(2026, 11, 1), date(2026, 11, 2)
    a = _edge_part([("web", ["app=web"], 1, d1), ("web", [], 2, d1), (None, None, 4, d1)])
    b = _edge_part([("web", [], 8, d2), ("api", ["app=api"], 16, d2), (None, None, 32, d1)])
    merged = incremental.merge_edges(a, b)
    assert dict(merged.schema) == EDGES_SCHEMA
    got = merged.select("source_namespace", "source_labels", "flows", "days", "day_list").rows()
    assert got == [
        ("api", ["app=api"], 16, 1, [d2]),
        ("web", [], 10, 2, [d1, d2]),
        ("web", ["app=web"], 1, 1, [d1]),
        (None, None, 36, 1, [d1]),
    ]


_edge_row = st.tuples(
    st.sampled_from(["web", "api", None]),
    st.sampled_from([["app=web"], [], None, ["a=1", "b=2"]]),
    st.integers(1, 100),
    st.sampled_from([date(2026, 11, 1), date(2026, 11, 2)]),
)
# A part is one read's edges: one row per key (conform_edges' input is already aggregated).
_parts = st.lists(
    st.lists(_edge_row, max_size=6, unique_by=lambda r: (r[0], repr(r[1]))).map(_edge_part),
    max_size=4,
)


@given(_parts, _parts)
@settings(max_examples=100, deadline=None)
def test_merge_twice_is_two_merges(first: list[pl.DataFrame], then: list[pl.DataFrame]) -> None:
    """The sealed edges and the edges a run learns from, merged over one coding of the keys,
    are what merging the sealing parts and then the open ones gives."""
    sealed, learned = incremental.merge_twice(first, then)
    once = incremental.merge_edges(*first)
    assert sealed.equals(once)
    assert learned.equals(incremental.merge_edges(once, *then))
