"""The review scenario behind tests/golden_reports/ (helpers only, no tests here).

A small cluster walked through six runs with a fixed clock, each step changing one thing:

1. `01-first-run`: web -> api:8080 and api -> db:5432 every hour for 12 hours; every
   namespace gets its first policy;
2. `02-no-change`: 30 minutes later, no new flows: nothing changes;
3. `03-one-namespace-changed`: web starts calling a public address; only web gains a rule
   (api and db only move on to Stabilizing);
4. `04-dismissed`: `flowfence dismiss db`: its policy file goes away;
5. `05-accepted-drift`: `flowfence accept web`, then web starts calling db:5432: the accepted
   policy keeps its reviewed rules (stagedAction Set) and the new flow is drift;
6. `06-stale-rule`: more hours of the steady traffic; the public address (seen once) and the
   web -> db call are older than staleRulePeriod (6h) and proposed for removal.

`play` runs the steps through `flowfence.cli.app.main` and yields each step's report bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

from test_state_support import (
    T0,
    config_file,
    flow_rows,
    run_args,
    scope_file,
    stamp,
    steady,
    write_hour,
)

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden_reports"
STEPS = (
    "01-first-run",
    "02-no-change",
    "03-one-namespace-changed",
    "04-dismissed",
    "05-accepted-drift",
    "06-stale-rule",
)
REPORTS = ("report.json", "report.md")
LINKS = [("web", "api", 8080), ("api", "db", 5432)]
Main = Callable[[list[str]], int]


def _public(hour: int) -> list[dict[str, object]]:
    return flow_rows(
        T0 + timedelta(hours=hour, minutes=5),
        pair=False,
        source_namespace="web",
        source_name_aggr="web-*",
        dest_type="net",
        dest_namespace="-",
        dest_name_aggr="pub",
        dest_ip="203.0.113.7",
        dest_labels=[],
        dest_port=443,
    )


def _call(src: str, dst: str, port: int, hour: int) -> list[dict[str, object]]:
    return flow_rows(
        T0 + timedelta(hours=hour, minutes=15),
        source_namespace=src,
        dest_namespace=dst,
        source_name_aggr=f"{src}-*",
        dest_name_aggr=f"{dst}-*",
        dest_port=port,
    )


def play(root: Path, main: Main) -> Iterator[tuple[str, Path]]:
    """Run the scenario under `root`; yields (step, out directory) after each run."""
    flows, out = root / "flows", root / "out"
    scope = scope_file(root / "scope.yaml")
    config = config_file(root / "ff.yaml", staleRulePeriod="6h")
    opts = ["--config", str(scope), "--settings", str(config)]

    def run(hours: float) -> None:
        code = main(run_args(flows, out, T0 + timedelta(hours=hours), *opts))
        assert code == 0, f"run at +{hours}h exited {code}"

    def decide(verdict: str, ns: str, hours: float) -> None:
        args = [verdict, ns, "--reason", f"{verdict} in review", "--author", "alice"]
        args += ["--out", str(out), "--now", stamp(T0 + timedelta(hours=hours))]
        assert main(args) == 0, f"{verdict} {ns} failed"

    steady(flows, T0, 12, LINKS)
    run(12)
    yield STEPS[0], out
    run(12.5)
    yield STEPS[1], out
    write_hour(flows, _public(13), name="public")
    run(13.5)
    yield STEPS[2], out
    decide("dismiss", "db", 14)
    run(14)
    yield STEPS[3], out
    decide("accept", "web", 14.25)
    write_hour(flows, _call("web", "db", 5432, 14), name="drift")
    run(14.5)
    yield STEPS[4], out
    steady(flows, T0 + timedelta(hours=15), 7, LINKS)
    run(22)
    yield STEPS[5], out


def reports(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in REPORTS}
