"""The hive layout `date=YYYY-MM-DD/hour=HH` (core/partitions.py): the names writers give
directories and the spans readers take from them agree, and malformed names are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowfence.core import partitions

MOMENTS = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 30))


def test_span_reads_date_and_hour_directories() -> None:
    assert partitions.span("x.parquet") is None
    assert partitions.span("date=2026-11-01/x.parquet") == (
        datetime(2026, 11, 1),
        datetime(2026, 11, 2),
    )
    assert partitions.span("region=eu/date=2026-11-01/hour=23/x.parquet") == (
        datetime(2026, 11, 1, 23),
        datetime(2026, 11, 2),
    )
    for bad in ("date=2026-13-01/x.parquet", "date=2026-11-01/hour=24/x", "hour=01/x"):
        with pytest.raises(ValueError, match="partition"):
            partitions.span(bad)


def test_only_ascii_digits_name_a_partition() -> None:
    with pytest.raises(ValueError, match="partition"):
        partitions.span("date=2026-11-01/hour=\u0660\u0663/x.parquet")
    assert not partitions.is_hour_path("date=2026-11-01/hour=\u0660\u0663")


@given(MOMENTS)
def test_the_hour_a_writer_names_is_the_hour_a_reader_spans(moment: datetime) -> None:
    path = partitions.hour_path(moment)
    assert partitions.is_hour_path(path)
    span = partitions.span(f"{path}/flows.parquet")
    assert span is not None
    start, end = span
    assert start <= moment < end and end - start == timedelta(hours=1)
    assert partitions.span(f"{path.split('/')[0]}/flows.parquet") == (
        start.replace(hour=0),
        start.replace(hour=0) + timedelta(days=1),
    )


@given(MOMENTS, st.integers(-14 * 60, 14 * 60))
def test_an_aware_moment_is_partitioned_by_its_utc_hour(moment: datetime, minutes: int) -> None:
    aware = moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes)))
    assert partitions.hour_values(aware) == partitions.hour_values(moment)


@given(st.text(max_size=40))
def test_span_raises_only_value_error_and_agrees_with_is_hour_path(text: str) -> None:
    try:
        span = partitions.span(f"{text}/x.parquet")
    except ValueError:
        return
    if partitions.is_hour_path(text):
        assert span is not None and span[1] - span[0] == timedelta(hours=1)


@pytest.mark.parametrize(
    "rel",
    ["date=2026-11-01", "date=2026-11-01/hour=7", "date=2026-02-30/hour=01", "x/hour=01",
     "date=2026-11-01/hour=01/x", "date=2026-11-01/hour=24"],
)  # fmt: skip
def test_is_hour_path_wants_exactly_a_date_and_an_hour(rel: str) -> None:
    assert not partitions.is_hour_path(rel)
    assert partitions.is_hour_path("date=2026-11-01/hour=01")
