"""Stale rules (proposed, then pruned with --prune-stale), and Stale / NoData namespaces."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult
from test_state_support import (
    T0,
    annotations,
    config_file,
    flow_rows,
    has_rule,
    report,
    run_args,
    scope_file,
    statuses,
    steady,
    write_hour,
)

RunCli = Callable[[Sequence[str]], CliResult]
NOW = T0 + timedelta(hours=24)


def pair(src: str, dst: str, port: int, hour: int, proto: str = "tcp") -> list[dict[str, Any]]:
    return flow_rows(
        T0 + timedelta(hours=hour, minutes=20),
        source_namespace=src,
        dest_namespace=dst,
        source_name_aggr=f"{src}-*",
        dest_name_aggr=f"{dst}-*",
        dest_port=port,
        proto=proto,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[Path, list[str]]:
    """web -> api:8080 and api -> db:5432 every hour; web -> db:5432 only at 02:00 (stale);
    web -> api:9090 only at 01:00 (folds into the fresh api rule: narrows); old -> api:7000
    only at 01:00 (a namespace that went quiet)."""
    flows = tmp_path / "flows"
    steady(flows, T0, 24, [("web", "api", 8080), ("api", "db", 5432)])
    write_hour(flows, pair("web", "db", 5432, 2), name="once")
    write_hour(flows, pair("web", "api", 9090, 1), name="once")
    write_hour(flows, pair("old", "api", 7000, 1), name="old")
    config = config_file(tmp_path / "ff.yaml", staleRulePeriod="6h", staleNamespacePeriod="12h")
    scope = scope_file(tmp_path / "scope.yaml")
    return flows, ["--config", str(scope), "--settings", str(config)]


def stale_entries(out: Path) -> set[tuple[str, str, str, tuple[str, ...], bool, bool]]:
    return {
        (
            s["namespace"],
            s["rule"]["direction"],
            s["rule"]["peer"],
            tuple(s["rule"]["ports"]),
            s["fully_stale"],
            s["pruned"],
        )
        for s in report(out)["stale_rules"]
    }


def test_stale_rules_are_proposed_then_pruned(
    cluster: tuple[Path, list[str]], tmp_path: Path, run_cli: RunCli
) -> None:
    flows, opts = cluster
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, NOW, *opts)).code == 0
    proposed = {
        ("web", "egress", "namespace db", ("5432",), True, False),
        ("db", "ingress", "namespace web", ("5432",), True, False),
        ("web", "egress", "namespace api", ("8080", "9090"), False, False),
        ("api", "ingress", "namespace web", ("8080", "9090"), False, False),
        ("old", "egress", "namespace api", ("7000",), True, False),
        ("api", "ingress", "namespace old", ("7000",), True, False),
    }
    assert stale_entries(out) == proposed
    entry = next(s for s in report(out)["stale_rules"] if s["namespace"] == "web")
    assert entry["rule"]["evidence"]["last_seen"] <= "2026-10-01T02:25:00Z"
    assert "### Stale rules" in (out / "report.md").read_text()
    # Proposed only: the policies still hold them.
    assert has_rule(out, "web", "egress", "db", "TCP", "5432")

    result = run_cli(run_args(flows, out, NOW, *opts, "--prune-stale", "--output", "json"))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert {e[:5] for e in stale_entries(out)} == {e[:5] for e in proposed}
    assert all(s["pruned"] for s in data["stale_rules"])
    assert data["summary"]["pruned_rules"] == 6
    assert not has_rule(out, "web", "egress", "db", "TCP", "5432")
    assert not has_rule(out, "web", "egress", "api", "TCP", "9090")
    assert has_rule(out, "web", "egress", "api", "TCP", "8080")  # narrowed, not removed
    assert statuses(out)["web"][0] == "Learning"
    assert statuses(out)["db"][0] == "Learning"  # its ingress lost the web rule
    assert data["incremental"]["pruned_edges"] > 0

    # Pruned evidence is gone from the state: the rules do not come back.
    assert run_cli(run_args(flows, out, NOW + timedelta(hours=1), *opts)).code == 0
    assert not has_rule(out, "web", "egress", "db", "TCP", "5432")
    assert stale_entries(out) == set()


def test_staleness_is_measured_against_the_data_not_the_clock(
    cluster: tuple[Path, list[str]], tmp_path: Path, run_cli: RunCli
) -> None:
    flows, opts = cluster
    out = tmp_path / "out"
    # Ten days after the last flow: the flow logs stopped, the rules did not go stale.
    long_scope = scope_file(tmp_path / "long.yaml", initialLookback="264h")
    late = NOW + timedelta(days=10)
    args = run_args(flows, out, late, *opts[2:], "--config", long_scope)
    assert run_cli(args).code == 0
    assert {e[0] for e in stale_entries(out)} == {"web", "db", "api", "old"}
    assert not any(e[2] == "namespace api" and e[3] == ("8080",) for e in stale_entries(out))
    assert statuses(out)["web"][0] != "Stale"


def test_stale_and_nodata_namespaces(
    cluster: tuple[Path, list[str]], tmp_path: Path, run_cli: RunCli
) -> None:
    flows, opts = cluster
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in ("api", "db", "empty", "old", "web")
        ],
    }
    names = tmp_path / "namespaces.yaml"
    names.write_text(yaml.safe_dump(listing))
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out, NOW, *opts, "--namespaces", names)).code == 0
    got = statuses(out)
    assert got["old"][0] == "Stale"  # last flow 22 hours before the newest, period 12h
    assert annotations(out, "old")["policyrecommendation.tigera.io/status"] == "Stale"
    assert got["empty"] == ("NoData", "2026-10-02T00:00:00Z")
    assert not (out / "policies" / "empty.yaml").exists()
    assert {got[ns][0] for ns in ("api", "db", "web")} == {"Learning"}
    assert report(out)["summary"]["no_data"] == 1
