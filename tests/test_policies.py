"""The policy model and loader: manifests in, frozen PolicySet out, every problem named."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowfence.calico.named_ports import unresolved_notes
from flowfence.calico.policies import PolicyKind
from flowfence.calico.policy_docs import load_namespaces, load_policies, policy_set
from flowfence.calico.policy_rules import PortRange
from flowfence.core.errors import PolicyError

DATA = Path(__file__).parent / "policies"


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def manifest(kind: str, meta: str, spec: str) -> str:
    return f"apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata: {meta}\nspec: {spec}\n"


def one_policy(spec: str, kind: str = "NetworkPolicy", api: str = "projectcalico.org/v3") -> Any:
    meta = "{name: p, namespace: ns1}" if "Global" not in kind else "{name: p}"
    text = f"apiVersion: {api}\nkind: {kind}\nmetadata: {meta}\nspec:\n{spec}"
    return next(policy_set(docs(text)).policies())


def test_folder_is_read_recursively_with_lists_and_multi_documents() -> None:
    ps = load_policies(DATA / "loader")
    assert [(t.name, t.order, t.default_action) for t in ps.tiers] == [
        ("platform", 100.0, "Deny"),  # order tie with `security`: by name
        ("security", 100.0, "Pass"),
        ("kube-admin", 1000.0, "Pass"),
        ("default", 1_000_000.0, "Deny"),
        ("kube-baseline", 10_000_000.0, "Pass"),
        ("zz-unordered", None, "Deny"),  # no order: last
    ]
    hit_names = sorted(p.hit_name for p in ps.policies())
    assert hit_names == [
        "gnp:allow-dns",
        "knp:shop/default-deny",
        "np:shop/db-ingress",
        "snp:shop/db-ingress",
    ]
    assert [(s.name, s.namespace, s.label_map()) for s in ps.network_sets] == [
        ("corp", None, {"zone": "corp"})
    ]
    assert ps.network_sets[0].nets == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    )
    assert ps.namespaces == {"shop": {"team": "retail"}}


def test_unknown_fields_and_kinds_are_warnings_with_file_object_and_path() -> None:
    ps = load_policies(DATA / "loader")
    listed = str(DATA / "loader" / "list.yaml")
    shop = str(DATA / "loader" / "nested" / "shop.yml")
    assert (
        f"{listed}: GlobalNetworkPolicy allow-dns: unknown field spec.egress[0].destination.bogus"
        in ps.warnings
    )
    assert f"{listed}: ConfigMap unrelated: unknown kind ConfigMap (apiVersion v1); skipped" in (
        ps.warnings
    )
    assert any(
        w.startswith(f"{shop}: NetworkPolicy db-ingress: spec.ingress[1].icmp is ignored")
        for w in ps.warnings
    )


def test_rule_fields_are_parsed() -> None:
    ps = load_policies(DATA / "loader")
    np = next(p for p in ps.policies() if p.hit_name == "np:shop/db-ingress")
    allow, deny = np.ingress
    assert (allow.action, allow.protocol, deny.action, deny.protocol) == ("Allow", 6, "Deny", 1)
    assert allow.destination.ports is not None
    assert allow.destination.ports.ranges == (PortRange(5432, 5432), PortRange(8000, 8100))
    assert str(allow.source.selector) == 'app == "web"'
    assert np.types == frozenset({"ingress"})
    staged = next(p for p in ps.policies() if p.kind is PolicyKind.SNP)
    assert (staged.staged_action, staged.types) == ("Set", frozenset({"egress"}))


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ("  selector: all()\n", {"ingress"}),
        ("  ingress: [{action: Allow}]\n", {"ingress"}),
        ("  egress: [{action: Allow}]\n", {"egress"}),
        ("  ingress: [{action: Allow}]\n  egress: [{action: Allow}]\n", {"ingress", "egress"}),
        ("  types: [Egress]\n  ingress: [{action: Allow}]\n", {"egress"}),
    ],
)
def test_types_are_derived_as_calico_does(spec: str, types: set[str]) -> None:
    assert one_policy(spec).types == frozenset(types)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ("TCP", 6),
        ("tcp", 6),
        ("Udp", 17),
        ("ICMPv6", 58),
        ("sctp", 132),
        ("UDPLite", 136),
        (47, 47),
    ],
)
def test_protocol_names_in_any_case_and_numbers(value: object, number: int) -> None:
    rule = one_policy(f"  ingress: [{{action: Allow, protocol: {value}}}]\n").ingress[0]
    assert rule.protocol == number


def test_k8s_policy_becomes_a_default_tier_policy_at_order_1000() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [front, edge]}]
  ingress:
    - from:
        - podSelector: {matchLabels: {app: lb}}
        - namespaceSelector: {}
        - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
      ports: [{port: 80}, {protocol: UDP, port: 5000, endPort: 5010}]
  egress:
    - {}
"""
    policy = next(policy_set(docs(text)).policies())
    assert (policy.kind, policy.tier, policy.order) == (PolicyKind.KNP, "default", 1000.0)
    assert policy.hit_name == "knp:shop/web"
    assert policy.types == frozenset({"ingress", "egress"})  # egress rules present
    assert policy.selector.matches(
        {"app": "web", "tier": "edge", "projectcalico.org/orchestrator": "k8s"}
    )
    assert not policy.selector.matches({"app": "web", "tier": "edge"})  # not a k8s pod
    assert len(policy.ingress) == 6  # one Calico rule per (port, peer)
    assert [r.index for r in policy.ingress] == list(range(6))
    assert {r.protocol for r in policy.ingress} == {6, 17}
    ip_rule = policy.ingress[2]
    assert ip_rule.source.nets == (ipaddress.ip_network("10.0.0.0/8"),)
    assert ip_rule.source.not_nets == (ipaddress.ip_network("10.1.0.0/16"),)
    assert str(policy.ingress[1].source.namespace_selector) == "all()"
    assert policy.egress[0].destination == policy.egress[0].source  # allow everything


def test_k8s_policy_types_default_to_ingress_only() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec: {podSelector: {}}
"""
    assert next(policy_set(docs(text)).policies()).types == frozenset({"ingress"})


def test_named_ports_are_kept_by_name_and_reported_unresolved() -> None:
    ps = policy_set(
        docs(
            """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns1}
spec:
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http, 81]}}]
"""
        )
    )
    rule = next(ps.policies()).ingress[0]
    assert rule.destination.ports is not None
    assert rule.destination.ports.named == ("http",)
    assert rule.destination.ports.matches(81) and not rule.destination.ports.matches(80)
    # Resolution needs the inventory (named_ports.py): counted there, not warned per parse.
    assert not any("named port" in w for w in ps.warnings)
    (note,) = unresolved_notes(ps, None)
    assert note.endswith("np:ns1/p ingress rule 0 (http)")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "  egress: [{action: Allow, protocol: TCP, destination: "
            "{services: {name: api}, ports: [80]}}]\n",
            "services cannot be combined with ports",
        ),
        ("  ingress: [{action: Accept}]\n", r"spec\.ingress\[0\]\.action: expected one of"),
        ("  selector: app = 'x'\n", "bad selector"),
        ("  ingress: [{action: Allow, destination: {ports: [80]}}]\n", "ports need protocol"),
        ("  ingress: [{action: Allow, protocol: TCP, destination: {ports: ['9:1']}}]\n", "range"),
        ("  ingress: [{action: Allow, protocol: 300}]\n", "outside 1-255"),
        ("  ingress: [{action: Allow, source: {nets: [10.0.0.300/8]}}]\n", "bad CIDR"),
        ("  order: first\n", "spec.order"),
        ("  types: [Inbound]\n", "spec.types"),
        ("  ingress: [{action: Allow, destination: {domains: [a.com]}}]\n", "egress destinations"),
    ],
)
def test_invalid_values_raise_policy_error_naming_the_file(spec: str, message: str) -> None:
    text = manifest("NetworkPolicy", "{name: p, namespace: ns1}", "\n" + spec)
    with pytest.raises(PolicyError, match=message) as info:
        policy_set(docs(text))
    assert str(info.value).startswith("<manifest 0>: NetworkPolicy p:")


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("kind: Tier\nmetadata: {name: [oops\n")
    with pytest.raises(PolicyError, match=r"broken\.yaml: malformed YAML at line"):
        load_policies(tmp_path)


def test_duplicates_missing_paths_and_hidden_folders(tmp_path: Path) -> None:
    tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 1}\n"
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "junk.yaml").write_text("{{{")  # hidden: never read
    (tmp_path / "a.yaml").write_text(tier)
    assert load_policies(tmp_path).tier("t") is not None
    (tmp_path / "b.yaml").write_text(tier)
    with pytest.raises(PolicyError, match=r"b\.yaml: Tier t: duplicate object, also defined in"):
        load_policies(tmp_path)
    with pytest.raises(PolicyError, match="no such file"):
        load_policies(tmp_path / "missing")


def test_builtin_tier_default_actions_are_enforced() -> None:
    text = manifest("Tier", "{name: default}", "{defaultAction: Pass}")
    with pytest.raises(PolicyError, match="must have defaultAction Deny"):
        policy_set(docs(text))


def test_policy_in_undefined_tier_is_warned_and_placed_last() -> None:
    ps = policy_set(docs(manifest("GlobalNetworkPolicy", "{name: g}", "{tier: ghost}")))
    assert ps.tiers[-1].name == "ghost" and ps.tiers[-1].order is None
    assert any("tier 'ghost' is not defined" in w for w in ps.warnings)


def test_the_operators_tier_is_known_when_not_defined() -> None:
    # Exports of a cluster's policies seldom hold the Tier the operator creates (main: a
    # warning, and the tier placed last, after every other).
    for name in ("allow-tigera", "calico-system"):
        text = manifest("GlobalNetworkPolicy", f"{{name: {name}.g}}", f"{{tier: {name}}}")
        ps = policy_set(docs(text))
        assert (ps.tiers[0].name, ps.tiers[0].order) == (name, 100.0)
        assert ps.warnings == ()
    defined = manifest("Tier", "{name: calico-system}", "{order: 5}")
    text = manifest("GlobalNetworkPolicy", "{name: g}", "{tier: calico-system}")
    assert policy_set(docs(defined + "\n---\n" + text)).tier("calico-system").order == 5


def test_staged_policies_in_the_effective_view() -> None:
    text = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: keep, namespace: ns1}
spec: {}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: replaced, namespace: ns1}
spec: {}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deleted, namespace: ns1}
spec: {}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: replaced, namespace: ns1}
spec: {stagedAction: Learn}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: deleted, namespace: ns1}
spec: {stagedAction: Delete}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: ignored}
spec: {stagedAction: Ignore}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: kdefault, namespace: ns1}
spec: {podSelector: {}}
"""
    ps = policy_set(docs(text))

    def names(staged: bool) -> list[str]:
        return [p.hit_name for t in ps.effective(staged=staged) for p in t.policies]

    # k8s policies have order 1000; Calico policies without an order come last.
    assert names(staged=True) == ["sknp:ns1/kdefault", "np:ns1/keep", "snp:ns1/replaced"]
    assert names(staged=False) == ["np:ns1/deleted", "np:ns1/keep", "np:ns1/replaced"]


def test_namespaces_file() -> None:
    assert load_namespaces(DATA / "namespaces.yaml") == {
        "shop": {"kubernetes.io/metadata.name": "shop", "team": "retail"},
        "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
    }


def test_domains_exact_and_wildcard() -> None:
    domains = "[api.example.com, '*.svc.example.org']"
    rule = one_policy(
        f"  egress: [{{action: Allow, destination: {{domains: {domains}}}}}]\n"
    ).egress[0]
    exact, wild = rule.destination.domains
    assert exact.matches("API.example.com.") and not exact.matches("x.api.example.com")
    assert wild.matches("a.svc.example.org") and wild.matches("a.b.svc.example.org")
    assert not wild.matches("svc.example.org")


def _laughs(levels: int = 9, width: int = 10) -> str:
    """A `kind: List` whose items alias Lists of aliased Lists: about 1 KB, `width ** levels`
    items for a reader that walks it."""
    lines = [
        "apiVersion: v1",
        "kind: List",
        "items:",
        "- &l0 {apiVersion: v1, kind: List, items: []}",
    ]
    for level in range(1, levels + 1):
        items = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"- &l{level} {{apiVersion: v1, kind: List, items: [{items}]}}")
    return "\n".join(lines) + "\n"


def test_aliases_that_explode_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(_laughs())
    assert bomb.stat().st_size < 1200
    with pytest.raises(PolicyError, match=r"laughs\.yaml: refused: .*aliases expand it beyond"):
        load_policies(tmp_path)


def test_self_containing_aliases_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text("apiVersion: v1\nkind: List\nitems: &i [*i]\n")
    with pytest.raises(PolicyError, match=r"loop\.yaml: refused: .*contains it"):
        load_policies(tmp_path / "loop.yaml")
    deep = "apiVersion: v1\nkind: List\nitems: " + "[" * 150 + "]" * 150 + "\n"
    (tmp_path / "deep.yaml").write_text(deep)
    with pytest.raises(PolicyError, match=r"deep\.yaml: refused: .*nested deeper than 100"):
        load_policies(tmp_path / "deep.yaml")


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    ports = "&ports {protocol: TCP, destination: {ports: [80]}}"
    text = manifest(
        "NetworkPolicy",
        "{name: p, namespace: ns1}",
        f"{{selector: all(), ingress: [{{action: Allow, <<: {ports}}}], "
        "egress: [{action: Allow, <<: *ports}]}",
    )
    (tmp_path / "p.yaml").write_text(text)
    (policy,) = load_policies(tmp_path).policies()
    assert policy.name == "p" and len(policy.ingress) == len(policy.egress) == 1


def test_validate_and_the_review_reader_bound_aliases_too(tmp_path: Path) -> None:
    """`flowfence validate` and the review's reader of the files on disk (which a person may
    have edited) use the same bounded loader: the bomb is refused, not walked."""
    from flowfence.calico import schema_tree
    from flowfence.review import manifest_rules

    docs, stopped = schema_tree._parse(_laughs().encode())
    assert docs == [] and stopped is not None
    assert stopped[0] == 1 and "aliases expand it beyond" in stopped[1]
    assert manifest_rules.policy_doc(_laughs().encode()) is None
    one = manifest("NetworkPolicy", "{name: p, namespace: ns1}", "{selector: all()}")
    assert manifest_rules.policy_doc(one.encode()) is not None
