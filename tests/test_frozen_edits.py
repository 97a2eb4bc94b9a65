"""Issue 14 item 2: `accept`/`enforce` never freeze a hand-edited policy unseen.

Every test runs `flowfence` through `cli.app.main` over real flow logs and real files: the CLI
compares `policies/NS.yaml` with what flowfence last wrote (`.flowfence-written.json`) and
refuses a hand edit with a diff unless `--keep-edits`; a run does not freeze an edit nobody
kept; and the report's Risks name every frozen policy that allows more than the
recommendation or sits outside flowfence's tier.
"""

from __future__ import annotations

import hashlib
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
    flow_rows,
    report,
    run_args,
    scope_file,
    stamp,
    steady,
    write_hour,
)

Cli = Callable[[Sequence[object]], CliResult]
LINKS = [("web", "api", 8080), ("api", "db", 5432)]
RECORD = ".flowfence-written.json"  # what flowfence last wrote (review/written.py)
ALLOW_ALL = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-all
  namespace: web
spec:
  tier: default
  selector: all()
  types:
  - Ingress
  - Egress
  ingress:
  - action: Allow
  egress:
  - action: Allow
"""


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    root = tmp_path / "flows"
    steady(root, T0, 12, LINKS)
    scope_file(tmp_path / "scope.yaml")
    return root


def run(cli: Cli, flows: Path, out: Path, hours: float) -> CliResult:
    scope = flows.parent / "scope.yaml"
    result = cli(run_args(flows, out, T0 + timedelta(hours=hours), "--config", scope))
    assert result.code == 0, result.err
    return result


def decide(cli: Cli, verdict: str, ns: str, out: Path, hours: float, *extra: str) -> CliResult:
    args = [verdict, ns, "--out", out, "--now", stamp(T0 + timedelta(hours=hours))]
    return cli([*args, "--reason", "reviewed", "--author", "alice", *extra])


def policy(out: Path, ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((out / "policies" / f"{ns}.yaml").read_text())
    return doc


def decisions(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((out / "decisions.yaml").read_text())
    return doc.get("namespaces") or {}


def risks(out: Path, ns: str) -> dict[str, dict[str, Any]]:
    return {r["risk"]: r for r in report(out)["frozen_risks"] if r["namespace"] == ns}


def test_enforcing_a_hand_edit_into_allow_all_in_another_tier_is_refused_with_a_diff(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """The issue's scenario. Before the fix `enforce` accepted the edited file (exit 0) and the
    next run enforced an allow-all policy in the default tier with no risk reported."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    (out / "policies" / "web.yaml").write_text(ALLOW_ALL)

    refused = decide(run_cli, "enforce", "web", out, 12.2)
    assert refused.code == 2
    assert "differs from what flowfence last wrote" in refused.err
    assert "--keep-edits" in refused.err
    # The unified diff, on stderr: from what flowfence wrote to the edit.
    assert "--- policies/web.yaml (flowfence)" in refused.err
    assert "+++ policies/web.yaml (on disk)" in refused.err
    assert "+  tier: default" in refused.err
    assert "-  tier: namespace-isolation" in refused.err
    assert refused.out == ""
    assert not (out / "decisions.yaml").exists()

    kept = decide(run_cli, "enforce", "web", out, 12.3, "--keep-edits")
    assert kept.code == 0, kept.err
    digest = hashlib.sha256(ALLOW_ALL.encode()).hexdigest()
    assert decisions(out)["web"]["keep_edits"] == f"sha256:{digest}"

    ran = run(run_cli, flows, out, 12.5)
    assert "flowfence: risk: web: outside-tier:" in ran.err  # in the CronJob's log too
    web = policy(out, "web")
    assert (web["kind"], web["spec"]["tier"]) == ("NetworkPolicy", "default")  # as kept
    found = risks(out, "web")
    assert set(found) == {"kept-edits", "allows-more", "outside-tier"}
    assert "does not restrict" not in found["allows-more"]["detail"]
    assert (
        "2 of its rules allow traffic no recommended rule allows"
        in (found["allows-more"]["detail"])
    )
    allow_all = ['egress {"action": "Allow"}', 'ingress {"action": "Allow"}']
    assert found["allows-more"]["items"] == allow_all
    assert found["outside-tier"]["items"] == ["tier default"]
    md = (out / "report.md").read_text()
    risks_md = md.split("### Risks", 1)[1]
    assert "- **frozen policy allows more than the recommendation** in `web`" in risks_md
    assert "- **frozen policy outside flowfence's tier** in `web`" in risks_md
    assert "- **hand edit kept** in `web`" in risks_md
    # The report's decision shows what was kept, for the audit.
    entry = next(e for e in report(out)["namespaces"] if e["namespace"] == "web")
    assert entry["decision"]["keep_edits"] == f"sha256:{digest}"

    # The next run: flowfence wrote the kept policy itself, so it is no longer an edit, but
    # the frozen policy still allows more and is still outside the tier.
    run(run_cli, flows, out, 13)
    assert set(risks(out, "web")) == {"allows-more", "outside-tier"}


def test_a_run_does_not_freeze_an_edit_nobody_kept(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """A decision made by hand in decisions.yaml, past the CLI's check: the run freezes what
    flowfence last wrote and says so. Before the fix the run enforced the allow-all edit."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    reviewed = policy(out, "web")
    (out / "policies" / "web.yaml").write_text(ALLOW_ALL)
    (out / "decisions.yaml").write_text(
        "namespaces:\n  web:\n    decision: enforce\n    reason: soaked\n    author: bob\n"
    )
    run(run_cli, flows, out, 12.5)
    web = policy(out, "web")
    assert web["kind"] == "NetworkPolicy"
    assert web["spec"]["tier"] == "namespace-isolation"
    assert web["spec"]["egress"] == [
        {k: v for k, v in r.items() if k != "metadata"} for r in reviewed["spec"]["egress"]
    ]
    found = risks(out, "web")
    assert set(found) == {"edited"}
    assert "froze what flowfence last wrote" in found["edited"]["detail"]
    assert "- **hand edit not frozen** in `web`" in (out / "report.md").read_text()
    # A rerun at the same --now compares the files as they were before that run (the edit):
    # it is refused again, the output stays the same.
    before = (out / "policies" / "web.yaml").read_bytes()
    run(run_cli, flows, out, 12.5)
    assert (out / "policies" / "web.yaml").read_bytes() == before
    assert set(risks(out, "web")) == {"edited"}


def test_deleting_the_record_does_not_let_an_edit_through(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """The state keeps the digest of what flowfence wrote: without the record in DIR there is
    no copy to freeze, so the decision waits and the namespace keeps learning."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    (out / RECORD).unlink(missing_ok=True)  # (before the fix there was none)
    (out / "policies" / "web.yaml").write_text(ALLOW_ALL)
    (out / "decisions.yaml").write_text(
        "namespaces:\n  web:\n    decision: enforce\n    reason: soaked\n    author: bob\n"
    )
    run(run_cli, flows, out, 12.5)
    web = policy(out, "web")
    assert (web["kind"], web["spec"]["stagedAction"]) == ("StagedNetworkPolicy", "Learn")
    found = risks(out, "web")
    assert set(found) == {"edited"}
    assert "the enforce is not applied" in found["edited"]["detail"]
    entry = next(e for e in report(out)["namespaces"] if e["namespace"] == "web")
    assert entry["stagedAction"] == "Learn"


def test_a_record_whose_text_was_edited_is_not_frozen(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """The record's copy of what flowfence wrote must match its own digests: a copy widened
    in the record (its digests left alone) is no copy, so the decision waits. Before the fix
    the run froze the widened copy as "what flowfence last wrote"."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    record = json.loads((out / RECORD).read_text())
    entry = record["files"]["policies/web.yaml"]
    assert "selector:" in entry["text"]
    entry["text"] = ALLOW_ALL
    (out / RECORD).write_text(json.dumps(record))
    policy_file = out / "policies" / "web.yaml"
    policy_file.write_text(policy_file.read_text() + "# touched\n")
    (out / "decisions.yaml").write_text(
        "namespaces:\n  web:\n    decision: enforce\n    reason: soaked\n    author: bob\n"
    )
    run(run_cli, flows, out, 12.5)
    web = policy(out, "web")
    assert (web["kind"], web["spec"]["stagedAction"]) == ("StagedNetworkPolicy", "Learn")
    assert web["spec"]["tier"] == "namespace-isolation"
    assert set(risks(out, "web")) == {"edited"}


def test_an_unedited_policy_is_accepted_as_before(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """What flowfence wrote is recorded (the record did not exist before the fix), and
    accepting it needs no flag and leaves no keep_edits in the decision."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    record = json.loads((out / RECORD).read_text())
    web = (out / "policies" / "web.yaml").read_bytes()
    assert record["files"]["policies/web.yaml"] == {
        "sha256": [hashlib.sha256(web).hexdigest()],
        "text": web.decode(),
    }
    accepted = decide(run_cli, "accept", "web", out, 12.2)
    assert accepted.code == 0, accepted.err
    assert "---" not in accepted.err
    assert "keep_edits" not in decisions(out)["web"]
    run(run_cli, flows, out, 12.5)
    assert policy(out, "web")["spec"]["stagedAction"] == "Set"
    assert report(out)["frozen_risks"] == []


def test_a_frozen_policy_narrower_than_the_recommendation_is_no_risk(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """web is accepted, then calls a new peer: the recommendation grows, the frozen policy
    does not (drift), and nothing it allows is beyond the recommendation."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    assert decide(run_cli, "accept", "web", out, 12.2).code == 0
    rows = flow_rows(
        T0 + timedelta(hours=12.25),
        source_namespace="web",
        dest_namespace="cache",
        source_name_aggr="web-*",
        dest_name_aggr="cache-*",
        dest_port=6379,
    )
    write_hour(flows, rows, name="new")
    run(run_cli, flows, out, 12.5)
    entry = next(e for e in report(out)["namespaces"] if e["namespace"] == "web")
    assert [r["peer"] for r in entry["drift"]] == ["namespace cache"]
    assert report(out)["frozen_risks"] == []


def test_a_malformed_record_is_a_warning_not_a_crash(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """The record is a file anyone can edit: garbage there records nothing, and both the run
    and `accept` say so (before the fix nothing read it, so nothing said so)."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    (out / RECORD).write_text('{"format": "flowfence-written", "version": 1, "files": [1]}')
    accepted = decide(run_cli, "accept", "web", out, 12.2)
    assert accepted.code == 0, accepted.err
    assert "malformed entry ignored" in accepted.err
    run(run_cli, flows, out, 12.5)
    assert any("malformed entry ignored" in w for w in report(out)["warnings"])
    assert policy(out, "web")["spec"]["stagedAction"] == "Set"  # the state's digest vouched
    record = json.loads((out / RECORD).read_text())  # and the run wrote a good record again
    assert sorted(record["files"]) == sorted(
        f"policies/{p.name}" for p in (out / "policies").glob("*.yaml")
    )


def test_the_record_keeps_the_previous_version_while_a_file_changes(
    flows: Path, tmp_path: Path, run_cli: Cli
) -> None:
    """A run killed after its record but before its policies leaves the previous file on disk:
    the record must still know it, and keep knowing it through reruns that change nothing."""
    out = tmp_path / "out"
    run(run_cli, flows, out, 12)
    before = (out / "policies" / "web.yaml").read_bytes()
    assert decide(run_cli, "enforce", "web", out, 12.2).code == 0
    run(run_cli, flows, out, 12.5)
    now = (out / "policies" / "web.yaml").read_bytes()
    assert now != before
    digests = {hashlib.sha256(d).hexdigest() for d in (before, now)}
    entry = json.loads((out / RECORD).read_text())["files"]["policies/web.yaml"]
    assert set(entry["sha256"]) == digests
    run(run_cli, flows, out, 12.5)  # a rerun at the same --now: the same record
    entry = json.loads((out / RECORD).read_text())["files"]["policies/web.yaml"]
    assert set(entry["sha256"]) == digests
    # The previous version put back (as a killed run would leave it) is not a hand edit.
    (out / "policies" / "web.yaml").write_bytes(before)
    run(run_cli, flows, out, 13)
    assert policy(out, "web")["kind"] == "NetworkPolicy"
    assert report(out)["frozen_risks"] == []


def _calico(egress: list[dict[str, Any]], types: Sequence[str] = ("Ingress", "Egress")) -> Any:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedNetworkPolicy",
        "metadata": {"name": "namespace-isolation.web", "namespace": "web"},
        "spec": {
            "tier": "namespace-isolation",
            "selector": "all()",
            "types": list(types),
            "ingress": [],
            "egress": egress,
        },
    }


API = {"namespaceSelector": "projectcalico.org/name == 'api'"}
DB = {"namespaceSelector": "projectcalico.org/name == 'db'"}
RECOMMENDED = [
    {"action": "Allow", "protocol": "TCP", "destination": {**API, "ports": ["8000:8100"]}},
    {"action": "Allow", "protocol": "UDP", "destination": {"nets": ["10.0.0.0/8"]}},
]


@pytest.mark.parametrize(
    ("frozen", "types", "wider"),
    [
        # Within: the same rules, a narrower port, a narrower net, a Deny of anything.
        (RECOMMENDED, ("Ingress", "Egress"), None),
        ([{"action": "Allow", "protocol": "TCP", "destination": {**API, "ports": [8080]}}],
         ("Ingress", "Egress"), None),
        ([{"action": "Allow", "protocol": "UDP", "destination": {"nets": ["10.1.0.0/16"]}}],
         ("Ingress", "Egress"), None),
        ([{"action": "Deny"}], ("Ingress", "Egress"), None),
        # Beyond: a wider port range, any protocol, another peer, a wider net, a Pass, no
        # egress restriction at all.
        ([{"action": "Allow", "protocol": "TCP", "destination": {**API, "ports": ["1:9000"]}}],
         ("Ingress", "Egress"), "1 of its rules"),
        ([{"action": "Allow", "destination": API}], ("Ingress", "Egress"), "1 of its rules"),
        ([{"action": "Allow", "protocol": "TCP", "destination": {**DB, "ports": [8080]}}],
         ("Ingress", "Egress"), "1 of its rules"),
        ([{"action": "Allow", "protocol": "UDP", "destination": {"nets": ["0.0.0.0/0"]}}],
         ("Ingress", "Egress"), "1 of its rules"),
        ([{"action": "Pass"}], ("Ingress", "Egress"), "1 of its rules"),
        ([], ("Ingress",), "does not restrict egress"),
    ],
)  # fmt: skip
def test_allows_more_is_told_on_the_evaluator_rule_model(
    frozen: list[dict[str, Any]], types: Sequence[str], wider: str | None
) -> None:
    from flowfence.review import frozen_risks

    found = frozen_risks.assess(
        "web", _calico(frozen, types), _calico(RECOMMENDED), "namespace-isolation"
    )
    if wider is None:
        assert found == []
    else:
        assert [r["risk"] for r in found] == ["allows-more"]
        assert wider in found[0]["detail"]
