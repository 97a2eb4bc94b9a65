"""The change model: rules added/removed per namespace from real rendered manifests, first
policies, widening rules, staged -> enforced, YAML diffs, the evidence index and drift (checked
against the policy evaluator over the accepted manifest)."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowfence.calico.evaluate import Edge, Endpoint, Evaluator
from flowfence.calico.policy_docs import policy_set
from flowfence.config.settings import Settings
from flowfence.learn.model import (
    PUBLIC_FALLBACK,
    Evidence,
    NetSetRef,
    PortRange,
    Recommendation,
    Rule,
    ServiceRef,
    sort_rules,
)
from flowfence.render import manifests
from flowfence.render.yaml_text import dump
from flowfence.report.change_set import ChangeSet, rule_view
from flowfence.review import apply_decisions, changes, decisions, drift, manifest_rules, outcome

SETTINGS = Settings(cluster_cidrs=("10.244.0.0/16",))
T0 = datetime(2026, 11, 1, 0, 0)


def ev(flows: int = 10, day: int = 1) -> Evidence:
    return Evidence(T0.replace(day=day), T0.replace(day=day, hour=5), flows, flows * 100, 1, 2)


def rule(direction: str = "egress", **kw: Any) -> Rule:
    base: dict[str, Any] = {
        "direction": direction,
        "action": "Allow",
        "scope": "Namespace",
        "protocol": "TCP",
        "evidence": ev(),
        "ports": (PortRange(5432, 5432),),
        "namespaces": ("db",),
    }
    base.update(kw)
    return Rule(**base)


def rec(namespace: str, *rules: Rule) -> Recommendation:
    return Recommendation(
        namespace,
        egress=sort_rules(r for r in rules if r.direction == "egress"),
        ingress=sort_rules(r for r in rules if r.direction == "ingress"),
    )


def shop_rules() -> list[Rule]:
    return [
        rule(),
        rule(ports=(PortRange(6379, 6379),), namespaces=("cache",)),
        rule("ingress", ports=(PortRange(8080, 8080),), namespaces=("frontend",)),
    ]


def files(*recs: Recommendation, settings: Settings = SETTINGS) -> dict[str, bytes]:
    return manifests.render({r.namespace: r for r in recs}, settings)


def compute(before: dict[str, bytes], after: dict[str, bytes], *recs: Recommendation) -> ChangeSet:
    """The change set as a run computes it, the new side described from the documents behind
    `after`; reading `after` from its bytes instead (two trees on disk) must agree."""
    docs = {rel: yaml.safe_load(data) for rel, data in after.items()}
    index = changes.index_rules(docs, {r.namespace: r for r in recs})
    from_docs = changes.compute(before, after, docs=docs, index=index)
    assert changes.compute(before, after, index=index) == from_docs
    return from_docs


def test_first_run_every_namespace_is_a_first_policy() -> None:
    shop, db = rec("shop", *shop_rules()), rec("db", rule("ingress", namespaces=("shop",)))
    after = files(shop, db)
    cs = compute({}, after, shop, db)
    assert cs.changed
    assert set(cs.files) == set(after)  # tier.yaml and kustomization.yaml too
    assert [c.namespace for c in cs.namespaces] == ["db", "shop"]
    change = cs.get("shop")
    assert change is not None and change.first_policy and change.change == "created"
    assert change.kind == "StagedNetworkPolicy" and change.staged_action == "Learn"
    assert [(r.direction, r.peer, r.ports) for r in change.added_rules] == [
        ("egress", "namespace db", ("5432",)),
        ("egress", "namespace cache", ("6379",)),
        ("ingress", "namespace frontend", ("8080",)),
    ]
    # Evidence comes from the model's rules through the index.
    assert all(r.evidence is not None and r.evidence.flows == 10 for r in change.added_rules)
    assert change.removed_rules == ()
    assert change.diff.startswith("--- /dev/null\n+++ b/policies/shop.yaml\n")
    assert cs.added == 4 and cs.removed == 0


def test_no_change_is_no_change() -> None:
    shop = rec("shop", *shop_rules())
    after = files(shop)
    cs = compute(dict(after), after, shop)
    assert not cs.changed and cs.files == ()
    change = cs.get("shop")
    assert change is not None and change.change == "unchanged" and change.diff == ""
    assert change.added_rules == change.removed_rules == ()


def test_one_rule_added_one_removed() -> None:
    old = rec("shop", *shop_rules())
    new_rules = [*shop_rules()[:1], shop_rules()[2], rule(ports=(PortRange(9092, 9092),),
                 namespaces=("kafka",), evidence=ev(3, day=2))]  # fmt: skip
    new = rec("shop", *new_rules)
    other = rec("db", rule("ingress", namespaces=("shop",)))
    cs = compute(files(old, other), files(new, other), new, other)
    assert cs.files == ("policies/shop.yaml",)
    change = cs.get("shop")
    assert change is not None and change.change == "updated" and not change.first_policy
    assert [(r.peer, r.ports) for r in change.added_rules] == [("namespace kafka", ("9092",))]
    assert change.added_rules[0].evidence is not None
    assert change.added_rules[0].evidence.first_seen == "2026-11-02T00:00:00Z"
    assert [(r.peer, r.ports) for r in change.removed_rules] == [("namespace cache", ("6379",))]
    # A removed rule is not in the new model, so there is no evidence to attach.
    assert change.removed_rules[0].evidence is None
    assert "-          - 6379" in change.diff and "+          - 9092" in change.diff
    assert change.diff.startswith("--- a/policies/shop.yaml\n+++ b/policies/shop.yaml\n")
    db = cs.get("db")
    assert db is not None and db.change == "unchanged"


def test_dismissed_namespace_is_removed_with_its_rules() -> None:
    shop, db = rec("shop", *shop_rules()), rec("db", rule("ingress", namespaces=("shop",)))
    cs = compute(files(shop, db), files(db), db)
    change = cs.get("shop")
    assert change is not None and change.change == "removed" and change.kind is None
    assert len(change.removed_rules) == 3 and change.added_rules == ()
    assert change.diff.startswith("--- a/policies/shop.yaml\n+++ /dev/null\n")
    assert set(cs.files) == {"policies/shop.yaml", "policies/kustomization.yaml"}


def enforced(data: bytes) -> bytes:
    """What enforce writes: a NetworkPolicy without stagedAction and rule metadata."""
    doc = yaml.safe_load(data)
    doc["kind"] = "NetworkPolicy"
    del doc["spec"]["stagedAction"]
    for direction in ("ingress", "egress"):
        for r in doc["spec"].get(direction, []):
            r.pop("metadata", None)
    return dump(doc)


def test_staged_to_enforced_keeps_rules_and_is_called_out() -> None:
    shop = rec("shop", *shop_rules())
    before = files(shop)
    after = dict(before)
    after["policies/shop.yaml"] = enforced(before["policies/shop.yaml"])
    cs = compute(before, after, shop)
    change = cs.get("shop")
    assert change is not None and change.change == "updated"
    assert change.added_rules == change.removed_rules == ()
    assert (change.previous_kind, change.kind) == ("StagedNetworkPolicy", "NetworkPolicy")
    assert (change.previous_staged_action, change.staged_action) == ("Learn", None)
    assert change.newly_enforced
    assert "-kind: StagedNetworkPolicy" in change.diff and "+kind: NetworkPolicy" in change.diff


def test_widening_rules_are_flagged() -> None:
    fallback = rule(
        scope="Public", namespaces=(), ports=(PortRange(443, 443),), nets=("0.0.0.0/0",),
        not_nets=("10.0.0.0/8",), flags=(PUBLIC_FALLBACK,),
    )  # fmt: skip
    narrow = rule(scope="Public", namespaces=(), nets=("203.0.113.7/32",))
    shop = rec("shop", *shop_rules(), fallback, narrow)
    cs = compute(files(rec("shop", *shop_rules())), files(shop), shop)
    change = cs.get("shop")
    assert change is not None
    widening = change.widening
    assert [r.peer for r in widening] == ["nets 0.0.0.0/0 except 1 ranges"]
    assert widening[0].widening == "allows any public address"
    assert widening[0].flags == (PUBLIC_FALLBACK,)
    # Without the index (e.g. a hand-written manifest) the nets alone say it widens.
    bare = changes.compute(files(rec("shop", *shop_rules())), files(shop)).get("shop")
    assert bare is not None and [r.peer for r in bare.widening] == [widening[0].peer]


def test_rule_descriptions_cover_every_peer_kind() -> None:
    shop = rec(
        "shop",
        rule(scope="Service", namespaces=(), ports=(), service=ServiceRef("ext", "api")),
        rule(scope="NetworkSet", namespaces=(), netset=NetSetRef("corp", None)),
        rule(scope="Domains", namespaces=(), domains=("api.example.com",)),
        rule(scope="Private", namespaces=(), nets=("10.3.0.0/24",), protocol="UDP", ports=()),
        rule("ingress", namespaces=("a", "b"), ports=(PortRange(80, 81),)),
    )
    views = manifest_rules.describe(yaml.safe_load(files(shop)["policies/shop.yaml"]))
    got = {(v.direction, v.scope, v.peer, v.protocol, v.ports) for v in views}
    assert got == {
        ("ingress", "Namespace", "namespace a,b", "TCP", ("80:81",)),
        ("egress", "Service", "service ext/api", "TCP", ()),
        ("egress", "NetworkSet", "networkset global/corp", "TCP", ("5432",)),
        ("egress", "Domains", "domains api.example.com", "TCP", ("5432",)),
        ("egress", "Private", "nets 10.3.0.0/24", "UDP", ()),
    }
    # The manifest description agrees with the model description.
    model = {(r.direction, r.scope, r.peer, r.protocol, r.ports) for r in map(
        rule_view, shop.rules)}  # fmt: skip
    assert model == got


def test_kubernetes_flavor_rules_are_described() -> None:
    k8s = replace(SETTINGS, flavor="kubernetes")
    shop = rec("shop", *shop_rules(), rule(scope="Private", namespaces=(), nets=("10.3.0.0/24",)))
    after = files(shop, settings=k8s)
    cs = compute({}, after, shop)
    change = cs.get("shop")
    assert change is not None and change.kind == "NetworkPolicy"
    got = {(r.direction, r.scope, r.peer, r.protocol, r.ports) for r in change.added_rules}
    assert ("egress", "Private", "nets 10.3.0.0/24", "TCP", ("5432",)) in got
    assert ("ingress", "Namespace", "namespace frontend", "TCP", ("8080",)) in got
    assert all(r.evidence is not None for r in change.added_rules)


def test_unreadable_previous_file_counts_as_no_policy() -> None:
    shop = rec("shop", *shop_rules())
    after = files(shop)
    cs = compute({"policies/shop.yaml": b"{not: yaml: ["}, after, shop)
    change = cs.get("shop")
    assert change is not None and len(change.added_rules) == 3


def test_read_policies(tmp_path: Path) -> None:
    assert changes.read_policies(tmp_path) == {}
    for rel, data in files(rec("shop", *shop_rules())).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "policies" / ".tmp.yaml").write_text("x")
    assert set(changes.read_policies(tmp_path)) == {
        "policies/shop.yaml", "policies/tier.yaml", "policies/kustomization.yaml",
    }  # fmt: skip


# --- drift ------------------------------------------------------------------------------------


def test_drift_by_the_rule_model() -> None:
    accepted = [
        rule(namespaces=("cache", "db"), ports=(PortRange(5000, 6000),)),
        rule(
            scope="Public", namespaces=(), ports=(), nets=("0.0.0.0/0",), not_nets=("10.0.0.0/8",)
        ),
        rule(scope="NetworkSet", namespaces=(), netset=NetSetRef("corp", "ops")),
    ]
    covered = [
        rule(namespaces=("db",), ports=(PortRange(5432, 5432),)),
        rule(namespaces=("cache",), ports=(PortRange(5500, 5600),)),
        rule(scope="Public", namespaces=(), ports=(PortRange(443, 443),), nets=("1.2.3.0/24",)),
        rule(scope="NetworkSet", namespaces=(), netset=NetSetRef("corp", "ops")),
    ]
    drifted = [
        rule(namespaces=("db",), ports=(PortRange(7000, 7000),)),  # port outside
        rule(namespaces=("kafka",)),  # new peer
        rule(namespaces=("db",), ports=()),  # any port
        rule(namespaces=("db",), protocol="UDP"),  # other protocol
        rule("ingress", namespaces=("db",)),  # other direction
        rule(scope="Private", namespaces=(), nets=("10.1.0.0/16",)),  # in the hole
        rule(scope="NetworkSet", namespaces=(), netset=NetSetRef("corp", None)),
    ]
    assert drift.drift(accepted, covered) == ()
    assert drift.drift(accepted, drifted) == tuple(drifted)


def _edge(r: Rule, port: int | None, ip: str | None = None) -> Edge:
    local = Endpoint("wep", "shop", "web-*", None, ("app=web",))
    if r.scope == "Namespace":
        peer = Endpoint("wep", r.namespaces[0], "x-*", None, ("app=x",))
    else:
        peer = Endpoint("net", None, "pub", ip)
    return Edge(local, peer, port, r.protocol.lower())


def test_drift_agrees_with_the_evaluator_over_the_accepted_manifest() -> None:
    """The rule-model answer matches Calico's evaluation of the enforced accepted policy."""
    accepted = rec(
        "shop",
        rule(namespaces=("db",), ports=(PortRange(5432, 5432),)),
        rule(
            scope="Public",
            namespaces=(),
            ports=(PortRange(443, 443),),
            nets=("1.2.0.0/16",),
            not_nets=("1.2.3.0/24",),
        ),
    )
    doc = yaml.safe_load(files(accepted)["policies/shop.yaml"])
    enforced_doc = copy.deepcopy(doc)
    enforced_doc["kind"] = "NetworkPolicy"
    del enforced_doc["spec"]["stagedAction"]
    tier = yaml.safe_load(files(accepted)["policies/tier.yaml"])
    evaluator = Evaluator(policy_set([tier, enforced_doc]), staged=False)
    probes = [
        (rule(namespaces=("db",), ports=(PortRange(5432, 5432),)), 5432, None),
        (rule(namespaces=("db",), ports=(PortRange(5433, 5433),)), 5433, None),
        (rule(namespaces=("kafka",), ports=(PortRange(5432, 5432),)), 5432, None),
        (
            rule(scope="Public", namespaces=(), ports=(PortRange(443, 443),), nets=("1.2.4.0/24",)),
            443,
            "1.2.4.9",
        ),
        (
            rule(scope="Public", namespaces=(), ports=(PortRange(443, 443),), nets=("1.2.3.7/32",)),
            443,
            "1.2.3.7",
        ),
        (
            rule(scope="Public", namespaces=(), ports=(PortRange(80, 80),), nets=("1.2.4.0/24",)),
            80,
            "1.2.4.9",
        ),
    ]
    for learned, port, ip in probes:
        verdict = evaluator.evaluate(_edge(learned, port, ip), "egress")
        denied = verdict.action == "deny"
        assert bool(drift.drift(accepted.rules, [learned])) == denied, (learned, verdict)


@pytest.mark.parametrize("scope", ["Service", "Domains"])
def test_drift_of_named_peers(scope: str) -> None:
    if scope == "Service":
        a = rule(scope="Service", namespaces=(), ports=(), service=ServiceRef("ext", "api"))
        same = rule(scope="Service", namespaces=(), ports=(), service=ServiceRef("ext", "api"))
        other = rule(scope="Service", namespaces=(), ports=(), service=ServiceRef("ext", "b"))
    else:
        a = rule(scope="Domains", namespaces=(), domains=("a.example.com", "b.example.com"))
        same = rule(scope="Domains", namespaces=(), domains=("a.example.com",))
        other = rule(scope="Domains", namespaces=(), domains=("c.example.com",))
    assert drift.drift([a], [same]) == ()
    assert drift.drift([a], [other]) == (other,)


def test_uncovered_edges_against_the_frozen_manifest() -> None:
    """Edge-level drift: learn rules, freeze them, then new traffic shows up as uncovered."""
    from test_rules import BASE, build, frame, ingress, to_net, to_ns

    seen = [to_ns("db", 5432), to_net("pub", "1.1.1.1", 443)]
    accepted = build(seen)["shop"]
    assert not accepted.ingress  # no ingress rules, yet the policy isolates ingress
    out = manifests.render({"shop": accepted}, BASE)
    docs = [yaml.safe_load(out["policies/tier.yaml"]), yaml.safe_load(out["policies/shop.yaml"])]
    later = [
        *seen,
        to_ns("db", 5433),
        to_ns("kafka", 9092),
        to_net("pub", "8.8.8.8", 443),
        ingress(source_type="wep", source_namespace="fe", source_name_aggr="x-*", dest_port=80),
    ]
    found = drift.uncovered(policy_set(docs), frame(later), BASE.tier_name)
    got = sorted((r["dest_namespace"] or r["dest_ip"], r["dest_port"]) for r in found.to_dicts())
    # The new ingress is drift too: the frozen policy lists Ingress (policyTypes Both).
    assert got == [("8.8.8.8", 443), ("db", 5433), ("kafka", 9092), ("shop", 80)]
    open_in = replace(BASE, policy_types="WithRules")
    out_open = manifests.render({"shop": accepted}, open_in)
    docs_open = [yaml.safe_load(out_open[f"policies/{n}.yaml"]) for n in ("tier", "shop")]
    found_open = drift.uncovered(policy_set(docs_open), frame(later), BASE.tier_name)
    assert sorted(
        (r["dest_namespace"] or r["dest_ip"], r["dest_port"]) for r in found_open.to_dicts()
    ) == [("8.8.8.8", 443), ("db", 5433), ("kafka", 9092)]
    # The drift edges build into rules with evidence, as the report shows them.
    rules = build(found.to_dicts())["shop"].rules
    assert {rule_view(r).peer for r in rules} == {
        "namespace db", "namespace fe", "namespace kafka", "nets 8.8.8.8/32",
    }  # fmt: skip
    assert drift.uncovered(policy_set(docs), frame([]), BASE.tier_name).height == 0


def _review(
    recs: dict[str, Recommendation],
    previous: dict[str, bytes],
    decided: decisions.Decisions,
    learnable: Any,
) -> outcome.Review:
    """The review as a run does it: documents -> statuses -> decisions -> YAML -> review."""
    from test_rules import BASE

    built = manifests.policy_documents(recs, BASE)
    docs = manifests.with_statuses(built, {"shop": ("Learning", T0)})
    now = datetime(2026, 11, 2)
    applied = apply_decisions.apply(
        {f"policies/{name}": doc for name, doc in docs.items()}, previous, decided, now
    )
    files = {rel: dump(doc) for rel, doc in applied.documents.items()}
    return outcome.review(recs, applied, files, BASE, previous=previous, learnable=learnable)


def test_review_applies_decisions_finds_drift_and_changes() -> None:
    """render -> decisions -> drift of the frozen policy -> change set."""
    from test_rules import build, frame, to_ns

    first = [to_ns("db", 5432)]
    one = _review(build(first), {}, decisions.EMPTY, frame(first))
    assert one.changes.get("shop") is not None and one.drift == {}
    assert set(one.files) == set(one.documents)
    accepted = decisions.decide(decisions.EMPTY, "shop", "accept", reason="r", author="a")
    later = [*first, to_ns("kafka", 9092)]
    two = _review(build(later), one.files, accepted, frame(later))
    change = two.changes.get("shop")
    assert change is not None and change.added_rules == () and change.removed_rules == ()
    assert (change.previous_staged_action, change.staged_action) == ("Learn", "Set")
    assert [rule_view(r).peer for r in two.drift["shop"]] == ["namespace kafka"]
    assert two.applied.staged_actions == {"shop": "Set"}
