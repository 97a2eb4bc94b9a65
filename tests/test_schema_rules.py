"""The hand-written rules (schema_rules.py) cover every CEL rule of the shipped CRDs and the
Calico validator's rules that matter for policies."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from flowfence.calico import schema
from flowfence.calico.schema import CALICO, CrdSet, check

Doc = dict[str, Any]


def _policy(kind: str) -> Doc:
    namespaced = kind in ("NetworkPolicy", "StagedNetworkPolicy")
    rule = {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, "8000:8080"]}}
    return {
        "apiVersion": CALICO,
        "kind": kind,
        "metadata": {"name": "team.web", **({"namespace": "shop"} if namespaced else {})},
        "spec": {
            "tier": "team",
            "selector": "app == 'web'",
            "types": ["Ingress", "Egress"],
            "ingress": [copy.deepcopy(rule)],
            "egress": [copy.deepcopy(rule)],
        },
    }


def _tier(name: str, order: float, action: str) -> Doc:
    spec = {"order": order, "defaultAction": action}
    return {"apiVersion": CALICO, "kind": "Tier", "metadata": {"name": name}, "spec": spec}


def _egress(**fields: Any) -> Callable[[Doc], Doc]:
    def edit(doc: Doc) -> Doc:
        rule = doc["spec"]["egress"][0]
        for key, value in fields.items():
            if value is None:
                rule.pop(key, None)
            else:
                rule[key] = value
        return doc

    return edit


def _dest(**fields: Any) -> Callable[[Doc], Doc]:
    def edit(doc: Doc) -> Doc:
        destination = {k: v for k, v in fields.items() if v is not None}
        doc["spec"]["egress"][0]["destination"] = destination
        return doc

    return edit


def _spec(**fields: Any) -> Callable[[Doc], Doc]:
    def edit(doc: Doc) -> Doc:
        doc["spec"].update(fields)
        return doc

    return edit


def _replace(new: Doc) -> Callable[[Doc], Doc]:
    return lambda _doc: copy.deepcopy(new)


ICMP = {"protocol": "ICMP", "destination": None}
SERVICE = {"name": "api", "namespace": "shop"}
# Every CEL rule (whitespace collapsed) in the shipped CRDs -> an edit that breaks it.
VIOLATIONS: dict[str, Callable[[Doc], Doc]] = {
    "!((has(self.doNotTrack) && self.doNotTrack) && (has(self.preDNAT) && self.preDNAT))": _spec(
        doNotTrack=True, preDNAT=True, applyOnForward=True, egress=[], types=["Ingress"]
    ),
    "(!has(self.preDNAT) || !self.preDNAT) || !has(self.egress) || size(self.egress) == 0": _spec(
        preDNAT=True, applyOnForward=True, types=["Ingress"]
    ),
    "(!has(self.preDNAT) || !self.preDNAT) || !has(self.types) || "
    "!self.types.exists(t, t == 'Egress')": _spec(preDNAT=True, applyOnForward=True, egress=[]),
    "(has(self.applyOnForward) && self.applyOnForward) || ((!has(self.doNotTrack) || "
    "!self.doNotTrack) && (!has(self.preDNAT) || !self.preDNAT))": _spec(doNotTrack=True),
    "!has(self.selector) || !self.selector.contains('global(')": _spec(selector="global()"),
    "!has(self.serviceAccountSelector) || !self.serviceAccountSelector.contains('global(')": (
        _spec(serviceAccountSelector="global()")
    ),
    "!has(self.namespaceSelector) || !self.namespaceSelector.contains('global(')": _spec(
        namespaceSelector="global()"
    ),
    "!has(self.http) || !has(self.protocol) || self.protocol == 'TCP' || self.protocol == 6": (
        _egress(protocol="UDP", http={"methods": ["GET"]})
    ),
    "self.action == 'Allow' || !has(self.http)": _egress(action="Deny", http={"methods": ["GET"]}),
    "!has(self.destination) || !has(self.destination.services) || (!has(self.destination.ports) "
    "|| size(self.destination.ports) == 0) && (!has(self.destination.notPorts) || "
    "size(self.destination.notPorts) == 0)": _dest(services=SERVICE, ports=[80]),
    "!has(self.icmp) || (has(self.protocol) && (self.protocol == 'ICMP' || self.protocol == "
    "'ICMPv6' || self.protocol == 1 || self.protocol == 58))": _egress(icmp={"type": 8}),
    "(!has(self.protocol) || (self.protocol != 'ICMP' && self.protocol != 1)) || "
    "!has(self.ipVersion) || self.ipVersion == 4": _egress(**ICMP, ipVersion=6),
    "(!has(self.protocol) || (self.protocol != 'ICMPv6' && self.protocol != 58)) || "
    "!has(self.ipVersion) || self.ipVersion == 6": _egress(
        protocol=58, destination=None, ipVersion=4
    ),
    "(!has(self.notProtocol) || (self.notProtocol != 'ICMP' && self.notProtocol != 1)) || "
    "!has(self.ipVersion) || self.ipVersion == 4": _egress(
        protocol=None, notProtocol="ICMP", destination=None, ipVersion=6
    ),
    "(!has(self.notProtocol) || (self.notProtocol != 'ICMPv6' && self.notProtocol != 58)) || "
    "!has(self.ipVersion) || self.ipVersion == 6": _egress(
        protocol=None, notProtocol="ICMPv6", destination=None, ipVersion=4
    ),
    "!has(self.services) || !has(self.namespaceSelector) || size(self.namespaceSelector) == 0": (
        _dest(services=SERVICE, namespaceSelector="all()")
    ),
    "!has(self.services) || !has(self.serviceAccounts)": _dest(
        services=SERVICE, serviceAccounts={"names": ["sa"]}
    ),
    "!has(self.services) || size(self.services.name) > 0": _dest(services={"name": ""}),
    "!has(self.services) || (!has(self.selector) || size(self.selector) == 0) && "
    "(!has(self.notSelector) || size(self.notSelector) == 0)": _dest(
        services=SERVICE, selector="app == 'x'"
    ),
    "!has(self.services) || (!has(self.nets) || size(self.nets) == 0) && (!has(self.notNets) || "
    "size(self.notNets) == 0)": _dest(services=SERVICE, nets=["10.0.0.0/8"]),
    "!has(self.code) || has(self.type)": _egress(**ICMP, icmp={"code": 0}),
    "self.metadata.name == 'kube-admin' ? (has(self.spec.defaultAction) && "
    "self.spec.defaultAction == 'Pass') : true": _replace(_tier("kube-admin", 1000, "Deny")),
    "self.metadata.name == 'kube-baseline' ? (has(self.spec.defaultAction) && "
    "self.spec.defaultAction == 'Pass') : true": _replace(_tier("kube-baseline", 1e7, "Deny")),
    "self.metadata.name == 'default' ? (has(self.spec.defaultAction) && "
    "self.spec.defaultAction == 'Deny') : true": _replace(_tier("default", 1e6, "Pass")),
    "self.metadata.name != 'default' || (has(self.spec.order) && self.spec.order == 1000000.0)": (
        _replace(_tier("default", 5, "Deny"))
    ),
    "self.metadata.name != 'kube-admin' || (has(self.spec.order) && self.spec.order == 1000.0)": (
        _replace(_tier("kube-admin", 5, "Pass"))
    ),
    "self.metadata.name != 'kube-baseline' || (has(self.spec.order) && "
    "self.spec.order == 10000000.0)": _replace(_tier("kube-baseline", 5, "Pass")),
}


def _cel_rules() -> list[tuple[str, str, str]]:
    """(file, kind, rule) for every x-kubernetes-validations rule in the shipped CRDs."""
    found: set[tuple[str, str, str]] = set()

    def walk(node: Any, source: str, kind: str) -> None:
        if isinstance(node, dict):
            for v in node.get("x-kubernetes-validations") or ():
                found.add((source, kind, " ".join(v["rule"].split())))
            for value in node.values():
                walk(value, source, kind)
        elif isinstance(node, list):
            for value in node:
                walk(value, source, kind)

    for crds in schema.CRD_SETS:
        for _, kind in schema.kinds(crds):
            found_schema = schema.schema(crds, CALICO, kind)
            if found_schema is not None:
                doc = schema.crd(found_schema.source)
                walk(doc["spec"]["versions"], found_schema.source, kind)
    return sorted(found)


CEL = _cel_rules()


def test_the_shipped_crds_have_the_cel_rules_we_know() -> None:
    assert len(CEL) > 60
    unknown = sorted({rule for _, _, rule in CEL} - VIOLATIONS.keys())
    assert unknown == [], "a CRD update brought CEL rules schema_rules.py does not implement"


@pytest.mark.parametrize(("source", "kind", "rule"), CEL, ids=[f"{s}:{r[:40]}" for s, _, r in CEL])
def test_every_cel_rule_is_enforced(source: str, kind: str, rule: str) -> None:
    crds: CrdSet = "calico-enterprise" if source.startswith("enterprise/") else "calico"
    base = _tier("team", 100, "Deny") if kind == "Tier" else _policy(kind)
    assert check(base, crds, require_namespace=True) == []
    broken = VIOLATIONS[rule](copy.deepcopy(base))
    assert check(broken, crds, require_namespace=True), (rule, broken)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_dest(ports=[80], nets=["10.0.0.0/8", "fd00::/8"]), "mixes IPv4 and IPv6"),
        (_egress(ipVersion=6, destination={"nets": ["10.0.0.0/8"]}), "does not match ipVersion"),
        (_dest(nets=["10.0.0.300/32"]), "is not a CIDR"),
        (_dest(ports=["90:80"]), "not ascending"),
        (_egress(protocol="ICMP"), "ports with protocol 'ICMP'"),
        (_dest(selector="app ==="), "invalid selector at position"),
        (_dest(namespaceSelector="global() && a == 'b'"), "stand alone"),
        (_dest(domains=["example.com"], nets=["1.1.1.1/32"]), "domains only on egress Allow"),
        (_spec(types=["Ingress", "Ingress"]), "more than once"),
    ],
)
def test_calico_validator_rules(edit: Callable[[Doc], Doc], message: str) -> None:
    broken = edit(_policy("NetworkPolicy"))
    problems = check(broken, "calico-enterprise", require_namespace=True)
    assert problems is not None
    assert any(message in p.message for p in problems), problems


@pytest.mark.parametrize(
    ("name", "kind", "valid"),
    [
        ("tier.web", "NetworkPolicy", True),
        ("knp.default.a.b.c", "NetworkPolicy", True),
        ("a.b.c", "NetworkPolicy", False),
        ("Web", "NetworkPolicy", False),
        ("tier.web", "GlobalNetworkPolicy", True),
        ("a.b.c", "GlobalNetworkPolicy", False),
        ("x" * 254, "NetworkPolicy", False),
    ],
)
def test_policy_names_follow_calico(name: str, kind: str, valid: bool) -> None:
    doc = _policy(kind)
    doc["metadata"]["name"] = name
    problems = check(doc, "calico", require_namespace=True)
    assert (problems == []) is valid, problems


def test_a_namespace_is_required_only_when_asked() -> None:
    doc = _policy("NetworkPolicy")
    del doc["metadata"]["namespace"]
    assert check(doc, "calico") == []
    assert [p.path for p in check(doc, "calico", require_namespace=True) or []] == [
        "metadata.namespace"
    ]


def test_labels_and_annotations_are_checked() -> None:
    doc = _policy("NetworkPolicy")
    doc["metadata"]["labels"] = {"ok/key": "v", "bad key": "v", "k": "bad value!"}
    doc["metadata"]["annotations"] = {"x": "y" * 300_000}
    messages = [p.message for p in check(doc, "calico") or []]
    assert "not a valid label key" in messages
    assert any("not a valid label value" in m for m in messages)
    assert any("more than 262144" in m for m in messages)
