"""`--expires` of accept/enforce/dismiss: an RFC 3339 time or a duration from now, in the one
duration grammar (core/durations.py) plus weeks. Everything the old `<n><m|h|d|w>` form took
still means the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowfence.core.errors import ConfigError
from flowfence.review.recording import parse_expires

NOW = datetime(2026, 11, 2, tzinfo=UTC)
UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
         "w": timedelta(weeks=1)}  # fmt: skip


@given(st.integers(1, 10_000), st.sampled_from(sorted(UNITS)), st.sampled_from(["", " "]))
def test_the_old_amount_and_unit_form_means_what_it_meant(amount: int, unit: str, pad: str) -> None:
    assert parse_expires(f"{pad}{amount}{unit}{pad}", NOW) == NOW + amount * UNITS[unit]


@pytest.mark.parametrize(
    ("text", "ahead"),
    [("1d12h", timedelta(hours=36)), ("1.5h", timedelta(minutes=90)), ("2w3d", timedelta(days=17)),
     ("90s", timedelta(seconds=90))],
)  # fmt: skip
def test_the_settings_grammar_with_weeks_is_accepted(text: str, ahead: timedelta) -> None:
    assert parse_expires(text, NOW) == NOW + ahead


def test_an_rfc3339_time_is_taken_as_given() -> None:
    assert parse_expires("2027-01-01T01:00:00+01:00", NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_expires(None, NOW) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0d", "is not in the future"),
        ("-2h", "is not in the future"),
        ("soon", "--expires: not an RFC 3339 time: 'soon'"),
        ("soon", "or a duration from now such as 30d, 12h or 2w"),
        ("2027-01-01T00:00:00", "--expires: needs a time zone"),
        ("30 d", "not an RFC 3339 time"),
    ],
)
def test_anything_else_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_expires(text, NOW)
    assert message in str(info.value)


def test_an_expiry_past_the_calendar_is_refused() -> None:
    with pytest.raises(ConfigError, match="too far in the future"):
        parse_expires("15000w", datetime(9990, 1, 1, tzinfo=UTC))
