"""Calico rules: the frozen Rule / EntityRule model and its parser from manifest dicts.

One Rule mirrors `projectcalico.org/v3` `Rule` (policy_common.go). Everything a flow log cannot
tell us is modelled explicitly instead of silently widened or narrowed:

- `icmp`/`notICMP` and `http` are ignored with a warning (flow logs carry no ICMP type or L7
  request; an L7 rule still admits the L4 connection that the flow log records);
- named ports are kept by name and resolved at evaluation against the destination's pods from
  the inventory (named_ports.py); without one they never match, so a rule can only lose
  matches, never gain them; a named port in `notPorts` makes the whole rule unmatchable;
- `source.services` is unsupported (flow logs carry no source service) and never matches.

Manifests are parsed through a `Context` that knows the file and object, so every warning and
error names where it came from.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from flowfence.calico.selector import Selector, SelectorError, parse
from flowfence.core.errors import PolicyError

Action: TypeAlias = Literal["Allow", "Deny", "Pass", "Log"]
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

ACTIONS: tuple[Action, ...] = ("Allow", "Deny", "Pass", "Log")
# Calico's protocol names (numorstring.Protocol) and their IANA numbers.
PROTOCOLS: dict[str, int] = {
    "tcp": 6,
    "udp": 17,
    "icmp": 1,
    "icmpv6": 58,
    "sctp": 132,
    "udplite": 136,
}
PORT_PROTOCOLS = frozenset({6, 17, 132, 136})

RULE_FIELDS = frozenset(
    {
        "action",
        "protocol",
        "notProtocol",
        "icmp",
        "notICMP",
        "ipVersion",
        "source",
        "destination",
        "http",
        "metadata",
    }
)
ENTITY_FIELDS = frozenset(
    {
        "nets",
        "notNets",
        "selector",
        "notSelector",
        "namespaceSelector",
        "ports",
        "notPorts",
        "serviceAccounts",
        "services",
        "domains",
    }
)
_SERVICE_CLASH = ("ports", "notPorts", "selector", "notSelector", "namespaceSelector",
                  "serviceAccounts", "nets", "notNets")  # fmt: skip
_NAMED_PORT = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
_DOMAIN_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


@dataclass
class Context:
    """Where a manifest came from; collects warnings, builds errors that name the place."""

    where: str
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.where}: {message}")

    def error(self, message: str) -> PolicyError:
        return PolicyError(f"{self.where}: {message}")

    def check_fields(self, value: Mapping[str, Any], known: Iterable[str], path: str) -> None:
        allowed = frozenset(known)
        for key in sorted(str(k) for k in value):
            if key not in allowed:
                self.warn(f"unknown field {path}.{key}" if path else f"unknown field {key}")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(f"{path} must be a mapping, got {type(value).__name__}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"{path} must be a list, got {type(value).__name__}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.error(f"{path} must be a string, got {type(value).__name__}")
        return value

    def selector(self, value: Any, path: str) -> Selector | None:
        if value is None:
            return None
        text = self.string(value, path)
        try:
            return parse(text)
        except SelectorError as exc:
            raise self.error(f"{path}: bad selector {text!r}: {exc}") from exc


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last


@dataclass(frozen=True)
class PortMatch:
    """`ports`/`notPorts`: numeric ranges plus named ports (resolved by named_ports.py)."""

    ranges: tuple[PortRange, ...]
    named: tuple[str, ...] = ()

    def matches(self, port: int | None) -> bool:
        return port is not None and any(port in r for r in self.ranges)


@dataclass(frozen=True)
class ServiceAccountMatch:
    names: frozenset[str]
    selector: Selector | None


@dataclass(frozen=True)
class ServiceMatch:
    name: str
    namespace: str


@dataclass(frozen=True)
class DomainPattern:
    """An egress domain: exact, or with `*` labels each matching one or more DNS labels."""

    text: str
    regex: re.Pattern[str]

    def matches(self, domain: str) -> bool:
        return self.regex.fullmatch(domain.lower().rstrip(".")) is not None


@dataclass(frozen=True)
class EntityRule:
    nets: tuple[IPNetwork, ...] = ()
    not_nets: tuple[IPNetwork, ...] = ()
    selector: Selector | None = None
    not_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ports: PortMatch | None = None
    not_ports: PortMatch | None = None
    service_accounts: ServiceAccountMatch | None = None
    services: ServiceMatch | None = None
    domains: tuple[DomainPattern, ...] = ()

    @property
    def selects_endpoints(self) -> bool:
        """True when the rule restricts the peer by identity (Calico then scopes it)."""
        return (
            self.selector is not None
            or self.not_selector is not None
            or self.namespace_selector is not None
            or self.service_accounts is not None
        )


@dataclass(frozen=True)
class Rule:
    index: int
    action: Action
    protocol: int | None = None
    not_protocol: int | None = None
    ip_version: int | None = None
    source: EntityRule = EntityRule()
    destination: EntityRule = EntityRule()
    # Why this rule can never match (unsupported named notPorts, source services); empty if it can.
    unmatchable: tuple[str, ...] = ()


def parse_protocol(ctx: Context, value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ctx.error(f"{path}: bad protocol {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.lower() in PROTOCOLS:
        return PROTOCOLS[value.lower()]
    elif isinstance(value, str) and value.isdigit():
        number = int(value)
    else:
        raise ctx.error(f"{path}: bad protocol {value!r}")
    if not 1 <= number <= 255:
        raise ctx.error(f"{path}: protocol number {number} outside 1-255")
    return number


def flow_protocol(proto: str | None) -> int | None:
    """The protocol number of a flow's normalised `proto` column (name or number as text)."""
    if proto is None:
        return None
    text = proto.strip().lower()
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    return int(text) if text.isdigit() and 0 < int(text) < 256 else None


def parse_ports(ctx: Context, value: Any, path: str) -> PortMatch | None:
    if value is None:
        return None
    ranges: list[PortRange] = []
    named: list[str] = []
    for i, item in enumerate(ctx.sequence(value, path)):
        where = f"{path}[{i}]"
        if isinstance(item, bool):
            raise ctx.error(f"{where}: bad port {item!r}")
        if isinstance(item, int):
            ranges.append(_port_range(ctx, item, item, where))
        elif isinstance(item, str) and re.fullmatch(r"\d+", item):
            ranges.append(_port_range(ctx, int(item), int(item), where))
        elif isinstance(item, str) and re.fullmatch(r"\d+:\d+", item):
            low, high = item.split(":")
            ranges.append(_port_range(ctx, int(low), int(high), where))
        elif isinstance(item, str) and _NAMED_PORT.fullmatch(item):
            named.append(item)  # resolved at evaluation; named_ports.py counts the unresolved
        else:
            raise ctx.error(f"{where}: bad port {item!r}")
    return PortMatch(tuple(ranges), tuple(named))


def _port_range(ctx: Context, first: int, last: int, where: str) -> PortRange:
    if not (0 <= first <= last <= 65535):
        raise ctx.error(f"{where}: bad port range {first}:{last}")
    return PortRange(first, last)


def parse_nets(ctx: Context, value: Any, path: str) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for i, item in enumerate(ctx.sequence(value, path)):
        try:
            nets.append(ipaddress.ip_network(ctx.string(item, f"{path}[{i}]"), strict=False))
        except ValueError as exc:
            raise ctx.error(f"{path}[{i}]: bad CIDR {item!r}") from exc
    return tuple(nets)


def compile_domain(ctx: Context, text: str, path: str) -> DomainPattern:
    labels = text.lower().rstrip(".").split(".")
    if labels.count("*") > 1 or not all(
        label == "*" or _DOMAIN_LABEL.fullmatch(label) for label in labels
    ):
        raise ctx.error(f"{path}: bad domain {text!r}")
    parts = [r"[^.]+(?:\.[^.]+)*" if label == "*" else re.escape(label) for label in labels]
    return DomainPattern(text, re.compile(r"\.".join(parts)))


def parse_entity(
    ctx: Context, value: Any, path: str, *, namespace: str | None, side: str, egress: bool
) -> tuple[EntityRule, list[str]]:
    """Parse an EntityRule; returns it with the reasons (if any) it can never match."""
    data = ctx.mapping(value, path)
    ctx.check_fields(data, ENTITY_FIELDS, path)
    unmatchable: list[str] = []
    sa_data = data.get("serviceAccounts")
    service_accounts = None
    if sa_data is not None:
        sa = ctx.mapping(sa_data, f"{path}.serviceAccounts")
        ctx.check_fields(sa, ("names", "selector"), f"{path}.serviceAccounts")
        names = ctx.sequence(sa.get("names"), f"{path}.serviceAccounts.names")
        service_accounts = ServiceAccountMatch(
            frozenset(ctx.string(n, f"{path}.serviceAccounts.names") for n in names),
            ctx.selector(sa.get("selector"), f"{path}.serviceAccounts.selector"),
        )
    services = None
    if data.get("services") is not None:
        services = _parse_services(ctx, data, path, namespace)
        if side == "source":
            ctx.warn(f"{path}.services: flow logs carry no source service; the rule never matches")
            unmatchable.append("source services")
    domains: tuple[DomainPattern, ...] = ()
    if data.get("domains") is not None:
        if side != "destination" or not egress:
            raise ctx.error(f"{path}.domains: domains are only valid in egress destinations")
        if data.get("nets") or data.get("selector"):
            raise ctx.error(f"{path}.domains cannot be combined with nets or selector")
        domains = tuple(
            compile_domain(ctx, ctx.string(d, f"{path}.domains[{i}]"), f"{path}.domains[{i}]")
            for i, d in enumerate(ctx.sequence(data["domains"], f"{path}.domains"))
        )
    not_ports = parse_ports(ctx, data.get("notPorts"), f"{path}.notPorts")
    if not_ports is not None and not_ports.named:
        unmatchable.append("named port in notPorts")
    rule = EntityRule(
        nets=parse_nets(ctx, data.get("nets"), f"{path}.nets"),
        not_nets=parse_nets(ctx, data.get("notNets"), f"{path}.notNets"),
        selector=ctx.selector(data.get("selector"), f"{path}.selector"),
        not_selector=ctx.selector(data.get("notSelector"), f"{path}.notSelector"),
        namespace_selector=ctx.selector(data.get("namespaceSelector"), f"{path}.namespaceSelector"),
        ports=parse_ports(ctx, data.get("ports"), f"{path}.ports"),
        not_ports=not_ports,
        service_accounts=service_accounts,
        services=services,
        domains=domains,
    )
    return rule, unmatchable


def _parse_services(
    ctx: Context, data: Mapping[str, Any], path: str, namespace: str | None
) -> ServiceMatch:
    # Calico (validator and CRD CEL) rejects services together with any of these.
    clash = sorted(k for k in _SERVICE_CLASH if data.get(k) is not None)
    if clash:
        raise ctx.error(f"{path}.services cannot be combined with {', '.join(clash)}")
    svc = ctx.mapping(data["services"], f"{path}.services")
    ctx.check_fields(svc, ("name", "namespace"), f"{path}.services")
    name = ctx.string(svc.get("name"), f"{path}.services.name")
    svc_ns = svc.get("namespace") or namespace
    if svc_ns is None:
        raise ctx.error(f"{path}.services.namespace is required in a global policy")
    return ServiceMatch(name, ctx.string(svc_ns, f"{path}.services.namespace"))


def parse_rule(
    ctx: Context, value: Any, path: str, index: int, *, namespace: str | None, egress: bool
) -> Rule:
    data = ctx.mapping(value, path)
    ctx.check_fields(data, RULE_FIELDS, path)
    action = data.get("action")
    if action not in ACTIONS:
        raise ctx.error(f"{path}.action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    for ignored in ("icmp", "notICMP"):
        if data.get(ignored) is not None:
            ctx.warn(f"{path}.{ignored} is ignored: flow logs carry no ICMP type or code")
    if data.get("http") is not None:
        ctx.warn(f"{path}.http is ignored: flow logs record the L4 connection only")
    if data.get("metadata") is not None:
        ctx.check_fields(ctx.mapping(data["metadata"], f"{path}.metadata"), ("annotations",), path)
    ip_version = data.get("ipVersion")
    if ip_version not in (None, 4, 6):
        raise ctx.error(f"{path}.ipVersion must be 4 or 6, got {ip_version!r}")
    protocol = parse_protocol(ctx, data.get("protocol"), f"{path}.protocol")
    source, src_bad = parse_entity(
        ctx, data.get("source"), f"{path}.source", namespace=namespace, side="source", egress=egress
    )
    destination, dst_bad = parse_entity(
        ctx,
        data.get("destination"),
        f"{path}.destination",
        namespace=namespace,
        side="destination",
        egress=egress,
    )
    for side, entity in (("source", source), ("destination", destination)):
        has_ports = entity.ports is not None or entity.not_ports is not None
        if has_ports and protocol not in PORT_PROTOCOLS:
            raise ctx.error(f"{path}.{side}: ports need protocol TCP, UDP, SCTP or UDPLite")
    if (source.domains or destination.domains) and action != "Allow":
        raise ctx.error(f"{path}: domains are only valid in Allow rules")
    return Rule(
        index=index,
        action=action,
        protocol=protocol,
        not_protocol=parse_protocol(ctx, data.get("notProtocol"), f"{path}.notProtocol"),
        ip_version=ip_version,
        source=source,
        destination=destination,
        unmatchable=tuple(src_bad + dst_bad),
    )
