"""Settings fields: each one's converter (raw YAML or CLI value -> typed value, ConfigError
naming the field) and where it comes from (the scope, or a FlowfenceConfig key)."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flowfence.calico.names import is_dns1123_label, is_dns1123_subdomain
from flowfence.calico.policies import BUILTIN_TIERS, OPERATOR_TIERS
from flowfence.calico.selector import SelectorError, parse
from flowfence.config.documents import fail
from flowfence.core.durations import parse_duration, show, to_timedelta

MIN_INTERVAL = timedelta(seconds=30)  # Calico rejects shorter intervals
MAX_SELECTOR = 4096  # CRD maxLength
# Tiers Calico (default, kube-admin, kube-baseline) or its operator (allow-tigera,
# calico-system, allow-cnx) define: as the recommendation tier, tier.yaml would redefine its
# order and default action for every policy in it.
RESERVED_TIERS = frozenset(t.name for t in (*BUILTIN_TIERS, *OPERATOR_TIERS))
_MEMORY = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[KMGT]i?B|B)")

Converter = Callable[[Any, str], Any]


def _duration(days: bool, at_least: timedelta | None = None) -> Converter:
    """A Go duration (`days`: also `d`), positive, or at least `at_least` when given."""

    def convert(value: Any, where: str) -> timedelta:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, str):
            try:
                result = to_timedelta(parse_duration(value, allow_days=days))
            except ValueError as exc:
                raise fail(where, str(exc)) from None
        else:
            example = "14d or 336h" if days else "150s, 2m30s or 24h"
            raise fail(where, f"expected a duration string such as {example}, got {value!r}")
        if at_least is None and result <= timedelta(0):
            raise fail(where, f"must be positive, got {value!r}")
        if at_least is not None and result < at_least:
            raise fail(where, f"must be at least {show(at_least)}, got {value!r}")
        return result

    return convert


def _int(minimum: int) -> Converter:
    def convert(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(where, f"expected an integer, got {value!r}")
        if value < minimum:
            raise fail(where, f"must be at least {minimum}, got {value}")
        return value

    return convert


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(where, f"expected a finite number, got {value!r}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise fail(where, f"expected true or false, got {value!r}")
    return value


def _choice(*allowed: str) -> Converter:
    def convert(value: Any, where: str) -> str:
        if value not in allowed:
            raise fail(where, f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return convert


def _tier_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_dns1123_label(value):
        raise fail(where, f"tier name must be a DNS-1123 label, got {value!r}")
    return value


def _recommendation_tier(value: Any, where: str) -> str:
    name = _tier_name(value, where)
    if name in RESERVED_TIERS:
        raise fail(
            where,
            f"{name!r} is a tier Calico or its operator defines, which the tier.yaml flowfence "
            "writes would redefine; choose a tier of its own, such as namespace-isolation",
        )
    return name


def selector(value: Any, where: str) -> str:
    """A namespace selector Calico would accept (parsed, at most MAX_SELECTOR characters)."""
    if not isinstance(value, str):
        raise fail(where, f"expected a selector string, got {value!r}")
    if len(value) > MAX_SELECTOR:
        raise fail(where, f"selector longer than {MAX_SELECTOR} characters")
    try:
        parse(value)
    except SelectorError as exc:
        raise fail(where, f"invalid selector: {exc}") from None
    return value


def _cidrs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise fail(where, f"expected a list of CIDR strings, got {value!r}")
    out = []
    for text in value:
        try:
            out.append(str(ipaddress.ip_network(text, strict=True)))
        except ValueError as exc:
            raise fail(where, f"invalid CIDR {text!r}: {exc}") from None
    return tuple(sorted(set(out)))


def _domain(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_dns1123_subdomain(value.rstrip(".")):
        raise fail(where, f"expected a DNS domain such as cluster.local, got {value!r}")
    return value.rstrip(".")


def _tier_orders(value: Any, where: str) -> Mapping[str, float | None]:
    if not isinstance(value, Mapping):
        raise fail(where, f"expected a mapping of tier name to order, got {value!r}")
    out: dict[str, float | None] = {}
    for name, order in value.items():
        _tier_name(name, f"{where}.{name}")
        out[name] = None if order is None else _number(order, f"{where}.{name}")
    return MappingProxyType(dict(sorted(out.items())))


def _memory(value: Any, where: str) -> str:
    text = value.replace(" ", "") if isinstance(value, str) else ""
    if _MEMORY.fullmatch(text) is None:
        raise fail(where, f"expected a size such as 4GB or 512MiB, got {value!r}")
    return text


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise fail(where, f"expected a directory path, got {value!r}")
    return Path(value)


def _optional(convert: Converter) -> Converter:
    def wrapped(value: Any, where: str) -> Any:
        return None if value is None else convert(value, where)

    return wrapped


# Settings field -> (converter, FlowfenceConfig key or None when the field comes from the scope).
FIELDS: dict[str, tuple[Converter, str | None]] = {
    "interval": (_duration(False, MIN_INTERVAL), None),
    "initial_lookback": (_duration(False), None),
    "stabilization_period": (_duration(False), None),
    "max_rules": (_int(1), None),
    "policies_learning_cut_off": (_int(1), None),
    "namespace_selector": (selector, None),
    "intra_namespace_pass": (_bool, None),
    "tier_name": (_recommendation_tier, None),
    "rec_status": (_optional(_choice("Enabled", "Disabled")), None),
    "tier_order": (_number, "tierOrder"),
    "tier_default_action": (_choice("Deny", "Pass"), "tierDefaultAction"),
    "flavor": (_choice("calico-enterprise", "calico", "kubernetes"), "flavor"),
    "policy_types": (_choice("Both", "WithRules"), "policyTypes"),
    "private_cidr_cap": (_int(1), "privateCidrCap"),
    "public_cidr_cap": (_int(1), "publicCidrCap"),
    "cluster_cidrs": (_cidrs, "clusterCIDRs"),
    "cluster_domain": (_domain, "clusterDomain"),
    "stale_rule_period": (_duration(True), "staleRulePeriod"),
    "stale_namespace_period": (_duration(True), "staleNamespacePeriod"),
    "late_arrival_grace": (_duration(True, timedelta(0)), "lateArrivalGrace"),
    "tier_orders": (_tier_orders, "tierOrders"),
    "unknown_tiers": (_choice("learn", "exclude"), "unknownTiers"),
    "memory_limit": (_optional(_memory), "memoryLimit"),
    "threads": (_optional(_int(1)), "threads"),
    "temp_dir": (_optional(_path), "tempDir"),
}


def convert(name: str, value: Any, where: str) -> Any:
    """`value` as Settings field `name` wants it; ConfigError naming `where` otherwise."""
    return FIELDS[name][0](value, where)
