"""What Kubernetes' own API server checks in a NetworkPolicy beyond its OpenAPI schema.

From `pkg/apis/networking/validation` and `apimachinery`'s label selector validation: label
selectors well formed; each peer names something, and an ipBlock stands alone; ipBlock CIDRs
parse and each `except` is a strict subset of its `cidr`; ports are TCP, UDP or SCTP, numbers
in 1-65535 or port names, `endPort` only after a numeric `port` and not below it; at most the
two policy types. Calico's StagedKubernetesNetworkPolicy carries the same spec and gets the
same checks. Like schema_rules.py, every check tolerates any shape.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from flowfence.calico import names
from flowfence.calico.schema_rules import Problem, as_list, as_mapping, parse_cidr

_PROTOCOLS = ("TCP", "UDP", "SCTP")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_PORT_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,13}[a-z0-9])?")


def network_policy(spec: object) -> Iterator[Problem]:
    spec = as_mapping(spec)
    yield from label_selector("spec.podSelector", spec.get("podSelector"))
    types = as_list(spec.get("policyTypes"))
    if len(types) > 2:
        yield Problem("spec.policyTypes", "may not specify more than two policyTypes")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            yield Problem(f"spec.policyTypes[{i}]", f"unsupported value {names.sample(t)}")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(as_list(spec.get(direction))):
            at = f"spec.{direction}[{i}]"
            rule = as_mapping(rule)
            for j, port in enumerate(as_list(rule.get("ports"))):
                yield from _port(f"{at}.ports[{j}]", as_mapping(port))
            for j, peer in enumerate(as_list(rule.get(peers))):
                yield from _peer(f"{at}.{peers}[{j}]", as_mapping(peer))


def label_selector(where: str, value: object) -> Iterator[Problem]:
    """A metav1.LabelSelector: valid keys and values, operators with the right values."""
    selector = as_mapping(value)
    for key, label in as_mapping(selector.get("matchLabels")).items():
        if not (isinstance(key, str) and names.is_label_key(key)):
            yield Problem(f"{where}.matchLabels", f"{names.sample(key)} is not a label key")
        if not (isinstance(label, str) and names.is_label_value(label)):
            yield Problem(f"{where}.matchLabels", f"{names.sample(label)} is not a label value")
    for i, expression in enumerate(as_list(selector.get("matchExpressions"))):
        at = f"{where}.matchExpressions[{i}]"
        expression = as_mapping(expression)
        key, operator = expression.get("key"), expression.get("operator")
        values = as_list(expression.get("values"))
        if isinstance(key, str) and not names.is_label_key(key):
            yield Problem(f"{at}.key", f"{names.sample(key)} is not a label key")
        if operator in ("In", "NotIn") and not values:
            yield Problem(f"{at}.values", f"must be specified when operator is {operator}")
        elif operator in ("Exists", "DoesNotExist") and values:
            yield Problem(f"{at}.values", f"may not be specified when operator is {operator}")
        elif isinstance(operator, str) and operator not in _OPERATORS:
            yield Problem(f"{at}.operator", f"{names.sample(operator)} is not a valid operator")
        for j, item in enumerate(values):
            if isinstance(item, str) and not names.is_label_value(item):
                yield Problem(f"{at}.values[{j}]", f"{names.sample(item)} is not a label value")


def _peer(where: str, peer: Mapping[Any, Any]) -> Iterator[Problem]:
    kinds = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None]
    if not kinds:
        yield Problem(where, "must specify a peer")
    elif "ipBlock" in kinds and len(kinds) > 1:
        yield Problem(where, "may not specify both ipBlock and another peer")
    for key in ("podSelector", "namespaceSelector"):
        yield from label_selector(f"{where}.{key}", peer.get(key))
    if "ipBlock" in kinds:
        yield from _ip_block(f"{where}.ipBlock", as_mapping(peer["ipBlock"]))


def _cidr(text: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Kubernetes' ParseCIDRSloppy: Calico's CIDR, but the prefix length is required."""
    return parse_cidr(text) if isinstance(text, str) and "/" in text else None


def _ip_block(where: str, block: Mapping[Any, Any]) -> Iterator[Problem]:
    cidr = _cidr(block.get("cidr"))
    if cidr is None:
        yield Problem(f"{where}.cidr", f"{names.sample(block.get('cidr'))} is not a CIDR")
    for i, text in enumerate(as_list(block.get("except"))):
        net = _cidr(text)
        if net is None:
            yield Problem(f"{where}.except[{i}]", f"{names.sample(text)} is not a CIDR")
        elif cidr is not None and not (
            net.version == cidr.version
            and net.network_address in cidr
            and net.prefixlen > cidr.prefixlen
        ):
            yield Problem(f"{where}.except[{i}]", "must be a strict subset of cidr")


def _port(where: str, port: Mapping[Any, Any]) -> Iterator[Problem]:
    protocol, number, end = port.get("protocol"), port.get("port"), port.get("endPort")
    if protocol is not None and protocol not in _PROTOCOLS:
        yield Problem(f"{where}.protocol", f"unsupported value {names.sample(protocol)}")
    if isinstance(number, int) and not isinstance(number, bool):
        if not 1 <= number <= 65535:
            yield Problem(f"{where}.port", f"{number} is not in 1-65535")
        if isinstance(end, int) and not 1 <= end <= 65535:
            yield Problem(f"{where}.endPort", f"{end} is not in 1-65535")
        elif isinstance(end, int) and end < number:
            yield Problem(f"{where}.endPort", "must be greater than or equal to port")
    elif isinstance(number, str):
        if not (_PORT_NAME.fullmatch(number) and "--" not in number and re.search("[a-z]", number)):
            yield Problem(f"{where}.port", f"{names.sample(number)} is not a port name")
        if end is not None:
            yield Problem(f"{where}.endPort", "may not be specified when port is non-numeric")
    elif number is None and end is not None:
        yield Problem(f"{where}.endPort", "may not be specified when port is not specified")
