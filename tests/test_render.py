from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from test_rules import BASE, T0, build, edge, ingress, to_net, to_ns

from flowfence.config.settings import Settings
from flowfence.learn import rules
from flowfence.learn.model import Evidence, Recommendation, Rule
from flowfence.render import manifests
from flowfence.render.yaml_text import dump


def sample_rows() -> list[dict[str, Any]]:
    return [
        to_ns("db", 80, first_seen=T0 + timedelta(days=1)),
        to_ns("db", 81),
        to_ns("db", 82),
        to_ns("db", 443),
        to_ns("shop", 8080),
        to_ns("kube-system", 53, "udp"),
        to_ns("kube-system", None, "icmp"),
        to_net("pvt", "10.3.0.12", 5432),
        to_net("pub", "1.1.1.1", 443, dest_domains=["api.example.com"]),
        to_net("pub", None, 8443, dest_service_name="ext", dest_service_namespace="shop"),
        to_net("pub", None, 123, "udp"),
        edge(dest_type="ns", dest_name_aggr="corp", dest_port=22, dest_labels=["env=prod"]),
        edge(dest_type="ns", dest_name_aggr="legacy", dest_namespace="ops", dest_port=21),
        ingress(
            source_type="wep", source_namespace="frontend", source_name_aggr="fe-*", dest_port=8080
        ),
        ingress(source_type="net", source_name_aggr="pub", source_ip="2001:db8::7", dest_port=443),
    ]


def rendered(
    s: Settings = BASE, rows: list[dict[str, Any]] | None = None, **kw: Any
) -> dict[str, bytes]:
    recs = build(sample_rows() if rows is None else rows, s, namespaces=("shop", "quiet"))
    return manifests.render(recs, s, **kw)


def docs(out: dict[str, bytes]) -> dict[str, Any]:
    return {path: yaml.safe_load(data) for path, data in out.items()}


def test_files_and_kustomization() -> None:
    out = rendered()
    assert sorted(out) == [
        "policies/kustomization.yaml",
        "policies/shop.yaml",
        "policies/tier.yaml",
    ]
    kust = yaml.safe_load(out["policies/kustomization.yaml"])
    assert kust["resources"] == ["shop.yaml", "tier.yaml"]
    tier = yaml.safe_load(out["policies/tier.yaml"])
    assert tier == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "namespace-isolation"},
        "spec": {"order": 10000, "defaultAction": "Deny"},
    }


def test_policy_metadata_and_spec() -> None:
    doc = yaml.safe_load(rendered()["policies/shop.yaml"])
    assert list(doc) == ["apiVersion", "kind", "metadata", "spec"]
    assert (doc["apiVersion"], doc["kind"]) == ("projectcalico.org/v3", "StagedNetworkPolicy")
    meta = doc["metadata"]
    assert meta["name"] == "namespace-isolation.shop" and meta["namespace"] == "shop"
    assert meta["labels"] == {
        "projectcalico.org/tier": "namespace-isolation",
        "projectcalico.org/spec.stagedAction": "Learn",
        "projectcalico.org/ownerReference.kind": "PolicyRecommendationScope",
        "policyrecommendation.tigera.io/scope": "namespace",
    }
    # Default status: Learning, last updated when the newest rule was first seen.
    assert meta["annotations"] == {
        "policyrecommendation.tigera.io/status": "Learning",
        "policyrecommendation.tigera.io/lastUpdated": "2026-10-01T08:00:00Z",
    }
    spec = doc["spec"]
    assert spec["stagedAction"] == "Learn" and spec["tier"] == "namespace-isolation"
    assert spec["selector"] == "projectcalico.org/namespace == 'shop'"
    assert spec["types"] == ["Ingress", "Egress"]
    scopes = [
        r["metadata"]["annotations"]["policyrecommendation.tigera.io/scope"] for r in spec["egress"]
    ]
    assert scopes == [
        "Domains",
        "Service",
        "Namespace",
        "Namespace",
        "Namespace",
        "Namespace",
        "NetworkSet",
        "NetworkSet",
        "Private",
        "Public",
    ]


def test_rules_render_like_calico() -> None:
    egress = yaml.safe_load(rendered()["policies/shop.yaml"])["spec"]["egress"]
    by_peer = {str(r["destination"].get("namespaceSelector")) + r["protocol"]: r for r in egress}
    db = by_peer["projectcalico.org/name == 'db'TCP"]
    assert db["destination"]["ports"] == ["80:82", 443] and db["action"] == "Allow"
    notes = db["metadata"]["annotations"]
    assert notes["policyrecommendation.tigera.io/namespace"] == "db"
    assert notes["policyrecommendation.tigera.io/warnings"] == "NonServicePortsAndProtocol"
    assert notes["flowfence.io/firstSeen"] == "2026-10-01T08:00:00Z"
    icmp = by_peer["projectcalico.org/name == 'kube-system'ICMP"]
    assert "ports" not in icmp["destination"]
    service = next(r for r in egress if "services" in r["destination"])
    assert service["destination"] == {"services": {"name": "ext", "namespace": "shop"}}
    corp = next(r for r in egress if r["destination"].get("selector") == "env == 'prod'")
    assert corp["destination"]["namespaceSelector"] == "global()"
    legacy = next(r for r in egress if "legacy" in r["destination"].get("selector", ""))
    assert legacy["destination"]["selector"] == (
        "projectcalico.org/name == 'legacy' && projectcalico.org/kind == 'NetworkSet'"
    )
    assert legacy["destination"]["namespaceSelector"] == "projectcalico.org/name == 'ops'"
    assert "Enterprise" in legacy["metadata"]["annotations"]["flowfence.io/note"]
    public = egress[-1]
    assert (
        public["destination"]["nets"] == ["0.0.0.0/0"]
        and "10.0.0.0/8" in public["destination"]["notNets"]
    )
    assert "flowfence.io/note" in public["metadata"]["annotations"]
    domains = egress[0]
    assert domains["destination"] == {"domains": ["api.example.com"], "ports": [443]}


def test_ingress_peer_is_the_source_and_ports_the_destination() -> None:
    ingress_rules = yaml.safe_load(rendered()["policies/shop.yaml"])["spec"]["ingress"]
    ns_rule = next(r for r in ingress_rules if "namespaceSelector" in r["source"])
    assert ns_rule["source"] == {"namespaceSelector": "projectcalico.org/name == 'frontend'"}
    assert ns_rule["destination"] == {"ports": [8080]}
    public = next(r for r in ingress_rules if "nets" in r["source"])
    assert public["source"] == {"nets": ["2001:db8::7/128"]}


def test_a_policy_isolates_both_directions_by_default() -> None:
    """A namespace with only egress rules (its ingress never seen, or decided by an earlier
    tier) is still isolated for ingress: no rules there, but the type is listed."""
    for flavor in ("calico-enterprise", "calico"):
        out = rendered(replace(BASE, flavor=flavor), rows=[to_ns("db", 80)])
        doc = yaml.safe_load(out["policies/shop.yaml"])
        assert doc["spec"]["types"] == ["Ingress", "Egress"] and "ingress" not in doc["spec"]
    only_in = rendered(rows=[ingress(source_type="wep", source_namespace="fe", dest_port=80)])
    doc = yaml.safe_load(only_in["policies/shop.yaml"])
    assert doc["spec"]["types"] == ["Ingress", "Egress"] and "egress" not in doc["spec"]
    k8s = rendered(replace(BASE, flavor="kubernetes"), rows=[to_ns("db", 80)])
    spec = yaml.safe_load(k8s["policies/shop.yaml"])["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in spec


def test_with_rules_types_follow_the_rules_present_as_calico() -> None:
    calico = replace(BASE, policy_types="WithRules")
    doc = yaml.safe_load(rendered(calico, rows=[to_ns("db", 80)])["policies/shop.yaml"])
    assert doc["spec"]["types"] == ["Egress"] and "ingress" not in doc["spec"]
    k8s = replace(calico, flavor="kubernetes")
    spec = yaml.safe_load(rendered(k8s, rows=[to_ns("db", 80)])["policies/shop.yaml"])["spec"]
    assert spec["policyTypes"] == ["Egress"]


def test_no_counts_or_last_seen_in_manifests() -> None:
    rows = sample_rows()
    for i, row in enumerate(rows):
        row.update(flows=7919 + i, bytes=104729 + i, last_seen=datetime(2027, 3, 4, 5, 6, 7))
    for flavor in ("calico-enterprise", "calico", "kubernetes"):
        for data in rendered(replace(BASE, flavor=flavor), rows=rows).values():
            text = data.decode()
            assert "2027-03-04" not in text and "7919" not in text and "104729" not in text
            assert "lastSeen" not in text and "flows" not in text.lower().replace("flow logs", "")


def test_statuses_from_the_caller() -> None:
    when = datetime(2026, 10, 3, 1, 2, 3, tzinfo=UTC)
    doc = yaml.safe_load(rendered(statuses={"shop": ("Stable", when)})["policies/shop.yaml"])
    assert doc["metadata"]["annotations"] == {
        "policyrecommendation.tigera.io/status": "Stable",
        "policyrecommendation.tigera.io/lastUpdated": "2026-10-03T01:02:03Z",
    }
    with pytest.raises(ValueError):
        rendered(statuses={"shop": ("Stable'\n", when)})


@pytest.mark.parametrize("flavor", ["calico-enterprise", "calico", "kubernetes"])
def test_statuses_set_after_building_give_the_same_bytes(flavor: str) -> None:
    """A run builds each document once, then sets the statuses the lifecycle decided on it:
    the same bytes as rendering with those statuses."""
    s = replace(BASE, flavor=flavor)
    recs = build(sample_rows(), s, namespaces=("shop", "quiet"))
    statuses = {"shop": ("Stabilizing", datetime(2026, 10, 3, 1, 2, 3)), "quiet": ("NoData", T0)}
    built = manifests.policy_documents(recs, s)
    stamped = manifests.with_kustomization(manifests.with_statuses(built, statuses))
    expected = manifests.render(recs, s, statuses=statuses)
    assert {f"policies/{name}": dump(doc) for name, doc in stamped.items()} == expected
    assert built["shop.yaml"] != stamped["shop.yaml"]  # the built document is left as it was
    with pytest.raises(ValueError):
        manifests.with_status(built["shop.yaml"], "Stable'\n", T0)


def test_rendering_is_deterministic() -> None:
    rows = sample_rows()
    first = rendered(rows=rows)
    assert rendered(rows=rows) == first
    for seed in range(3):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert rendered(rows=shuffled) == first


def test_calico_flavor_never_writes_domains() -> None:
    out = rendered(replace(BASE, flavor="calico"))
    doc = yaml.safe_load(out["policies/shop.yaml"])
    assert " domains:" not in out["policies/shop.yaml"].decode()
    assert all("domains" not in r["destination"] for r in doc["spec"]["egress"])
    dom = doc["spec"]["egress"][0]
    assert dom["destination"]["nets"] == ["1.1.1.1/32"]
    assert dom["metadata"]["annotations"]["flowfence.io/domains"] == "api.example.com"
    # Enterprise-built recommendations cannot be rendered as OSS Calico by mistake.
    recs = build(sample_rows(), BASE)
    with pytest.raises(ValueError):
        manifests.render(recs, replace(BASE, flavor="calico"))


def test_kubernetes_flavor() -> None:
    s = replace(BASE, flavor="kubernetes", intra_namespace_pass=True)
    out = rendered(s)
    assert sorted(out) == ["policies/kustomization.yaml", "policies/shop.yaml"]
    doc = yaml.safe_load(out["policies/shop.yaml"])
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "namespace-isolation",
    )
    spec = doc["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Ingress", "Egress"]
    db_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}
    db = next(r for r in spec["egress"] if r["to"][0] == db_peer and "ports" in r)
    assert db["ports"] == [
        {"protocol": "TCP", "port": 80, "endPort": 82},
        {"protocol": "TCP", "port": 443},
    ]
    notes = doc["metadata"]["annotations"]["flowfence.io/notes"]
    assert "Pass rendered as allow" in notes and "ICMP" in notes and "network set corp" in notes
    assert "services" not in out["policies/shop.yaml"].decode()


def test_folded_namespaces_render_as_set() -> None:
    rows = [to_ns(f"p{i}", 443) for i in range(5)]
    doc = yaml.safe_load(rendered(replace(BASE, max_rules=1), rows=rows)["policies/shop.yaml"])
    (rule,) = doc["spec"]["egress"]
    assert (
        rule["destination"]["namespaceSelector"]
        == "projectcalico.org/name in {'p0', 'p1', 'p2', 'p3', 'p4'}"
    )
    assert "policyrecommendation.tigera.io/namespace" not in rule["metadata"]["annotations"]
    assert "flowfence.io/note" in rule["metadata"]["annotations"]


@pytest.mark.parametrize(
    "value",
    [
        "123",
        "1e3",
        "0o17",
        "0x1F",
        "true",
        "No",
        "null",
        "~",
        "1:59",
        "80:82",
        "",
        "1_000",
        ".5",
        "+1",
        "2026-10-01",
    ],
)
def test_yaml_quotes_strings_that_look_like_other_types(value: str) -> None:
    text = dump({"v": value}).decode()
    assert text.startswith("v: '") or text.startswith('v: "'), text
    assert yaml.safe_load(text) == {"v": value}


def test_yaml_is_block_style_and_plain_for_ordinary_strings() -> None:
    text = dump({"a": ["x", 1], "b": {"c": "projectcalico.org/name == 'x'"}}).decode()
    assert text == "a:\n  - x\n  - 1\nb:\n  c: projectcalico.org/name == 'x'\n"


def _rule(**kw: Any) -> Rule:
    evidence = Evidence(T0, T0, 1, 1, 1, 1)
    return Rule(
        **{
            "direction": "egress",
            "action": "Allow",
            "scope": "Namespace",
            "protocol": "TCP",
            "evidence": evidence,
            "namespaces": ("db",),
            **kw,
        }
    )


def test_hostile_names_never_reach_output() -> None:
    with pytest.raises(ValueError):
        _rule(namespaces=("db' || all() || '",))
    with pytest.raises(ValueError):
        Recommendation(namespace="../../etc", egress=(_rule(),))
    rec = Recommendation(namespace="shop", egress=(_rule(),))
    with pytest.raises(ValueError):
        manifests.render({"shop": rec}, replace(BASE, tier_name="Bad Tier"))
    with pytest.raises(ValueError):
        manifests.render({"shop": rec}, replace(BASE, tier_name="t" * 64))
    with pytest.raises(ValueError):
        manifests.render({"other": rec}, BASE)


def test_rules_module_rejects_what_render_would_reject() -> None:
    assert rules.UNSUPPORTED_PEERS == "unsupported-peers"
    assert manifests.policy_name(BASE, "a" * 63) == "namespace-isolation." + "a" * 63
