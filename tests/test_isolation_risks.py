"""Issue 13 items 1, 4, 5 and 7: full isolation by default, and every widening or cut the rules
make on real flow logs named under the report's Risks (not only in an annotation)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import yaml
from test_changes import compute
from test_report_md import make, md_namespace
from test_rules import BASE, build, edge, ingress, only, to_net, to_ns

from flowfence.calico.policies import NetworkSet
from flowfence.calico.policy_docs import policy_set
from flowfence.config.settings import Settings
from flowfence.learn import netset_cidrs
from flowfence.learn.model import ANY_PORT, MAY_CUT, PUBLIC_FALLBACK, Recommendation
from flowfence.render import manifests
from flowfence.report import build as build_report
from flowfence.report import markdown as report_md
from flowfence.report import markdown_model, run_report


def risks_of(recs: dict[str, Recommendation], s: Settings = BASE) -> str:
    """The Risks section of a first run's report.md over `recs`."""
    after = manifests.render(recs, s)
    cs = compute({}, after, *recs.values())
    namespaces = [
        md_namespace(cs, ns, open_directions=tuple(
            d for d in ("ingress", "egress") if not rec.isolates(d, s.policy_types)))
        for ns, rec in sorted(recs.items())
    ]  # fmt: skip
    text = report_md.render(make(namespaces, policy_types=s.policy_types))
    head, _, _ = text.partition("<details>")
    return head


def test_a_tcp_flow_without_port_is_a_risk_not_only_a_note() -> None:
    recs = build([to_ns("db", None)])
    (rule,) = only(recs["shop"], "Namespace")
    assert ANY_PORT in rule.flags and not rule.ports
    text = risks_of(recs)
    assert "- **widens access** in `shop`: egress TCP any port `namespace db`" in text
    assert "allows every port (some flows had no destination port)" in text
    # The same rule with its port seen is not a risk.
    assert "widens access" not in risks_of(build([to_ns("db", 5432)]))


def test_public_fallback_without_addresses_may_cut_metadata_traffic() -> None:
    recs = build([to_net("pub", None, 80)])
    (rule,) = only(recs["shop"], "Public")
    assert PUBLIC_FALLBACK in rule.flags and MAY_CUT in rule.flags
    assert "169.254.0.0/16" in rule.not_nets
    text = risks_of(recs)
    assert "- **may cut observed traffic** in `shop`" in text
    assert "169.254.0.0/16" in text and "would be denied once enforced" in text
    # With the addresses known (over the cap), nothing unseen can be cut: no such risk.
    known = build([to_net("pub", f"8.8.{i}.1", 80) for i in range(1, 9)])
    (fallback,) = only(known["shop"], "Public")
    assert PUBLIC_FALLBACK in fallback.flags and MAY_CUT not in fallback.flags
    assert "may cut observed traffic" not in risks_of(known)


def test_observed_pub_addresses_the_fallback_excludes_keep_their_own_rule() -> None:
    """Felix logs 169.254.169.254 as `pub`; a fallback that excludes 169.254/16 must not cut
    it, so the observed address gets a rule of its own."""
    rows = [to_net("pub", f"8.8.{i}.1", 80) for i in range(1, 9)]
    rows.append(to_net("pub", "169.254.169.254", 80))
    public = only(build(rows)["shop"], "Public")
    assert [r.nets for r in public] == [("0.0.0.0/0",), ("169.254.169.254/32",)]
    assert "169.254.0.0/16" in public[0].not_nets and public[1].ports == public[0].ports


def run_report_of(recs: dict[str, Recommendation], policy_types: str) -> str:
    """report.md from a run report: the path a run takes (markdown_model.from_report)."""
    entries = tuple(
        run_report.NamespaceEntry(
            namespace=ns, name=f"namespace-isolation.{ns}", status="Learning", lastUpdated="",
            stagedAction="Learn", manifest=f"policies/{ns}.yaml",
            rules=tuple(build_report.rule_entry(r) for r in rec.rules), flags=rec.flags,
        )
        for ns, rec in sorted(recs.items())
    )  # fmt: skip
    report = run_report.RunReport(
        now="", window={"since": "", "until": ""}, flavor="calico", tier="t", input={},
        namespaces=entries, excluded_namespaces=(), excluded=(), flagged=(), rejected=(),
        policy_types=policy_types,
    )  # fmt: skip
    return report_md.to_markdown(report)


def test_left_open_directions_are_a_risk_with_calico_types() -> None:
    recs = build([to_ns("db", 5432)])
    text = run_report_of(recs, "WithRules")
    assert "- **left open** `shop`: no ingress rules, so its policy does not isolate" in text
    assert "left open" not in run_report_of(recs, "Both")
    calico = replace(BASE, policy_types="WithRules")
    assert "- **first policy** for `shop` (egress)" in risks_of(recs, calico)
    assert "- **first policy** for `shop` (egress, ingress)" in risks_of(recs)


def test_a_direction_whose_traffic_no_rule_can_express_stays_open() -> None:
    """Ingress from a host endpoint (a hostNetwork ingress controller) has no rule flowfence
    can write. Isolating ingress would deny it: the direction stays out of the types, and
    Risks says why. Before, policyTypes Both isolated it with no rule, and Risks was silent."""
    from_host = ingress(source_type="hep", source_name_aggr="node-1", dest_port=8080)
    recs = build([to_ns("db", 5432), from_host])
    assert recs["shop"].flags == ("unsupported-peers", "open-ingress")
    doc = yaml.safe_load(manifests.render(recs, BASE)["policies/shop.yaml"])
    assert doc["spec"]["types"] == ["Egress"]
    k8s = yaml.safe_load(manifests.render(recs, K8S)["policies/shop.yaml"])
    assert k8s["spec"]["policyTypes"] == ["Egress"]
    text = run_report_of(recs, "Both")
    assert "- **left open** `shop`: no ingress rules" in text
    assert "peers no rule can express (host endpoints, protocol 0)" in text
    assert "- **first policy** for `shop` (egress)" in risks_of(recs)
    # With a rule for other ingress traffic the direction is isolated (the host traffic is
    # then cut, as before: the namespace keeps its unsupported-peers flag), not left open.
    with_rule = build([to_ns("db", 5432), from_host, ingress(source_namespace="fe", dest_port=80)])
    assert with_rule["shop"].flags == ("unsupported-peers",)
    types = yaml.safe_load(manifests.render(with_rule, BASE)["policies/shop.yaml"])["spec"]["types"]
    assert types == ["Ingress", "Egress"]


def test_report_says_which_policy_types_are_written() -> None:
    recs = build([to_ns("db", 5432)])
    assert "every policy isolates ingress and egress (policyTypes `Both`)" in risks_of(recs)
    calico = risks_of(recs, replace(BASE, policy_types="WithRules"))
    assert "policies isolate only directions with rules (policyTypes `WithRules`)" in calico
    model = markdown_model.from_report(
        run_report.RunReport(
            now="", window={"since": "", "until": ""}, flavor="calico", tier="t", input={},
            namespaces=(), excluded_namespaces=(), excluded=(), flagged=(), rejected=(),
            policy_types="WithRules",
        )
    )  # fmt: skip
    assert model.policy_types == "WithRules"


K8S = replace(BASE, flavor="kubernetes")


def netset_row(**kw: Any) -> dict[str, Any]:
    return edge(dest_type="ns", dest_name_aggr="partners", dest_namespace=None, dest_port=443, **kw)


def k8s_spec(recs: dict[str, Recommendation]) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(manifests.render(recs, K8S)["policies/shop.yaml"])["spec"]
    return spec


def test_kubernetes_network_set_is_narrowed_to_its_cidrs_when_known() -> None:
    recs = build([netset_row()], K8S)
    wide = k8s_spec(recs)["egress"][0]["to"]
    assert {b["ipBlock"]["cidr"] for b in wide} == {"0.0.0.0/0", "::/0"}
    assert "allows any public address" in risks_of(recs, K8S)
    known = NetworkSet("partners", None, (), (ipaddress.ip_network("203.0.113.0/24"),))
    narrowed = netset_cidrs.narrow(recs, netset_cidrs.set_cidrs([known]))
    assert k8s_spec(narrowed)["egress"][0]["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert "widens access" not in risks_of(narrowed, K8S)
    # Another set's CIDRs leave the rule as it was.
    other = NetworkSet("other", None, (), known.nets)
    assert netset_cidrs.narrow(recs, netset_cidrs.set_cidrs([other])) == recs


def test_kubernetes_icmp_widening_is_a_risk() -> None:
    recs = build([to_ns("db", None, "icmp")], K8S)
    rule = k8s_spec(recs)["egress"][0]
    assert "ports" not in rule  # Kubernetes cannot name ICMP: every protocol to db
    assert "allows every protocol (Kubernetes NetworkPolicy cannot name it)" in risks_of(recs, K8S)
    assert "allows every protocol" not in risks_of(build([to_ns("db", None, "icmp")]))


def test_network_set_cidrs_read_from_policy_documents() -> None:
    """The sets as --existing-policies loads them: both families kept, in one rule's peers."""
    docs = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkSet",
            "metadata": {"name": "partners"},
            "spec": {"nets": ["203.0.113.0/24", "2001:db8::/64"]},
        }
    ]
    sets = netset_cidrs.set_cidrs(policy_set(docs).network_sets)
    assert sets == {(None, "partners"): ("203.0.113.0/24", "2001:db8::/64")}
    recs = netset_cidrs.narrow(build([netset_row(), ingress(dest_port=1)], K8S), sets)
    blocks = k8s_spec(recs)["egress"][0]["to"]
    assert blocks == [
        {"ipBlock": {"cidr": "203.0.113.0/24"}},
        {"ipBlock": {"cidr": "2001:db8::/64"}},
    ]
