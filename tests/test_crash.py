"""Crash safety: a run killed (SIGKILL) at each named step leaves the previous manifests,
report and state intact and consistent, and the next run completes normally with the same
result as a run that was never interrupted."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from conftest import CliResult
from test_state_support import (
    T0,
    flow_rows,
    kill,
    outputs,
    paused,
    run_args,
    spawn,
    steady,
    wait_for,
    write_hour,
)

from flowfence.core import checkpoints
from flowfence.run import quiet
from flowfence.state import tables as state

RunCli = Callable[[Sequence[str]], CliResult]
FIRST = T0 + timedelta(hours=6)
SECOND = T0 + timedelta(hours=8)
# Steps before the new manifest is in place leave the old state; later ones the new.
COMMITTED_AT = checkpoints.STEPS.index("after-manifest")


def add_traffic(flows: Path) -> None:
    steady(flows, FIRST, 2, [("web", "api", 8080), ("api", "db", 5432)])
    rows = flow_rows(
        FIRST + timedelta(minutes=40),
        source_namespace="web",
        dest_namespace="cache",
        source_name_aggr="web-*",
        dest_name_aggr="cache-*",
        dest_port=6379,
    )
    write_hour(flows, rows, name="new")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], Path]:
    """Outputs and state of the two runs, uninterrupted."""
    from flowfence.cli.app import main

    root = tmp_path_factory.mktemp("reference")
    flows, out = root / "flows", root / "out"
    steady(flows, T0, 6, [("web", "api", 8080), ("api", "db", 5432)])
    assert main(run_args(flows, out, FIRST)) == 0
    add_traffic(flows)
    assert main(run_args(flows, out, SECOND)) == 0
    return outputs(out), out / "state"


def assert_consistent(out: Path) -> state.State:
    """The state loads, names only files that exist, and the outputs parse."""
    loaded = state.load(out / "state")
    named = set(loaded.table_files.values())
    assert all((out / "state" / name).is_file() for name in named)
    json.loads((out / "report.json").read_text())
    for path in (out / "policies").glob("*.yaml"):
        yaml.safe_load(path.read_text())
    return loaded


def same_state(a: Path, b: Path) -> None:
    left, right = state.load(a), state.load(b)
    assert left.generation == right.generation
    assert (left.origin, left.watermark, left.now) == (right.origin, right.watermark, right.now)
    for name in state.TABLES:
        # The two trees' files were written at different times: mtimes differ.
        lt, rt = (s.table(name).drop("mtime_ns", strict=False) for s in (left, right))
        assert lt.equals(rt), name
    # A run that found the state already committed changed nothing, and says so (run/quiet.py).
    files = {p.name for p in a.iterdir()} - {quiet.MARKER}
    assert files == {"manifest.json", "lock", *left.table_files.values()}


@pytest.mark.parametrize("step", checkpoints.STEPS)
def test_kill_at_each_step(
    step: str,
    tmp_path: Path,
    run_cli: RunCli,
    reference: tuple[dict[str, bytes], Path],
) -> None:
    flows, out, pause = tmp_path / "flows", tmp_path / "out", tmp_path / "pause"
    steady(flows, T0, 6, [("web", "api", 8080), ("api", "db", 5432)])
    assert run_cli(run_args(flows, out, FIRST)).code == 0
    before_outputs = outputs(out)
    before_manifest = (out / "state" / "manifest.json").read_bytes()
    add_traffic(flows)

    victim = spawn(run_args(flows, out, SECOND), paused(pause, step))
    assert wait_for(pause, victim).startswith(step)
    kill(victim)

    loaded = assert_consistent(out)
    index = checkpoints.STEPS.index(step)
    if index < COMMITTED_AT:
        assert (out / "state" / "manifest.json").read_bytes() == before_manifest
        assert loaded.generation == 1
    else:
        assert loaded.generation == 2
    now = outputs(out)
    ref_outputs, ref_state = reference
    policies = {k: v for k, v in now.items() if k.startswith("policies/")}
    reports = {k: v for k, v in now.items() if k.startswith("report")}
    if index < checkpoints.STEPS.index("after-policies"):
        assert now == before_outputs
    else:
        assert policies == {k: v for k, v in ref_outputs.items() if k.startswith("policies/")}
    if index < checkpoints.STEPS.index("after-report"):
        assert reports == {k: v for k, v in before_outputs.items() if k.startswith("report")}

    # The next run takes the dead run's lock over and ends where an uninterrupted run ends.
    again = run_cli(run_args(flows, out, SECOND))
    assert again.code == 0, again.err
    assert f"took over a stale state lock from pid {victim.pid}" in again.err
    assert outputs(out) == ref_outputs
    same_state(out / "state", ref_state)
