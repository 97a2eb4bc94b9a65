"""The review workflow end to end through `flowfence run`: every decision through the CLI and
by hand edit (with expiry), an enforced policy among --existing-policies, GitOps commits
against a real repository, and the exit codes. Each test checks the manifests, the state and
the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CliResult
from test_decisions import calico_network_policy_errors
from test_state_support import (
    T0,
    flow_rows,
    paused,
    report,
    run_args,
    scope_file,
    spawn,
    stamp,
    steady,
    wait_for,
    write_hour,
)

from flowfence.state import tables as state

Cli = Callable[[Sequence[object]], CliResult]
LINKS = [("web", "api", 8080), ("api", "db", 5432)]
NOW = T0 + timedelta(hours=12)


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """12 hours of web -> api:8080 and api -> db:5432, and a scope whose timing (interval
    20m, stabilization 6h) keeps statuses put for half an hour."""
    root = tmp_path / "flows"
    steady(root, T0, 12, LINKS)
    scope_file(tmp_path / "scope.yaml")
    return root


def call(root: Path, src: str, dst: str, port: int, hours: float, name: str) -> None:
    rows = flow_rows(
        T0 + timedelta(hours=hours),
        source_namespace=src,
        dest_namespace=dst,
        source_name_aggr=f"{src}-*",
        dest_name_aggr=f"{dst}-*",
        dest_port=port,
    )
    write_hour(root, rows, name=name)


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.err
    return result


def run(cli: Cli, flows: Path, out: Path, hours: float, *extra: object) -> CliResult:
    scope = flows.parent / "scope.yaml"
    args = run_args(flows, out, T0 + timedelta(hours=hours), "--config", scope)
    return cli([*args, *map(str, extra)])


def decide(cli: Cli, verdict: str, ns: str, out: Path, hours: float, *extra: str) -> None:
    args = [verdict, ns, "--out", out, "--now", stamp(T0 + timedelta(hours=hours))]
    if verdict != "reactivate":
        args += ["--reason", "reviewed", "--author", "alice", *extra]
    else:
        args = [verdict, ns, "--out", out]
    ok(cli(args))


def manifest(out: Path, ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((out / "policies" / f"{ns}.yaml").read_text())
    return doc


def kustomized(out: Path) -> list[str]:
    doc = yaml.safe_load((out / "policies" / "kustomization.yaml").read_text())
    resources: list[str] = doc["resources"]
    return resources


def staged_actions(out: Path) -> dict[str, str]:
    table = state.load(out / "state").namespaces
    return dict(zip(table["namespace"], table["staged_action"], strict=True))


def entry(out: Path, ns: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in report(out)["namespaces"] if e["namespace"] == ns)
    return found


def test_accept_through_the_cli_freezes_rules_and_reports_drift(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12))
    reviewed = manifest(out, "web")
    decide(run_cli, "accept", "web", out, 12.2)
    call(flows, "web", "cache", 6379, 12.25, "new")
    ok(run(run_cli, flows, out, 12.5))
    web = manifest(out, "web")
    assert web["kind"] == "StagedNetworkPolicy"
    assert web["spec"]["stagedAction"] == "Set"
    assert web["metadata"]["labels"]["projectcalico.org/spec.stagedAction"] == "Set"
    assert web["spec"]["egress"] == reviewed["spec"]["egress"]  # frozen as reviewed
    assert staged_actions(out)["web"] == "Set"
    e = entry(out, "web")
    assert (e["stagedAction"], e["decision"]["decision"], e["decision"]["author"]) == (
        "Set", "accept", "alice",
    )  # fmt: skip
    assert [(r["peer"], r["ports"]) for r in e["drift"]] == [("namespace cache", ["6379"])]
    assert e["drift"][0]["evidence"]["flows"] == 1
    assert "**moved to the policy board** `web`" in (out / "report.md").read_text()
    # cache is a new namespace learning normally; web's frozen file stays byte for byte.
    before = (out / "policies" / "web.yaml").read_bytes()
    ok(run(run_cli, flows, out, 13))
    assert (out / "policies" / "web.yaml").read_bytes() == before
    # Reactivated: learning again, the new peer is in the rules.
    decide(run_cli, "reactivate", "web", out, 13)
    ok(run(run_cli, flows, out, 13.5))
    web = manifest(out, "web")
    assert web["spec"]["stagedAction"] == "Learn"
    peers = [r["destination"].get("namespaceSelector") for r in web["spec"]["egress"]]
    assert "projectcalico.org/name == 'cache'" in peers
    assert staged_actions(out)["web"] == "Learn"
    assert entry(out, "web")["drift"] == []


def test_enforce_by_hand_edit_writes_a_valid_network_policy(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12))
    staged = manifest(out, "api")
    (out / "decisions.yaml").write_text(
        "namespaces:\n  api:\n    decision: enforce\n    reason: soaked\n    author: bob\n"
    )
    ok(run(run_cli, flows, out, 12.5))
    api = manifest(out, "api")
    assert (api["apiVersion"], api["kind"]) == ("projectcalico.org/v3", "NetworkPolicy")
    assert api["metadata"]["name"] == staged["metadata"]["name"] == "namespace-isolation.api"
    assert api["spec"]["tier"] == "namespace-isolation"
    assert "stagedAction" not in api["spec"]
    assert all("metadata" not in r for d in ("ingress", "egress") for r in api["spec"][d])
    assert calico_network_policy_errors(api) == []
    assert "api.yaml" in kustomized(out)
    assert staged_actions(out)["api"] == "Set"
    e = entry(out, "api")
    assert (e["kind"], e["previous_kind"], e["change"]) == (
        "NetworkPolicy", "StagedNetworkPolicy", "updated",
    )  # fmt: skip
    assert e["added_rules"] == e["removed_rules"] == []
    assert "- **enforced** `api`" in (out / "report.md").read_text()


def test_dismiss_with_expiry_lapses_back_to_learning(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12))
    decide(run_cli, "dismiss", "db", out, 12, "--expires", "2h")
    ok(run(run_cli, flows, out, 12.5))
    assert not (out / "policies" / "db.yaml").exists()
    assert "db.yaml" not in kustomized(out)
    assert staged_actions(out)["db"] == "Ignore"
    e = entry(out, "db")
    assert (e["change"], e["stagedAction"], e["manifest"]) == ("removed", "Ignore", None)
    assert e["decision"]["expires"] == stamp(T0 + timedelta(hours=14))
    # Past the expiry: learning again, the file is back, the report says the decision lapsed.
    ok(run(run_cli, flows, out, 14.5))
    assert manifest(out, "db")["spec"]["stagedAction"] == "Learn"
    assert "db.yaml" in kustomized(out)
    assert staged_actions(out)["db"] == "Learn"
    data = report(out)
    assert [d["namespace"] for d in data["lapsed_decisions"]] == ["db"]
    assert entry(out, "db")["change"] == "created" and entry(out, "db")["decision"] is None
    assert "### Lapsed decisions" in (out / "report.md").read_text()
    # The entry stays in the file until someone removes it; flowfence never rewrites it.
    assert "db:" in (out / "decisions.yaml").read_text()


def test_dismiss_by_hand_edit(flows: Path, tmp_path: Path, run_cli: Cli) -> None:
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12))
    (out / "decisions.yaml").write_text(
        "apiVersion: flowfence.io/v1\nkind: Decisions\nnamespaces:\n  web:\n"
        "    decision: dismiss\n    reason: batch only\n    author: carol\n"
        "    expires: 2026-10-01T13:00:00Z\n"
    )
    ok(run(run_cli, flows, out, 12.5))
    assert not (out / "policies" / "web.yaml").exists()
    assert staged_actions(out)["web"] == "Ignore"
    ok(run(run_cli, flows, out, 13.5))
    assert (out / "policies" / "web.yaml").exists()
    assert staged_actions(out)["web"] == "Learn"


def test_a_broken_hand_edit_stops_the_run_before_anything_is_written(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12))
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "decisions.yaml").write_text(
        "namespaces:\n  web:\n    decision: accept\n    reason: r\n    author: a\n"
        "    expires: tomorrow\n"
    )
    result = run(run_cli, flows, out, 13)
    assert result.code == 2
    assert "namespace 'web': field 'expires': not an RFC 3339 time" in result.err
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    del after[out / "decisions.yaml"]
    assert after == before


def test_an_enforced_policy_in_the_cluster_stops_learning(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    tier = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Tier",
        "metadata": {"name": "namespace-isolation"},
        "spec": {"order": 10000, "defaultAction": "Deny"},
    }
    policy = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "namespace-isolation.web", "namespace": "web"},
        "spec": {
            "tier": "namespace-isolation",
            "selector": "projectcalico.org/namespace == 'web'",
            "types": ["Egress"],
            "egress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "destination": {
                        "namespaceSelector": "projectcalico.org/name == 'api'",
                        "ports": [8080],
                    },
                }
            ],
        },
    }
    (existing / "policies.yaml").write_text(yaml.safe_dump_all([tier, policy]))
    call(flows, "web", "cache", 6379, 11.5, "new")
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12, "--existing-policies", existing))
    assert not (out / "policies" / "web.yaml").exists()
    assert "web.yaml" not in kustomized(out)
    assert (out / "policies" / "api.yaml").exists()
    assert staged_actions(out)["web"] == "Set"
    e = entry(out, "web")
    assert e["stagedAction"] == "Set" and e["manifest"] is None
    # The enforced policy allows api:8080 only: web -> cache is drift against it.
    assert [(r["peer"], r["ports"]) for r in e["drift"]] == [("namespace cache", ["6379"])]


# --- GitOps through the CLI -------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "config", "user.name", "CI")
    git(work, "config", "user.email", "ci@example.com")
    git(work, "remote", "add", "origin", str(remote))
    return work, remote


def test_git_commit_and_push_from_run(flows: Path, repo: tuple[Path, Path], run_cli: Cli) -> None:
    work, remote = repo
    out = work / "cluster"
    ok(run(run_cli, flows, out, 12, "--git-commit", "--git-push"))
    assert git(work, "log", "--format=%s") == "flowfence: 3 namespaces (+4 -0 rules)"
    files = set(git(work, "ls-tree", "-r", "--name-only", "HEAD").splitlines())
    assert "cluster/policies/web.yaml" in files and "cluster/report.md" in files
    assert "cluster/report.html" in files  # the page a reviewer opens from the pull request
    assert not any(f.startswith("cluster/state/") or f.endswith("report.json") for f in files)
    assert git(remote, "rev-parse", "main") == git(work, "rev-parse", "HEAD")
    # No change: no commit (the report's window moved, but no policy or decision did).
    result = ok(run(run_cli, flows, out, 12.5, "--git-commit"))
    assert "Nothing to commit" in result.out
    assert len(git(work, "log", "--format=%H").splitlines()) == 1
    # A decision and the run it takes effect in: exactly one commit naming both.
    decide(run_cli, "dismiss", "db", out, 12.6)
    ok(run(run_cli, flows, out, 12.6, "--git-commit", "--git-push"))
    log = git(work, "log", "--format=%H").splitlines()
    assert len(log) == 2
    message = git(work, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "flowfence: 1 namespace (+0 -1 rules); 1 decision"
    assert "- db: removed, +0 -1 rules" in message
    assert "- decision: db: dismiss by alice: reviewed" in message
    assert "cluster/policies/db.yaml" not in git(work, "ls-tree", "-r", "--name-only", "HEAD")
    assert git(remote, "rev-parse", "main") == log[0]


# --- exit codes and output channels -----------------------------------------------------------


def test_exit_codes_0_2_4(flows: Path, tmp_path: Path, run_cli: Cli) -> None:
    out = tmp_path / "out"
    assert run(run_cli, flows, out, 12, "--detailed-exitcode").code == 4  # first run: changed
    assert run(run_cli, flows, out, 12.5, "--detailed-exitcode").code == 0  # nothing changed
    assert run(run_cli, flows, out, 12.5).code == 0
    # Status moves on (Learning -> Stabilizing): the files change, so 4 again.
    assert run(run_cli, flows, out, 13.5, "--detailed-exitcode").code == 4
    bad = run(run_cli, flows, out, 14, "--flavor", "nope", "--detailed-exitcode")
    assert bad.code == 2 and "--flavor" in bad.err
    both = run(run_cli, flows, out, 14, "--watch", "--detailed-exitcode")
    assert both.code == 2


def test_exit_code_1_when_the_push_fails(
    flows: Path, repo: tuple[Path, Path], run_cli: Cli
) -> None:
    work, _ = repo
    git(work, "remote", "set-url", "origin", str(work.parent / "gone.git"))
    result = run(run_cli, flows, work / "out", 12, "--git-push")
    assert result.code == 1
    assert "--git-push: cannot reach remote 'origin'" in result.err and "gone.git" in result.err
    # Refused before anything was written or committed.
    assert git(work, "rev-list", "--all") == ""
    assert not (work / "out" / "report.md").exists()
    assert not (work / "out" / "state" / "manifest.json").exists()


def test_a_run_on_a_detached_head_is_refused_before_writing(
    flows: Path, repo: tuple[Path, Path], run_cli: Cli
) -> None:
    work, _ = repo
    ok(run(run_cli, flows, work / "out", 12, "--git-commit"))
    git(work, "switch", "-q", "--detach")
    head = git(work, "rev-parse", "HEAD")
    report = (work / "out" / "report.md").read_bytes()
    result = run(run_cli, flows, work / "out", 13.5, "--git-commit")
    assert result.code == 2
    assert "--git-commit: HEAD is detached" in result.err and "git switch" in result.err
    assert git(work, "rev-parse", "HEAD") == head
    assert (work / "out" / "report.md").read_bytes() == report


def test_exit_code_130_when_interrupted(flows: Path, tmp_path: Path) -> None:
    pause = tmp_path / "pause"
    proc = spawn(run_args(flows, tmp_path / "out", NOW), paused(pause, "after-read"))
    wait_for(pause, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted by SIGINT" in err


def test_output_json_is_the_report_on_stdout(flows: Path, tmp_path: Path, run_cli: Cli) -> None:
    out = tmp_path / "out"
    result = ok(run(run_cli, flows, out, 12, "--output", "json"))
    data = json.loads(result.out)
    assert data == report(out)
    for key in ("namespace", "status", "previous_status", "stagedAction", "added_rules",
                "removed_rules", "stale_rules", "drift"):  # fmt: skip
        assert all(key in e for e in data["namespaces"])
    assert set(data["counts"]) == {"excluded", "rejected"}
    rule = data["namespaces"][0]["added_rules"][0]
    assert {"direction", "scope", "peer", "protocol", "ports", "evidence"} <= set(rule)
    assert "flowfence run:" not in result.err  # no progress bar when stderr is not a terminal


def test_a_schema_1_state_still_loads(flows: Path, tmp_path: Path, run_cli: Cli) -> None:
    out = tmp_path / "out"
    ok(run(run_cli, flows, out, 12))
    path = out / "state" / "manifest.json"
    data = json.loads(path.read_text())
    data["schema"] = 1
    del data["tables"]["baseline"]
    path.write_text(json.dumps(data))
    assert state.load(out / "state").baseline.height == 0
    ok(run(run_cli, flows, out, 13))
    assert json.loads(path.read_text())["schema"] == state.SCHEMA_VERSION


def test_progress_goes_to_stderr_only_on_a_terminal(flows: Path, tmp_path: Path) -> None:
    """With stderr on a pseudo-terminal the run shows progress there; stdout stays data."""
    primary, secondary = os.openpty()
    args = run_args(flows, tmp_path / "out", NOW, "--output", "json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowfence.cli", *args],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=60)
    os.close(primary)
    assert proc.returncode == 0
    assert b"flowfence run:" in seen
    assert json.loads(stdout)["plan"]["add"] == 3  # stdout is the report, nothing else
