"""Rhythm detection (daily, weekly) and the Stable gate it puts on a namespace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from conftest import CliResult
from test_state_support import T0, report, run_args, scope_file, stamp, statuses

from flowfence.fixtures.generate import generate
from flowfence.state.rhythm import detect, detect_all

RunCli = Callable[[Sequence[str]], CliResult]
MONDAY = datetime(2026, 10, 5)  # a Monday


def days(n: int, start: datetime = MONDAY) -> list[date]:
    return [(start + timedelta(days=d)).date() for d in range(n)]


def at(day: int, hour: int) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour)


def test_nightly_job_is_daily() -> None:
    hours = [at(d, 2) for d in range(7)] + [at(d, 3) for d in range(0, 7, 2)]
    assert detect(hours, days(7)) == "daily"


def test_a_band_across_midnight_is_daily() -> None:
    hours = [at(d, h) for d in range(5) for h in (23,)] + [at(d, 0) for d in range(1, 6)]
    assert detect(hours, days(6)) == "daily"


def test_one_weekday_over_weeks_is_weekly() -> None:
    hours = [at(7 * w, 2) for w in range(3)]
    assert detect(hours, days(21)) == "weekly"


@pytest.mark.parametrize(
    ("hours", "observed"),
    [
        ([at(d, h) for d in range(3) for h in range(24)], 3),  # around the clock
        ([at(0, 2)], 7),  # seen once
        ([at(0, 2), at(2, 2), at(4, 2)], 7),  # three days of seven: neither
        ([at(0, 2), at(1, 9), at(2, 16), at(3, 22), at(4, 5)], 5),  # daily, no band
        ([at(0, 2), at(1, 2)], 20),  # two days in a row, then nothing: neither
    ],
)
def test_no_rhythm(hours: list[datetime], observed: int) -> None:
    assert detect(hours, days(observed)) is None


def test_days_without_data_are_not_quiet_days() -> None:
    # Active on 3 of the 3 days the flow logs cover, in a 10-day span with a gap.
    hours = [at(d, 2) for d in (0, 1, 9)]
    assert detect(hours, [at(d, 0).date() for d in (0, 1, 9)]) == "daily"
    assert detect(hours, days(10)) is None


def test_detect_all_per_namespace() -> None:
    rows = [("cron", at(d, 1), 3) for d in range(6)]
    rows += [("web", at(d, h), 10) for d in range(6) for h in range(24)]
    rows += [("quiet", at(2, 5), 0)]  # zero flows never count
    frame = pl.DataFrame(
        rows,
        schema={"namespace": pl.String, "hour": pl.Datetime("us"), "flows": pl.Int64},
        orient="row",
    )
    assert detect_all(frame) == {"cron": "daily"}


def test_a_daily_namespace_is_not_stable_before_a_full_day(tmp_path: Path, run_cli: RunCli) -> None:
    """Over the demo shop, `batch` only has its nightly backup at 02:00: daily."""
    flows, out = tmp_path / "flows", tmp_path / "out"
    generate("demo", flows, seed=3, rows=1500, start=T0, hours=24 * 6)
    scope = scope_file(tmp_path / "scope.yaml", initialLookback="96h")
    first = T0 + timedelta(days=4)

    def run(now: datetime) -> dict[str, tuple[str, str]]:
        result = run_cli(run_args(flows, out, now, "--config", scope))
        assert result.code == 0, result.err
        return statuses(out)

    run(first)
    rhythms = {n["namespace"]: n["rhythm"] for n in report(out)["namespaces"]}
    assert rhythms["batch"] == "daily"
    assert sum(1 for r in rhythms.values() if r) == 1
    # Seven hours later (stabilization 6h): the others are Stable, batch has not yet seen a
    # full day since its last change.
    later = run(first + timedelta(hours=7))
    assert later["batch"] == ("Stabilizing", stamp(first))
    steady_ns = [ns for ns, s in later.items() if s == ("Stable", stamp(first))]
    assert len(steady_ns) >= 5
    # A day of data after its last change, with its nightly run inside: Stable.
    assert run(first + timedelta(hours=25))["batch"] == ("Stable", stamp(first))
    assert first.tzinfo is UTC
