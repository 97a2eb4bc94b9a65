"""Every rendered manifest validates against the CRD (or Kubernetes) schema of its kind, and
the validator (flowfence.calico.schema, which every run applies) rejects what the cluster would."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
import yaml
from crd import validate_network_policy, validate_staged_policy, validate_tier
from test_rules import BASE, build, edge, ingress, to_net, to_ns

from flowfence.config.settings import Settings
from flowfence.render import manifests as render

FLAVORS = ("calico-enterprise", "calico", "kubernetes")


def everything() -> list[dict[str, Any]]:
    """One of each peer kind and protocol shape, both directions, both IP families."""
    rows = [
        *(to_ns("db", p) for p in (80, 81, 82, 443)),
        to_ns("shop", 8080),
        to_ns("kube-system", 53, "udp"),
        to_ns("kube-system", None, "icmp"),
        to_ns("kube-system", None, "icmpv6"),
        to_ns("db", 3, "sctp"),
        to_ns("db", None, "47"),
        to_ns("cache", None),
        to_net("pvt", "10.3.0.12", 5432),
        to_net("pvt", "10.3.0.13", 5432),
        to_net("pvt", "fd12::4", 5432),
        to_net("pvt", None, 6379),
        to_net("pub", "1.1.1.1", 443, dest_domains=["api.example.com", "x.svc.cluster.local"]),
        to_net("pub", "2606:4700::1", 443, dest_domains=["v6.example.com"]),
        to_net("pub", None, 8443, dest_service_name="ext", dest_service_namespace="shop"),
        to_net("pub", None, 123, "udp"),
        *(to_net("pub", f"203.0.113.{i}", 80) for i in range(1, 30, 3)),
        to_net("pub", "2001:db8::9", 80),
        edge(
            dest_type="ns", dest_name_aggr="corp", dest_port=22, dest_labels=["env=prod", "tier=1"]
        ),
        edge(dest_type="ns", dest_name_aggr="legacy", dest_namespace="ops", dest_port=21),
        ingress(
            source_type="wep", source_namespace="frontend", source_name_aggr="fe-*", dest_port=8080
        ),
        ingress(
            source_type="wep", source_namespace="shop", source_name_aggr="web-*", dest_port=8080
        ),
        ingress(source_type="net", source_name_aggr="pub", source_ip="2001:db8::7", dest_port=443),
        ingress(source_type="net", source_name_aggr="pub", source_ip=None, dest_port=443),
        ingress(source_type="net", source_name_aggr="pvt", source_ip="192.168.4.4", dest_port=9100),
        ingress(
            source_type="ns",
            source_name_aggr="monitoring",
            source_namespace=None,
            dest_port=9100,
            source_labels=["role=scraper"],
        ),
    ]
    rows += [
        to_ns(f"peer-{i}", 9000 + i, namespace="busy", source_namespace="busy") for i in range(30)
    ]
    return rows


def manifests(s: Settings) -> dict[str, Any]:
    recs = build(everything(), s, namespaces=("shop", "busy", "quiet"))
    return {path: yaml.safe_load(data) for path, data in render.render(recs, s).items()}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("intra_pass", [False, True])
def test_every_manifest_validates(flavor: str, intra_pass: bool) -> None:
    s = replace(BASE, flavor=flavor, intra_namespace_pass=intra_pass, max_rules=12)  # type: ignore[arg-type]
    docs = manifests(s)
    policies = [d for p, d in docs.items() if not p.endswith(("tier.yaml", "kustomization.yaml"))]
    assert len(policies) == 2  # shop and busy; quiet has no rules
    for doc in policies:
        if flavor == "kubernetes":
            assert validate_network_policy(doc) == []
        else:
            assert validate_staged_policy(doc, enterprise=flavor == "calico-enterprise") == []
            # Everything but `domains` is valid on OSS Calico too.
            if not any(
                "domains" in r.get("destination", {}) for r in doc["spec"].get("egress", [])
            ):
                assert validate_staged_policy(doc, enterprise=False) == []
    if flavor != "kubernetes":
        assert validate_tier(docs["policies/tier.yaml"]) == []
        assert validate_tier(docs["policies/tier.yaml"], enterprise=True) == []


def test_the_enterprise_manifest_really_uses_domains() -> None:
    docs = manifests(BASE)
    egress = docs["policies/shop.yaml"]["spec"]["egress"]
    assert any("domains" in r["destination"] for r in egress)


# --- the validators bite ----------------------------------------------------------------------


def _calico_doc() -> dict[str, Any]:
    return copy.deepcopy(manifests(replace(BASE, flavor="calico"))["policies/shop.yaml"])


def test_oss_crd_rejects_domains_and_unknown_fields() -> None:
    enterprise = manifests(BASE)["policies/shop.yaml"]
    assert validate_staged_policy(enterprise, enterprise=True) == []
    assert any("domains" in e for e in validate_staged_policy(enterprise, enterprise=False))
    doc = _calico_doc()
    doc["spec"]["egress"][0]["destination"]["nest"] = ["1.2.3.4/32"]
    assert validate_staged_policy(doc, enterprise=False)


def test_hand_written_cel_rules() -> None:
    doc = _calico_doc()
    service = next(r for r in doc["spec"]["egress"] if "services" in r["destination"])
    service["destination"]["ports"] = [8443]
    assert any("services combined" in e for e in validate_staged_policy(doc, enterprise=False))
    doc = _calico_doc()
    service = next(r for r in doc["spec"]["egress"] if "services" in r["destination"])
    service["destination"]["nets"] = ["1.2.3.4/32"]
    assert any("services combined" in e for e in validate_staged_policy(doc, enterprise=True))
    doc = _calico_doc()
    icmp = next(r for r in doc["spec"]["egress"] if r["protocol"] == "ICMP")
    icmp["destination"]["ports"] = [1]
    assert any("ports with protocol" in e for e in validate_staged_policy(doc, enterprise=False))
    doc = _calico_doc()
    doc["spec"]["egress"][0]["destination"]["selector"] = "global()"
    assert any("global()" in e for e in validate_staged_policy(doc, enterprise=False))
    doc = _calico_doc()
    doc["spec"]["egress"][0]["destination"]["nets"] = ["1.2.3.4/32", "2001:db8::/64"]
    assert any("mixes IPv4 and IPv6" in e for e in validate_staged_policy(doc, enterprise=False))
    doc = _calico_doc()
    doc["metadata"]["namespace"] = "Bad_NS"
    assert validate_staged_policy(doc, enterprise=False)


def test_kubernetes_schema_rejects_calico_shapes() -> None:
    doc = manifests(replace(BASE, flavor="kubernetes"))["policies/shop.yaml"]
    assert validate_network_policy(doc) == []
    broken = copy.deepcopy(doc)
    broken["spec"]["egress"][0]["to"][0] = {"cidr": "1.2.3.4/32"}
    assert validate_network_policy(broken)
    broken = copy.deepcopy(doc)
    broken["spec"]["egress"][0]["ports"] = [{"protocol": "TCP", "port": 1, "endPort": "x"}]
    assert validate_network_policy(broken)


def test_tier_crd_checks_default_action() -> None:
    tier = manifests(BASE)["policies/tier.yaml"]
    bad = copy.deepcopy(tier)
    bad["spec"]["defaultAction"] = "Allow"
    assert validate_tier(bad)
