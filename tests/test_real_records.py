"""Published Calico Enterprise flow records, end to end: every record in tests/calico_records
(provenance in its PROVENANCE.md) is ingested, `flowfence run` learns from them in each flavor,
and replaying the run's own output over the same flows denies nothing (`--fail-on-deny` exits
0).

The records span 2018 to 2022, so the run looks back far enough to see all of them; every other
input is the default a new user would have, and the run is repeated with every namespace selected
(most records are of system namespaces, which the default selector leaves out).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml
from conftest import CliResult
from published_records import COUNTS, all_documents, record_files

RunCli = Callable[[Sequence[str]], CliResult]
FLAVORS = ("calico-enterprise", "calico", "kubernetes")
# After the newest record (2022-08-04); the lookback reaches the oldest (2018-09-14).
NOW = "2022-08-05T00:00:00Z"
LOOKBACK = "40000h"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    from flowfence.cli.app import main

    root = tmp_path_factory.mktemp("records")
    summary = root / "summary.json"
    # The CLI as a user runs it, its JSON summary captured through a file to keep capsys out of
    # a module fixture.
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["ingest", *map(str, record_files()), "--out", str(root / "store"),
                     "--output", "json"])  # fmt: skip
    assert code == 0, buffer.getvalue()
    summary.write_text(buffer.getvalue())
    return root / "store", json.loads(buffer.getvalue())


def _scope(path: Path, selector: str | None) -> Path:
    spec: dict[str, object] = {"initialLookback": LOOKBACK}
    if selector is not None:
        spec["namespaceSpec"] = {"selector": selector}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "PolicyRecommendationScope",
                "metadata": {"name": "default"},
                "spec": spec,
            }
        )
    )
    return path


def test_every_published_record_is_ingested(store: tuple[Path, dict[str, object]]) -> None:
    _, summary = store
    documents = all_documents()
    assert len(documents) == sum(COUNTS.values())
    text = json.dumps(summary)
    assert summary["rows"] == len(documents), text
    assert summary["malformed"] == 0, text


# Most published records are of Tigera's own components (calico-monitoring, tigera-*,
# kube-system), which the default namespace selector leaves out; all() learns them too.
SELECTORS = (None, "all()")
SYSTEM_NAMESPACES = {"calico-monitoring", "kube-system", "tigera-elasticsearch"}


@pytest.mark.parametrize("selector", SELECTORS)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_runs_own_output_replays_over_the_records_without_a_denial(
    store: tuple[Path, dict[str, object]],
    tmp_path: Path,
    run_cli: RunCli,
    flavor: str,
    selector: str | None,
) -> None:
    flows, _ = store
    out = tmp_path / "out"
    scope = _scope(tmp_path / "scope.yaml", selector)
    ran = run_cli(
        ["run", "--flows", flows, "--out", out, "--now", NOW, "--config", scope,
         "--flavor", flavor, "--output", "json"]
    )  # fmt: skip
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    policies = sorted(p.name for p in (out / "policies").glob("*.yaml"))
    # The allowed records name these namespaces; each gets a policy.
    learned = {ns["namespace"] for ns in report["namespaces"] if ns["rules"]}
    assert learned, ran.out
    assert {f"{ns}.yaml" for ns in learned} <= set(policies)
    # Calico's own tiers (allow-cnx in the 2019 records, allow-tigera, calico-system) are known:
    # nothing is flagged as decided by a tier of unknown order and learned again.
    assert report["flagged"] == [], json.dumps(report["flagged"])
    if selector == "all()":
        assert learned >= SYSTEM_NAMESPACES, ran.out
    else:
        assert not SYSTEM_NAMESPACES & learned, ran.out

    replayed = run_cli(
        ["replay", "--policies", out / "policies", "--flows", flows, "--output", "json",
         "--fail-on-deny"]
    )  # fmt: skip
    assert replayed.code == 0, replayed.out + replayed.err
    result = json.loads(replayed.out)
    assert result["denied"] == [] and result["would_deny"] is False
    summary = result["summary"]
    assert summary["denied_edges"] == 0
    # Nor undetermined: the records' only address-less external peer is `aws`, one address.
    assert summary["undetermined_edges"] == 0, json.dumps(result["undetermined"])
    # Something was replayed: every allowed record's edge was evaluated.
    assert summary["allowed_edges"] > 0, json.dumps(summary)
