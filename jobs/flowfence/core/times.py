"""RFC 3339 times: the one formatter and the one parser.

Every time flowfence writes (reports, manifests, decisions, the state manifest, lock records)
is UTC with a `Z`; every time it reads from a flag or a file goes through `parse`, which takes
RFC 3339 (`2026-11-02T00:00:00Z`, `2026-11-02T01:00:00.5+01:00`) and nothing looser. A time
without an offset is refused rather than guessed: the same text would otherwise mean different
instants on a laptop and in a pod.

Naive datetimes inside flowfence are UTC (the flows view, the state tables); `rfc3339` formats
them as such and converts aware ones.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

from flowfence.core.errors import ConfigError

EXAMPLE = "2026-11-02T00:00:00Z"
_DATE = r"(\d{4})-(\d{2})-(\d{2})"
_TIME = r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
_OFFSET = r"([Zz]|[+-]\d{2}:\d{2})"
# RFC 3339 section 5.6 date-time; a space may stand for the T (section 5.6, NOTE).
_RFC3339 = re.compile(rf"{_DATE}[Tt ]{_TIME}{_OFFSET}", re.ASCII)
_LOCAL = re.compile(rf"{_DATE}(?:[Tt ]{_TIME})?", re.ASCII)


class TimeError(ValueError):
    """Text that is not an RFC 3339 time; the message says what is wrong, without a place."""


class MissingOffset(TimeError):
    """A date or date and time without a UTC offset."""


def rfc3339(value: datetime, *, fraction: bool = False) -> str:
    """`2026-11-02T00:00:00Z`: UTC, whole seconds (`fraction`: six digits of microseconds).
    A naive datetime is taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    return f"{text}.{value.microsecond:06d}Z" if fraction else f"{text}Z"


def parse(text: str) -> datetime:
    """An RFC 3339 time as an aware UTC datetime. Fractions finer than a microsecond are
    dropped. TimeError (MissingOffset without an offset) otherwise."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        if _LOCAL.fullmatch(text):
            raise MissingOffset(_missing_offset(text))
        raise TimeError(f"not an RFC 3339 time: {text!r:.60} (expected e.g. {EXAMPLE})")
    year, month, day, hour, minute, second, digits, offset = match.groups()
    if second == "60":
        raise TimeError(f"{text!r}: a leap second, which flowfence cannot represent")
    try:
        zone = UTC if offset in ("Z", "z") else _zone(offset)
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((digits or "0")[:6].ljust(6, "0")), tzinfo=zone,
        )  # fmt: skip
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise TimeError(f"not a valid time: {text!r} ({exc})") from None


def _zone(offset: str) -> timezone:
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {offset} out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if offset[0] == "-" else delta)


def _missing_offset(text: str) -> str:
    if "T" in text.upper() or " " in text:
        return f"needs a time zone: {text!r} has no UTC offset; append Z for UTC, e.g. {text}Z"
    return f"needs a time and a zone: {text!r} is a date; e.g. {text}T00:00:00Z"


def parse_option(text: str, where: str) -> datetime:
    """`parse` for a command-line option or a file field, surrounding blanks ignored:
    ConfigError (exit 2) naming `where`."""
    try:
        return parse(text.strip())
    except TimeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_field(value: object, where: str) -> datetime:
    """A time from YAML, which may already have turned the text into a datetime or a date."""
    if isinstance(value, str):
        return parse_option(value, where)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{where}: {_missing_offset(value.isoformat())}")
        return value.astimezone(UTC)
    if isinstance(value, date):
        raise ConfigError(f"{where}: {_missing_offset(value.isoformat())}")
    raise ConfigError(f"{where}: expected an RFC 3339 time, got {type(value).__name__}")


def now() -> datetime:
    """The wall clock, UTC, to the second (what a run records as its `now`)."""
    return datetime.now(UTC).replace(microsecond=0)


def naive_utc(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC that the flows view and the state tables hold."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def window_bound(moment: datetime | None, name: str) -> datetime | None:
    """A window bound as naive UTC (how the flows view and partition spans are compared), None
    for an open bound. A naive bound is refused: its zone would be a guess."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return naive_utc(moment)
