"""The summary `flowfence run` prints: a table on a terminal; plain, full, tab-separated lines
anywhere else (a CronJob's log, a pipe), never cut to 80 columns (`calic…`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import FLOW_NOW, REPO, CliResult, FlowLog

Runner = Callable[[Sequence[str]], CliResult]
LONG = "team-" + "a" * 50 + "-prod"  # 60 characters, a valid namespace name
NAMES = ("calico-system", "tigera-elasticsearch-operator", LONG)
BOX = set("│┃┏┓┗┛━─┡┩└┘┌┐")
HEADER = "namespace\tstatus\taction\tchange\tegress\tingress\tdrift\tstale\tnotes"


def _flows(flowlog: FlowLog, path: Path) -> Path:
    rows = []
    for n, src in enumerate(NAMES):
        dst = NAMES[(n + 1) % len(NAMES)]
        rows += flowlog.pair(
            source_namespace=src, dest_namespace=dst, dest_port=8000 + n,
            source_name_aggr=f"{src}-*", dest_name_aggr=f"{dst}-*",
        )  # fmt: skip
    return flowlog.write(path, rows)


def _args(flows: Path, out: Path) -> list[str]:
    # The default selector leaves calico-* and tigera-* out; this one takes every namespace.
    scope = out.parent / "scope.yaml"
    scope.write_text(
        "apiVersion: projectcalico.org/v3\nkind: PolicyRecommendationScope\n"
        "metadata: {name: default}\nspec: {namespaceSpec: {selector: all()}}\n"
    )
    return ["run", "--flows", str(flows), "--out", str(out), "--now", FLOW_NOW,
            "--config", str(scope)]  # fmt: skip


def _check_plain(text: str) -> None:
    lines = text.splitlines()
    assert lines[0].startswith("flowfence: ") and " .. " in lines[0]
    assert lines[1] == HEADER
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[2:] if "\t" in line}
    assert set(rows) == set(NAMES)  # every name in full
    for cells in rows.values():
        assert len(cells) == len(HEADER.split("\t"))
        assert all(cells)  # empty cells are "-", so columns never shift
        assert cells[1:4] == ["Learning", "Learn", "created +2 -0"]
    assert "…" not in text and not BOX & set(text) and "\x1b" not in text
    assert any(line.startswith("Plan: 3 to add") for line in lines)


def test_summary_on_a_pipe_is_plain_full_lines(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    result = run_cli(_args(_flows(flowlog, tmp_path / "f.parquet"), tmp_path / "out"))
    assert result.code == 0, result.err
    _check_plain(result.out)


def test_summary_through_a_real_pipe(flowlog: FlowLog, tmp_path: Path) -> None:
    """The process's stdout is a pipe, as in a CronJob's container log."""
    flows = _flows(flowlog, tmp_path / "f.parquet")
    done = subprocess.run(
        [sys.executable, "-m", "flowfence.cli.app", *_args(flows, tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm-256color"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _check_plain(done.stdout)


def test_summary_on_a_terminal_is_a_table(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli(_args(_flows(flowlog, tmp_path / "f.parquet"), tmp_path / "out"))
    assert result.code == 0, result.err
    assert BOX & set(result.out) and HEADER not in result.out
    assert all(name in result.out for name in NAMES)


def test_replay_on_a_pipe_prints_full_policy_names(flowlog: FlowLog, tmp_path: Path) -> None:
    """`flowfence replay` in a CronJob: its tables are plain lines with every policy name in
    full (a rich table piped was cut: `snp:team-aaaa…`)."""
    flows = _flows(flowlog, tmp_path / "f.parquet")
    out = tmp_path / "out"
    ran = subprocess.run(
        [sys.executable, "-m", "flowfence.cli.app", *_args(flows, out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    done = subprocess.run(
        [sys.executable, "-m", "flowfence.cli.app", "replay", "--policies",
         str(out / "policies"), "--flows", str(flows)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "80", "TERM": "xterm-256color"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "…" not in text and not BOX & set(text) and "\x1b" not in text
    rows = [line.split("\t") for line in text.splitlines() if line.startswith("namespace-isol")]
    policies = {cells[1] for cells in rows}
    assert policies == {f"snp:{ns}/namespace-isolation.{ns}" for ns in NAMES}
    assert all(len(cells) == 9 and cells[3] != "0" for cells in rows)  # each allowed flows
