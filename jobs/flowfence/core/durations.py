"""Durations: Go's `time.ParseDuration` grammar and `Duration.String()`, in one place.

Calico's scope fields are Go durations (`150s`, `2m30s`), so flowfence parses them exactly as
Go does, overflow limits and fraction rounding included. flowfence's own settings add a `d`
unit (`14d`), and `--expires` also a `w` unit (`2w`); everything else is Go's grammar.
"""

from __future__ import annotations

from datetime import timedelta

_NANOS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9}
_NANOS.update({"m": 60 * 10**9, "h": 3600 * 10**9})
_DAY = 86400 * 10**9
_TOP = 1 << 63


def parse_duration(text: str, *, allow_days: bool = False, allow_weeks: bool = False) -> int:
    """Nanoseconds, parsed exactly as Go's `time.ParseDuration` (same grammar, overflow limits
    and float rounding of fractions). `allow_days` adds a `d` (24h) unit for flowfence's own
    settings, `allow_weeks` a `w` (7d) unit for `--expires`; Calico's scope fields get neither.
    Raises ValueError with Go's message."""
    units = dict(_NANOS)
    if allow_days:
        units["d"] = _DAY
    if allow_weeks:
        units["w"] = 7 * _DAY
    invalid = ValueError(f"time: invalid duration {text!a}")
    s, neg, total = text, False, 0
    if s and s[0] in "+-":
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise invalid
        i, whole = 0, 0
        while i < len(s) and "0" <= s[i] <= "9":
            if whole > _TOP // 10:
                raise invalid
            whole = whole * 10 + ord(s[i]) - 48
            if whole > _TOP:
                raise invalid
            i += 1
        pre, s = i > 0, s[i:]
        frac, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            i, overflow, s = 0, False, s[1:]
            while i < len(s) and "0" <= s[i] <= "9":
                # Like Go: past 63 bits, further digits are consumed but ignored.
                nxt = frac * 10 + ord(s[i]) - 48
                overflow = overflow or frac > (_TOP - 1) // 10 or nxt > _TOP
                if not overflow:
                    frac, scale = nxt, scale * 10
                i += 1
            post, s = i > 0, s[i:]
        if not pre and not post:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {text!a}")
        unit = units.get(s[:i])
        if unit is None:
            raise ValueError(f"time: unknown unit {s[:i]!a} in duration {text!a}")
        s = s[i:]
        if whole > _TOP // unit:
            raise invalid
        whole *= unit
        if frac > 0:
            whole += int(float(frac) * (float(unit) / scale))
            if whole > _TOP:
                raise invalid
        total += whole
        if total > _TOP:
            raise invalid
    if not neg and total > _TOP - 1:
        raise invalid
    return -total if neg else total


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = f"{v % 10**prec:0{prec}d}".rstrip("0") if prec else ""
    return (f".{digits}" if digits else ""), v // 10**prec


def format_duration(nanos: int) -> str:
    """Go's `Duration.String()`: `1h30m0s`, `2.5s`, `500ms`, `0s`."""
    u, sign = abs(nanos), "-" if nanos < 0 else ""
    if u == 0:
        return "0s"
    if u < 10**9:
        prec, unit = (0, "ns") if u < 10**3 else (3, "\u00b5s") if u < 10**6 else (6, "ms")
        frac, whole = _fmt_frac(u, prec)
        return f"{sign}{whole}{frac}{unit}"
    frac, secs = _fmt_frac(u, 9)
    out = f"{secs % 60}{frac}s"
    if secs >= 60:
        mins = secs // 60
        out = f"{mins % 60}m{out}"
        if mins >= 60:
            out = f"{mins // 60}h{out}"
    return sign + out


def nanos(d: timedelta) -> int:
    """A timedelta in nanoseconds (whole microseconds, as timedelta holds)."""
    return (d // timedelta(microseconds=1)) * 1000


def to_timedelta(nanoseconds: int) -> timedelta:
    """Nanoseconds as a timedelta, truncated to the microsecond."""
    return timedelta(microseconds=nanoseconds // 1000)


def show(d: timedelta) -> str:
    """A timedelta the way Go prints a duration (`24h0m0s`), for messages."""
    return format_duration(nanos(d))
