"""What a CRD's structural schema cannot say about a Calico policy, written by hand.

jsonschema ignores `x-kubernetes-validations` (the CEL rules in the CRDs) and Calico's API
server runs its own validator (libcalico-go `validator.go`) besides; the rules from both that
matter for policies are here, applied to the open-source and the Enterprise CRD sets alike
(Calico's validator enforces in both what the Enterprise CRDs also spell out in CEL):
- rules: ports only with TCP, UDP or SCTP; HTTP matches only on Allow rules over TCP; ICMP
  fields only with ICMP protocols, a code only with a type, ipVersion agreeing with ICMP/ICMPv6;
  nets are CIDRs, of one IP family per rule, agreeing with ipVersion; port ranges ordered;
- entity rules: `services` never with ports (destination), selectors, nets or service
  accounts, and names a service; `domains` only on egress Allow rules without nets or selector;
  `global()` only alone in a namespaceSelector; every selector parses (flowfence.calico.selector);
- policies: names in Calico's name formats, no type twice, GlobalNetworkPolicy's preDNAT /
  doNotTrack / applyOnForward combinations; the `default`, `kube-admin` and `kube-baseline`
  tiers' fixed actions (and, in the Enterprise CRD, orders);
- Kubernetes NetworkPolicy (and Calico's StagedKubernetesNetworkPolicy): label selectors,
  ipBlock CIDRs and their `except`, ports and `endPort`, as the Kubernetes API server checks.
- metadata of every kind: name, namespace, label and annotation formats.

Every check tolerates any shape (a string where a list belongs, ...): the schema reports the
shape, these rules skip what they cannot read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flowfence.calico import names
from flowfence.calico.selector import SelectorError, parse

MAX_NAME = 253
MAX_ANNOTATIONS = 256 * 1024  # bytes of keys and values, Kubernetes' and Calico's limit
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"  # Calico's nameLabelFmt (no 63 cap)
_SUBDOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
NAME_FORMATS = {  # libcalico-go validator.go, Calico 3.32
    "NetworkPolicy": rf"{_LABEL}(?:\.{_LABEL})?|(?:knp|ossg)\.default\.{_SUBDOMAIN}",
    "GlobalNetworkPolicy": rf"(?:{_LABEL}\.)?{_LABEL}",
    "Tier": _LABEL,
}
NAME_FORMATS["StagedNetworkPolicy"] = NAME_FORMATS["NetworkPolicy"]
NAME_FORMATS["StagedGlobalNetworkPolicy"] = NAME_FORMATS["GlobalNetworkPolicy"]
_NAME_RES = {kind: re.compile(pattern) for kind, pattern in NAME_FORMATS.items()}
_ALNUM = "lower-case letters, digits and '-', starting and ending alphanumeric"
_NAME_RULES = {
    "": f"{_ALNUM}, in '.'-separated parts",
    "NetworkPolicy": f"{_ALNUM}, in one or two '.'-separated parts",
    "GlobalNetworkPolicy": f"{_ALNUM}, in one or two '.'-separated parts",
    "Tier": f"{_ALNUM}, no '.'",
}
_NAME_RULES["StagedNetworkPolicy"] = _NAME_RULES["NetworkPolicy"]
_NAME_RULES["StagedGlobalNetworkPolicy"] = _NAME_RULES["GlobalNetworkPolicy"]
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN)
# Tuples, not sets: a hostile document can put an unhashable list where a protocol belongs.
_PORTS_PROTOCOLS = ("TCP", "UDP", "SCTP", "tcp", "udp", "sctp", 6, 17, 132)
_ICMP = ("ICMP", 1)
_ICMPV6 = ("ICMPv6", 58)
_RANGE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_FIXED_TIERS = {"default": (1000000.0, "Deny"), "kube-admin": (1000.0, "Pass")}
_FIXED_TIERS["kube-baseline"] = (10000000.0, "Pass")


@dataclass(frozen=True, order=True)
class Problem:
    """One reason a document is invalid: where (`spec.egress[0].destination`, "" for the
    document itself) and why."""

    path: str
    message: str


def printable(text: str, limit: int = 300) -> str:
    """`text` safe for one line of a terminal: control and other unprintable characters
    escaped (`\\x1b`), capped at `limit` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def metadata(
    meta: object, kind: str, *, namespaced: bool, require_namespace: bool
) -> Iterator[Problem]:
    """Name, namespace, labels and annotations as the API server (and Calico's) checks them."""
    if not isinstance(meta, Mapping):
        return  # the schema says what is wrong
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        if "generateName" not in meta:
            yield Problem("metadata.name", "a name is required")
    elif len(name) > MAX_NAME:
        yield Problem("metadata.name", f"longer than {MAX_NAME} characters")
    elif not (_NAME_RES.get(kind) or _SUBDOMAIN_RE).fullmatch(name):
        rule = _NAME_RULES.get(kind, _NAME_RULES[""])
        yield Problem("metadata.name", f"{names.sample(name)} is not a valid name: {rule}")
    namespace = meta.get("namespace")
    if namespaced and namespace is None and require_namespace:
        yield Problem("metadata.namespace", "a namespace is required")
    elif namespace is not None and not (
        isinstance(namespace, str) and names.is_dns1123_label(namespace)
    ):
        yield Problem("metadata.namespace", f"{names.sample(namespace)} is not a DNS-1123 label")
    for key, value in as_mapping(meta.get("labels")).items():
        where = f"metadata.labels.{names.sample(key)}"
        if not (isinstance(key, str) and names.is_label_key(key)):
            yield Problem(where, "not a valid label key")
        if not (isinstance(value, str) and names.is_label_value(value)):
            yield Problem(where, f"{names.sample(value)} is not a valid label value")
    size = 0
    for key, value in as_mapping(meta.get("annotations")).items():
        where = f"metadata.annotations.{names.sample(key)}"
        if not (isinstance(key, str) and names.is_label_key(key.lower())):
            yield Problem(where, "not a valid annotation key")
        if not isinstance(value, str):
            yield Problem(where, f"{names.sample(value)} is not a string")
        size += len(str(key).encode()) + len(str(value).encode())
    if size > MAX_ANNOTATIONS:
        yield Problem("metadata.annotations", f"{size} bytes, more than {MAX_ANNOTATIONS}")


def selector(path: str, text: object, *, entity_namespace: bool = False) -> Iterator[Problem]:
    """A Calico selector that parses; `global()` only alone in an entity's namespaceSelector."""
    if not isinstance(text, str):
        return
    try:
        parse(text)
    except SelectorError as exc:
        yield Problem(path, f"invalid selector at position {exc.position}: {exc.reason}")
        return
    if "global(" in text and not (entity_namespace and text.strip() == "global()"):
        yield Problem(path, "global() can only stand alone in an EntityRule namespaceSelector")


def parse_cidr(text: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Calico's CIDR: an address or a network, host bits allowed; None if neither."""
    if not isinstance(text, str) or not text.isascii() or "%" in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def calico_policy(kind: str, spec: object) -> Iterator[Problem]:
    """The policy-level and rule-level rules of the four Calico policy kinds."""
    spec = as_mapping(spec)
    for key in ("selector", "serviceAccountSelector", "namespaceSelector"):
        yield from selector(f"spec.{key}", spec.get(key))
    seen: list[object] = []
    for t in as_list(spec.get("types")):
        if t in seen:
            yield Problem("spec.types", f"{names.sample(t)} type specified more than once")
        seen.append(t)
    if kind in ("GlobalNetworkPolicy", "StagedGlobalNetworkPolicy"):
        yield from _global_policy(spec)
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(as_list(spec.get(direction))):
            if isinstance(rule, Mapping):
                yield from _rule(f"spec.{direction}[{i}]", direction, rule)


def _global_policy(spec: Mapping[Any, Any]) -> Iterator[Problem]:
    pre_dnat, untracked = spec.get("preDNAT") is True, spec.get("doNotTrack") is True
    if pre_dnat and untracked:
        yield Problem("spec", "preDNAT and doNotTrack cannot both be true")
    if pre_dnat and as_list(spec.get("egress")):
        yield Problem("spec.egress", "preDNAT policy cannot have any egress rules")
    if pre_dnat and "Egress" in as_list(spec.get("types")):
        yield Problem("spec.types", "preDNAT policy cannot have 'Egress' type")
    if (pre_dnat or untracked) and spec.get("applyOnForward") is not True:
        yield Problem("spec", "applyOnForward must be true if either preDNAT or doNotTrack is")


def _rule(at: str, direction: str, rule: Mapping[Any, Any]) -> Iterator[Problem]:
    protocol, action = rule.get("protocol"), rule.get("action")
    if "http" in rule:
        if action != "Allow":
            yield Problem(_join(at, "http"), "HTTP match is only valid on Allow rules")
        if protocol is not None and protocol not in ("TCP", 6):
            yield Problem(_join(at, "http"), "rules with HTTP match must have protocol TCP")
    for key in ("icmp", "notICMP"):
        if key not in rule:
            continue
        if protocol not in (*_ICMP, *_ICMPV6):
            yield Problem(_join(at, key), "ICMP fields require protocol ICMP or ICMPv6")
        fields = as_mapping(rule[key])
        if "code" in fields and "type" not in fields:
            yield Problem(_join(at, key), "ICMP code specified without an ICMP type")
    version = rule.get("ipVersion")
    for key in ("protocol", "notProtocol"):
        value = rule.get(key)
        expected = 4 if value in _ICMP else 6 if value in _ICMPV6 else None
        if expected is not None and version not in (None, expected):
            yield Problem(_join(at, "ipVersion"), f"{key} {value} does not match ipVersion")
    families: set[int] = set()
    for side in ("source", "destination"):
        entity = as_mapping(rule.get(side))
        where = _join(at, side)
        yield from _entity(where, direction, side, action, entity)
        for key in ("ports", "notPorts"):
            ports = as_list(entity.get(key))
            if ports and protocol not in _PORTS_PROTOCOLS:
                yield Problem(
                    _join(where, key),
                    f"ports with protocol {names.sample(protocol)}: only TCP, UDP and SCTP "
                    "have ports",
                )
            for j, port in enumerate(ports):
                yield from _port_range(_join(_join(where, key), j), port)
        for key in ("nets", "notNets"):
            yield from _nets(_join(where, key), entity.get(key), version, families)


def _entity(
    where: str, direction: str, side: str, action: object, entity: Mapping[Any, Any]
) -> Iterator[Problem]:
    for key in ("selector", "notSelector", "namespaceSelector"):
        yield from selector(
            _join(where, key), entity.get(key), entity_namespace=key == "namespaceSelector"
        )
    accounts = as_mapping(entity.get("serviceAccounts"))
    yield from selector(_join(where, "serviceAccounts.selector"), accounts.get("selector"))
    if "services" in entity:
        clash = {"selector", "notSelector", "namespaceSelector", "nets", "notNets"}
        clash |= {"serviceAccounts"} | ({"ports", "notPorts"} if side == "destination" else set())
        # An empty list or string is as good as absent (the CEL rules test sizes).
        present = sorted(k for k in clash & entity.keys() if entity[k] not in ([], "", None))
        if present:
            yield Problem(where, f"services combined with {', '.join(present)}")
        if not as_mapping(entity["services"]).get("name"):
            yield Problem(_join(where, "services"), "services must name a service")
    if "domains" in entity and not (
        direction == "egress"
        and side == "destination"
        and action == "Allow"
        and not entity.get("nets")
        and not entity.get("selector")
    ):
        yield Problem(
            _join(where, "domains"), "domains only on egress Allow rules without nets or selector"
        )


def _port_range(where: str, port: object) -> Iterator[Problem]:
    if isinstance(port, str) and (m := _RANGE.fullmatch(port)):
        lo, hi = int(m[1]), int(m[2])
        if not lo <= hi <= 65535:
            yield Problem(where, f"port range {port} is not ascending within 0-65535")


def _nets(where: str, nets: object, version: object, families: set[int]) -> Iterator[Problem]:
    """Calico's scanNets: every entry a CIDR; one family per rule, the rule's ipVersion."""
    mine: set[int] = set()
    for j, text in enumerate(as_list(nets)):
        net = parse_cidr(text)
        if net is None:
            yield Problem(_join(where, j), f"{names.sample(text)} is not a CIDR")
        else:
            mine.add(net.version)
    if version in (4, 6) and mine - {version}:
        yield Problem(where, f"CIDR version does not match ipVersion {version}")
    if len(mine | families) > 1:
        yield Problem(where, "the rule mixes IPv4 and IPv6 CIDRs")
    families |= mine


def tier(meta: object, spec: object, *, enterprise: bool) -> Iterator[Problem]:
    """The CEL rules of the Tier CRDs: reserved tiers with a fixed action (and, in the
    Enterprise CRD, a fixed order)."""
    name, spec = as_mapping(meta).get("name"), as_mapping(spec)
    if isinstance(name, str) and name in _FIXED_TIERS:
        order, action = _FIXED_TIERS[name]
        if enterprise and spec.get("order") != order:
            yield Problem("spec.order", f"the {name} tier's order must be {order:.0f}")
        if spec.get("defaultAction") != action:
            yield Problem("spec.defaultAction", f"the {name} tier's defaultAction must be {action}")


def network_set(spec: object) -> Iterator[Problem]:
    for j, text in enumerate(as_list(as_mapping(spec).get("nets"))):
        if parse_cidr(text) is None:
            yield Problem(f"spec.nets[{j}]", f"{names.sample(text)} is not a CIDR")


def recommendation_scope(spec: object) -> Iterator[Problem]:
    for key in ("namespaceSpec", "hostEndpointSpec"):
        scope = as_mapping(as_mapping(spec).get(key))
        yield from selector(f"spec.{key}.selector", scope.get("selector"))
