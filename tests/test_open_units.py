"""Open units kept in the state (state/open_units.py): a rerun with nothing new reads no flow
log, the hourly run does not read again the hour it seals, and whenever a kept read could
differ from a fresh one (a file changed, a later --now inside the unit, a wider lookback, a
file outside a hive tree, a state from before the cache) the unit is read again. Every
scenario ends equal to one fresh run over the same files."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from conftest import FlowLog
from test_state_support import (
    LINKS,
    T0,
    RunCli,
    comparable,
    flow_rows,
    has_rule,
    report,
    run_args,
    scope_file,
    state_table,
    steady,
    write_hour,
)

from flowfence.state import tables

DAY = T0 + timedelta(hours=24)
_READ = re.compile(r"Read (\d+) files \((\d+) rows\) this run")


def files_read(run_cli: RunCli, flows: Path, out: Path, now: datetime, *extra: str) -> int:
    """Run, and return how many flow-log files the run read (its summary line)."""
    result = run_cli(run_args(flows, out, now, *extra))
    assert result.code == 0, result.err
    found = _READ.search(result.out + result.err)
    assert found, result.out
    return int(found[1])


def same_as_fresh(flows: Path, out: Path, fresh: Path, now: datetime, run_cli: RunCli) -> None:
    """`out` learned what one fresh run at `now` from the same origin learns: the same rules
    and evidence, the same sealed and open edges and the same report of the input."""
    origin = tables.load(out / "state").origin
    assert origin is not None
    minutes = (now.replace(tzinfo=None) - origin) // timedelta(minutes=1)
    scope = scope_file(fresh.with_name(f"{fresh.name}.yaml"), initialLookback=f"{minutes}m")
    result = run_cli(run_args(flows, fresh, now, "--config", scope))
    assert result.code == 0, result.err
    assert comparable(out) == comparable(fresh)
    assert report(out)["input"] == report(fresh)["input"]
    assert state_table(out, "edges").equals(state_table(fresh, "edges"))
    assert state_table(out, "open_edges").equals(state_table(fresh, "open_edges"))


def test_a_rerun_with_nothing_new_reads_nothing(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    assert files_read(run_cli, flows, out, DAY) == 24
    policies = sorted((out / "policies").iterdir())
    # Half an hour later, nothing new: the open hour is taken from the state.
    later = DAY + timedelta(minutes=30)
    assert files_read(run_cli, flows, out, later) == 0
    assert sorted((out / "policies").iterdir()) == policies
    assert report(out)["input"]["files"] == 24  # the evidence described is all of it
    same_as_fresh(flows, out, tmp_path / "fresh", later, run_cli)


def test_the_hourly_run_reads_only_its_new_hour(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    files_read(run_cli, flows, out, DAY)
    steady(flows, DAY, 1, LINKS)
    # The hour left open seals from the state's copy; only the new hour is read.
    assert files_read(run_cli, flows, out, DAY + timedelta(hours=1)) == 1
    assert state_table(out, "files").height == 24
    assert state_table(out, "open_files").get_column("unit").to_list() == [
        "date=2026-10-02/hour=00"
    ]
    same_as_fresh(flows, out, tmp_path / "fresh", DAY + timedelta(hours=1), run_cli)


def test_a_changed_file_in_a_kept_unit_is_read_again(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    files_read(run_cli, flows, out, DAY)
    last = DAY - timedelta(minutes=20)
    extra = flow_rows(
        last, source_namespace="web", dest_namespace="db", dest_port=5432,
        source_name_aggr="web-*", dest_name_aggr="db-*",
    )  # fmt: skip
    # A late file in the open hour, and a rewrite of its first file: the unit is read anew.
    write_hour(flows, extra, name="late")
    assert files_read(run_cli, flows, out, DAY + timedelta(minutes=30)) == 2
    assert has_rule(out, "web", "egress", "db", "TCP", "5432")
    rewritten = flows / "date=2026-10-01" / "hour=23" / "flows.parquet"
    os.utime(rewritten, ns=(rewritten.stat().st_atime_ns, rewritten.stat().st_mtime_ns + 10**9))
    assert files_read(run_cli, flows, out, DAY + timedelta(minutes=40)) == 2
    same_as_fresh(flows, out, tmp_path / "fresh", DAY + timedelta(minutes=40), run_cli)


def test_a_unit_read_before_its_end_is_read_again(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 23, LINKS)
    hour = T0 + timedelta(hours=23)
    rows = flow_rows(hour + timedelta(minutes=5), source_namespace="web", dest_namespace="api",
                     dest_port=8080, source_name_aggr="web-*", dest_name_aggr="api-*")  # fmt: skip
    rows += flow_rows(hour + timedelta(minutes=50), source_namespace="api", dest_namespace="db",
                      dest_port=5432, source_name_aggr="api-*", dest_name_aggr="db-*")  # fmt: skip
    write_hour(flows, rows)
    # At 23:30 the newest hour is read up to --now: its row at 23:50 is not taken yet.
    files_read(run_cli, flows, out, hour + timedelta(minutes=30))
    assert state_table(out, "open_edges").get_column("flows").sum() == 2
    # Later, the same files: the rows after the earlier --now count, so the hour is read.
    assert files_read(run_cli, flows, out, DAY) == 1
    assert state_table(out, "open_edges").get_column("flows").sum() == 4
    same_as_fresh(flows, out, tmp_path / "fresh", DAY, run_cli)


def test_a_wider_lookback_reads_the_kept_unit_again(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 48, LINKS)
    now = T0 + timedelta(hours=48)
    short = scope_file(tmp_path / "short.yaml", initialLookback="24h")
    files_read(run_cli, flows, out, now, "--config", str(short))
    wide = scope_file(tmp_path / "wide.yaml", initialLookback="48h")
    # The 24 older hours are backfilled and the open one read again under the new origin.
    assert files_read(run_cli, flows, out, now, "--config", str(wide)) == 24 + 1
    fresh = tmp_path / "fresh"
    assert run_cli(run_args(flows, fresh, now, "--config", str(wide))).code == 0
    assert state_table(out, "edges").equals(state_table(fresh, "edges"))
    assert state_table(out, "open_edges").equals(state_table(fresh, "open_edges"))
    assert comparable(out) == comparable(fresh)


def test_a_file_outside_a_hive_tree_is_not_kept(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    flows.mkdir()
    rows = flow_rows(DAY - timedelta(hours=1), source_namespace="web", dest_namespace="api",
                     dest_port=8080, source_name_aggr="web-*", dest_name_aggr="api-*")  # fmt: skip
    single = FlowLog().write(flows / "export.parquet", rows)
    written = (DAY - timedelta(minutes=10)).timestamp()
    os.utime(single, (written, written))  # within lateArrivalGrace of --now: open
    assert files_read(run_cli, flows, out, DAY) == 1
    assert state_table(out, "open_files").height == 0
    # Its span is unknown, so nothing proves a later --now admits no new row: read again.
    assert files_read(run_cli, flows, out, DAY + timedelta(minutes=20)) == 1


def test_a_state_from_before_the_cache_reads_its_open_units(
    tmp_path: Path, run_cli: RunCli
) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    files_read(run_cli, flows, out, DAY)
    # The same state as a schema-2 flowfence wrote it: no open-unit tables.
    manifest_path = out / "state" / tables.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for name in ("open_files", "open_edges", "open_activity"):
        (out / "state" / manifest["tables"].pop(name)).unlink()
    manifest_path.write_text(json.dumps({**manifest, "schema": 2}))
    loaded = tables.load(out / "state")
    assert loaded.open_files.height == loaded.open_edges.height == 0
    assert dict(loaded.open_edges.schema) == tables.OPEN_EDGES_SCHEMA
    later = DAY + timedelta(minutes=30)
    assert files_read(run_cli, flows, out, later) == 1
    assert json.loads(manifest_path.read_text())["schema"] == tables.SCHEMA_VERSION
    assert state_table(out, "open_files").height == 1
    same_as_fresh(flows, out, tmp_path / "fresh", later, run_cli)


def test_runs_every_twenty_minutes_learn_what_one_run_learns(
    tmp_path: Path, run_cli: RunCli
) -> None:
    """Each hour lands once it ended, runs come every 20 minutes, and one hour gains a file
    while open: an hour is read when it lands or changes, never again when it seals, and the
    end equals one fresh run."""
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 19, LINKS)
    now = T0 + timedelta(hours=20)
    reads = []
    for step in range(12):
        if step % 3 == 0:  # the hour that just ended lands
            steady(flows, now - timedelta(hours=1), 1, [*LINKS, ("db", "web", 9000 + step)])
        if step == 4:  # the newest hour gains a file while still open
            rows = flow_rows(now - timedelta(minutes=30), source_namespace="web",
                             dest_namespace="db", dest_port=6000, source_name_aggr="web-*",
                             dest_name_aggr="db-*")  # fmt: skip
            write_hour(flows, rows, name="late")
        now += timedelta(minutes=20)
        reads.append(files_read(run_cli, flows, out, now))
    assert reads == [20, 0, 0, 1, 2, 0, 1, 0, 0, 1, 0, 0]
    assert has_rule(out, "web", "egress", "db", "TCP", "6000")
    same_as_fresh(flows, out, tmp_path / "fresh", now, run_cli)
    kept = pl.concat([state_table(out, "files"), state_table(out, "open_files")])
    assert kept.get_column("rel").n_unique() == kept.height  # no file both sealed and open
