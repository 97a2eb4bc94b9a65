"""Named ports (`port: http`) resolved from the inventory in `flowfence replay` and in `flowfence
run --existing-policies`, and reported as unresolved without it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import FLOW_NOW, CliResult, FlowLog

from flowfence.calico.inventory import parse_inventory
from flowfence.calico.named_ports import NamedPorts, unresolved_notes
from flowfence.calico.policy_docs import load_policies
from flowfence.flows.edges import EDGE_SCHEMA
from flowfence.replay import audit as replay

Runner = Callable[[Sequence[str]], CliResult]

INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-in, namespace: api}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
    - ports: [{port: http}]
"""
EGRESS = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}]
      ports: [{port: http}]
"""


def pod(name: str, ns: str, labels: dict[str, str], port: int, proto: str = "TCP") -> Any:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": port,
                                            "protocol": proto}]}]},
    }  # fmt: skip


def inventory_doc(*pods: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(pods)}


API = pod("api-7d9c-x1", "api", {"app": "api"}, 8080)


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def api_flows(flowlog: FlowLog, path: Path, port: int = 8080, **over: Any) -> Path:
    """shop/web -> api/api-* on TCP `port`, both reporters (egress at web, ingress at api)."""
    fields = {"dest_namespace": "api", "dest_name_aggr": "api-7d9c-*",
              "dest_labels": ["app=api"], "dest_port": port, **over}  # fmt: skip
    return flowlog.write(path, flowlog.pair(**fields))


def replay_args(tmp_path: Path, policy: str, flows: Path, *extra: str) -> list[str]:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    write(policies / "p.yaml", policy)
    return ["replay", "--policies", str(policies), "--flows", str(flows), "--output", "json",
            *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "direction", "hit"),
    [(INGRESS, "ingress", "knp:api/api-in"), (EGRESS, "egress", "knp:shop/web-out")],
)
def test_replay_resolves_a_named_port_from_the_inventory(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path, policy: str, direction: str, hit: str
) -> None:
    flows = api_flows(flowlog, tmp_path / "f.parquet")
    inventory = write(tmp_path / "pods.json", inventory_doc(API))
    with_inv = run_cli(replay_args(tmp_path, policy, flows, "--inventory", str(inventory)))
    assert with_inv.code == 0, with_inv.err
    report = json.loads(with_inv.out)
    assert report["denied"] == []
    tally = {(t["policy"], t["end_of_tier"]): t["allowed"]["flows"] for t in report["policies"]}
    assert tally[(hit, False)] == 1
    assert not any("named port" in w for w in report["warnings"])

    without = run_cli(replay_args(tmp_path, policy, flows))
    assert without.code == 0
    report = json.loads(without.out)
    assert [(d["direction"], d["hit"]) for d in report["denied"]] == [
        (direction, f"0|default|{hit}|deny|-1")
    ]
    assert [w for w in report["warnings"] if "named ports" in w] == [
        "1 rules with named ports that cannot be resolved match no traffic by those ports "
        "(give --inventory (`kubectl get pods -A -o json`) to resolve them): "
        f"{hit} {direction} rule 0 (http)"
    ]


@pytest.mark.parametrize(
    ("flow", "why"),
    [
        ({"port": 9090}, "another port"),
        ({"proto": "udp"}, "the port is TCP"),
        ({"dest_name_aggr": "other-*"}, "no inventory pod has that name"),
        ({"dest_labels": ["app=api", "v=2"]}, "no inventory pod has those labels"),
        ({"dest_namespace": "api2"}, "no inventory pod in that namespace"),
    ],
)
def test_a_named_port_resolves_only_at_fitting_pods(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path, flow: dict[str, Any], why: str
) -> None:
    flows = api_flows(flowlog, tmp_path / "f.parquet", **flow)
    inventory = write(tmp_path / "pods.json", inventory_doc(API))
    policy = EGRESS  # egress: the destination need not be selected by the policy
    result = run_cli(replay_args(tmp_path, policy, flows, "--inventory", str(inventory)))
    assert [d["hit"] for d in json.loads(result.out)["denied"]] == [
        "0|default|knp:shop/web-out|deny|-1"
    ], why


def test_edge_classes_keep_pods_apart_whose_named_ports_differ(tmp_path: Path) -> None:
    """Two api versions both selected by the policy: only v1 serves `http` on 8080."""
    write(tmp_path / "p.yaml", INGRESS)
    inv = parse_inventory(inventory_doc(
        pod("api-v1-a", "api", {"app": "api", "v": "1"}, 8080),
        pod("api-v2-a", "api", {"app": "api", "v": "2"}, 9090),
    ))  # fmt: skip
    base = {c: None for c in EDGE_SCHEMA}
    rows = [
        {**base, "reporter": "dst", "action": "allow", "source_type": "wep",
         "source_namespace": "shop", "source_name_aggr": "web-*", "source_labels": ["app=web"],
         "dest_type": "wep", "dest_namespace": "api", "dest_name_aggr": f"api-v{v}-*",
         "dest_labels": ["app=api", f"v={v}"], "dest_port": 8080, "proto": "tcp",
         "flows": 1, "bytes": 10, "dest_domains": [], "enforced_policies": []}
        for v in (1, 2)
    ]  # fmt: skip
    frame = pl.DataFrame(rows, schema=EDGE_SCHEMA)
    policies = load_policies(tmp_path)
    report = replay.compute(frame, policies, named_ports=NamedPorts(inv))
    assert [d.dest.name for d in report.denied] == ["api-v2-*"]
    assert unresolved_notes(policies, inv) == ()


def test_unresolved_with_an_inventory_names_the_missing_port(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", INGRESS)
    udp_only = parse_inventory(inventory_doc(pod("api-1", "api", {"app": "api"}, 8080, "UDP")))
    (note,) = unresolved_notes(load_policies(tmp_path), udp_only)
    assert note.startswith("1 rules with named ports")
    assert "no inventory pod has a container port of that name and protocol" in note


RUN_EXISTING = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.allow-pg}
spec:
  tier: security
  selector: all()
  types: [Egress]
  egress:
    - {action: Allow, protocol: TCP, destination: {ports: [postgres]}}
"""


def test_run_resolves_named_ports_of_existing_policies(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", flowlog.pair(dest_port=5432))
    existing = tmp_path / "existing"
    existing.mkdir()
    write(existing / "security.yaml", RUN_EXISTING)
    pg = {
        "kind": "Pod",
        "metadata": {"name": "pg-0", "namespace": "db", "labels": {"app": "pg"}},
        "spec": {"containers": [{"ports": [{"name": "postgres", "containerPort": 5432}]}]},
    }
    ns = {"kind": "Namespace", "metadata": {"name": "quiet", "labels": {"team": "x"}}}
    # The namespace list is the cluster's: the flows' own namespaces are in it too (one it
    # does not list is deleted and gets no policy).
    live = [{"kind": "Namespace", "metadata": {"name": name}} for name in ("shop", "db")]
    inventory = write(tmp_path / "inv.json", inventory_doc(pg, ns, *live))  # fmt: skip

    def run(out: str, *extra: str) -> dict[str, Any]:
        args = ["run", "--flows", flows, "--out", tmp_path / out, "--now", FLOW_NOW,
                "--existing-policies", existing, "--output", "json", *extra]  # fmt: skip
        result = run_cli(args)
        assert result.code == 0, result.err
        data: dict[str, Any] = json.loads(result.out)
        return data

    resolved = run("a", "--inventory", str(inventory))
    assert [e["policy"] for e in resolved["excluded"]] == ["security|gnp:security.allow-pg|allow"]
    # The inventory's Namespace items are the namespace list: `quiet` has no traffic.
    assert "quiet" in {n["namespace"] for n in resolved["namespaces"]}
    assert not any("named ports" in w for w in resolved["warnings"])

    plain = run("b")
    assert plain["excluded"] == []
    assert any(w.startswith("1 rules with named ports") for w in plain["warnings"])
    assert "quiet" not in {n["namespace"] for n in plain["namespaces"]}


def test_inventory_option_in_help_and_bad_files_exit_2(run_cli: Runner, tmp_path: Path) -> None:
    for command in ("replay", "run"):
        text = " ".join(run_cli([command, "--help"]).out.split())
        assert "--inventory" in text and "kubectl get pods -A -o json" in text
        assert "precedence" in text
    flows = tmp_path / "f.parquet"
    policies = tmp_path / "policies"
    policies.mkdir()
    for name, text, message in [
        ("yaml.json", "kind: List\n", "not JSON"),
        ("pod.json", '{"kind": "Pod"}', "not a List of Pods"),
    ]:
        bad = write(tmp_path / name, text)
        result = run_cli(["replay", "--policies", policies, "--flows", flows, "--inventory", bad])
        assert result.code == 2 and message in result.err, result.err
    missing = run_cli(["replay", "--policies", policies, "--flows", flows,
                       "--inventory", tmp_path / "none.json"])  # fmt: skip
    assert missing.code == 2
