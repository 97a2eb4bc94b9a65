"""Flavor `kubernetes`: one `networking.k8s.io/v1` NetworkPolicy per namespace.

Kubernetes NetworkPolicy cannot express everything a Calico rule can; each gap widens rather
than drops observed traffic, and says so in the policy's `flowfence.io/notes` annotation:
- `Pass` (intra-namespace pass-through) becomes an allow;
- protocols other than TCP, UDP and SCTP (ICMP, ...) cannot be named: the rule allows every
  protocol to that peer;
- network sets do not exist: the peer becomes the set's CIDRs when `--existing-policies`
  holds the set (learn/netset_cidrs.py), else every address outside the cluster;
- services and domains never reach this flavor (rules.py names their addresses instead).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flowfence.calico import cidr
from flowfence.learn.model import PORT_PROTOCOLS, Recommendation, Rule, RuleSettings, dns_label

NAME_LABEL = "kubernetes.io/metadata.name"
_OUTSIDE_V4 = ("127.0.0.0/8", "169.254.0.0/16")
_OUTSIDE_V6 = ("::1/128", "fe80::/10")


def _namespace_peer(namespaces: tuple[str, ...]) -> dict[str, Any]:
    names = [dns_label(ns, "namespace") for ns in namespaces]
    if len(names) == 1:
        return {"namespaceSelector": {"matchLabels": {NAME_LABEL: names[0]}}}
    expression = {"key": NAME_LABEL, "operator": "In", "values": names}
    return {"namespaceSelector": {"matchExpressions": [expression]}}


def _ip_block(net: str, not_nets: tuple[str, ...]) -> dict[str, Any]:
    network = ipaddress.ip_network(net)
    inside = [
        n
        for n in not_nets
        if (sub := ipaddress.ip_network(n)).version == network.version
        and sub != network
        and sub.subnet_of(network)  # type: ignore[arg-type]
    ]
    block: dict[str, Any] = {"cidr": net}
    if inside:
        block["except"] = inside
    return {"ipBlock": block}


def _outside_cluster(settings: RuleSettings) -> list[dict[str, Any]]:
    blocks = []
    families: tuple[tuple[cidr.Family, tuple[str, ...]], ...] = ((4, _OUTSIDE_V4), (6, _OUTSIDE_V6))
    for fam, extra in families:
        cluster = [c for c in settings.cluster_cidrs if cidr.family(c) == fam]
        blocks.append(_ip_block(cidr.ANY[fam], cidr.collapse([*extra, *cluster])))
    return blocks


def _peers(rule: Rule, settings: RuleSettings, notes: list[str]) -> list[dict[str, Any]]:
    if rule.scope == "Namespace":
        return [_namespace_peer(rule.namespaces)]
    if rule.netset is not None and rule.netset.cidrs:
        return [_ip_block(net, ()) for net in rule.netset.cidrs]
    if rule.netset is not None:
        notes.append(
            f"{rule.direction} {rule.protocol} network set {rule.netset.name}: not expressible,"
            " widened to every address outside the cluster"
        )
        return _outside_cluster(settings)
    if rule.service is not None or not rule.nets:
        raise ValueError(f"a {rule.scope} rule without nets cannot be rendered for kubernetes")
    return [_ip_block(net, rule.not_nets) for net in rule.nets]


def _ports(rule: Rule, notes: list[str]) -> list[dict[str, Any]] | None:
    if rule.protocol not in PORT_PROTOCOLS:
        notes.append(
            f"{rule.direction} {rule.protocol} rule: Kubernetes cannot name the protocol,"
            " every protocol to that peer is allowed"
        )
        return None
    if not rule.ports:
        return [{"protocol": rule.protocol}]
    out: list[dict[str, Any]] = []
    for p in rule.ports:
        entry: dict[str, Any] = {"protocol": rule.protocol, "port": p.lo}
        if p.hi != p.lo:
            entry["endPort"] = p.hi
        out.append(entry)
    return out


def _rule(rule: Rule, settings: RuleSettings, notes: list[str]) -> dict[str, Any]:
    if rule.action == "Pass":
        notes.append(f"{rule.direction} intra-namespace Pass rendered as allow")
    if rule.note:
        notes.append(f"{rule.direction} {rule.protocol}: {rule.note}")
    key = "to" if rule.direction == "egress" else "from"
    out: dict[str, Any] = {key: _peers(rule, settings, notes)}
    ports = _ports(rule, notes)
    if ports is not None:
        out["ports"] = ports
    return out


def network_policy(
    rec: Recommendation, settings: RuleSettings, status: tuple[str, str]
) -> dict[str, Any]:
    notes: list[str] = []
    ingress = [_rule(r, settings, notes) for r in rec.ingress]
    egress = [_rule(r, settings, notes) for r in rec.egress]
    spec: dict[str, Any] = {
        "podSelector": {},
        "policyTypes": [
            t
            for t, direction in (("Ingress", "ingress"), ("Egress", "egress"))
            if rec.isolates(direction, settings.policy_types)  # type: ignore[arg-type]
        ],
    }
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    annotations = {"flowfence.io/status": status[0], "flowfence.io/lastUpdated": status[1]}
    if notes:
        annotations["flowfence.io/notes"] = "; ".join(sorted(set(notes)))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": dns_label(settings.tier_name, "policy name"),
            "namespace": dns_label(rec.namespace, "namespace"),
            "labels": {"app.kubernetes.io/managed-by": "flowfence"},
            "annotations": annotations,
        },
        "spec": spec,
    }
