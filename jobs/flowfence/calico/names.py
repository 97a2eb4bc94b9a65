"""Validation of the untrusted strings in flow logs, before any of them reach a selector or YAML.

Every string in a flow row is attacker-influenced (pod labels, DNS answers, names). `screen`
checks a whole edges frame with Polars expressions (regexes run in Rust over the column; only
the distinct IP strings go through `ipaddress`) and drops every row with an invalid value,
counting it under one reason. It drops the row, never just the value: removing one bad domain
from a list could leave the list empty, which turns a Domains rule into a port-only Public rule,
i.e. a wider policy.

The same patterns back the scalar validators (`is_dns1123_label`, `is_hostname`, ...) used by
other modules. Anything they accept is ASCII without quotes, backslashes, whitespace or control
characters, so it can sit inside a single-quoted Calico selector literal and in YAML (emitted
by a YAML library: `*.example.com` and `123` still need the emitter's quoting).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

# Patterns are shared by Python `re` (scalar checks) and Polars' Rust regex (screening); they
# use explicit ASCII classes only, because `\d`, `\w`, `\s` differ between the two engines.
DNS1123_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(?:\.{DNS1123_LABEL})*"
LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = rf"(?:{DNS1123_SUBDOMAIN}/)?{LABEL_NAME}"
LABEL_VALUE = rf"(?:{LABEL_NAME})?"
# Calico aggregated workload/host names: a resource name, or a prefix ending in `*`
# (`nginx-86c57db685-*`).
NAME_AGGR = r"[a-z0-9][-a-z0-9.]{0,252}\*?|\*"
# Calico's names for `net` endpoints: private and public networks. Older releases also named
# other external networks (`aws`): any DNS-1123 label is accepted for a `net` endpoint, and
# every one but `pvt` is an external peer (learn/rule_groups.py treats it as `pub`).
NETWORK_NAMES = ("pvt", "pub")
PROTOCOL_NAMES = ("tcp", "udp", "icmp", "icmpv6", "sctp", "udplite")
PROTOCOL = r"tcp|udp|icmp|icmpv6|sctp|udplite|[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5]"
ENDPOINT_TYPES = ("wep", "hep", "ns", "net")
REPORTERS = ("src", "dst", "fwd")
ACTIONS = ("allow", "deny")
MAX_SUBDOMAIN = 253
SAMPLE_WIDTH = 80
MAX_SAMPLES = 3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _full(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{pattern})")


_LABEL_RE = _full(DNS1123_LABEL)
_SUBDOMAIN_RE = _full(DNS1123_SUBDOMAIN)
_LABEL_KEY_RE = _full(LABEL_KEY)
_LABEL_VALUE_RE = _full(LABEL_VALUE)
_NAME_AGGR_RE = _full(NAME_AGGR)


def is_dns1123_label(s: str) -> bool:
    """A Kubernetes namespace / Service name: lower-case alphanumerics and `-`, at most 63."""
    return _LABEL_RE.fullmatch(s) is not None


def is_dns1123_subdomain(s: str) -> bool:
    """A Kubernetes resource name: dot-separated DNS-1123 labels, at most 253 characters."""
    return len(s) <= MAX_SUBDOMAIN and _SUBDOMAIN_RE.fullmatch(s) is not None


def is_hostname(s: str, allow_wildcard: bool = True) -> bool:
    """A lower-case DNS name; with `allow_wildcard`, also `*.<name with at least one dot>`.

    A bare `*`, `*.com`, a `*` anywhere but the leading label and empty labels are refused.
    """
    if allow_wildcard and s.startswith("*."):
        rest = s[2:]
        return "." in rest and is_dns1123_subdomain(rest) and len(s) <= MAX_SUBDOMAIN
    return is_dns1123_subdomain(s)


def is_label_key(s: str) -> bool:
    """`[prefix/]name`: prefix a DNS subdomain of at most 253, name at most 63 characters."""
    if _LABEL_KEY_RE.fullmatch(s) is None:
        return False
    prefix, _, _ = s.rpartition("/")
    return len(prefix) <= MAX_SUBDOMAIN


def is_label_value(s: str) -> bool:
    """A Kubernetes label value: empty, or at most 63 of `[A-Za-z0-9_.-]` starting and ending
    alphanumeric."""
    return _LABEL_VALUE_RE.fullmatch(s) is not None


def is_label(s: str) -> bool:
    """A `key=value` label string as flow logs carry them."""
    key, sep, value = s.partition("=")
    return bool(sep) and is_label_key(key) and is_label_value(value)


def is_name_aggr(s: str, endpoint_type: str) -> bool:
    """An aggregated endpoint name valid for its endpoint type."""
    if endpoint_type == "net":
        return s in NETWORK_NAMES or is_dns1123_label(s)
    if endpoint_type == "ns":
        return is_dns1123_subdomain(s)
    return endpoint_type in ("wep", "hep") and _NAME_AGGR_RE.fullmatch(s) is not None


def parse_ip(s: str) -> IPAddress | None:
    """The address, or None. IPv6 zone ids (`fe80::1%eth0`) are refused: they carry free text."""
    if "%" in s or not s.isascii():
        return None
    try:
        return ipaddress.ip_address(s)
    except ValueError:
        return None


def sample(value: object) -> str:
    """A value made safe to print: `ascii()` escapes control and non-ASCII characters
    (homoglyphs show as `\\u0430`), capped at 80 characters."""
    text = ascii(value)
    return text if len(text) <= SAMPLE_WIDTH else text[: SAMPLE_WIDTH - 3] + "..."


# ---- vectorised screening ------------------------------------------------------------------


def _matches(e: pl.Expr, pattern: str) -> pl.Expr:
    return e.str.contains(rf"^(?:{pattern})$")


def _valid_label(e: pl.Expr) -> pl.Expr:
    key = e.str.extract(r"^([^=]*)=", 1)
    prefix_len = key.str.extract(r"^(.*)/", 1).str.len_bytes().fill_null(0)
    value = e.str.replace(r"^[^=]*=", "")
    return (
        _matches(key, LABEL_KEY).fill_null(False)
        & (prefix_len <= MAX_SUBDOMAIN)
        & _matches(value, LABEL_VALUE)
    )


def _valid_hostname(e: pl.Expr) -> pl.Expr:
    # Observed DNS names never contain wildcards: a `*` in a flow log is refused.
    return _matches(e, DNS1123_SUBDOMAIN) & (e.str.len_bytes() <= MAX_SUBDOMAIN)


def _lower_ascii(e: pl.Expr) -> pl.Expr:
    # Lower-case only pure-ASCII values: Unicode case folding maps homoglyphs such as the
    # Kelvin sign to ASCII letters, which would launder them into valid names.
    return pl.when(e.str.contains(r"^[\x00-\x7f]*$")).then(e.str.to_lowercase()).otherwise(e)


def _name_valid(type_col: str) -> Callable[[pl.Expr], pl.Expr]:
    def valid(n: pl.Expr) -> pl.Expr:
        t = pl.col(type_col)
        subdomain = _matches(n, DNS1123_SUBDOMAIN) & (n.str.len_bytes() <= MAX_SUBDOMAIN)
        return (
            pl.when(t == "net")
            .then(n.is_in(list(NETWORK_NAMES)) | _matches(n, DNS1123_LABEL))
            .when(t == "ns")
            .then(subdomain)
            .when(t.is_in(["wep", "hep"]))
            .then(_matches(n, NAME_AGGR))
            .otherwise(False)
        )

    return valid


def _one_of(allowed: Sequence[str]) -> Callable[[pl.Expr], pl.Expr]:
    def valid(e: pl.Expr) -> pl.Expr:
        return e.is_in(list(allowed))

    return valid


def _pattern(pattern: str) -> Callable[[pl.Expr], pl.Expr]:
    def valid(e: pl.Expr) -> pl.Expr:
        return _matches(e, pattern)

    return valid


def _port(e: pl.Expr) -> pl.Expr:
    return e.is_between(0, 65535)


@dataclass(frozen=True)
class _Field:
    column: str
    valid: Callable[[pl.Expr], pl.Expr]
    shape: str = "optional"  # "optional": NULL allowed; "required": NULL invalid; "list"

    def bad(self) -> pl.Expr:
        c = pl.col(self.column)
        if self.shape == "list":
            el = pl.element()
            return c.list.eval(el.is_null() | ~self.valid(el).fill_null(False)).list.any()
        ok = self.valid(c).fill_null(False)
        if self.shape == "required":
            return c.is_null() | ~ok
        return c.is_not_null() & ~ok


def _not_in(bad: list[str]) -> Callable[[pl.Expr], pl.Expr]:
    def valid(e: pl.Expr) -> pl.Expr:
        return ~e.is_in(bad)

    return valid


# List columns are checked on their distinct elements (labels and domains repeat across edges),
# then rows are matched against the invalid ones.
LIST_CHECKS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "source_labels": _valid_label,
    "dest_labels": _valid_label,
    "dest_domains": _valid_hostname,
}


def _bad_elements(edges: pl.DataFrame, column: str) -> list[str]:
    col = pl.col(column)
    distinct = edges.select(col.explode().drop_nulls().unique())
    return distinct.filter(~LIST_CHECKS[column](col).fill_null(False)).get_column(column).to_list()


def _checks(
    bad_ips: list[str], bad_elements: dict[str, list[str]]
) -> tuple[tuple[str, tuple[_Field, ...]], ...]:
    label = _pattern(DNS1123_LABEL)
    ip_ok = _not_in(bad_ips)
    lists = {c: _Field(c, _not_in(bad), "list") for c, bad in bad_elements.items()}

    return (
        ("invalid reporter", (_Field("reporter", _one_of(REPORTERS), "required"),)),
        ("invalid action", (_Field("action", _one_of(ACTIONS), "required"),)),
        (
            "invalid endpoint type",
            tuple(
                _Field(c, _one_of(ENDPOINT_TYPES), "required") for c in ("source_type", "dest_type")
            ),
        ),
        (
            "invalid namespace",
            tuple(
                _Field(c, label)
                for c in ("source_namespace", "dest_namespace", "dest_service_namespace")
            ),
        ),
        (
            "invalid name",
            (
                _Field("source_name_aggr", _name_valid("source_type")),
                _Field("dest_name_aggr", _name_valid("dest_type")),
            ),
        ),
        ("invalid service name", (_Field("dest_service_name", label),)),
        ("invalid IP", (_Field("source_ip", ip_ok), _Field("dest_ip", ip_ok))),
        ("invalid port", (_Field("dest_port", _port), _Field("dest_service_port_num", _port))),
        ("invalid protocol", (_Field("proto", _pattern(PROTOCOL), "required"),)),
        (
            "invalid label",
            (lists["source_labels"], lists["dest_labels"]),
        ),
        ("invalid domain", (lists["dest_domains"],)),
    )


SCREENED_COLUMNS = (
    "reporter", "action", "source_type", "dest_type", "source_namespace", "dest_namespace",
    "dest_service_namespace", "source_name_aggr", "dest_name_aggr", "dest_service_name",
    "source_ip", "dest_ip", "dest_port", "dest_service_port_num", "proto", "source_labels",
    "dest_labels", "dest_domains", "flows",
)  # fmt: skip


@dataclass(frozen=True)
class Rejection:
    """Rows dropped for one reason, with a few escaped offending values for the report."""

    reason: str
    edges: int
    flows: int
    samples: tuple[str, ...]


@dataclass(frozen=True)
class Rejections:
    """What `screen` dropped; each row is counted once, under the first check it failed."""

    items: tuple[Rejection, ...] = ()

    @property
    def edges(self) -> int:
        return sum(r.edges for r in self.items)

    @property
    def flows(self) -> int:
        return sum(r.flows for r in self.items)

    def by_reason(self) -> dict[str, Rejection]:
        return {r.reason: r for r in self.items}


def _ip_screen(edges: pl.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Bad IP strings and a map to the canonical form, parsing each distinct value once."""
    distinct = pl.concat([edges.get_column(c).cast(pl.String) for c in ("source_ip", "dest_ip")])
    bad: list[str] = []
    canonical: dict[str, str] = {}
    for text in distinct.drop_nulls().unique().to_list():
        ip = parse_ip(text)
        if ip is None:
            bad.append(text)
        elif str(ip) != text:
            canonical[text] = str(ip)
    return sorted(bad), canonical


def _samples(rejected: pl.DataFrame, fields: tuple[_Field, ...]) -> tuple[str, ...]:
    values: set[str] = set()
    for field in fields:
        rows = rejected.filter(field.bad())
        if field.shape == "list":
            col = pl.col(field.column)
            el = rows.select(col.explode()).filter(
                col.is_null() | ~field.valid(col).fill_null(False)
            )
            values.update(sample(v) for v in el.get_column(field.column).to_list())
        else:
            values.update(sample(v) for v in rows.get_column(field.column).to_list())
    return tuple(sorted(values)[:MAX_SAMPLES])


def screen(edges: pl.DataFrame) -> tuple[pl.DataFrame, Rejections]:
    """Drop edges holding any invalid string; return the clean edges and what was dropped.

    Clean edges come back with `dest_domains` lower-cased (lists that held upper case are
    de-duplicated and sorted again) and IPs in canonical text form. Never raises for bad data;
    a missing column is a programming error.
    """
    missing = [c for c in SCREENED_COLUMNS if c not in edges.columns]
    if missing:
        raise ValueError(f"screen: edges frame lacks columns {missing}")
    domains = pl.col("dest_domains")
    # Flow logs already hold sorted, distinct domains; only upper case needs rework (and
    # Polars' list sort is slow, so skip it when there is none).
    upper = edges.select(domains.list.eval(pl.element().str.contains("[A-Z]")).list.any().any())
    if upper.item():
        lowered = domains.list.eval(_lower_ascii(pl.element()).unique().sort())
        edges = edges.with_columns(lowered)
    bad_ips, canonical = _ip_screen(edges)
    checks = _checks(bad_ips, {c: _bad_elements(edges, c) for c in LIST_CHECKS})
    reason: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, fields in reversed(checks):
        failed = pl.any_horizontal(*(f.bad().fill_null(False) for f in fields))
        reason = pl.when(failed).then(pl.lit(name)).otherwise(reason)
    marked = edges.with_columns(reason.alias("__reason"))
    rejected = marked.filter(pl.col("__reason").is_not_null())
    items = []
    for name, fields in checks:
        rows = rejected.filter(pl.col("__reason") == name)
        if rows.height:
            flows = int(rows.get_column("flows").sum() or 0)
            items.append(Rejection(name, rows.height, flows, _samples(rows, fields)))
    kept = marked.filter(pl.col("__reason").is_null()).drop("__reason")
    if canonical:
        kept = kept.with_columns(pl.col(c).replace(canonical) for c in ("source_ip", "dest_ip"))
    return kept, Rejections(tuple(items))
