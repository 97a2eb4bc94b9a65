"""Replay's verdicts besides allow and deny: undetermined (a `pvt`/`pub` peer whose address the
log aggregated away, split by the policies) and decided by an earlier tier the replayed set does
not hold; neither is a denial, so `--fail-on-deny` passes. And flowfence's own recommendations
replay clean over the flows they were learned from."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from conftest import FLOW_NOW, CliResult, FlowLog

RunCli = Callable[[Sequence[str]], CliResult]
NET = {"dest_type": "net", "dest_namespace": "-", "dest_ip": "-", "dest_labels": []}
DNS = {"dest_namespace": "kube-system", "dest_name_aggr": "coredns-*", "proto": "udp",
       "dest_labels": ["k8s-app=kube-dns"], "dest_port": 53}  # fmt: skip
TIGERA_DNS = "0|allow-tigera|kube-system/allow-tigera.cluster-dns|allow|0"
SYSTEM_DNS = "0|calico-system|np:kube-system/calico-system.cluster-dns|allow|0"


def test_recommendations_replay_clean_over_the_flows_they_were_learned_from(
    tmp_path: Path, flowlog: FlowLog, run_cli: RunCli
) -> None:
    # Calico Enterprise's default aggregation: network peers are `pvt`/`pub` without an IP,
    # and DNS is allowed by the operator's tier. On main the replay denied both network edges
    # (exit 3) and learning flagged allow-tigera as a tier of unknown order and learned DNS.
    flows = flowlog.write(
        tmp_path / "flows" / "f.parquet",
        [
            flowlog.row(**NET, dest_name_aggr="pvt", dest_port=5432),
            flowlog.row(**NET, dest_name_aggr="pub", dest_port=443),
            flowlog.row(**DNS, policies=[TIGERA_DNS]),
            flowlog.row(**{**DNS, "dest_port": 5353}, policies=[SYSTEM_DNS]),
        ],
    )
    out = tmp_path / "out"
    ran = run_cli(["run", "--flows", flows, "--out", out, "--now", FLOW_NOW, "--output", "json"])
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert report["flagged"] == []
    assert {(e["reason"], e["policy"]) for e in report["excluded"]} == {
        ("allowed by an earlier tier", "allow-tigera|np:kube-system/cluster-dns"),
        ("allowed by an earlier tier", "calico-system|np:kube-system/cluster-dns"),
    }
    policy = yaml.safe_load((out / "policies" / "shop.yaml").read_text())
    assert all(r.get("destination", {}).get("ports") != [53] for r in policy["spec"]["egress"])

    replayed = run_cli(
        ["replay", "--policies", out / "policies", "--flows", flows, "--output", "json",
         "--fail-on-deny"]
    )  # fmt: skip
    assert replayed.code == 0, replayed.err
    result = json.loads(replayed.out)
    assert result["would_deny"] is False and result["denied"] == []
    # The `pvt` edge matches the private fallback. The `pub` edge may have gone to an address
    # Felix labels `pub` that the public fallback leaves out (169.254.169.254): undetermined,
    # never a denial.
    assert [(d["dest"]["name"], d["possible"]) for d in result["undetermined"]] == [
        ("pub", ["allow", "deny"])
    ]
    summary = result["summary"]
    assert (summary["denied_edges"], summary["undetermined_edges"]) == (0, 1)
    # DNS is denied by the recommendation alone, but the operator's tier (order 100) decided
    # it in the cluster: decided earlier, not denied.
    assert summary["decided_earlier_edges"] == 2
    assert sorted(d["decided_by"] for d in result["decided_earlier"]) == [TIGERA_DNS, SYSTEM_DNS]
    assert all(d["hit"].endswith("|deny|-1") for d in result["decided_earlier"])


def _narrow_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "p.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n"
        "metadata: {name: p, namespace: shop}\n"
        "spec:\n  selector: all()\n  types: [Egress]\n"
        "  egress:\n  - {action: Allow, destination: {nets: [10.0.0.0/8]}}\n"
        "  - {action: Allow, protocol: UDP, destination: {ports: [53]}}\n"
    )
    return folder


def test_a_narrower_rule_is_undetermined_and_does_not_fail_the_audit(
    tmp_path: Path, flowlog: FlowLog, run_cli: RunCli
) -> None:
    flows = flowlog.write(
        tmp_path / "f.parquet",
        [flowlog.row(**NET, dest_name_aggr="pvt", dest_port=5432, num_flows=4),
         flowlog.row(**{**NET, "dest_ip": "192.168.1.9"}, dest_name_aggr="pvt", dest_port=22)],
    )  # fmt: skip
    policies = _narrow_policies(tmp_path)
    ran = run_cli(["replay", "--policies", policies, "--flows", flows, "--output", "json",
                   "--fail-on-deny"])  # fmt: skip
    # The address-less edge may be in 10/8 or not: undetermined. The one with its address is
    # outside 10/8: denied, and that alone fails the audit.
    assert ran.code == 3
    out = json.loads(ran.out)
    assert [(d["dest"]["ip"], d["dest_port"]) for d in out["denied"]] == [("192.168.1.9", 22)]
    [undetermined] = out["undetermined"]
    assert (undetermined["dest"]["name"], undetermined["flows"]) == ("pvt", 4)
    assert (undetermined["possible"], undetermined["hit"]) == (["allow", "deny"], "")
    assert (out["summary"]["undetermined_edges"], out["summary"]["undetermined_flows"]) == (1, 4)
    assert "1 allowed edges (1 flows) would be denied" in ran.err

    only = flowlog.write(
        tmp_path / "only.parquet", [flowlog.row(**NET, dest_name_aggr="pvt", dest_port=5432)]
    )
    args = ["replay", "--policies", policies, "--flows", only, "--fail-on-deny"]
    ran = run_cli([*args, "--output", "markdown"])
    assert ran.code == 0 and ran.err == ""  # undetermined never trips --fail-on-deny
    assert "- undetermined: 1 edges, 1 flows" in ran.out
    assert "## Edges undetermined (peer address not in the log)" in ran.out
    assert "| egress | wep:shop/web-* | net:pvt | tcp/5432 | 1 | 300 | `undetermined: allow" in (
        ran.out
    )
    table = run_cli(args)
    assert (
        table.code == 0
        and "1 undetermined" in table.out
        and "undetermined: allow or deny" in (table.out)
    )


def test_decided_earlier_needs_the_tier_to_be_placed_before_the_denying_one(
    tmp_path: Path, flowlog: FlowLog, run_cli: RunCli
) -> None:
    platform = "0|platform|gnp:platform.dns|allow|0"
    flows = flowlog.write(
        tmp_path / "f.parquet", [flowlog.row(**{**DNS, "dest_port": 5353}, policies=[platform])]
    )
    args = ["replay", "--policies", _narrow_policies(tmp_path), "--flows", flows, "--output",
            "json", "--fail-on-deny"]  # fmt: skip
    # `platform` is no tier flowfence knows: it cannot be placed, the denial stands.
    ran = run_cli(args)
    assert ran.code == 3 and json.loads(ran.out)["decided_earlier"] == []
    # Placed by the settings' tierOrders before `default`, it decided the flow first.
    settings = tmp_path / "ff.yaml"
    settings.write_text(
        "apiVersion: flowfence.io/v1alpha1\nkind: FlowfenceConfig\ntierOrders: {platform: 50}\n"
    )
    ran = run_cli([*args, "--settings", settings])
    assert ran.code == 0, ran.err
    out = json.loads(ran.out)
    assert out["denied"] == [] and [d["decided_by"] for d in out["decided_earlier"]] == [platform]
    assert out["decided_earlier"][0]["hit"] == "0|default|np:shop/p|deny|-1"
    # After `default`, the replayed denial comes first: denied.
    settings.write_text(settings.read_text().replace("50", "2000000"))
    assert run_cli([*args, "--settings", settings]).code == 3
