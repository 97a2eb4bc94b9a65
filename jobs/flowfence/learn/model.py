"""The recommendation model: frozen rules per namespace and direction, safe by construction.

Every string a rule carries ends up in a selector or a manifest, so `Rule.__post_init__`
re-checks them with calico/names.py's scalar checks (DNS-1123 names, label keys/values,
hostnames, CIDRs) even though `names.screen` already screened the flow logs: a value that would not
be a valid Kubernetes name can never reach the renderer. A bad value raises ValueError.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from flowfence.calico import names

if TYPE_CHECKING:
    from flowfence.config.settings import Settings

Direction = Literal["egress", "ingress"]
Action = Literal["Allow", "Pass"]
Scope = Literal["Domains", "Service", "Namespace", "NetworkSet", "Private", "Public"]
Flavor = Literal["calico-enterprise", "calico", "kubernetes"]

# Calico's rule order inside ingress/egress (policy recommendation engine, rules.go).
SCOPES: tuple[Scope, ...] = ("Domains", "Service", "Namespace", "NetworkSet", "Private", "Public")
PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})

# Rule flags (machine-readable, for the report); the rule's note says the same for humans.
PUBLIC_FALLBACK = "public-fallback"
PRIVATE_FALLBACK = "private-fallback"
ENTERPRISE_SELECTOR = "enterprise-only-selector"
ANY_PORT = "any-port"
OVER_CAP = "over-cidr-cap"
FOLDED = "folded"
# A public fallback whose notNets may cut traffic it was learned from: flows without addresses
# may have gone to ranges Felix labels `pub` but the fallback excludes (cidr.LABELLED_PUB).
MAY_CUT = "may-cut-observed"
# Namespace flags: a direction with observed traffic that no rule can express (host endpoints,
# protocol 0) and no other rule. Isolating it would deny that traffic, so its policy leaves
# the direction out of its types even under policyTypes Both, and the report says so.
LEFT_OPEN: dict[str, str] = {"egress": "open-egress", "ingress": "open-ingress"}

_PROTOCOL = re.compile(r"TCP|UDP|ICMP|ICMPv6|SCTP|UDPLite|[1-9][0-9]{0,2}")


class RuleSettings(Protocol):
    """The fields of `config.Settings` the rule builder, folder and renderer read."""

    @property
    def tier_name(self) -> str: ...
    @property
    def tier_order(self) -> float: ...
    @property
    def tier_default_action(self) -> str: ...
    @property
    def max_rules(self) -> int: ...
    @property
    def intra_namespace_pass(self) -> bool: ...
    @property
    def flavor(self) -> Flavor: ...
    @property
    def policy_types(self) -> str: ...
    @property
    def private_cidr_cap(self) -> int: ...
    @property
    def public_cidr_cap(self) -> int: ...
    @property
    def cluster_cidrs(self) -> tuple[str, ...]: ...
    @property
    def cluster_domain(self) -> str: ...


def dns_label(value: str, what: str = "name") -> str:
    if not names.is_dns1123_label(value):
        raise ValueError(f"{what} is not a DNS-1123 label: {value!r}")
    return value


def dns_subdomain(value: str, what: str = "name") -> str:
    if not names.is_dns1123_subdomain(value):
        raise ValueError(f"{what} is not a DNS-1123 subdomain: {value!r}")
    return value


def label_key(value: str) -> str:
    if not names.is_label_key(value):
        raise ValueError(f"not a label key: {value!r}")
    return value


def label_value(value: str) -> str:
    if not names.is_label_value(value):
        raise ValueError(f"not a label value: {value!r}")
    return value


def hostname(value: str) -> str:
    if not names.is_hostname(value):
        raise ValueError(f"not a domain name: {value!r}")
    return value


def cidr(value: str) -> str:
    """The canonical text of a CIDR (host bits are an error: rules hold networks)."""
    return str(ipaddress.ip_network(value, strict=True))


@dataclass(frozen=True, order=True)
class PortRange:
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi <= 65535:
            raise ValueError(f"bad port range {self.lo}:{self.hi}")

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}:{self.hi}"

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.lo <= port <= self.hi


def merge_ports(ports: Iterable[int | PortRange]) -> tuple[PortRange, ...]:
    """Sorted ranges with overlapping and contiguous ports merged: 80,81,82,443 -> 80:82, 443."""
    ranges = sorted(p if isinstance(p, PortRange) else PortRange(p, p) for p in ports)
    out: list[PortRange] = []
    for r in ranges:
        if out and r.lo <= out[-1].hi + 1:
            out[-1] = PortRange(out[-1].lo, max(out[-1].hi, r.hi))
        else:
            out.append(r)
    return tuple(out)


@dataclass(frozen=True)
class Evidence:
    first_seen: datetime
    last_seen: datetime
    flows: int
    bytes: int
    days: int
    edges: int

    def merge(self, other: Evidence) -> Evidence:
        return Evidence(
            first_seen=min(self.first_seen, other.first_seen),
            last_seen=max(self.last_seen, other.last_seen),
            flows=self.flows + other.flows,
            bytes=self.bytes + other.bytes,
            days=max(self.days, other.days),
            edges=self.edges + other.edges,
        )


@dataclass(frozen=True)
class NetSetRef:
    """A (Global)NetworkSet peer: `namespace` None means a GlobalNetworkSet.

    `labels` are the set's own labels seen in the flow logs, as sorted (key, value) pairs; an
    empty tuple means none were seen and the renderer falls back to Enterprise's implicit
    `projectcalico.org/name`/`kind` labels.
    """

    name: str
    namespace: str | None
    labels: tuple[tuple[str, str], ...] = ()
    # The set's own CIDRs (from --existing-policies): where a flavor cannot select the set
    # (Kubernetes), its rule names these instead of every address outside the cluster.
    cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        dns_subdomain(self.name, "network set name")
        for net in self.cidrs:
            if cidr(net) != net:
                raise ValueError(f"network set CIDR not in canonical form: {net!r}")
        if self.namespace is not None:
            dns_label(self.namespace, "network set namespace")
        for key, value in self.labels:
            label_key(key)
            label_value(value)
        if list(self.labels) != sorted(set(self.labels)):
            raise ValueError("network set labels must be sorted and distinct")


@dataclass(frozen=True)
class ServiceRef:
    namespace: str | None
    name: str

    def __post_init__(self) -> None:
        dns_label(self.name, "service name")
        if self.namespace is not None:
            dns_label(self.namespace, "service namespace")


@dataclass(frozen=True)
class Rule:
    direction: Direction
    action: Action
    scope: Scope
    protocol: str
    evidence: Evidence
    ports: tuple[PortRange, ...] = ()
    namespaces: tuple[str, ...] = ()
    netset: NetSetRef | None = None
    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    service: ServiceRef | None = None
    flags: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if not _PROTOCOL.fullmatch(self.protocol) or (
            self.protocol.isdigit() and not 1 <= int(self.protocol) <= 255
        ):
            raise ValueError(f"bad protocol {self.protocol!r}")
        if self.ports and self.protocol not in PORT_PROTOCOLS:
            raise ValueError(f"ports are only valid with TCP, UDP or SCTP, not {self.protocol}")
        if self.ports != merge_ports(self.ports):
            raise ValueError("ports must be merged and sorted (use merge_ports)")
        for ns in self.namespaces:
            dns_label(ns, "namespace")
        if list(self.namespaces) != sorted(set(self.namespaces)):
            raise ValueError("namespaces must be sorted and distinct")
        for d in self.domains:
            hostname(d)
        families = set()
        for net in (*self.nets, *self.not_nets):
            if cidr(net) != net:
                raise ValueError(f"CIDR not in canonical form: {net!r}")
        for net in self.nets:
            families.add(ipaddress.ip_network(net).version)
        if len(families) > 1:
            raise ValueError("IPv4 and IPv6 nets cannot be mixed in one rule")
        self._check_scope()

    def _check_scope(self) -> None:
        peers = {
            "Namespace": bool(self.namespaces),
            "NetworkSet": self.netset is not None,
            "Service": self.service is not None,
        }
        for scope, present in peers.items():
            if present != (self.scope == scope):
                raise ValueError(f"{self.scope} rule with the wrong peer fields")
        if self.scope == "Service" and (self.ports or self.nets):
            raise ValueError("a Service rule takes neither ports nor nets (CRD rule)")
        if self.scope in ("Private", "Public") and not self.nets:
            raise ValueError(f"a {self.scope} rule must name its nets")
        if self.scope == "Domains" and not self.domains:
            raise ValueError("a Domains rule must carry its domains")
        if self.action == "Pass" and self.scope != "Namespace":
            raise ValueError("only intra-namespace rules pass")

    @property
    def family(self) -> int | None:
        return ipaddress.ip_network(self.nets[0]).version if self.nets else None

    def peer_key(self) -> tuple[object, ...]:
        """What identifies the peer, for sorting and grouping."""
        nets = tuple(
            (n.version, int(n.network_address), n.prefixlen)
            for n in map(ipaddress.ip_network, self.nets)
        )
        netset = (
            (self.netset.namespace or "", self.netset.name, self.netset.labels)
            if self.netset
            else ()
        )
        service = (self.service.namespace or "", self.service.name) if self.service else ()
        return (self.domains, service, self.namespaces, netset, nets)

    def sort_key(self) -> tuple[object, ...]:
        """Scope order, then protocol, then ports (min, max), then peer (Calico rules.go)."""
        span = (self.ports[0].lo, self.ports[-1].hi) if self.ports else (-1, -1)
        ports = tuple((p.lo, p.hi) for p in self.ports)
        return (SCOPES.index(self.scope), self.protocol, span, ports, self.peer_key(), self.action)

    def with_(self, **changes: object) -> Rule:
        return replace(self, **changes)  # type: ignore[arg-type]


def sort_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(sorted(rules, key=Rule.sort_key))


@dataclass(frozen=True)
class Recommendation:
    namespace: str
    egress: tuple[Rule, ...] = ()
    ingress: tuple[Rule, ...] = ()
    folded: tuple[str, ...] = ()
    flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        dns_label(self.namespace, "namespace")
        for direction, rules in (("egress", self.egress), ("ingress", self.ingress)):
            if any(r.direction != direction for r in rules):
                raise ValueError(f"a non-{direction} rule in {direction}")

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.egress + self.ingress

    def isolates(self, direction: Direction, policy_types: str) -> bool:
        """Whether its policy lists `direction` in its types: a direction with rules always;
        without rules only under policyTypes Both, and not when it is left open."""
        if self.egress if direction == "egress" else self.ingress:
            return True
        return policy_types == "Both" and LEFT_OPEN[direction] not in self.flags

    def first_seen(self) -> datetime | None:
        return min((r.evidence.first_seen for r in self.rules), default=None)

    def last_changed(self) -> datetime | None:
        """When the newest rule was first needed: the default `lastUpdated` of the policy."""
        return max((r.evidence.first_seen for r in self.rules), default=None)


if TYPE_CHECKING:  # config.Settings is the production implementation of RuleSettings

    def _conforms(settings: Settings) -> RuleSettings:
        return settings
