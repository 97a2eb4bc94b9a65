"""Kubernetes NetworkPolicy (and StagedKubernetesNetworkPolicy) as Calico sees it.

Calico converts each Kubernetes policy into a policy in the `default` tier with order 1000
(libcalico-go `k8s/conversion`): the pod selector gains `projectcalico.org/orchestrator ==
'k8s'`; each rule becomes one Calico Allow rule per (peer, port) pair; `ipBlock` becomes
`nets`/`notNets`; a peer with only a namespaceSelector selects every pod in the matching
namespaces; a missing `policyTypes` means Ingress, plus Egress when egress rules exist. The
implicit isolation of Kubernetes is then the default tier's end-of-tier Deny.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowfence.calico.policies import Direction
from flowfence.calico.policy_rules import (
    PROTOCOLS,
    Context,
    EntityRule,
    PortMatch,
    PortRange,
    Rule,
    parse_nets,
)
from flowfence.calico.selector import Selector

ORCHESTRATOR = "projectcalico.org/orchestrator == 'k8s'"
K8S_POLICY_ORDER = 1000.0

_KEY = re.compile(
    r"([A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_NAMED_PORT = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
SPEC_FIELDS = frozenset({"podSelector", "policyTypes", "ingress", "egress"})


@dataclass(frozen=True)
class K8sSpec:
    selector: Selector
    types: frozenset[Direction]
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]


def label_selector(ctx: Context, value: Any, path: str) -> str:
    """A Kubernetes LabelSelector as Calico selector text (`''` for the empty selector)."""
    data = ctx.mapping(value, path)
    ctx.check_fields(data, ("matchLabels", "matchExpressions"), path)
    terms: list[str] = []
    labels = ctx.mapping(data.get("matchLabels"), f"{path}.matchLabels")
    for key in sorted(labels):
        terms.append(f"{_key(ctx, key, path)} == {_value(ctx, labels[key], path)}")
    for i, expr in enumerate(
        ctx.sequence(data.get("matchExpressions"), f"{path}.matchExpressions")
    ):
        where = f"{path}.matchExpressions[{i}]"
        item = ctx.mapping(expr, where)
        ctx.check_fields(item, ("key", "operator", "values"), where)
        key = _key(ctx, item.get("key"), where)
        values = [_value(ctx, v, where) for v in ctx.sequence(item.get("values"), where)]
        operator = item.get("operator")
        if operator in ("In", "NotIn") and not values:
            raise ctx.error(f"{where}: operator {operator} needs values")
        if operator == "In":
            terms.append(f"{key} in {{{', '.join(values)}}}")
        elif operator == "NotIn":
            terms.append(f"{key} not in {{{', '.join(values)}}}")
        elif operator == "Exists":
            terms.append(f"has({key})")
        elif operator == "DoesNotExist":
            terms.append(f"!has({key})")
        else:
            raise ctx.error(f"{where}.operator: unknown operator {operator!r}")
    return " && ".join(terms)


def _key(ctx: Context, key: Any, path: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ctx.error(f"{path}: bad label key {key!r}")
    return key


def _value(ctx: Context, value: Any, path: str) -> str:
    # Label values that pass this check cannot hold a quote, so quoting is safe.
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise ctx.error(f"{path}: bad label value {value!r}")
    return f"'{value}'"


def _and(*parts: str) -> str:
    present = [p for p in parts if p]
    return " && ".join(f"({p})" for p in present) if len(present) > 1 else "".join(present)


def convert(ctx: Context, spec: Mapping[str, Any], *, namespace: str) -> K8sSpec:
    ctx.check_fields(spec, SPEC_FIELDS | {"stagedAction"}, "spec")
    selector = ctx.selector(
        _and(ORCHESTRATOR, label_selector(ctx, spec.get("podSelector"), "spec.podSelector")),
        "spec.podSelector",
    )
    assert selector is not None
    ingress = _rules(ctx, spec.get("ingress"), "spec.ingress", egress=False, namespace=namespace)
    egress = _rules(ctx, spec.get("egress"), "spec.egress", egress=True, namespace=namespace)
    raw_types = ctx.sequence(spec.get("policyTypes"), "spec.policyTypes")
    if raw_types:
        if any(t not in ("Ingress", "Egress") for t in raw_types):
            raise ctx.error(f"spec.policyTypes: expected Ingress/Egress, got {raw_types!r}")
        types: frozenset[Direction] = frozenset(
            "ingress" if t == "Ingress" else "egress" for t in raw_types
        )
    else:
        has_egress = bool(ctx.sequence(spec.get("egress"), "spec.egress"))
        types = frozenset({"ingress", "egress"}) if has_egress else frozenset({"ingress"})
    return K8sSpec(selector, types, ingress, egress)


def _rules(
    ctx: Context, value: Any, path: str, *, egress: bool, namespace: str
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    peer_field = "to" if egress else "from"
    for i, item in enumerate(ctx.sequence(value, path)):
        where = f"{path}[{i}]"
        data = ctx.mapping(item, where)
        ctx.check_fields(data, (peer_field, "ports"), where)
        peers = [
            _peer(ctx, p, f"{where}.{peer_field}[{j}]")
            for j, p in enumerate(ctx.sequence(data.get(peer_field), f"{where}.{peer_field}"))
        ] or [EntityRule()]
        ports = [
            _port(ctx, p, f"{where}.ports[{j}]")
            for j, p in enumerate(ctx.sequence(data.get("ports"), f"{where}.ports"))
        ] or [(None, None)]
        for protocol, port_match in ports:
            for peer in peers:
                rules.append(
                    Rule(
                        index=len(rules),
                        action="Allow",
                        protocol=protocol,
                        source=EntityRule() if egress else peer,
                        destination=(
                            _merge_ports(peer, port_match)
                            if egress
                            else EntityRule(ports=port_match)
                        ),
                    )
                )
    return tuple(rules)


def _merge_ports(peer: EntityRule, ports: PortMatch | None) -> EntityRule:
    return EntityRule(
        nets=peer.nets,
        not_nets=peer.not_nets,
        selector=peer.selector,
        namespace_selector=peer.namespace_selector,
        ports=ports,
    )


def _peer(ctx: Context, value: Any, path: str) -> EntityRule:
    data = ctx.mapping(value, path)
    ctx.check_fields(data, ("podSelector", "namespaceSelector", "ipBlock"), path)
    if data.get("ipBlock") is not None:
        if data.get("podSelector") is not None or data.get("namespaceSelector") is not None:
            raise ctx.error(f"{path}: ipBlock cannot be combined with selectors")
        block = ctx.mapping(data["ipBlock"], f"{path}.ipBlock")
        ctx.check_fields(block, ("cidr", "except"), f"{path}.ipBlock")
        return EntityRule(
            nets=parse_nets(ctx, [block.get("cidr")], f"{path}.ipBlock.cidr"),
            not_nets=parse_nets(ctx, block.get("except"), f"{path}.ipBlock.except"),
        )
    pods = data.get("podSelector")
    namespaces = data.get("namespaceSelector")
    if pods is None and namespaces is None:
        raise ctx.error(f"{path}: a peer needs podSelector, namespaceSelector or ipBlock")
    pod_text = label_selector(ctx, pods, f"{path}.podSelector") if pods is not None else ""
    ns_selector = None
    if namespaces is not None:
        ns_text = label_selector(ctx, namespaces, f"{path}.namespaceSelector") or "all()"
        ns_selector = ctx.selector(ns_text, f"{path}.namespaceSelector")
    return EntityRule(
        selector=ctx.selector(_and(ORCHESTRATOR, pod_text), f"{path}.podSelector"),
        namespace_selector=ns_selector,
    )


def _port(ctx: Context, value: Any, path: str) -> tuple[int | None, PortMatch | None]:
    data = ctx.mapping(value, path)
    ctx.check_fields(data, ("protocol", "port", "endPort"), path)
    proto_text = data.get("protocol", "TCP")
    if not isinstance(proto_text, str) or proto_text.lower() not in ("tcp", "udp", "sctp"):
        raise ctx.error(f"{path}.protocol: expected TCP, UDP or SCTP, got {proto_text!r}")
    protocol = PROTOCOLS[proto_text.lower()]
    port = data.get("port")
    end = data.get("endPort")
    if port is None:
        return protocol, None
    if isinstance(port, str) and not port.isdigit():
        if not _NAMED_PORT.fullmatch(port):
            raise ctx.error(f"{path}.port: bad port {port!r}")
        # Resolved per destination pod at evaluation (named_ports.py), like Kubernetes does.
        return protocol, PortMatch((), (port,))
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise ctx.error(f"{path}.port: bad port {port!r}")
    first = int(port)
    last = first if end is None else end
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= first <= last <= 65535:
        raise ctx.error(f"{path}: bad port range {port!r}-{end!r}")
    return protocol, PortMatch((PortRange(first, last),))
