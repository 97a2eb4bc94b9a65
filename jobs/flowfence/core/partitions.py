"""The hive layout of flow logs, `date=YYYY-MM-DD/hour=HH/`, written and read in one place.

A partition holds the rows whose `start_time` falls in its UTC day (`date=` alone) or hour
(`date=` and `hour=`), so a reader with a time window can skip whole directories by name.
Writers (the fixture generator, the ingest store) name directories with `hour_path`; readers
(local, S3 and Spark listings) get a file's span from `span`. Other `key=value` directories
(`cluster=prod/`) may surround them and are ignored.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

HOUR_GLOB = "date=*/hour=*"  # the hour directories under a store root, for Path.glob
_DATE = re.compile(r"date=(\d{4}-\d{2}-\d{2})", re.ASCII)
_HOUR = re.compile(r"hour=(\d{2})", re.ASCII)


def hour_values(moment: datetime) -> tuple[str, str]:
    """The `date` and `hour` partition values of the UTC hour holding `moment` (naive: UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}", f"{moment.hour:02d}"


def hour_path(moment: datetime) -> str:
    """`date=YYYY-MM-DD/hour=HH` of the UTC hour holding `moment` (naive: UTC)."""
    day, hour = hour_values(moment)
    return f"date={day}/hour={hour}"


def is_date_dir(name: str) -> bool:
    """True for a well-formed `date=YYYY-MM-DD` directory name."""
    match = _DATE.fullmatch(name)
    return match is not None and _day(match.group(1)) is not None


def is_hour_path(rel: str) -> bool:
    """True for exactly `date=YYYY-MM-DD/hour=HH` (well-formed, hour 00..23)."""
    day, _, hour = rel.partition("/")
    match = _HOUR.fullmatch(hour)
    return is_date_dir(day) and match is not None and int(match.group(1)) <= 23


def span(rel: str) -> tuple[datetime, datetime] | None:
    """The UTC span (naive) of the file at `rel` ('/'-separated) under `date=YYYY-MM-DD[/hour=HH]`,
    None outside a partition. Every `date=`/`hour=` directory on the path counts, so a root at
    `.../date=2026-11-01` still spans by hour. ValueError names a malformed directory."""
    day: date | None = None
    hour: int | None = None
    for name in rel.split("/")[:-1]:
        if name.startswith("date="):
            match = _DATE.fullmatch(name)
            day = _day(match.group(1)) if match else None
            if day is None:
                raise ValueError(f"bad partition directory {name!r}, expected date=YYYY-MM-DD")
        elif name.startswith("hour="):
            match = _HOUR.fullmatch(name)
            if day is None or match is None or int(match.group(1)) > 23:
                raise ValueError(
                    f"bad partition directory {name!r}, expected hour=00..23 inside date=YYYY-MM-DD"
                )
            hour = int(match.group(1))
    if day is None:
        return None
    start = datetime(day.year, day.month, day.day)
    if hour is None:
        return start, start + timedelta(days=1)
    start += timedelta(hours=hour)
    return start, start + timedelta(hours=1)


def meets(
    start: datetime | None, end: datetime | None, lo: datetime | None, hi: datetime | None
) -> bool:
    """Whether a partition holding start_times in [start, end) can hold any in [lo, hi) (None:
    unbounded; a partition without a span may hold anything)."""
    if start is None or end is None:
        return True
    return (hi is None or start < hi) and (lo is None or end > lo)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
