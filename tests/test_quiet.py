"""A rerun with nothing new reads nothing and rewrites nothing (run/quiet.py): after a run that
changed nothing, the next run stops before reading, and anything that could change the outputs
(a new file, an input, an output edited, a setting, a status or decision falling due) makes it
compute again, with the same result as a run that never stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_state_support import (
    LINKS,
    T0,
    RunCli,
    flow_rows,
    has_rule,
    ok,
    report,
    run_args,
    scope_file,
    stamp,
    statuses,
    steady,
    tree,
    write_hour,
)

from flowfence.config.settings import Settings
from flowfence.review import decisions
from flowfence.run import pipeline, quiet

DAY = T0 + timedelta(hours=24)
STOPPED = "Nothing new since"


@pytest.fixture
def settled(tmp_path: Path, run_cli: RunCli) -> tuple[Path, Path, Path]:
    """(flows, out, scope): a day of flows, a first run, and a run 10 minutes later that
    changed nothing (interval 20m: nothing is due before 40 minutes after the first)."""
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    scope = scope_file(tmp_path / "scope.yaml")
    ok(run_cli(run_args(flows, out, DAY, "--config", scope)))
    again = ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=10), "--config", scope)))
    assert STOPPED not in again.out and "state unchanged" in again.out
    return flows, out, scope


def test_a_rerun_after_a_run_that_changed_nothing_stops_before_reading(
    settled: tuple[Path, Path, Path], run_cli: RunCli
) -> None:
    flows, out, scope = settled
    before = tree(out)
    marker = json.loads((out / "state" / quiet.MARKER).read_text())
    assert marker["until"] == "2026-10-02T00:40:00.000000Z"  # Learning turns Stabilizing
    result = ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=20), "--config", scope)))
    assert f"{STOPPED} 2026-10-02T00:10:00Z" in result.out
    assert tree(out) == before  # policies, reports, record and state: byte for byte
    as_json = ok(
        run_cli(run_args(flows, out, DAY + timedelta(minutes=30), "--config", scope, "--output",
                         "json"))
    )  # fmt: skip
    assert json.loads(as_json.out) == report(out)  # the report of the run whose outputs stand
    # Once a status is due, the run computes, and the statuses move as they would have.
    due = ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=41), "--config", scope)))
    assert STOPPED not in due.out
    assert {s for s, _ in statuses(out).values()} == {"Stabilizing"}


def _new_hour(flows: Path, out: Path, scope: Path) -> None:
    steady(flows, DAY, 1, [("db", "web", 9000)])


def _late_file(flows: Path, out: Path, scope: Path) -> None:
    rows = flow_rows(DAY - timedelta(minutes=5), source_namespace="web", dest_namespace="db",
                     dest_port=6000, source_name_aggr="web-*", dest_name_aggr="db-*")  # fmt: skip
    write_hour(flows, rows, name="late")


def _edited_policy(flows: Path, out: Path, scope: Path) -> None:
    policy = out / "policies" / "web.yaml"
    policy.write_text(policy.read_text() + "# edited\n")


def _lost_report(flows: Path, out: Path, scope: Path) -> None:
    (out / "report.md").unlink()


def _decision(flows: Path, out: Path, scope: Path) -> None:
    dismissed = decisions.Decision("web", "dismiss", "not now", "ops")
    decisions.save(out, decisions.EMPTY.with_decision(dismissed))


def _setting(flows: Path, out: Path, scope: Path) -> None:
    scope_file(scope, stabilizationPeriod="7h")


@pytest.mark.parametrize(
    "change", [_new_hour, _late_file, _edited_policy, _lost_report, _decision, _setting]
)
def test_anything_that_could_change_the_outputs_makes_the_run_compute(
    settled: tuple[Path, Path, Path],
    run_cli: RunCli,
    tmp_path: Path,
    change: Callable[[Path, Path, Path], None],
) -> None:
    flows, out, scope = settled
    change(flows, out, scope)
    later = timedelta(hours=1, minutes=5) if change is _new_hour else timedelta(minutes=20)
    now = DAY + later
    result = run_cli(run_args(flows, out, now, "--config", scope))
    assert result.code == 0, result.err
    assert STOPPED not in result.out
    assert report(out)["now"] == stamp(now)  # computed: the report is this run's
    effects = {
        _new_hour: lambda: has_rule(out, "db", "egress", "web", "TCP", "9000"),
        _late_file: lambda: has_rule(out, "web", "egress", "db", "TCP", "6000"),
        _lost_report: lambda: (out / "report.md").exists(),
        _decision: lambda: not (out / "policies" / "web.yaml").exists(),
    }
    assert effects.get(change, lambda: True)()


def test_no_marker_for_a_run_that_changed_something(tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    ok(run_cli(run_args(flows, out, DAY)))
    assert not (out / "state" / quiet.MARKER).exists()  # the first run committed a state
    ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=1))))
    assert (out / "state" / quiet.MARKER).exists()
    steady(flows, DAY, 1, LINKS)
    ok(run_cli(run_args(flows, out, DAY + timedelta(hours=1, minutes=5))))
    assert not (out / "state" / quiet.MARKER).exists()  # it sealed an hour: computed anew


def test_a_stopped_run_equals_a_run_that_computed(
    settled: tuple[Path, Path, Path], run_cli: RunCli, tmp_path: Path
) -> None:
    """What stands after an early stop is what computing would have written, the reports' time
    of the run aside: the same policies, state and record."""
    flows, out, scope = settled
    now = DAY + timedelta(minutes=20)
    ok(run_cli(run_args(flows, out, now, "--config", scope)))
    computed = tmp_path / "computed"
    for at in (DAY, DAY + timedelta(minutes=10), now):
        ok(run_cli(run_args(flows, computed, at, "--config", scope)))
        (computed / "state" / quiet.MARKER).unlink(missing_ok=True)  # never stop early

    def lasting(root: Path) -> dict[str, bytes]:
        return {k: v for k, v in tree(root).items() if k.startswith("policies/")}

    assert lasting(out) == lasting(computed)
    assert statuses(out) == statuses(computed)


def test_the_marker_is_refused_when_unreadable(
    settled: tuple[Path, Path, Path], run_cli: RunCli
) -> None:
    flows, out, scope = settled
    (out / "state" / quiet.MARKER).write_text("{not json")
    result = ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=20), "--config", scope)))
    assert STOPPED not in result.out
    assert json.loads((out / "state" / quiet.MARKER).read_text())["format"] == quiet.FORMAT


def test_decisions_expiring_bound_the_quiet_time(tmp_path: Path) -> None:
    moment = datetime(2026, 10, 2)
    expires = datetime(2026, 10, 2, 3, 0, tzinfo=UTC)
    decided = decisions.EMPTY.with_decision(
        decisions.Decision("web", "accept", "ok", "ops", expires=expires)
    )
    stable = {"api": ("Stable", moment)}
    assert quiet.quiet_until(Settings(), stable, decided, moment) == datetime(2026, 10, 2, 3, 0)
    assert quiet.quiet_until(Settings(), stable, decisions.EMPTY, moment) is None
    # A Learning namespace is due to turn Stabilizing after two intervals, or Stable first
    # when the stabilization period is shorter than that.
    learning = {**stable, "db": ("Learning", moment)}
    hours = Settings(interval=timedelta(minutes=20), stabilization_period=timedelta(hours=6))
    assert quiet.quiet_until(hours, learning, decided, moment) == moment + timedelta(minutes=40)
    short = replace(hours, stabilization_period=timedelta(minutes=30))
    assert quiet.quiet_until(short, learning, decided, moment) == moment + timedelta(minutes=30)
    # Stabilizing past its period: held by its rhythm until new data comes, not by the clock.
    held = {"batch": ("Stabilizing", moment - timedelta(hours=7))}
    assert quiet.quiet_until(hours, held, decisions.EMPTY, moment) is None
    assert quiet.quiet_until(hours, held, decided, moment) == datetime(2026, 10, 2, 3, 0)
    # A decision that expired already sets no moment either.
    assert quiet.quiet_until(hours, held, decided, datetime(2026, 10, 2, 4, 0)) is None


def test_a_decision_saved_while_a_run_computes_is_not_skipped(
    settled: tuple[Path, Path, Path], run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` and `flowfence accept` save decisions.yaml without the run's lock: a run that
    computed from the file as it was must not leave a marker for the file as it is now."""
    flows, out, scope = settled
    (out / "state" / quiet.MARKER).unlink()
    real = pipeline.compute

    def compute_then_decide(*args: Any, **kwargs: Any) -> pipeline.Computation:
        done = real(*args, **kwargs)
        dismissed = decisions.Decision("web", "dismiss", "meanwhile", "ops")
        decisions.save(out, decisions.EMPTY.with_decision(dismissed))
        return done

    monkeypatch.setattr(pipeline, "compute", compute_then_decide)
    ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=15), "--config", scope)))
    assert not (out / "state" / quiet.MARKER).exists()
    monkeypatch.setattr(pipeline, "compute", real)
    result = ok(run_cli(run_args(flows, out, DAY + timedelta(minutes=20), "--config", scope)))
    assert STOPPED not in result.out
    assert not (out / "policies" / "web.yaml").exists()  # the decision took effect


def test_an_open_hour_read_again_unchanged_commits_nothing(tmp_path: Path, run_cli: RunCli) -> None:
    """An open hour not over at --now is read again by the next run; when nothing came since,
    the state stays as it was (no new generation) and that run may leave its marker."""
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 24, LINKS)
    scope = scope_file(tmp_path / "scope.yaml")  # interval 20m: no status due in between
    inside = DAY - timedelta(minutes=20)  # the newest hour is not over
    ok(run_cli(run_args(flows, out, inside, "--config", scope)))
    again = ok(run_cli(run_args(flows, out, inside + timedelta(minutes=10), "--config", scope)))
    assert "state unchanged" in again.out and "Read 1 files" in again.out
    assert (out / "state" / quiet.MARKER).exists()
