from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from flowfence.lifecycle import status

NOW = datetime(2026, 11, 2)
INTERVAL = timedelta(seconds=150)
STABLE = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), "Learning"),
        (timedelta(seconds=300), "Learning"),  # exactly 2 x interval is not "more than"
        (timedelta(seconds=301), "Stabilizing"),
        (timedelta(minutes=10), "Stabilizing"),
        (timedelta(minutes=10, seconds=1), "Stable"),
        (timedelta(days=3), "Stable"),
    ],
)
def test_status_follows_calico_timing(age: timedelta, expected: str) -> None:
    assert status(NOW - age, NOW, interval=INTERVAL, stabilization=STABLE) == expected


def test_no_rules_is_no_data() -> None:
    assert status(None, NOW, interval=INTERVAL, stabilization=STABLE) == "NoData"


def test_stabilization_shorter_than_interval_is_ignored() -> None:
    hour = timedelta(hours=1)
    got = status(NOW - timedelta(minutes=90), NOW, interval=hour, stabilization=timedelta(0))
    assert got == "Stable"
    got = status(NOW - timedelta(minutes=30), NOW, interval=hour, stabilization=timedelta(0))
    assert got == "Learning"
