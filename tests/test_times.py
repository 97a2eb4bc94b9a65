"""RFC 3339 times (core/times.py): the one formatter and parser every flag and file goes
through. A time without an offset is refused, never guessed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowfence.core import times
from flowfence.core.errors import ConfigError

MOMENTS = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30))
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timedelta(minutes=m))


def offset_text(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-02T00:00:00Z", datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-02t00:00:00z", datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-02 01:30:00+01:30", datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-01T23:00:00-01:00", datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-02T00:00:00-00:00", datetime(2026, 11, 2, tzinfo=UTC)),
        ("2026-11-02T00:00:00.5Z", datetime(2026, 11, 2, 0, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-02T00:00:00.123456789Z", datetime(2026, 11, 2, 0, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_parse_to_utc(text: str, expected: datetime) -> None:
    parsed = times.parse(text)
    assert parsed == expected and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-02T00:00:00", "append Z for UTC, e.g. 2026-11-02T00:00:00Z"),
        ("2026-11-02 00:00:00.25", "append Z for UTC, e.g. 2026-11-02 00:00:00.25Z"),
        ("2026-11-02", "a date; e.g. 2026-11-02T00:00:00Z"),
    ],
)
def test_a_time_without_an_offset_is_refused_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(times.MissingOffset) as info:
        times.parse(text)
    assert message in str(info.value)
    times.parse(message.rsplit("e.g. ", 1)[-1])  # and the suggestion is a valid time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "not an RFC 3339 time: 'yesterday' (expected e.g. 2026-11-02T00:00:00Z)"),
        ("2026-13-01T00:00:00Z", "month must be in 1..12"),
        ("2026-02-30T00:00:00Z", "day is out of range"),
        ("2026-11-02T24:00:00Z", "hour must be in 0..23"),
        ("2026-11-02T00:00:60Z", "a leap second"),
        ("2026-11-02T00:00:00+24:00", "offset +24:00 out of range"),
        ("2026-11-02T00:00Z", "not an RFC 3339 time"),
        ("2026-11-02T00:00:00+0100", "not an RFC 3339 time"),
        ("20261102T000000Z", "not an RFC 3339 time"),
        ("2026-W45-1T00:00:00Z", "not an RFC 3339 time"),
        ("\u0662026-11-02T00:00:00Z", "not an RFC 3339 time"),
        ("0000-01-01T00:00:00Z", "not a valid time"),
        ("9999-12-31T23:59:59-01:00", "not a valid time"),
    ],
)
def test_anything_else_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(times.TimeError) as info:
        times.parse(text)
    assert message in str(info.value)
    assert not isinstance(info.value, times.MissingOffset)


@given(MOMENTS)
def test_format_then_parse_round_trips(moment: datetime) -> None:
    whole = moment.replace(microsecond=0)
    assert times.parse(times.rfc3339(moment)) == whole.replace(tzinfo=UTC)
    assert times.parse(times.rfc3339(moment, fraction=True)) == moment.replace(tzinfo=UTC)
    assert times.rfc3339(times.parse(times.rfc3339(moment))) == times.rfc3339(moment)


@given(MOMENTS, OFFSETS)
def test_any_offset_normalises_to_the_same_utc_instant(moment: datetime, offset: timedelta) -> None:
    utc = moment.replace(tzinfo=UTC)
    local = utc.astimezone(timezone(offset))
    text = local.replace(tzinfo=None).isoformat(timespec="microseconds") + offset_text(offset)
    parsed = times.parse(text)
    assert parsed == utc and parsed.tzinfo == UTC
    assert times.rfc3339(local, fraction=True) == times.rfc3339(moment, fraction=True)


@given(MOMENTS)
def test_a_zone_less_time_is_always_refused(moment: datetime) -> None:
    for text in (moment.isoformat(timespec="seconds"), moment.date().isoformat()):
        with pytest.raises(times.MissingOffset):
            times.parse(text)
    with pytest.raises(ConfigError, match=r"^--since: needs a time"):
        times.parse_option(moment.isoformat(timespec="seconds"), "--since")


@given(st.text(max_size=40))
def test_the_parser_never_crashes(text: str) -> None:
    try:
        parsed = times.parse(text)
    except times.TimeError as exc:
        assert str(exc)
        return
    assert parsed.tzinfo == UTC


@given(st.text(alphabet="0123456789-+:TZz .", max_size=30))
def test_near_misses_are_refused_or_parse_to_utc(text: str) -> None:
    try:
        parsed = times.parse(text)
    except times.TimeError:
        return
    assert times.parse(times.rfc3339(parsed, fraction=True)) == parsed


def test_naive_datetimes_format_as_utc_and_aware_ones_convert() -> None:
    assert times.rfc3339(datetime(2026, 11, 2, 1)) == "2026-11-02T01:00:00Z"
    cet = timezone(timedelta(hours=1))
    assert times.rfc3339(datetime(2026, 11, 2, 1, tzinfo=cet)) == "2026-11-02T00:00:00Z"
    assert times.rfc3339(datetime(2026, 11, 2, 0, 0, 0, 42)) == "2026-11-02T00:00:00Z"
    assert times.rfc3339(datetime(2026, 11, 2, 0, 0, 0, 42), fraction=True) == (
        "2026-11-02T00:00:00.000042Z"
    )
    assert times.naive_utc(datetime(2026, 11, 2, 1, tzinfo=cet)) == datetime(2026, 11, 2)


def test_yaml_fields_take_aware_datetimes_and_refuse_naive_ones_and_dates() -> None:
    where = "namespace 'shop': field 'expires'"
    aware = datetime(2026, 12, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert times.parse_field(aware, where) == datetime(2026, 12, 1, tzinfo=UTC)
    assert times.parse_field(" 2026-12-01T00:00:00Z ", where) == datetime(2026, 12, 1, tzinfo=UTC)
    cases: list[tuple[object, str]] = [
        (datetime(2026, 12, 1), "needs a time zone"),
        (date(2026, 12, 1), "needs a time and a zone"),
        ("next week", "not an RFC 3339 time"),
        (42, "expected an RFC 3339 time, got int"),
    ]
    for value, message in cases:
        with pytest.raises(ConfigError) as info:
            times.parse_field(value, where)
        assert str(info.value).startswith(f"{where}: {message}")
