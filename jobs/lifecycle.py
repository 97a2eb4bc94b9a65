"""Recommendation status, derived from the data and the clock the caller passes.

Calico's timing rules (reference §1.6): `Learning` while the rules keep changing,
`Stabilizing` once unchanged for more than 2 x interval, `Stable` once unchanged for more than
the stabilization period. `NoData` is a selected namespace with no traffic yet. "Unchanged
since" is the moment the newest rule was first needed, so identical inputs and `--now` always
give identical statuses and bytes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

Status = Literal["Learning", "Stabilizing", "Stable", "NoData", "Stale"]


def status(
    last_changed: datetime | None,
    now: datetime,
    *,
    interval: timedelta,
    stabilization: timedelta,
) -> Status:
    if last_changed is None:
        return "NoData"
    # Calico ignores a stabilization period shorter than the interval.
    stabilization = max(stabilization, interval)
    unchanged = now - last_changed
    if unchanged > stabilization:
        return "Stable"
    if unchanged > 2 * interval:
        return "Stabilizing"
    return "Learning"
