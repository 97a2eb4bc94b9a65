"""Walk a generated cluster through time with `--now` (issue 5, "Done when").

One day of the generator's demo shop plus a rare connection seen once, then runs an hour, seven
hours and eight hours later; before the last, a new connection between two namespaces arrives
in a new partition. Statuses are read from report.json and from the manifests' annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import CliResult
from test_state_support import (
    T0,
    annotations,
    flow_rows,
    has_rule,
    run_args,
    scope_file,
    stamp,
    statuses,
    write_hour,
)

from flowfence.fixtures.generate import generate

RunCli = Callable[[Sequence[str]], CliResult]
NOW = T0 + timedelta(days=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("walk")
    flows = root / "flows"
    generate("demo", flows, seed=11, rows=3000, start=T0, hours=24)
    # A rare connection, seen once, 21 hours before the first run: inside the lookback.
    rare = flow_rows(
        T0 + timedelta(hours=3, minutes=7),
        source_namespace="batch",
        source_name_aggr="backup-*",
        dest_namespace="shipping",
        dest_name_aggr="shipping-*",
        dest_port=7777,
        proto="udp",
    )
    write_hour(flows, rare, name="rare")
    return root


def test_walk_through_time(cluster: Path, tmp_path: Path, run_cli: RunCli) -> None:
    flows, out = cluster / "flows", tmp_path / "out"
    scope = scope_file(tmp_path / "scope.yaml")  # interval 20m, stabilization 6h

    def run(at: timedelta) -> dict[str, tuple[str, str]]:
        result = run_cli(run_args(flows, out, NOW + at, "--config", scope))
        assert result.code == 0, result.err
        return statuses(out)

    first = run(timedelta(0))
    learned = {ns for ns in first if (out / "policies" / f"{ns}.yaml").exists()}
    assert len(learned) >= 8
    assert all(first[ns] == ("Learning", stamp(NOW)) for ns in learned)
    for ns in learned:
        notes = annotations(out, ns)
        assert notes["policyrecommendation.tigera.io/status"] == "Learning"
        assert notes["policyrecommendation.tigera.io/lastUpdated"] == stamp(NOW)
    # The rare connection, seen once inside the lookback, is in both namespaces' rules.
    assert has_rule(out, "batch", "egress", "shipping", "UDP", "7777")
    assert has_rule(out, "shipping", "ingress", "batch", "UDP", "7777")

    # An hour later, no new flows: unchanged for more than 2 x interval.
    later = run(timedelta(hours=1))
    assert all(later[ns] == ("Stabilizing", stamp(NOW)) for ns in learned)
    assert annotations(out, "batch")["policyrecommendation.tigera.io/status"] == "Stabilizing"

    # After the stabilization period: Stable.
    settled = run(timedelta(hours=7))
    assert all(settled[ns] == ("Stable", stamp(NOW)) for ns in learned)

    # A new connection frontend -> payment on a new port, in a new partition.
    new = flow_rows(
        NOW + timedelta(hours=7, minutes=20),
        source_namespace="frontend",
        source_name_aggr="frontend-*",
        dest_namespace="payment",
        dest_name_aggr="payment-*",
        dest_port=9443,
    )
    write_hour(flows, new, name="new")
    changed = run(timedelta(hours=8))
    moved = stamp(NOW + timedelta(hours=8))
    assert changed["frontend"] == ("Learning", moved)  # its egress changed
    assert changed["payment"] == ("Learning", moved)  # its ingress changed
    assert annotations(out, "payment")["policyrecommendation.tigera.io/lastUpdated"] == moved
    others = learned - {"frontend", "payment"}
    assert others and all(changed[ns] == ("Stable", stamp(NOW)) for ns in others)
    assert has_rule(out, "frontend", "egress", "payment", "TCP", "9443")
    # The rare flow is still learned: the state keeps it although no run read it again.
    assert has_rule(out, "batch", "egress", "shipping", "UDP", "7777")
