"""Shared test fixtures, generic on purpose: the bundled demo inputs, a writer of raw Calico
flow-log Parquet files (the shape Felix writes: Unix-second times, `-` placeholders, policies in
a struct), and a runner for `flowfence.cli.app.main` that captures stdout and stderr.

Fixtures here are additive: a test module may define its own fixtures of other names freely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

# Speed is measured in bench/, not here: on two cores shared by xdist workers a property test's
# example can take longer than Hypothesis' default 200 ms deadline without anything being wrong.
settings.register_profile("flowfence", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("flowfence")

# The window the demo data covers; `--now` at its end reads all of it with the 24h lookback.
FLOW_START = datetime(2026, 11, 1, tzinfo=UTC)
FLOW_NOW = "2026-11-02T00:00:00Z"
PROFILE_ALLOW = "0|__PROFILE__|__PROFILE__.kns.{ns}|allow|0"

_TEXT = (
    "source_type", "source_namespace", "source_name_aggr", "source_ip",
    "dest_type", "dest_namespace", "dest_name_aggr", "dest_ip",
    "proto", "action", "reporter",
    "dest_service_namespace", "dest_service_name", "dest_service_port", "host",
)  # fmt: skip
_COUNTERS = ("num_flows", "bytes_in", "bytes_out", "packets_in", "packets_out")
_TEXT_LIST = pa.list_(pa.string())
SCHEMA = pa.schema(
    [
        ("start_time", pa.int64()),
        ("end_time", pa.int64()),
        *((name, pa.string()) for name in _TEXT),
        ("source_labels", _TEXT_LIST),
        ("dest_labels", _TEXT_LIST),
        ("dest_port", pa.int32()),
        ("dest_service_port_num", pa.int32()),
        ("dest_domains", _TEXT_LIST),
        (
            "policies",
            pa.struct([("enforced_policies", _TEXT_LIST), ("pending_policies", _TEXT_LIST)]),
        ),
        *((name, pa.int64()) for name in _COUNTERS),
    ]
)


@dataclass(frozen=True)
class DemoInputs:
    """The bundled demo: flow logs, the existing policy folder and the namespaces dump."""

    flows: Path
    policies: Path
    namespaces: Path
    now: str = FLOW_NOW

    def run_args(self, out: Path, *extra: str) -> list[str]:
        """`flowfence run` arguments over the demo, writing to `out`."""
        return [
            "run",
            "--flows",
            str(self.flows),
            "--out",
            str(out),
            "--now",
            self.now,
            "--namespaces",
            str(self.namespaces),
            "--existing-policies",
            str(self.policies),
            *extra,
        ]


class FlowLog:
    """Builds raw flow-log rows and writes them as one Parquet file.

    `row(**fields)` starts from an allowed TCP/80 pod-to-pod row reported by the source, at
    FLOW_START, whose trace is a profile allow of the reporting namespace. `policies` may be a
    list (used as both enforced and pending trace) or a mapping with either key. `at` shifts
    the row's 5-minute interval by that many minutes.
    """

    start = FLOW_START

    def row(self, at: int = 0, **fields: Any) -> dict[str, Any]:
        begin = int((self.start + timedelta(minutes=at)).timestamp())
        row: dict[str, Any] = {
            "start_time": begin,
            "end_time": begin + 300,
            "source_type": "wep",
            "source_namespace": "shop",
            "source_name_aggr": "web-*",
            "source_ip": "-",
            "source_labels": ["app=web"],
            "dest_type": "wep",
            "dest_namespace": "db",
            "dest_name_aggr": "pg-*",
            "dest_ip": "-",
            "dest_labels": ["app=pg"],
            "dest_port": 80,
            "proto": "tcp",
            "action": "allow",
            "reporter": "src",
            "dest_service_namespace": "-",
            "dest_service_name": "-",
            "dest_service_port": "-",
            "dest_service_port_num": None,
            "dest_domains": [],
            "num_flows": 1,
            "bytes_in": 100,
            "bytes_out": 200,
            "packets_in": 2,
            "packets_out": 3,
            "host": "node-1",
        }
        row.update(fields)
        if "policies" not in fields:
            local = row["source_namespace"] if row["reporter"] == "src" else row["dest_namespace"]
            row["policies"] = [PROFILE_ALLOW.format(ns=local)]
        policies = row["policies"]
        if not isinstance(policies, Mapping):
            policies = {"enforced_policies": list(policies), "pending_policies": list(policies)}
        row["policies"] = {
            "enforced_policies": policies.get("enforced_policies"),
            "pending_policies": policies.get("pending_policies"),
        }
        unknown = set(row) - set(SCHEMA.names)
        if unknown:
            raise KeyError(f"unknown flow-log columns {sorted(unknown)}")
        return row

    def pair(self, at: int = 0, **fields: Any) -> list[dict[str, Any]]:
        """A pod-to-pod connection as Felix logs it: the `src` row and the `dst` row."""
        return [
            self.row(at, **{**fields, "reporter": "src"}),
            self.row(at, **{**fields, "reporter": "dst"}),
        ]

    def write(self, path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write `rows` to `path` (a `.parquet` file; parents are created)."""
        table = pa.Table.from_pylist([dict(r) for r in rows], schema=SCHEMA)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        return path


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session")
def demo_inputs() -> DemoInputs:
    return DemoInputs(
        flows=REPO / "fixtures" / "data" / "demo",
        policies=REPO / "fixtures" / "policies",
        namespaces=REPO / "fixtures" / "namespaces.yaml",
    )


@pytest.fixture(scope="session")
def flowlog() -> FlowLog:
    return FlowLog()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[Sequence[str]], CliResult]:
    """Run `flowfence.cli.app.main(args)`; returns the exit code and what it printed."""
    from flowfence.cli.app import main

    def run(args: Sequence[str]) -> CliResult:
        capsys.readouterr()  # drop anything printed before this call
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
