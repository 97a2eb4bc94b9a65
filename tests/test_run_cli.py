"""`flowfence run` end to end through `flowfence.cli.app.main`: exit codes and messages, stdout and
stderr, idempotent output, and scenarios built from small raw flow logs: each exclusion path,
each peer kind, maxRules folding and hostile input."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FLOW_NOW, CliResult, FlowLog
from crd import validate_staged_policy

from flowfence.calico.evaluate import Edge, Endpoint, Evaluator
from flowfence.calico.policy_docs import load_policies

Runner = Callable[[Sequence[str]], CliResult]


def run_args(flows: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--flows", str(flows), "--out", str(out), "--now", FLOW_NOW, *extra]


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "report.json").read_text())
    return data


def policy(out: Path, ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((out / "policies" / f"{ns}.yaml").read_text())
    return doc


def outputs(out: Path) -> dict[str, bytes]:
    found = {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "policies").iterdir()}
    return {**found, **{n: (out / n).read_bytes() for n in ("report.json", "report.md")}}


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def shop_rows(flowlog: FlowLog, **over: Any) -> list[dict[str, Any]]:
    """shop -> db on TCP 5432, both reporters."""
    return flowlog.pair(dest_port=5432, **over)


# --- exit codes and messages ------------------------------------------------------------------


def test_missing_flows_path_exits_2_naming_it(run_cli: Runner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-flows"
    result = run_cli(run_args(missing, tmp_path / "out"))
    assert result.code == 2
    assert str(missing) in result.err and result.out == ""
    assert not (tmp_path / "out" / "policies").exists()


@pytest.mark.parametrize("now", ["yesterday", "2026-11-02T00:00:00", "2026-13-01T00:00:00Z"])
def test_bad_now_exits_2(run_cli: Runner, flowlog: FlowLog, tmp_path: Path, now: str) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", shop_rows(flowlog))
    result = run_cli(["run", "--flows", str(flows), "--out", str(tmp_path / "o"), "--now", now])
    assert result.code == 2
    assert "--now" in result.err and result.out == ""
    if now == "2026-11-02T00:00:00":  # no offset: refused as replay refuses it, with the fix
        assert "append Z for UTC, e.g. 2026-11-02T00:00:00Z" in result.err


def test_bad_flavor_exits_2(run_cli: Runner, flowlog: FlowLog, tmp_path: Path) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", shop_rows(flowlog))
    result = run_cli(run_args(flows, tmp_path / "o", "--flavor", "cilium"))
    assert result.code == 2
    assert "--flavor" in result.err and "cilium" in result.err


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("maxRules: 0", "spec.maxRules"),
        ("interval: 10s", "spec.interval"),
        ("namespaceSpec: {selector: \"a == 'b' &&\"}", "spec.namespaceSpec.selector"),
        ("maxRulez: 3", "maxRulez"),
    ],
)
def test_bad_scope_file_exits_2_naming_the_field(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path, spec: str, field: str
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", shop_rows(flowlog))
    scope = write_yaml(
        tmp_path / "scope.yaml",
        "apiVersion: projectcalico.org/v3\nkind: PolicyRecommendationScope\n"
        f"metadata: {{name: default}}\nspec:\n  {spec}\n",
    )
    result = run_cli(run_args(flows, tmp_path / "o", "--config", str(scope)))
    assert result.code == 2
    first = result.err.splitlines()[0]
    assert first.startswith("flowfence: error: ") and field in first and str(scope) in first
    assert "Traceback" not in result.err and result.out == ""


def test_output_json_prints_the_report_on_stdout_only(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", shop_rows(flowlog))
    out = tmp_path / "out"
    result = run_cli(run_args(flows, out, "--output", "json"))
    assert result.code == 0 and result.err == ""
    printed = json.loads(result.out)
    assert printed == report(out)
    assert [n["namespace"] for n in printed["namespaces"]] == ["db", "shop"]


def test_text_output_is_a_summary_not_json(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", shop_rows(flowlog))
    result = run_cli(run_args(flows, tmp_path / "out"))
    assert result.code == 0 and result.err == ""
    assert "shop" in result.out and not result.out.lstrip().startswith("{")


def test_rerun_with_the_same_inputs_rewrites_nothing(
    run_cli: Runner, demo_inputs: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(demo_inputs.run_args(out, "--output", "json")).code == 0
    first = outputs(out)
    stamps = {p: (out / p).stat().st_mtime_ns for p in first}
    again = run_cli(demo_inputs.run_args(out, "--output", "json"))
    assert again.code == 0
    assert outputs(out) == first
    assert {p: (out / p).stat().st_mtime_ns for p in first} == stamps


def _two_namespaces(flowlog: FlowLog, with_legacy: bool) -> list[dict[str, Any]]:
    rows = shop_rows(flowlog)
    if with_legacy:
        rows += flowlog.pair(source_namespace="legacy", dest_namespace="db", dest_port=5432)
    return rows


def test_a_namespace_that_disappears_has_its_file_removed(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    flows = flowlog.write(tmp_path / "a" / "f.parquet", _two_namespaces(flowlog, True))
    assert run_cli(run_args(flows, out, "--output", "json")).code == 0
    assert (out / "policies" / "legacy.yaml").is_file()
    assert "legacy.yaml" in policy_text(out, "kustomization")
    # Learning again from flows without it (fresh state): its policy goes.
    flows = flowlog.write(tmp_path / "b" / "f.parquet", _two_namespaces(flowlog, False))
    fresh = ["--state", str(tmp_path / "state-2"), "--output", "json"]
    assert run_cli(run_args(flows, out, *fresh)).code == 0
    assert not (out / "policies" / "legacy.yaml").exists()
    assert "legacy.yaml" not in policy_text(out, "kustomization")
    assert sorted(p.name for p in (out / "policies").iterdir()) == [
        "db.yaml",
        "kustomization.yaml",
        "shop.yaml",
        "tier.yaml",
    ]


def test_a_namespace_the_scope_deselects_has_its_file_removed(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    flows = flowlog.write(tmp_path / "f.parquet", _two_namespaces(flowlog, True))
    assert run_cli(run_args(flows, out, "--output", "json")).code == 0
    scope = write_yaml(
        tmp_path / "scope.yaml",
        "apiVersion: projectcalico.org/v3\nkind: PolicyRecommendationScope\n"
        "metadata: {name: default}\n"
        "spec:\n  namespaceSpec:\n    selector: projectcalico.org/name != 'legacy'\n",
    )
    assert run_cli(run_args(flows, out, "--config", str(scope), "--output", "json")).code == 0
    assert not (out / "policies" / "legacy.yaml").exists()
    assert (out / "policies" / "shop.yaml").is_file()


def policy_text(out: Path, name: str) -> str:
    return (out / "policies" / f"{name}.yaml").read_text()


# --- exclusion paths ----------------------------------------------------------------------------

SECURITY_SETTINGS = (
    "apiVersion: flowfence.io/v1alpha1\nkind: FlowfenceConfig\ntierOrders:\n  security: 100\n"
)
EXISTING_TIER = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.allow-api}
spec:
  tier: security
  order: 10
  selector: all()
  types: [Egress]
  egress:
    - action: Allow
      protocol: TCP
      destination:
        namespaceSelector: projectcalico.org/name == 'db'
        ports: [7000]
"""


def _trace_rows(flowlog: FlowLog) -> list[dict[str, Any]]:
    """shop -> db egress (src rows) whose traces say who decided."""
    profile = ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"]

    def egress(port: int, policies: Any) -> dict[str, Any]:
        return flowlog.row(dest_port=port, policies=policies)

    return [
        egress(5432, ["0|security|security.allow-db|allow|0"]),  # legacy, tier before ours
        egress(6379, ["0|security|np:shop/allow-cache|allow|1"]),  # Calico 3.32
        egress(6380, ["0|security|shop/security.allow-cache|allow|0"]),  # same, legacy
        egress(
            9000,  # enforced: profile allow; pending (staged, as if enforced): denied before us
            {
                "enforced_policies": profile,
                "pending_policies": ["0|security|shop/security.staged:block-batch|deny|0"],
            },
        ),
        egress(8080, ["0|default|shop/default.allow-web|allow|0"]),  # default tier: after ours
        egress(8443, ["0|kube-baseline|kcnp.kube-baseline.base|allow|0"]),  # after ours
        egress(7000, profile),  # only the profile; --existing-policies knows better
        egress(7100, ["0|mystery|gnp:mystery.x|allow|0"]),  # a tier of unknown order
    ]


def _egress_ports(out: Path, ns: str) -> list[int]:
    return sorted(
        p for r in policy(out, ns)["spec"].get("egress", []) for p in r["destination"]["ports"]
    )


def test_trace_exclusion_legacy_and_332_formats(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", _trace_rows(flowlog))
    settings = write_yaml(tmp_path / "ff.yaml", SECURITY_SETTINGS)
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, "--settings", str(settings), "--output", "json")).code == 0
    rep = report(out)
    excluded = {(e["reason"], e["policy"]): e["edges"] for e in rep["excluded"]}
    assert excluded == {
        ("allowed by an earlier tier", "security|gnp:allow-db"): 1,
        ("allowed by an earlier tier", "security|np:shop/allow-cache"): 2,
        ("denied by an earlier tier", "security|snp:shop/block-batch"): 1,
    }
    flagged = {(e["reason"], e["policy"]) for e in rep["flagged"]}
    assert flagged == {("tier with unknown order", "mystery|gnp:x")}
    # Learned: the default and kube-baseline tiers run after ours, the profile, the unknown tier.
    assert _egress_ports(out, "shop") == [7000, 7100, 8080, 8443]


def test_one_policy_is_counted_once_whatever_the_hit_syntax(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    rows = [
        flowlog.row(dest_port=5432, policies=["0|security|security.allow-db|allow|0"]),
        flowlog.row(dest_port=5433, policies=["0|security|gnp:security.allow-db|allow|0"]),
    ]
    flows = flowlog.write(tmp_path / "f.parquet", rows)
    settings = write_yaml(tmp_path / "ff.yaml", SECURITY_SETTINGS)
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, "--settings", str(settings), "--output", "json")).code == 0
    assert [(e["policy"], e["edges"]) for e in report(out)["excluded"]] == [
        ("security|gnp:allow-db", 2)
    ]


def test_existing_policy_folder_excludes_what_a_tier_before_ours_decides(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", _trace_rows(flowlog))
    existing = tmp_path / "existing"
    existing.mkdir()
    write_yaml(existing / "security.yaml", EXISTING_TIER)
    out = tmp_path / "out"
    args = run_args(flows, out, "--existing-policies", str(existing), "--output", "json")
    assert run_cli(args).code == 0
    rep = report(out)
    excluded = {(e["reason"], e["policy"]): e["edges"] for e in rep["excluded"]}
    # The Tier manifest gives `security` its order, so the trace check works without tierOrders.
    assert excluded[("decided by an existing policy", "security|gnp:security.allow-api|allow")] == 1
    assert excluded[("allowed by an earlier tier", "security|gnp:allow-db")] == 1
    assert _egress_ports(out, "shop") == [7100, 8080, 8443]


# --- each peer kind -----------------------------------------------------------------------------


def _peer_rows(flowlog: FlowLog) -> list[dict[str, Any]]:
    pub: dict[str, Any] = {
        "dest_type": "net",
        "dest_namespace": "-",
        "dest_name_aggr": "pub",
        "dest_labels": [],
    }
    return [
        *shop_rows(flowlog),  # Namespace
        flowlog.row(
            dest_type="ns",
            dest_namespace="-",
            dest_name_aggr="partners",
            dest_labels=["partner=true"],
            dest_port=443,
        ),  # NetworkSet (global)
        flowlog.row(**pub, dest_ip="52.1.2.3", dest_domains=["api.example.com"], dest_port=443),
        flowlog.row(
            **pub,
            dest_ip="52.7.7.7",
            dest_service_namespace="shop",
            dest_service_name="ext-api",
            dest_service_port="https",
            dest_service_port_num=443,
            dest_port=8443,
        ),  # Service
        flowlog.row(
            dest_type="net",
            dest_namespace="-",
            dest_name_aggr="pvt",
            dest_labels=[],
            dest_ip="10.9.0.5",
            dest_port=5432,
        ),  # Private
        flowlog.row(**pub, dest_ip="1.1.1.1", dest_port=853),  # Public
    ]


def test_every_peer_kind_in_the_manifest(run_cli: Runner, flowlog: FlowLog, tmp_path: Path) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", _peer_rows(flowlog))
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, "--output", "json")).code == 0
    doc = policy(out, "shop")
    assert validate_staged_policy(doc, enterprise=True) == []
    egress = doc["spec"]["egress"]
    scope = "policyrecommendation.tigera.io/scope"
    assert [r["metadata"]["annotations"][scope] for r in egress] == [
        "Domains", "Service", "Namespace", "NetworkSet", "Private", "Public",
    ]  # fmt: skip
    assert [r["destination"] for r in egress] == [
        {"ports": [443], "domains": ["api.example.com"]},
        {"services": {"name": "ext-api", "namespace": "shop"}},
        {"namespaceSelector": "projectcalico.org/name == 'db'", "ports": [5432]},
        {"selector": "partner == 'true'", "namespaceSelector": "global()", "ports": [443]},
        {"nets": ["10.9.0.5/32"], "ports": [5432]},
        {"nets": ["1.1.1.1/32"], "ports": [853]},
    ]
    assert {r["protocol"] for r in egress} == {"TCP"}
    assert [r["scope"] for n in report(out)["namespaces"] for r in n["rules"]] == [
        "Namespace",  # db's ingress from shop
        "Domains", "Service", "Namespace", "NetworkSet", "Private", "Public",
    ]  # fmt: skip


def test_every_peer_kind_is_enforceable_as_learned(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    """Each learned flow is allowed by the rule of its kind, and its neighbours are not."""
    flows = flowlog.write(tmp_path / "f.parquet", _peer_rows(flowlog))
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, "--output", "json")).code == 0
    evaluator = recommendations(out)
    shop = Endpoint("wep", "shop", "web-*", None, ("app=web",))

    def verdict(dest: Endpoint, port: int, **kw: Any) -> str | None:
        return evaluator.evaluate(Edge(shop, dest, port, "tcp", **kw), "egress").action

    pub = Endpoint("net", None, "pub", "52.1.2.3")
    assert verdict(pub, 443, dest_domains=("api.example.com",)) == "allow"
    assert verdict(pub, 443, dest_domains=("evil.example.com",)) == "deny"
    assert verdict(Endpoint("net", None, "pub", "52.7.7.7"), 8443, **_svc("ext-api")) == "allow"
    assert verdict(Endpoint("net", None, "pub", "52.7.7.7"), 8443, **_svc("other")) == "deny"
    assert verdict(Endpoint("wep", "db", "pg-*", None, ("app=pg",)), 5432) == "allow"
    assert verdict(Endpoint("wep", "db", "pg-*", None, ("app=pg",)), 5433) == "deny"
    assert verdict(Endpoint("ns", None, "partners", None, ("partner=true",)), 443) == "allow"
    assert verdict(Endpoint("ns", None, "others", None, ("partner=false",)), 443) == "deny"
    assert verdict(Endpoint("net", None, "pvt", "10.9.0.5"), 5432) == "allow"
    assert verdict(Endpoint("net", None, "pvt", "10.9.0.6"), 5432) == "deny"
    assert verdict(Endpoint("net", None, "pub", "1.1.1.1"), 853) == "allow"
    assert verdict(Endpoint("net", None, "pub", "1.0.0.1"), 853) == "deny"


def recommendations(out: Path) -> Evaluator:
    """An evaluator over the run's manifests (the kustomization is not a policy)."""
    docs = [
        yaml.safe_load(p.read_text())
        for p in sorted((out / "policies").glob("*.yaml"))
        if p.name != "kustomization.yaml"
    ]
    return Evaluator(load_policies(None, extra_docs=docs))


def test_the_run_output_folder_loads_as_a_policy_set(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", shop_rows(flowlog))
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, "--output", "json")).code == 0
    loaded = load_policies(out / "policies")
    assert {p.namespace for p in loaded.policies()} == {"db", "shop"}


def _svc(name: str) -> dict[str, Any]:
    return {"dest_service_namespace": "shop", "dest_service_name": name}


# --- maxRules folding ---------------------------------------------------------------------------


def test_max_rules_folds_without_dropping_traffic(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    peers = ["db", "cache", "queue", "search", "auth", "billing"]
    rows = [
        r
        for i, ns in enumerate(peers)
        for r in flowlog.pair(at=i, dest_namespace=ns, dest_port=8080)
    ]
    rows += flowlog.pair(dest_namespace="db", dest_port=5432)
    rows += flowlog.pair(dest_namespace="cache", dest_port=6379)
    flows = flowlog.write(tmp_path / "f.parquet", rows)
    scope = write_yaml(
        tmp_path / "scope.yaml",
        "apiVersion: projectcalico.org/v3\nkind: PolicyRecommendationScope\n"
        "metadata: {name: default}\nspec:\n  maxRules: 3\n",
    )
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, "--config", str(scope), "--output", "json")).code == 0
    egress = policy(out, "shop")["spec"]["egress"]
    assert len(egress) <= 3
    assert validate_staged_policy(policy(out, "shop"), enterprise=True) == []
    entry = next(n for n in report(out)["namespaces"] if n["namespace"] == "shop")
    assert entry["notes"], "folding must be explained in the report"
    assert len([r for r in entry["rules"] if r["direction"] == "egress"]) == len(egress)
    evaluator = recommendations(out)
    shop = Endpoint("wep", "shop", "web-*", None, ("app=web",))
    learned = [(ns, 8080) for ns in peers] + [("db", 5432), ("cache", 6379)]
    for ns, port in learned:
        edge = Edge(shop, Endpoint("wep", ns, "pg-*", None, ("app=pg",)), port, "tcp")
        assert evaluator.evaluate(edge, "egress").action == "allow", (ns, port)
    never = Edge(shop, Endpoint("wep", "elsewhere", "x-*", None, ()), 8080, "tcp")
    assert evaluator.evaluate(never, "egress").action == "deny"


# --- hostile input ------------------------------------------------------------------------------

HOSTILE_NAMESPACE = "x' || all() || '"


def _hostile_rows(flowlog: FlowLog) -> list[dict[str, Any]]:
    pub: dict[str, Any] = {
        "dest_type": "net",
        "dest_namespace": "-",
        "dest_name_aggr": "pub",
        "dest_labels": [],
    }
    return [
        *flowlog.pair(source_namespace=HOSTILE_NAMESPACE, dest_port=5432),
        flowlog.row(**pub, dest_ip="52.1.2.3", dest_domains=["*"], dest_port=443),
        flowlog.row(
            dest_type="ns",
            dest_namespace="-",
            dest_name_aggr="partners",
            dest_labels=["partner=true' || all() || '"],
            dest_port=443,
        ),
        flowlog.row(
            dest_type="net",
            dest_namespace="-",
            dest_name_aggr="pvt",
            dest_labels=[],
            dest_ip="999.1.1.1",
            dest_port=5432,
        ),
    ]


def test_hostile_rows_are_rejected_and_change_no_manifest(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    clean = _peer_rows(flowlog)
    runs = {}
    for name, rows in (("clean", clean), ("hostile", clean + _hostile_rows(flowlog))):
        flows = flowlog.write(tmp_path / name / "f.parquet", rows)
        out = tmp_path / name / "out"
        result = run_cli(run_args(flows, out, "--output", "json"))
        assert result.code == 0, result.err
        runs[name] = out
    clean_out, hostile_out = runs["clean"], runs["hostile"]
    manifests = {p.name: p.read_bytes() for p in (hostile_out / "policies").iterdir()}
    assert manifests == {p.name: p.read_bytes() for p in (clean_out / "policies").iterdir()}
    for data in manifests.values():
        text = data.decode()
        for needle in ("all()", "999.1.1.1", "|| '", "'*'", "- '*'"):
            assert needle not in text
    rejected = {r["reason"]: r for r in report(hostile_out)["rejected"]}
    assert set(rejected) == {"invalid namespace", "invalid domain", "invalid label", "invalid IP"}
    assert rejected["invalid namespace"]["edges"] == 2  # both reporters
    assert all(rejected[r]["edges"] == 1 for r in ("invalid domain", "invalid label", "invalid IP"))
    assert any("999.1.1.1" in s for s in rejected["invalid IP"]["samples"])
    assert report(clean_out)["rejected"] == []
    # Nothing of the hostile rows shows up as a namespace of its own either.
    names = {n["namespace"] for n in report(hostile_out)["namespaces"]}
    assert names == {n["namespace"] for n in report(clean_out)["namespaces"]}


def test_a_memory_limit_too_small_is_a_runtime_failure_not_bad_input(
    run_cli: Runner, tmp_path: Path
) -> None:
    demo = Path(__file__).resolve().parent.parent / "fixtures" / "data" / "demo"
    args = ["run", "--flows", str(demo), "--out", str(tmp_path / "out")]
    args += ["--now", "2026-11-02T00:00:00Z", "--memory-limit", "1MB", "--threads", "1"]
    result = run_cli(args)
    assert result.code == 1
    assert "out of memory" in result.err and "--memory-limit" in result.err
    assert not (tmp_path / "out" / "policies").exists()
