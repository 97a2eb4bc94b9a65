"""Golden tests of `flowfence run` over the bundled demo shop, one run per flavor.

Every file under `policies/` plus `report.json` and `report.md` must match tests/golden/<flavor>/
byte for byte (regenerate with `tests/regenerate_golden.py`, then review the diff). The golden
manifests are also validated against the Calico CRDs (or Kubernetes' schema), and a few facts a
Calico reviewer would check are asserted on them directly, so a careless regeneration that
freezes a wrong policy still fails.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import pytest
import yaml
from crd import validate_network_policy, validate_staged_policy, validate_tier
from regenerate_golden import FLAVORS, GOLDEN, run_flavor

CALICO_FLAVORS = ("calico-enterprise", "calico")


@pytest.fixture(scope="module", params=FLAVORS)
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    flavor: str = request.param
    out = tmp_path_factory.mktemp(f"golden-{flavor}") / "out"
    return flavor, run_flavor(flavor, out)


def golden(flavor: str) -> dict[str, bytes]:
    root = GOLDEN / flavor
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _diff(name: str, expected: bytes, actual: bytes) -> str:
    lines = difflib.unified_diff(
        expected.decode().splitlines(),
        actual.decode().splitlines(),
        f"golden/{name}",
        f"run/{name}",
        lineterm="",
        n=2,
    )
    return "\n".join(list(lines)[:60])


def test_output_matches_golden_byte_for_byte(run: Any) -> None:
    flavor, produced = run
    expected = golden(flavor)
    assert expected, f"no golden files for {flavor}: run tests/regenerate_golden.py"
    assert sorted(produced) == sorted(expected)
    changed = [name for name in expected if produced[name] != expected[name]]
    assert not changed, "\n\n".join(_diff(n, expected[n], produced[n]) for n in changed[:3])


def manifests(flavor: str) -> dict[str, dict[str, Any]]:
    return {
        name.removeprefix("policies/"): yaml.safe_load(data)
        for name, data in golden(flavor).items()
        if name.startswith("policies/")
    }


def policies(flavor: str) -> dict[str, dict[str, Any]]:
    """The namespace policies of the golden run, by namespace."""
    kinds = ("StagedNetworkPolicy", "NetworkPolicy")
    return {
        doc["metadata"]["namespace"]: doc
        for doc in manifests(flavor).values()
        if doc["kind"] in kinds
    }


def report(flavor: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / flavor / "report.json").read_bytes())
    return data


@pytest.mark.parametrize("flavor", FLAVORS)
def test_golden_manifests_validate_against_the_crds(flavor: str) -> None:
    docs = manifests(flavor)
    for name, doc in docs.items():
        kind = doc["kind"]
        if kind == "StagedNetworkPolicy":
            assert validate_staged_policy(doc, enterprise=True) == [], name
            if flavor == "calico":
                assert validate_staged_policy(doc, enterprise=False) == [], name
        elif kind == "Tier":
            assert validate_tier(doc) == [] and validate_tier(doc, enterprise=True) == [], name
        elif kind == "NetworkPolicy":
            assert flavor == "kubernetes"
            assert validate_network_policy(doc) == [], name
        else:
            assert kind == "Kustomization", name
            assert doc["resources"] == sorted(n for n in docs if n != name)
    assert ("tier.yaml" in docs) == (flavor != "kubernetes")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_golden_report_agrees_with_the_manifests(flavor: str) -> None:
    rep = report(flavor)
    by_ns = policies(flavor)
    assert rep["flavor"] == flavor
    for entry in rep["namespaces"]:
        ns = entry["namespace"]
        if entry["status"] == "NoData":
            assert entry["manifest"] is None and ns not in by_ns
            continue
        assert entry["manifest"] == f"policies/{ns}.yaml"
        spec = by_ns[ns]["spec"]
        for direction in ("ingress", "egress"):
            rules = [r for r in entry["rules"] if r["direction"] == direction]
            assert len(spec.get(direction, [])) == len(rules), (ns, direction)
    assert sorted(e["namespace"] for e in rep["namespaces"] if e["manifest"]) == sorted(by_ns)


# --- what a Calico reviewer checks in the demo's recommendations ------------------------------

SHOP = (
    "ads", "batch", "cart", "catalog", "checkout", "currency", "email", "frontend",
    "monitoring", "payment", "postgres", "recommendation", "redis", "shipping",
)  # fmt: skip


def _peers(rule: dict[str, Any], direction: str) -> str:
    side = rule.get("destination" if direction == "egress" else "source", {})
    return json.dumps(side, sort_keys=True)


@pytest.mark.parametrize("flavor", CALICO_FLAVORS)
def test_demo_policies_make_calico_sense(flavor: str) -> None:
    by_ns = policies(flavor)
    rep = report(flavor)
    assert sorted(by_ns) == list(SHOP)
    statuses = {e["namespace"]: e["status"] for e in rep["namespaces"]}
    # In the namespaces dump, selected, without traffic: reported, no manifest. A first run
    # (no state yet) creates every other recommendation: Learning, as Calico does.
    assert statuses.pop("legacy-reports") == "NoData"
    assert set(statuses.values()) == {"Learning"}
    excluded = {e["namespace"] for e in rep["excluded_namespaces"]}
    assert {"kube-system", "calico-system", "tigera-operator"} <= excluded
    for ns, doc in by_ns.items():
        spec = doc["spec"]
        assert doc["metadata"]["name"] == f"namespace-isolation.{ns}"
        assert spec["selector"] == f"projectcalico.org/namespace == '{ns}'"
        assert spec["stagedAction"] == "Learn" and spec["tier"] == "namespace-isolation"
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction, []):
                peer = _peers(rule, direction)
                # DNS is decided by the platform tier, which runs first: never learned.
                assert "kube-system" not in peer, (ns, rule)
                # Never an all-traffic rule: every rule names its peer.
                assert peer != "{}" or "ports" in json.dumps(rule), (ns, rule)
                assert rule["action"] == "Allow"
    postgres_in = [_peers(r, "ingress") for r in by_ns["postgres"]["spec"]["ingress"]]
    # platform.protect-postgres denies ads at postgres: no ingress rule may allow it.
    assert not any("'ads'" in p for p in postgres_in)
    assert any("'catalog'" in p for p in postgres_in)
    # Prometheus scraping is allowed by a default-tier policy, which runs after ours: learned.
    # Egress at monitoring and ingress at each target agree (both ends were unprotected).
    scraped = {
        r["destination"]["namespaceSelector"].split("'")[1]
        for r in by_ns["monitoring"]["spec"]["egress"]
        if r.get("destination", {}).get("ports") == [9102]
    }
    scraping = {
        ns
        for ns, doc in by_ns.items()
        for r in doc["spec"].get("ingress", [])
        if r.get("destination", {}).get("ports") == [9102]
        and r["source"].get("namespaceSelector") == "projectcalico.org/name == 'monitoring'"
    }
    assert scraped == scraping == set(SHOP) - {"monitoring", "batch"}
    frontend_in = by_ns["frontend"]["spec"]["ingress"]
    public = [r for r in frontend_in if "nets" in r.get("source", {})]
    assert len(public) == 1 and public[0]["destination"]["ports"] == [443]
    assert public[0]["source"]["nets"] == ["203.0.113.10/31", "203.0.113.12/30", "203.0.113.16/31"]
    # Only platform.allow-dns decides flows before us (the Tier manifest gives `platform` its
    # order, so the traces alone say so); nothing was rejected or needs a second look.
    assert rep["excluded"], "DNS must be left to the platform tier"
    for entry in rep["excluded"]:
        assert entry["reason"] == "allowed by an earlier tier"
        assert entry["policy"].startswith("platform|gnp:") and entry["policy"].endswith("allow-dns")
    assert sum(e["flows"] for e in rep["excluded"]) == rep["summary"]["excluded_flows"] > 0
    assert rep["flagged"] == [] and rep["rejected"] == []


def test_demo_domains_only_on_calico_enterprise() -> None:
    for flavor in CALICO_FLAVORS:
        egress = policies(flavor)["payment"]["spec"]["egress"]
        assert len(egress) == 1
        destination = egress[0]["destination"]
        assert destination["ports"] == [443]
        if flavor == "calico-enterprise":
            assert destination["domains"] == ["api.stripe.com"]
        else:
            assert "domains" not in destination
            assert destination["nets"] == ["198.51.100.20/32"]


def test_kubernetes_network_sets_named_by_their_cidrs() -> None:
    """A Kubernetes policy cannot select a network set; with the sets in --existing-policies
    their CIDRs stand in, never every address outside the cluster."""
    by_ns = policies("kubernetes")
    blocks = {
        ns: [p["ipBlock"]["cidr"] for r in doc["spec"].get("egress", []) for p in r["to"]
             if "ipBlock" in p]
        for ns, doc in by_ns.items()
    }  # fmt: skip
    assert "192.0.2.128/25" in blocks["ads"]  # ads/ad-exchanges
    assert not any("0.0.0.0/0" in b for b in blocks.values()), blocks
    for doc in by_ns.values():
        assert doc["spec"]["policyTypes"] == ["Ingress", "Egress"]
