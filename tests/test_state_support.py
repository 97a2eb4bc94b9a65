"""Helpers shared by the state, incremental, lifecycle, crash and watch tests (no tests here).

Flow logs are written as a real hive tree (`date=YYYY-MM-DD/hour=HH/<name>.parquet`) of raw
Calico rows (conftest.FlowLog); settings come from real scope and FlowfenceConfig YAML files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from conftest import CliResult, FlowLog

from flowfence.core import lock, partitions, times

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 10, 1, tzinfo=UTC)


# What the `run_cli` fixture (conftest.py) is, and the links most scenarios run.
RunCli = Callable[[Sequence[str]], CliResult]
LINKS = [("web", "api", 8080), ("api", "db", 5432)]


def ok(result: CliResult) -> CliResult:
    """`result` of a run that exited 0 (its stderr shown when not)."""
    assert result.code == 0, result.err
    return result


def stamp(moment: datetime) -> str:
    return times.rfc3339(moment)


def flow_rows(when: datetime, *, pair: bool = True, **fields: Any) -> list[dict[str, Any]]:
    """Raw rows of one connection starting at `when` (both reporters when `pair`)."""
    log = FlowLog()
    log.start = when
    return log.pair(0, **fields) if pair else [log.row(0, **fields)]


def write_hour(root: Path, rows: Iterable[Mapping[str, Any]], name: str = "flows") -> Path:
    """Write `rows` into the hour partition of the first row's start time."""
    rows = list(rows)
    first = datetime.fromtimestamp(rows[0]["start_time"], UTC)
    part = root / partitions.hour_path(first) / f"{name}.parquet"
    return FlowLog().write(part, rows)


def steady(root: Path, start: datetime, hours: int, pairs: Iterable[tuple[str, str, int]]) -> None:
    """One connection per (source ns, dest ns, port) in every hour from `start`."""
    links = list(pairs)
    for h in range(hours):
        at = start + timedelta(hours=h)
        rows = []
        for src, dst, port in links:
            rows += flow_rows(
                at + timedelta(minutes=10),
                source_namespace=src,
                dest_namespace=dst,
                dest_port=port,
                source_name_aggr=f"{src}-*",
                dest_name_aggr=f"{dst}-*",
            )
        write_hour(root, rows)


def scope_file(path: Path, **spec: Any) -> Path:
    body = {"interval": "20m", "initialLookback": "24h", "stabilizationPeriod": "6h", **spec}
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "PolicyRecommendationScope",
        "metadata": {"name": "default"},
        "spec": body,
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def config_file(path: Path, **keys: Any) -> Path:
    doc = {"apiVersion": "flowfence.io/v1alpha1", "kind": "FlowfenceConfig", **keys}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def run_args(flows: Path, out: Path, now: datetime, *extra: str | Path) -> list[str]:
    return ["run", "--flows", str(flows), "--out", str(out), "--now", stamp(now), *map(str, extra)]


def state_table(out: Path, name: str) -> pl.DataFrame:
    state = out / "state"
    manifest = json.loads((state / "manifest.json").read_text())
    return pl.read_parquet(state / manifest["tables"][name])


def comparable(out: Path) -> list[dict[str, Any]]:
    """The namespaces of report.json without the run-dependent status fields."""
    keep = ("namespace", "name", "manifest", "rules", "notes", "flags", "rhythm", "last_flow")
    return [{k: n[k] for k in keep} for n in report(out)["namespaces"]]


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "report.json").read_text())
    return data


def statuses(out: Path) -> dict[str, tuple[str, str]]:
    """(status, lastUpdated) per namespace, from report.json."""
    return {n["namespace"]: (n["status"], n["lastUpdated"]) for n in report(out)["namespaces"]}


def annotations(out: Path, ns: str) -> dict[str, str]:
    doc = yaml.safe_load((out / "policies" / f"{ns}.yaml").read_text())
    notes: dict[str, str] = doc["metadata"]["annotations"]
    return notes


def rules_of(out: Path, ns: str) -> list[dict[str, Any]]:
    for entry in report(out)["namespaces"]:
        if entry["namespace"] == ns:
            rules: list[dict[str, Any]] = entry["rules"]
            return rules
    raise KeyError(ns)


def has_rule(out: Path, ns: str, direction: str, peer: str, protocol: str, port: str) -> bool:
    return any(
        r["direction"] == direction
        and r["peer"] == f"namespace {peer}"
        and r["protocol"] == protocol
        and port in r["ports"]
        for r in rules_of(out, ns)
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes), the lock files left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (lock.LOCK_NAME, lock.OUT_LOCK_NAME)
    }


def outputs(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(out).items() if not k.startswith("state/")}


# ---- subprocesses ---------------------------------------------------------------------------


def spawn(args: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`flowfence <args>` in a new process (its own session, so signals reach only it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowfence.cli.app", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def paused(pause_file: Path, step: str) -> dict[str, str]:
    return {"FLOWFENCE_PAUSE_AT": step, "FLOWFENCE_PAUSE_FILE": str(pause_file)}


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """Wait until `path` exists (the process reached its pause point); return its text."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return path.read_text()
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited {proc.returncode} before pausing: {err}{out}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"process never reached {path}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
