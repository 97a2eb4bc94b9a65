"""Durations: Go's `time.ParseDuration` and `Duration.String()` (core/durations.py), with the
`d` unit of flowfence's settings and the `w` unit of `--expires`."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowfence.core.durations import (
    format_duration,
    nanos,
    parse_duration,
    show,
    to_timedelta,
)

_NS, _US, _MS, _S, _M, _H = 1, 10**3, 10**6, 10**9, 60 * 10**9, 3600 * 10**9

# Cases from Go's time/time_test.go (parseDurationTests), plus the brief's examples.
GO_VALID = [
    ("0", 0), ("5s", 5 * _S), ("30s", 30 * _S), ("1478s", 1478 * _S), ("-5s", -5 * _S),
    ("+5s", 5 * _S), ("-0", 0), ("+0", 0), ("5.0s", 5 * _S), ("5.6s", 5 * _S + 600 * _MS),
    ("5.s", 5 * _S), (".5s", 500 * _MS), ("1.0s", _S), ("1.00s", _S), ("1.004s", _S + 4 * _MS),
    ("1.0040s", _S + 4 * _MS), ("100.00100s", 100 * _S + 1 * _MS), ("10ns", 10), ("11us", 11 * _US),
    ("12µs", 12 * _US), ("12μs", 12 * _US), ("13ms", 13 * _MS), ("14s", 14 * _S), ("15m", 15 * _M),
    ("16h", 16 * _H), ("3h30m", 3 * _H + 30 * _M), ("10.5s4m", 4 * _M + 10 * _S + 500 * _MS),
    ("-2m3.4s", -(2 * _M + 3 * _S + 400 * _MS)),
    ("1h2m3s4ms5us6ns", _H + 2 * _M + 3 * _S + 4 * _MS + 5 * _US + 6),
    ("39h9m14.425s", 39 * _H + 9 * _M + 14 * _S + 425 * _MS), ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * _M), ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1), ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1), ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)), ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("-2562047h47m16.854775808s", -(1 << 63)), ("0.100000000000000000000h", 6 * _M),
    ("0.830103483285477580700h", 49 * _M + 48 * _S + 372539827),
    ("150s", 150 * _S), ("2m30s", 150 * _S), ("2.5m", 150 * _S), ("24h", 24 * _H),
    ("1h30m", 90 * _M), ("500ms", 500 * _MS),
]  # fmt: skip
GO_INVALID = [
    "", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "\x85\x85", "\xffff", "hello \xffff world",
    "9223372036854775810ns", "9223372036854775808ns", "-9223372036854775809ns",
    "9223372036854776us", "3000000h", "9223372036854775.808us", "9223372036854775807.9ms",
    "5 s", " 5s", "5s ", "1e3s", "٣s",
]  # fmt: skip


@pytest.mark.parametrize(("text", "nanos"), GO_VALID)
def test_go_duration_table(text: str, nanos: int) -> None:
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", GO_INVALID)
def test_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"^time: "):
        parse_duration(text)


def test_days_only_where_allowed() -> None:
    assert parse_duration("14d", allow_days=True) == 14 * 24 * _H
    assert parse_duration("1d12h", allow_days=True) == 36 * _H
    with pytest.raises(ValueError, match="unknown unit 'd'"):
        parse_duration("14d")


@pytest.mark.parametrize(
    ("nanos", "text"),
    [(0, "0s"), (1, "1ns"), (1100, "1.1µs"), (2200 * _US, "2.2ms"), (150 * _S, "2m30s"),
     (24 * _H, "24h0m0s"), (-(1 << 63), "-2562047h47m16.854775808s"), (_S + 5, "1.000000005s")],
)  # fmt: skip
def test_go_duration_string(nanos: int, text: str) -> None:
    assert format_duration(nanos) == text


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_format_then_parse_round_trips(nanos: int) -> None:
    assert parse_duration(format_duration(nanos)) == nanos


_UNIT_NANOS = {"ns": 1, "us": _US, "µs": _US, "ms": _MS, "s": _S, "m": _M, "h": _H}


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(_UNIT_NANOS))),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_integer_segments_sum_exactly(segments: list[tuple[int, str]], negative: bool) -> None:
    text = ("-" if negative else "") + "".join(f"{v}{u}" for v, u in segments)
    expected = sum(v * _UNIT_NANOS[u] for v, u in segments)
    # Go's range: int64 nanoseconds, one more on the negative side.
    if expected > (1 << 63) - (0 if negative else 1):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(text)
    else:
        assert parse_duration(text) == (-expected if negative else expected)


@given(
    st.integers(0, 10**4),
    st.text(alphabet="0123456789", min_size=1, max_size=9),
    st.sampled_from(sorted(_UNIT_NANOS)),
)
def test_fractions_are_within_a_nanosecond_of_exact(whole: int, digits: str, unit: str) -> None:
    exact = (whole * 10 ** len(digits) + int(digits)) * _UNIT_NANOS[unit] / 10 ** len(digits)
    assert abs(parse_duration(f"{whole}.{digits}{unit}") - exact) <= 1


@given(st.text(max_size=12))
def test_parser_never_raises_anything_but_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_duration(text)


def test_weeks_only_where_allowed() -> None:
    assert parse_duration("2w", allow_weeks=True) == 14 * 24 * _H
    assert parse_duration("1w2d", allow_days=True, allow_weeks=True) == 9 * 24 * _H
    with pytest.raises(ValueError, match="unknown unit 'w'"):
        parse_duration("2w", allow_days=True)
    with pytest.raises(ValueError, match="unknown unit 'd'"):
        parse_duration("2d", allow_weeks=True)


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.sampled_from([*sorted(_UNIT_NANOS), "d", "w"])),
        min_size=1,
        max_size=4,
    )
)
def test_days_and_weeks_are_24_and_168_hours(segments: list[tuple[int, str]]) -> None:
    units = {**_UNIT_NANOS, "d": 24 * _H, "w": 7 * 24 * _H}
    text = "".join(f"{v}{u}" for v, u in segments)
    expected = sum(v * units[u] for v, u in segments)
    assert parse_duration(text, allow_days=True, allow_weeks=True) == expected


@given(st.text(max_size=12), st.booleans(), st.booleans())
def test_parser_with_any_units_raises_only_value_error(text: str, days: bool, weeks: bool) -> None:
    with contextlib.suppress(ValueError):
        parse_duration(text, allow_days=days, allow_weeks=weeks)


@given(st.timedeltas(min_value=timedelta(days=-(10**5)), max_value=timedelta(days=10**5)))
def test_timedelta_round_trips_through_nanoseconds(delta: timedelta) -> None:
    assert to_timedelta(nanos(delta)) == delta
    assert to_timedelta(parse_duration(show(delta))) == delta
