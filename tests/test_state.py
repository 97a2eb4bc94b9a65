"""The state directory: Parquet tables plus a JSON manifest, readable without flowfence,
committed atomically, refused (and left alone) when corrupt or newer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import CliResult
from test_state_support import T0, kill, paused, run_args, spawn, steady, tree, wait_for

from flowfence.core.errors import StateError
from flowfence.state import tables as state

RunCli = Callable[[Sequence[str]], CliResult]
NOW = T0 + timedelta(hours=6)


@pytest.fixture
def ran(tmp_path: Path, run_cli: RunCli) -> tuple[Path, Path]:
    flows = tmp_path / "flows"
    steady(flows, T0, 6, [("web", "api", 8080), ("api", "db", 5432)])
    out = tmp_path / "out"
    result = run_cli(run_args(flows, out, NOW))
    assert result.code == 0, result.err
    return flows, out


def test_state_is_plain_parquet_and_json(ran: tuple[Path, Path]) -> None:
    _, out = ran
    directory = out / "state"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format"] == "flowfence-state"
    assert manifest["schema"] == state.SCHEMA_VERSION
    assert manifest["generation"] == 1
    assert set(manifest["tables"]) == set(state.TABLES)
    assert set(state.TABLES) == {
        "edges", "activity", "namespaces", "files", "runs", "manifests", "baseline",
        "open_files", "open_edges", "open_activity",
    }  # fmt: skip
    # A notebook needs nothing but DuckDB or Polars.
    namespaces = pl.read_parquet(directory / manifest["tables"]["namespaces"])
    assert namespaces.get_column("namespace").to_list() == ["api", "db", "web"]
    assert set(namespaces.get_column("status")) == {"Learning"}
    assert set(namespaces.get_column("staged_action")) == {"Learn"}
    edges_file = str(directory / manifest["tables"]["edges"])
    flows = duckdb.sql(
        "SELECT sum(flows), max(len(day_list)), sum(rows) FROM read_parquet($f)",
        params={"f": edges_file},
    ).fetchall()
    # 5 sealed hours x 2 links x 2 reporters; the newest hour is open (lateArrivalGrace).
    assert flows == [(20, 1, 20)]
    # The report counts all the evidence, the open hour included: every raw row once.
    assert json.loads((out / "report.json").read_text())["input"] == {
        "files": 6,
        "rows": 24,
        "flows": 24,
        "edges": 4,
    }
    files = pl.read_parquet(directory / manifest["tables"]["files"])
    assert files.height == 5 and files.get_column("rel").str.starts_with("date=").all()
    # The open hour is kept as read, for the next run to take instead of reading it again.
    kept = pl.read_parquet(directory / manifest["tables"]["open_files"])
    assert kept.get_column("unit").to_list() == ["date=2026-10-01/hour=05"]
    kept_edges = pl.read_parquet(directory / manifest["tables"]["open_edges"])
    assert kept_edges.get_column("flows").sum() == 4  # the rows of the report not sealed
    assert not any(p.suffix == ".duckdb" for p in directory.iterdir())


def test_load_commit_roundtrip(ran: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = ran
    loaded = state.load(out / "state")
    assert loaded.generation == 1 and loaded.origin == (NOW - timedelta(hours=24)).replace(
        tzinfo=None
    )
    copy = tmp_path / "copy"
    committed = state.commit(copy, state.new(), loaded)
    again = state.load(copy)
    assert again.generation == 1 == committed.generation
    for name in state.TABLES:
        assert again.table(name).equals(loaded.table(name)), name
    assert (again.origin, again.watermark, again.now) == (
        loaded.origin,
        loaded.watermark,
        loaded.now,
    )
    # A second commit rewrites only the tables that changed and deletes the old files.
    smaller = state.State(
        generation=again.generation,
        origin=again.origin,
        watermark=again.watermark,
        now=again.now,
        edges=again.edges.head(1),
        activity=again.activity,
        namespaces=again.namespaces,
        files=again.files,
        runs=again.runs,
        table_files=again.table_files,
    )
    state.commit(copy, again, smaller)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["tables"]["edges"] == "edges-000002.parquet"
    assert manifest["tables"]["runs"] == "runs-000001.parquet"
    assert sorted(p.name for p in copy.glob("edges-*")) == ["edges-000002.parquet"]


def test_garbage_is_collected_but_foreign_files_are_kept(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    for name in ("edges-000007.parquet", ".runs-000003.parquet.123.tmp", "notes.txt"):
        (directory / name).write_text("x")
    removed = state.collect_garbage(directory, ["edges-000008.parquet"])
    assert removed == [".runs-000003.parquet.123.tmp", "edges-000007.parquet"]
    assert (directory / "notes.txt").exists()


def _corrupt_manifest(directory: Path) -> None:
    (directory / "manifest.json").write_text('{"format": "flowfence-state", "sch')


def _newer(directory: Path) -> None:
    data = json.loads((directory / "manifest.json").read_text())
    data["schema"] = state.SCHEMA_VERSION + 1
    (directory / "manifest.json").write_text(json.dumps(data))


def _missing_table(directory: Path) -> None:
    data = json.loads((directory / "manifest.json").read_text())
    (directory / data["tables"]["edges"]).unlink()


def _torn_table(directory: Path) -> None:
    data = json.loads((directory / "manifest.json").read_text())
    path = directory / data["tables"]["namespaces"]
    path.write_bytes(path.read_bytes()[:40])


def _wrong_columns(directory: Path) -> None:
    data = json.loads((directory / "manifest.json").read_text())
    pl.DataFrame({"x": [1]}).write_parquet(directory / data["tables"]["runs"])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_corrupt_manifest, "manifest.json is corrupt"),
        (_newer, "written by a newer flowfence"),
        (_missing_table, "is missing"),
        (_torn_table, "is unreadable"),
        (_wrong_columns, "does not have the runs columns"),
    ],
)
def test_bad_state_is_refused_and_left_alone(
    ran: tuple[Path, Path],
    run_cli: RunCli,
    damage: Callable[[Path], None],
    message: str,
) -> None:
    flows, out = ran
    directory = out / "state"
    damage(directory)
    before = tree(out)
    with pytest.raises(StateError, match=message):
        state.load(directory)
    result = run_cli(run_args(flows, out, NOW + timedelta(hours=1)))
    assert result.code == 1
    assert message in result.err and "refusing to use or overwrite it" in result.err
    assert tree(out) == before  # state, policies and report untouched


def test_a_lost_manifest_is_refused_until_reset_state(
    ran: tuple[Path, Path], run_cli: RunCli
) -> None:
    flows, out = ran
    directory = out / "state"
    named = set(json.loads((directory / "manifest.json").read_text())["tables"].values())
    (directory / "manifest.json").unlink()
    before = tree(out)
    with pytest.raises(StateError, match=r"but no manifest\.json"):
        state.load(directory)
    later = run_args(flows, out, NOW + timedelta(hours=1))
    refused = run_cli(later)
    assert refused.code == 1
    assert f"state {directory}: " in refused.err and "--reset-state" in refused.err
    assert tree(out) == before  # tables, policies and report untouched (no garbage collected)

    reset = run_cli([*later, "--reset-state"])
    assert reset.code == 0, reset.err
    (aside,) = directory.glob("reset-*")
    assert f"the earlier state was moved to {aside}" in reset.err
    # The orphaned tables are kept aside, byte for byte; a new state starts beside them.
    assert {p.name for p in aside.iterdir()} == named
    assert all((aside / n).read_bytes() == before[f"state/{n}"] for n in named)
    assert state.load(directory).generation == 1


def test_reset_state_keeps_an_intact_state_aside(ran: tuple[Path, Path], run_cli: RunCli) -> None:
    flows, out = ran
    directory = out / "state"
    manifest = (directory / "manifest.json").read_bytes()
    assert json.loads(manifest)["generation"] == 1
    reset = run_cli(run_args(flows, out, NOW + timedelta(hours=1), "--reset-state"))
    assert reset.code == 0, reset.err
    (aside,) = directory.glob("reset-*")
    assert (aside / "manifest.json").read_bytes() == manifest
    assert state.load(aside).generation == 1  # the set-aside state is still a whole state
    assert state.load(directory).generation == 1


def test_a_missing_manifest_is_a_new_state(tmp_path: Path) -> None:
    fresh = state.load(tmp_path / "nowhere")
    assert fresh.generation == 0 and fresh.edges.height == 0


def test_manifest_times_keep_their_microseconds_on_disk(tmp_path: Path) -> None:
    moment = datetime(2026, 10, 1, 3, 4, 5, 678901)
    timed = dataclasses.replace(state.new(), origin=moment, watermark=moment, now=moment)
    state.commit(tmp_path, state.new(), timed)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["watermark"] == manifest["now"] == "2026-10-01T03:04:05.678901Z"
    loaded = state.load(tmp_path)
    assert (loaded.origin, loaded.watermark, loaded.now) == (moment, moment, moment)
    manifest["now"] = "2026-10-01T03:04:05"  # no offset: not a time flowfence wrote
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="manifest field 'now' is not a time"):
        state.load(tmp_path)


def test_a_first_run_killed_before_its_manifest_is_not_an_orphaned_state(
    tmp_path: Path, run_cli: RunCli
) -> None:
    flows, out, pause = tmp_path / "flows", tmp_path / "out", tmp_path / "pause"
    steady(flows, T0, 6, [("web", "api", 8080), ("api", "db", 5432)])
    victim = spawn(run_args(flows, out, NOW), paused(pause, "after-state-tables"))
    assert wait_for(pause, victim).startswith("after-state-tables")
    kill(victim)
    directory = out / "state"
    assert state.table_files_in(directory) and not (directory / "manifest.json").exists()
    assert state.load(directory).generation == 0  # first-run.pending: the dead run's tables
    again = run_cli(run_args(flows, out, NOW))
    assert again.code == 0, again.err
    assert not (directory / "first-run.pending").exists()
    assert state.load(directory).generation == 1 and not list(directory.glob("reset-*"))
