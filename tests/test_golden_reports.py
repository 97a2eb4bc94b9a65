"""report.json and report.md across a sequence of runs (tests/review_scenario.py), byte for byte
against tests/golden_reports/ (regenerate: `python tests/regenerate_golden_reports.py`), plus
the facts each step is about, so that a regenerated golden file cannot quietly lose them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from review_scenario import GOLDEN, REPORTS, STEPS, play, reports

from flowfence.cli.app import main


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("scenario")
    return {step: reports(out) for step, out in play(root, main)}


def entry(data: dict[str, Any], ns: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in data["namespaces"] if e["namespace"] == ns)
    return found


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("name", REPORTS)
def test_reports_match_golden(played: dict[str, dict[str, bytes]], step: str, name: str) -> None:
    expected = (GOLDEN / step / name).read_bytes()
    assert played[step][name] == expected, (
        f"{step}/{name} differs from tests/golden_reports; if intended, run "
        "`python tests/regenerate_golden_reports.py` and review the diff"
    )


def test_each_step_reports_what_it_is_about(played: dict[str, dict[str, bytes]]) -> None:
    data = {step: json.loads(played[step]["report.json"]) for step in STEPS}
    md = {step: played[step]["report.md"].decode() for step in STEPS}

    first = data["01-first-run"]
    assert first["plan"]["add"] == 3 and first["plan"]["rules_added"] == 4
    assert {e["change"] for e in first["namespaces"]} == {"created"}
    assert all(e["previous_status"] is None for e in first["namespaces"])
    assert md["01-first-run"].count("**first policy**") == 3

    assert data["02-no-change"]["plan"]["files_changed"] == 0
    assert "**No changes.**" in md["02-no-change"]

    third = data["03-one-namespace-changed"]
    web = entry(third, "web")
    assert [r["peer"] for r in web["added_rules"]] == ["nets 203.0.113.7/32"]
    assert web["added_rules"][0]["evidence"]["flows"] == 1
    assert all(entry(third, ns)["added_rules"] == [] for ns in ("api", "db"))
    assert entry(third, "api")["previous_status"] == "Learning"

    fourth = data["04-dismissed"]
    db = entry(fourth, "db")
    assert (db["change"], db["stagedAction"], db["manifest"]) == ("removed", "Ignore", None)
    assert db["decision"]["decision"] == "dismiss" and db["decision"]["author"] == "alice"
    assert fourth["plan"]["remove"] == 1

    fifth = data["05-accepted-drift"]
    web = entry(fifth, "web")
    assert (web["stagedAction"], web["kind"], web["previous_stagedAction"]) == (
        "Set", "StagedNetworkPolicy", "Learn",
    )  # fmt: skip
    assert web["added_rules"] == [] and web["removed_rules"] == []
    assert [(r["peer"], r["ports"]) for r in web["drift"]] == [("namespace db", ["5432"])]
    assert fifth["plan"]["drifted"] == 1
    assert "**drift** in accepted `web`" in md["05-accepted-drift"]

    sixth = data["06-stale-rule"]
    stale = {(s["namespace"], s["rule"]["peer"]) for s in sixth["stale_rules"]}
    assert ("web", "nets 203.0.113.7/32") in stale
    assert [r["peer"] for r in entry(sixth, "web")["stale_rules"]] == [
        "namespace db", "nets 203.0.113.7/32",
    ]  # fmt: skip
    assert "### Stale rules" in md["06-stale-rule"]
    for step in STEPS:
        assert set(data[step]["counts"]) == {"excluded", "rejected"}
        assert len(md[step]) < 65_000
