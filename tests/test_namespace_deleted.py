"""A namespace deleted from the cluster (absent from `--namespaces`) loses its policy at once,
although its flows are still in the state and the lookback window: the manifest goes, the
report lists the removal as "namespace deleted", the state marks it deleted so its old flows
do not bring it back, and a namespace that returns learns afresh. Peers in other namespaces'
rules stay (as Calico keeps them) until they turn stale."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult
from test_state_support import (
    T0,
    flow_rows,
    has_rule,
    kill,
    outputs,
    paused,
    report,
    run_args,
    spawn,
    steady,
    wait_for,
    write_hour,
)

from flowfence.state import tables as state

RunCli = Callable[[Sequence[str]], CliResult]
FIRST = T0 + timedelta(hours=6)
SECOND = T0 + timedelta(hours=8)
THIRD = T0 + timedelta(hours=10)
LINKS = [("web", "api", 8080), ("api", "db", 5432)]
ALL = ("api", "db", "legacy", "web")


def namespaces_file(path: Path, names: Iterable[str]) -> Path:
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def legacy_flows(flows: Path, hour: int, port: int) -> None:
    rows = flow_rows(
        T0 + timedelta(hours=hour, minutes=30),
        source_namespace="legacy",
        dest_namespace="api",
        source_name_aggr="legacy-*",
        dest_name_aggr="api-*",
        dest_port=port,
    )
    write_hour(flows, rows, name="legacy")


def entry(out: Path, ns: str) -> dict[str, Any] | None:
    return next((e for e in report(out)["namespaces"] if e["namespace"] == ns), None)


def state_row(out: Path, ns: str) -> dict[str, Any] | None:
    rows = state.load(out / "state").namespaces.filter(namespace=ns).to_dicts()
    return rows[0] if rows else None


def kustomized(out: Path) -> list[str]:
    doc = yaml.safe_load((out / "policies" / "kustomization.yaml").read_text())
    resources: list[str] = doc["resources"]
    return resources


@pytest.fixture
def cluster(tmp_path: Path, run_cli: RunCli) -> tuple[Path, Path, Path]:
    """First run: legacy -> api:7000 for six hours, listed in --namespaces; it gets a policy.
    Then two more hours of traffic without legacy. Returns (flows, out, tmp)."""
    flows, out = tmp_path / "flows", tmp_path / "out"
    steady(flows, T0, 6, LINKS)
    for hour in range(6):
        legacy_flows(flows, hour, 7000)
    listed = namespaces_file(tmp_path / "all.yaml", ALL)
    assert run_cli(run_args(flows, out, FIRST, "--namespaces", listed)).code == 0
    assert (out / "policies" / "legacy.yaml").is_file()
    steady(flows, FIRST, 2, LINKS)
    return flows, out, tmp_path


def delete_legacy(run_cli: RunCli, flows: Path, out: Path, tmp: Path) -> CliResult:
    without = namespaces_file(tmp / "without.yaml", ("api", "db", "web"))
    result = run_cli(run_args(flows, out, SECOND, "--namespaces", without))
    assert result.code == 0, result.err
    return result


def test_a_deleted_namespace_loses_its_policy_and_is_reported(
    cluster: tuple[Path, Path, Path], run_cli: RunCli
) -> None:
    flows, out, tmp = cluster
    delete_legacy(run_cli, flows, out, tmp)
    assert not (out / "policies" / "legacy.yaml").exists()
    assert "legacy.yaml" not in kustomized(out)
    gone = entry(out, "legacy")
    assert gone is not None
    assert (gone["change"], gone["status"], gone["previous_status"], gone["manifest"]) == (
        "removed", "Deleted", "Learning", None,
    )  # fmt: skip
    assert gone["notes"] == ["namespace deleted"]
    assert report(out)["plan"]["remove"] == 1
    assert {"namespace": "legacy", "reason": "namespace deleted"} in report(out)[
        "excluded_namespaces"
    ]
    assert report(out)["summary"]["no_data"] == 0  # deleted is not "no data"
    markdown = (out / "report.md").read_text()
    assert "<code>legacy</code>: removed, +0 -1 rules, Deleted (was Learning)" in markdown
    assert "note: namespace deleted" in markdown
    row = state_row(out, "legacy")
    assert row is not None
    assert (row["status"], row["last_updated"], row["learning_since"]) == (
        "Deleted", SECOND.replace(tzinfo=None), SECOND.replace(tzinfo=None),
    )  # fmt: skip
    # Calico keeps a peer naming a deleted namespace until it is stale; so does flowfence.
    assert has_rule(out, "api", "ingress", "legacy", "TCP", "7000")


def test_other_removals_are_not_called_deleted(
    cluster: tuple[Path, Path, Path], run_cli: RunCli
) -> None:
    """A namespace the selector stops selecting is removed for that reason, not as deleted."""
    flows, out, tmp = cluster
    listed = namespaces_file(tmp / "all.yaml", ALL)
    scope = tmp / "scope.yaml"
    scope.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "PolicyRecommendationScope",
                "metadata": {"name": "default"},
                "spec": {
                    "initialLookback": "24h",
                    "namespaceSpec": {"selector": "projectcalico.org/name != 'legacy'"},
                },
            }
        )
    )
    args = run_args(flows, out, SECOND, "--namespaces", listed, "--config", scope)
    assert run_cli(args).code == 0
    gone = entry(out, "legacy")
    assert gone is not None and gone["change"] == "removed"
    assert (gone["status"], gone["notes"]) == ("NoData", ["not selected by namespaceSpec.selector"])
    assert state_row(out, "legacy") is None


@pytest.mark.parametrize("listed", [True, False], ids=["still-absent", "no-namespaces-file"])
def test_old_flows_do_not_bring_a_deleted_namespace_back(
    cluster: tuple[Path, Path, Path], run_cli: RunCli, listed: bool
) -> None:
    flows, out, tmp = cluster
    delete_legacy(run_cli, flows, out, tmp)
    steady(flows, SECOND, 2, LINKS)
    # Its flows (hours 0-5) are still in the state and inside the 24h lookback.
    opts = ["--namespaces", tmp / "without.yaml"] if listed else []
    assert run_cli(run_args(flows, out, THIRD, *opts)).code == 0
    assert not (out / "policies" / "legacy.yaml").exists()
    assert entry(out, "legacy") is None  # nothing changed for it this run
    row = state_row(out, "legacy")
    assert row is not None and row["status"] == "Deleted"
    assert row["last_updated"] == SECOND.replace(tzinfo=None)  # seen deleted then, not now
    assert {"namespace": "legacy", "reason": "namespace deleted"} in report(out)[
        "excluded_namespaces"
    ]


@pytest.mark.parametrize("listed", [True, False], ids=["listed-again", "no-namespaces-file"])
def test_a_namespace_that_comes_back_learns_afresh(
    cluster: tuple[Path, Path, Path], run_cli: RunCli, listed: bool
) -> None:
    flows, out, tmp = cluster
    delete_legacy(run_cli, flows, out, tmp)
    steady(flows, SECOND, 2, LINKS)
    for hour in (8, 9):
        legacy_flows(flows, hour, 7001)  # the new incarnation talks on another port
    opts = ["--namespaces", namespaces_file(tmp / "back.yaml", ALL)] if listed else []
    assert run_cli(run_args(flows, out, THIRD, *opts)).code == 0
    back = entry(out, "legacy")
    assert back is not None
    assert (back["change"], back["status"], back["previous_status"]) == (
        "created", "Learning", None,
    )  # fmt: skip
    assert has_rule(out, "legacy", "egress", "api", "TCP", "7001")
    assert not has_rule(out, "legacy", "egress", "api", "TCP", "7000")  # the old incarnation's
    row = state_row(out, "legacy")
    assert row is not None
    assert (row["status"], row["first_run"], row["learning_since"]) == (
        "Learning", THIRD.replace(tzinfo=None), SECOND.replace(tzinfo=None),
    )  # fmt: skip


def test_a_decision_does_not_keep_a_deleted_namespace_policy(
    cluster: tuple[Path, Path, Path], run_cli: RunCli
) -> None:
    flows, out, tmp = cluster
    (out / "decisions.yaml").write_text(
        "namespaces:\n  legacy:\n    decision: accept\n    reason: soaked\n    author: bob\n"
    )
    delete_legacy(run_cli, flows, out, tmp)
    assert not (out / "policies" / "legacy.yaml").exists()
    gone = entry(out, "legacy")
    assert gone is not None and (gone["change"], gone["status"]) == ("removed", "Deleted")


def test_without_namespaces_file_nothing_is_deleted(
    cluster: tuple[Path, Path, Path], run_cli: RunCli
) -> None:
    flows, out, _ = cluster
    assert run_cli(run_args(flows, out, SECOND)).code == 0
    assert (out / "policies" / "legacy.yaml").is_file()
    row = state_row(out, "legacy")
    assert row is not None and row["status"] != "Deleted"


@pytest.mark.parametrize("step", ["after-read", "after-state", "after-policies"])
def test_a_deletion_killed_midway_completes_on_the_next_run(
    cluster: tuple[Path, Path, Path], run_cli: RunCli, step: str
) -> None:
    """The removal is written atomically with the other outputs: a run killed at a step
    leaves the old or the new files, and the rerun removes the file and reports the
    removal just as an uninterrupted run does."""
    flows, out, tmp = cluster
    without = namespaces_file(tmp / "without.yaml", ("api", "db", "web"))
    before = outputs(out)
    pause = tmp / "pause"
    victim = spawn(run_args(flows, out, SECOND, "--namespaces", without), paused(pause, step))
    assert wait_for(pause, victim).startswith(step)
    kill(victim)
    now = outputs(out)
    if step != "after-policies":
        assert now == before
    else:
        assert "policies/legacy.yaml" not in now
        assert {k: v for k, v in now.items() if k.startswith("report")} == {
            k: v for k, v in before.items() if k.startswith("report")
        }
    assert run_cli(run_args(flows, out, SECOND, "--namespaces", without)).code == 0
    assert not (out / "policies" / "legacy.yaml").exists()
    gone = entry(out, "legacy")
    assert gone is not None and (gone["change"], gone["notes"]) == (
        "removed", ["namespace deleted"],
    )  # fmt: skip
    row = state_row(out, "legacy")
    assert row is not None and row["status"] == "Deleted"
    assert not list((out / "policies").glob(".*"))  # no temporary file left behind
