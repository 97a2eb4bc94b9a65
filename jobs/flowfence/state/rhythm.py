"""Rhythm detection: does a namespace's traffic follow a daily or a weekly schedule?

A namespace whose only traffic is a nightly CronJob looks unchanged for 23 hours a day, so
Calico's timing would call it Stable long before its next run could add a rule. flowfence
finds such rhythms in the hourly activity kept in the state (the UTC hours in which the
namespace's workloads had flows, any action) over the last four weeks of data:

- **weekly**: at least 8 days of data observed; the namespace was active on at most 30% of
  them; at least 80% of its active days fall on one weekday, which it was active on in at least
  two different weeks.
- **daily**: the namespace was active on at least two days and on at least 60% of the observed
  days, and 90% of its active hours fall in a band of at most 6 consecutive hours of the day
  (wrapping at midnight).

"Observed days" are the days on which any namespace had flows, so a gap in the flow logs is not
mistaken for a quiet day. Weekly is tested first: a job on Mondays at 02:00 is weekly, not
daily. lifecycle.py then withholds `Stable` until one full period (a day, a week) of data has
been observed since the namespace's last change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta
from typing import Literal

import polars as pl

Rhythm = Literal["daily", "weekly"]
PERIOD: dict[Rhythm, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
HORIZON = timedelta(days=28)
# How much activity to keep in the state: the horizon plus a week of slack.
RETENTION = HORIZON + timedelta(days=7)
WEEKLY_MIN_OBSERVED = 8
WEEKLY_MAX_ACTIVE = 0.3
WEEKLY_SAME_DAY = 0.8
DAILY_MIN_ACTIVE = 0.6
BAND_HOURS = 6
BAND_SHARE = 0.9


def _narrow_band(hours: Sequence[datetime]) -> bool:
    counts = [0] * 24
    for hour in hours:
        counts[hour.hour] += 1
    need = BAND_SHARE * len(hours)
    for start in range(24):
        if sum(counts[(start + i) % 24] for i in range(BAND_HOURS)) >= need:
            return True
    return False


def detect(hours: Sequence[datetime], observed_days: Collection[date]) -> Rhythm | None:
    """The rhythm of one namespace from its active UTC hours (see the module doc)."""
    if not hours or not observed_days:
        return None
    days = {h.date() for h in hours}
    observed = len(set(observed_days) | days)
    weekday, on_weekday = Counter(d.weekday() for d in days).most_common(1)[0]
    weeks = {d.isocalendar()[:2] for d in days if d.weekday() == weekday}
    if (
        observed >= WEEKLY_MIN_OBSERVED
        and len(days) <= WEEKLY_MAX_ACTIVE * observed
        and on_weekday >= WEEKLY_SAME_DAY * len(days)
        and len(weeks) >= 2
    ):
        return "weekly"
    if len(days) >= 2 and len(days) >= DAILY_MIN_ACTIVE * observed and _narrow_band(hours):
        return "daily"
    return None


def detect_all(activity: pl.DataFrame) -> dict[str, Rhythm]:
    """Rhythm per namespace (only those that have one) from the state's activity table."""
    active = activity.filter(pl.col("flows") > 0)
    if active.height == 0:
        return {}
    newest = active.get_column("hour").max()
    assert isinstance(newest, datetime)
    recent = active.filter(pl.col("hour") > newest - HORIZON)
    observed = set(recent.get_column("hour").dt.date().unique().to_list())
    out: dict[str, Rhythm] = {}
    grouped = recent.group_by("namespace").agg(pl.col("hour").sort()).sort("namespace")
    for namespace, hours in grouped.iter_rows():
        rhythm = detect(hours, observed)
        if rhythm is not None:
            out[namespace] = rhythm
    return out


def trim(activity: pl.DataFrame) -> pl.DataFrame:
    """Drop activity older than RETENTION before the newest hour (the state stays small)."""
    if activity.height == 0:
        return activity
    newest = activity.get_column("hour").max()
    assert isinstance(newest, datetime)
    return activity.filter(pl.col("hour") > newest - RETENTION)
