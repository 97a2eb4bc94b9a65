"""Configuration: a Calico `PolicyRecommendationScope` plus flowfence's own settings file.

One frozen `Settings` object, built by `load_settings` and passed explicitly to every stage.
The scope manifest is read unchanged (a `kubectl get policyrecommendationscope default -o
yaml` dump works); settings Calico has no field for live in a `FlowfenceConfig` file. Unknown
keys are errors, so a typo never silently falls back to a default. See docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

from flowfence.calico.names import is_dns1123_label, is_dns1123_subdomain
from flowfence.calico.selector import SelectorError, parse
from flowfence.core.errors import ConfigError

Flavor = Literal["calico-enterprise", "calico", "kubernetes"]
DefaultAction = Literal["Deny", "Pass"]
RecStatus = Literal["Enabled", "Disabled"]
UnknownTiers = Literal["learn", "exclude"]

SCOPE_API_VERSION = "projectcalico.org/v3"
SCOPE_KIND = "PolicyRecommendationScope"
SCOPE_NAME = "default"
CONFIG_API_VERSION = "flowfence.io/v1alpha1"
CONFIG_KIND = "FlowfenceConfig"
DEFAULT_SELECTOR = (
    "!(projectcalico.org/name starts with 'tigera-') && "
    "!(projectcalico.org/name starts with 'calico-') && "
    "!(projectcalico.org/name starts with 'kube-') && "
    "!(projectcalico.org/name starts with 'openshift-')"
)
MIN_INTERVAL = timedelta(seconds=30)  # Calico rejects shorter intervals
MAX_SELECTOR = 4096  # CRD maxLength
_MEMORY = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[KMGT]i?B|B)")
_OBJECT_META = frozenset(
    {
        "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
        "annotations", "ownerReferences", "finalizers", "managedFields",
    }
)  # fmt: skip


# ---- Go durations -----------------------------------------------------------------------

_NANOS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9}
_NANOS.update({"m": 60 * 10**9, "h": 3600 * 10**9})
_DAY = 86400 * 10**9
_TOP = 1 << 63


def parse_duration(text: str, *, allow_days: bool = False) -> int:
    """Nanoseconds, parsed exactly as Go's `time.ParseDuration` (same grammar, overflow limits
    and float rounding of fractions). `allow_days` adds a `d` (24h) unit for flowfence's own
    settings; Calico's scope fields never get it. Raises ValueError with Go's message."""
    units = {**_NANOS, "d": _DAY} if allow_days else _NANOS
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


def _nanos(d: timedelta) -> int:
    return (d // timedelta(microseconds=1)) * 1000


# ---- YAML --------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key if isinstance(key, str) else id(key_node))
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_documents(path: Path) -> list[Any]:
    """Every YAML document in `path`; ConfigError (naming the file) if unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know besides its inputs. Durations are `timedelta`."""

    # From the PolicyRecommendationScope (Calico's documented defaults).
    interval: timedelta = timedelta(seconds=150)
    initial_lookback: timedelta = timedelta(hours=24)
    stabilization_period: timedelta = timedelta(minutes=10)
    max_rules: int = 20
    policies_learning_cut_off: int = 20
    namespace_selector: str = DEFAULT_SELECTOR
    intra_namespace_pass: bool = False
    tier_name: str = "namespace-isolation"
    rec_status: RecStatus | None = None  # recorded for the report; flowfence runs regardless
    # From the FlowfenceConfig file.
    tier_order: float = 10000.0
    tier_default_action: DefaultAction = "Deny"
    flavor: Flavor = "calico-enterprise"
    private_cidr_cap: int = 8
    public_cidr_cap: int = 16
    cluster_cidrs: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    stale_rule_period: timedelta = timedelta(days=14)
    stale_namespace_period: timedelta = timedelta(days=30)
    late_arrival_grace: timedelta = timedelta(hours=1)
    tier_orders: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))
    unknown_tiers: UnknownTiers = "learn"
    memory_limit: str | None = None
    threads: int | None = None
    temp_dir: Path | None = None
    # Where the values came from, for the report.
    scope_path: Path | None = None
    config_path: Path | None = None


# ---- field converters: raw YAML / CLI value -> typed value, ConfigError naming the field ----

Converter = Callable[[Any, str], Any]


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}")


def _duration(days: bool, at_least: timedelta | None = None) -> Converter:
    """A Go duration (`days`: also `d`), positive, or at least `at_least` when given."""

    def convert(value: Any, where: str) -> timedelta:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, str):
            try:
                nanos = parse_duration(value, allow_days=days)
            except ValueError as exc:
                raise _fail(where, str(exc)) from None
            result = timedelta(microseconds=nanos // 1000)
        else:
            example = "14d or 336h" if days else "150s, 2m30s or 24h"
            raise _fail(where, f"expected a duration string such as {example}, got {value!r}")
        if at_least is None and result <= timedelta(0):
            raise _fail(where, f"must be positive, got {value!r}")
        if at_least is not None and result < at_least:
            raise _fail(where, f"must be at least {_show(at_least)}, got {value!r}")
        return result

    return convert


def _int(minimum: int) -> Converter:
    def convert(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, f"expected an integer, got {value!r}")
        if value < minimum:
            raise _fail(where, f"must be at least {minimum}, got {value}")
        return value

    return convert


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, f"expected a finite number, got {value!r}")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {value!r}")
    return value


def _choice(*allowed: str) -> Converter:
    def convert(value: Any, where: str) -> str:
        if value not in allowed:
            raise _fail(where, f"expected one of {', '.join(allowed)}, got {value!r}")
        return str(value)

    return convert


def _tier_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_dns1123_label(value):
        raise _fail(where, f"tier name must be a DNS-1123 label, got {value!r}")
    return value


def _selector(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"expected a selector string, got {value!r}")
    if len(value) > MAX_SELECTOR:
        raise _fail(where, f"selector longer than {MAX_SELECTOR} characters")
    try:
        parse(value)
    except SelectorError as exc:
        raise _fail(where, f"invalid selector: {exc}") from None
    return value


def _cidrs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _fail(where, f"expected a list of CIDR strings, got {value!r}")
    out = []
    for text in value:
        try:
            out.append(str(ipaddress.ip_network(text, strict=True)))
        except ValueError as exc:
            raise _fail(where, f"invalid CIDR {text!r}: {exc}") from None
    return tuple(sorted(set(out)))


def _domain(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_dns1123_subdomain(value.rstrip(".")):
        raise _fail(where, f"expected a DNS domain such as cluster.local, got {value!r}")
    return value.rstrip(".")


def _tier_orders(value: Any, where: str) -> Mapping[str, float | None]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping of tier name to order, got {value!r}")
    out: dict[str, float | None] = {}
    for name, order in value.items():
        _tier_name(name, f"{where}.{name}")
        out[name] = None if order is None else _number(order, f"{where}.{name}")
    return MappingProxyType(dict(sorted(out.items())))


def _memory(value: Any, where: str) -> str:
    text = value.replace(" ", "") if isinstance(value, str) else ""
    if _MEMORY.fullmatch(text) is None:
        raise _fail(where, f"expected a size such as 4GB or 512MiB, got {value!r}")
    return text


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise _fail(where, f"expected a directory path, got {value!r}")
    return Path(value)


def _optional(convert: Converter) -> Converter:
    def wrapped(value: Any, where: str) -> Any:
        return None if value is None else convert(value, where)

    return wrapped


# Settings field -> (converter, FlowfenceConfig key or None when the field comes from the scope).
_FIELDS: dict[str, tuple[Converter, str | None]] = {
    "interval": (_duration(False, MIN_INTERVAL), None),
    "initial_lookback": (_duration(False), None),
    "stabilization_period": (_duration(False), None),
    "max_rules": (_int(1), None),
    "policies_learning_cut_off": (_int(1), None),
    "namespace_selector": (_selector, None),
    "intra_namespace_pass": (_bool, None),
    "tier_name": (_tier_name, None),
    "rec_status": (_optional(_choice("Enabled", "Disabled")), None),
    "tier_order": (_number, "tierOrder"),
    "tier_default_action": (_choice("Deny", "Pass"), "tierDefaultAction"),
    "flavor": (_choice("calico-enterprise", "calico", "kubernetes"), "flavor"),
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
# Scope spec key -> Settings field.
_SCOPE_SPEC = {
    "interval": "interval",
    "initialLookback": "initial_lookback",
    "stabilizationPeriod": "stabilization_period",
    "maxRules": "max_rules",
    "policiesLearningCutOff": "policies_learning_cut_off",
}
_NAMESPACE_SPEC = {
    "selector": "namespace_selector",
    "intraNamespacePassThroughTraffic": "intra_namespace_pass",
    "tierName": "tier_name",
    "recStatus": "rec_status",
}
_HOST_ENDPOINT_SPEC = frozenset({"recommendationStatus", "selector", "tierName"})


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _no_unknown(doc: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise _fail(where, f"unknown key {key!r}")


def _single_document(path: Path) -> Mapping[str, Any]:
    docs = [d for d in load_documents(path) if d is not None]
    if len(docs) != 1:
        raise _fail(str(path), f"expected one YAML document, found {len(docs)}")
    doc = _mapping(docs[0], str(path))
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        items = doc["items"]
        if len(items) != 1:
            raise _fail(str(path), f"expected a List with one item, found {len(items)}")
        doc = _mapping(items[0], f"{path}: items[0]")
    return doc


def parse_scope(path: Path) -> dict[str, Any]:
    """The Settings fields a scope manifest sets (converted), keyed by field name."""
    doc = _single_document(path)
    where = str(path)
    _no_unknown(doc, {"apiVersion", "kind", "metadata", "spec", "status"}, where)
    if doc.get("apiVersion") != SCOPE_API_VERSION or doc.get("kind") != SCOPE_KIND:
        raise _fail(where, f"expected apiVersion {SCOPE_API_VERSION}, kind {SCOPE_KIND}")
    meta = _mapping(doc.get("metadata"), f"{where}: metadata")
    _no_unknown(meta, _OBJECT_META, f"{where}: metadata")
    if meta.get("name") != SCOPE_NAME:
        raise _fail(
            f"{where}: metadata.name",
            f"Calico acts only on the scope named {SCOPE_NAME!r}, got {meta.get('name')!r}",
        )
    if "spec" not in doc:
        raise _fail(f"{where}: spec", "required (as in the CRD)")
    spec = _mapping(doc["spec"], f"{where}: spec")
    _no_unknown(spec, {*_SCOPE_SPEC, "namespaceSpec", "hostEndpointSpec"}, f"{where}: spec")
    values = {f: (spec[k], f"spec.{k}") for k, f in _SCOPE_SPEC.items() if k in spec}
    if "namespaceSpec" in spec:
        ns_where = f"{where}: spec.namespaceSpec"
        ns_spec = _mapping(spec["namespaceSpec"], ns_where)
        _no_unknown(ns_spec, set(_NAMESPACE_SPEC), ns_where)
        if "selector" not in ns_spec:
            raise _fail(f"{ns_where}.selector", "required (as in the CRD)")
        for key, name in _NAMESPACE_SPEC.items():
            if key in ns_spec:
                values[name] = (ns_spec[key], f"spec.namespaceSpec.{key}")
    if "hostEndpointSpec" in spec:  # host-endpoint recommendations are out of scope; checked only
        he_where = f"{where}: spec.hostEndpointSpec"
        _no_unknown(_mapping(spec["hostEndpointSpec"], he_where), _HOST_ENDPOINT_SPEC, he_where)
    return {f: _FIELDS[f][0](v, f"{where}: {key}") for f, (v, key) in values.items()}


def parse_config(path: Path) -> dict[str, Any]:
    """The Settings fields a FlowfenceConfig file sets (converted), keyed by field name."""
    doc = _single_document(path)
    where = str(path)
    by_key = {key: name for name, (_, key) in _FIELDS.items() if key is not None}
    _no_unknown(doc, {"apiVersion", "kind", "metadata", *by_key}, where)
    if doc.get("apiVersion") != CONFIG_API_VERSION or doc.get("kind") != CONFIG_KIND:
        raise _fail(where, f"expected apiVersion {CONFIG_API_VERSION}, kind {CONFIG_KIND}")
    out = {}
    for key, name in by_key.items():
        if key in doc:
            out[name] = _FIELDS[name][0](doc[key], f"{where}: {key}")
    return out


def load_settings(
    scope_path: Path | None, config_path: Path | None, **cli_overrides: Any
) -> Settings:
    """Defaults, then the scope, then the flowfence config, then CLI overrides (`None` values
    are ignored, so a CLI can pass every option). Raises ConfigError naming the field."""
    values: dict[str, Any] = {}
    if scope_path is not None:
        values.update(parse_scope(scope_path))
    if config_path is not None:
        values.update(parse_config(config_path))
    for name, value in cli_overrides.items():
        if name not in _FIELDS:
            raise _fail("command line", f"unknown setting {name!r}")
        if value is not None:
            values[name] = _FIELDS[name][0](value, f"--{name.replace('_', '-')}")
    settings = replace(Settings(), scope_path=scope_path, config_path=config_path, **values)
    if "namespace_selector" not in values:
        _selector(settings.namespace_selector, "namespaceSpec.selector")
    _check_consistency(settings)
    return settings


def _check_consistency(s: Settings) -> None:
    for name in ("initial_lookback", "stabilization_period"):
        if getattr(s, name) < s.interval:
            raise _fail(
                name,
                f"{_show(getattr(s, name))} is shorter than interval {_show(s.interval)} "
                "(Calico would ignore it)",
            )
    if s.tier_name in s.tier_orders:
        raise _fail("tierOrders", f"lists the recommendation tier {s.tier_name!r}; use tierOrder")


def _show(d: timedelta) -> str:
    return format_duration(_nanos(d))


def setting_names() -> tuple[str, ...]:
    """The names `load_settings` accepts as overrides."""
    return tuple(f.name for f in fields(Settings) if f.name in _FIELDS)
