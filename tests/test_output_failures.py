"""Failures writing outputs and state end in one line and an exit code, never a traceback, and
leave the previous state and outputs as they were: a symlink among the outputs, a broken
symlink among --existing-policies, and a disk that refuses the state's writes."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from conftest import FLOW_NOW, REPO, CliResult, FlowLog

Runner = Callable[[Sequence[str]], CliResult]
LATER = "2026-11-03T00:00:00Z"


def run_args(flows: Path, out: Path, *extra: str, now: str = FLOW_NOW) -> list[str]:
    return ["run", "--flows", str(flows), "--out", str(out), "--now", now, *extra]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every regular file under `out` (state included), but the lock's holder record."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != "lock"
    }


def one_line(result: CliResult) -> str:
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("flowfence: error: ")
    return lines[0]


@pytest.fixture
def first_run(run_cli: Runner, flowlog: FlowLog, tmp_path: Path) -> tuple[Path, Path]:
    flows = flowlog.write(tmp_path / "f.parquet", flowlog.pair(dest_port=5432))
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out)).code == 0
    return flows, out


def _link_outside(out: Path, outside: Path) -> Path:
    link = sorted((out / "policies").glob("*.yaml"))[0]
    link.unlink()
    link.symlink_to(outside)
    return link


def _link_dangling(out: Path, outside: Path) -> Path:
    link = sorted((out / "policies").glob("*.yaml"))[0]
    link.unlink()
    link.symlink_to(outside.parent / "no-such-file.yaml")
    return link


def _link_loop(out: Path, _outside: Path) -> Path:
    link = sorted((out / "policies").glob("*.yaml"))[0]
    link.unlink()
    link.symlink_to(link.name)  # itself
    return link


def _link_report(out: Path, outside: Path) -> Path:
    link = out / "report.md"
    link.unlink()
    link.symlink_to(outside)
    return link


def _link_folder(out: Path, outside: Path) -> Path:
    elsewhere = outside.parent / "elsewhere"
    (out / "policies").rename(elsewhere)
    (out / "policies").symlink_to(elsewhere, target_is_directory=True)
    return out / "policies"


@pytest.mark.parametrize(
    "make_link", [_link_outside, _link_dangling, _link_loop, _link_report, _link_folder]
)
def test_a_symlink_among_the_outputs_is_refused_before_anything_is_written(
    run_cli: Runner,
    first_run: tuple[Path, Path],
    tmp_path: Path,
    make_link: Callable[[Path, Path], Path],
) -> None:
    flows, out = first_run
    outside = tmp_path / "outside.yaml"
    outside.write_text("not flowfence's\n")
    link = make_link(out, outside)
    before = snapshot(out)
    elsewhere = snapshot(tmp_path / "elsewhere") if (tmp_path / "elsewhere").is_dir() else {}
    result = run_cli(run_args(flows, out, now=LATER))  # a later run: the state would move on
    assert result.code == 2
    line = one_line(result)
    if make_link is _link_folder:
        assert "outside" in line and str(out) in line and "symlink" in line
    else:
        assert f"{link} is a symlink" in line and "remove the link" in line
    # Nothing was followed out of the output directory, and nothing in it changed.
    assert outside.read_text() == "not flowfence's\n"
    assert snapshot(out) == before
    if elsewhere:
        assert snapshot(tmp_path / "elsewhere") == elsewhere


def test_a_broken_symlink_among_existing_policies_is_a_warning(
    run_cli: Runner, flowlog: FlowLog, tmp_path: Path
) -> None:
    flows = flowlog.write(tmp_path / "f.parquet", flowlog.pair(dest_port=5432))
    policies = tmp_path / "existing"
    policies.mkdir()
    (policies / "dangling.yaml").symlink_to(tmp_path / "no-such-policy.yaml")
    (policies / "loop.yaml").symlink_to("loop.yaml")
    out = tmp_path / "out"
    result = run_cli(run_args(flows, out, "--existing-policies", str(policies)))
    assert result.code == 0, result.err
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    for name in ("dangling.yaml", "loop.yaml"):
        assert f"{policies / name}: a broken symlink (missing target or loop); skipped" in warnings


def _limit_file_size() -> None:
    # A real failing write without root or a mount: files may not grow past 1 KB, so the
    # state's Parquet tables fail as on a full disk (EFBIG instead of ENOSPC). Python ignores
    # SIGXFSZ already; set again so the write fails rather than the process dying.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_a_failing_state_write_is_one_line_and_leaves_state_and_outputs(
    tmp_path: Path, run_cli: Runner
) -> None:
    flows = REPO / "fixtures" / "data" / "demo"  # tables of several KB
    out = tmp_path / "out"
    assert run_cli(run_args(flows, out)).code == 0
    before = snapshot(out)
    proc = subprocess.run(
        [sys.executable, "-m", "flowfence.cli.app", *run_args(flows, out, now=LATER)],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1
    line = one_line(CliResult(proc.returncode, proc.stdout, proc.stderr))
    assert f"cannot write state table {out / 'state'}/" in line
    assert "File too large" in line and "the state is unchanged (still generation 1)" in line
    assert proc.stdout == ""
    # Previous state, policies and reports intact; leftovers of the failed commit are only
    # whole tables the manifest does not name, which the next run collects.
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(
        k.startswith("state/") and k.endswith("-000002.parquet")
        for k in after.keys() - before.keys()
    )
    manifest = json.loads((out / "state" / "manifest.json").read_text())
    assert manifest["generation"] == 1
    # Space again: the next run completes.
    assert run_cli(run_args(flows, out, now=LATER)).code == 0
    assert json.loads((out / "state" / "manifest.json").read_text())["generation"] == 2
