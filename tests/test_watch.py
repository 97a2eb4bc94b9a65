"""`flowfence run --watch`: runs every interval until SIGTERM/SIGINT, finishing the run in
progress. Real processes, real signals; `--watch-every` (hidden) shortens the interval."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import CliResult
from test_state_support import flow_rows, paused, report, spawn, wait_for, write_hour

RunCli = Callable[[Sequence[str]], CliResult]


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A connection two hours ago by the wall clock: watch mode reads the clock."""
    root = tmp_path / "flows"
    when = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rows = flow_rows(
        when,
        source_namespace="web",
        dest_namespace="api",
        source_name_aggr="web-*",
        dest_name_aggr="api-*",
    )
    write_hour(root, rows)
    return root


def watch_args(flows: Path, out: Path, every: float) -> list[str]:
    return ["run", "--flows", str(flows), "--out", str(out), "--watch", "--watch-every", str(every)]


class Lines:
    """Collects a process's stderr lines in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line in list(self.lines)):
                return
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r} in {self.lines}")

    def text(self) -> str:
        self.thread.join(timeout=10)
        return "".join(self.lines)


def test_sigterm_finishes_the_run_in_progress(flows: Path, tmp_path: Path) -> None:
    out, pause = tmp_path / "out", tmp_path / "pause"
    proc = spawn(watch_args(flows, out, 0.2), paused(pause, "after-read"))
    wait_for(pause, proc)  # the first run is in progress, between reading and writing
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None  # still finishing its run
    pause.unlink()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after the run in progress" in err
    assert "run 1 done" in err and "run 2" not in err
    assert "stopped by SIGTERM after 1 run(s)" in err
    assert report(out)["namespaces"][0]["namespace"] == "api"  # the run was written
    assert (out / "policies" / "web.yaml").exists()


def test_runs_repeat_until_sigint(flows: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = spawn(watch_args(flows, out, 0.3))
    lines = Lines(proc)
    lines.wait_for("run 3 done")
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 0
    assert time.monotonic() - began < 10  # it does not wait for the next tick
    text = lines.text()
    assert "stopped by SIGINT" in text
    assert (out / "report.json").exists()


def test_a_second_signal_stops_at_once(flows: Path, tmp_path: Path) -> None:
    out, pause = tmp_path / "out", tmp_path / "pause"
    proc = spawn(watch_args(flows, out, 0.2), paused(pause, "after-read"))
    wait_for(pause, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted by a second SIGTERM" in err
    assert not (out / "report.json").exists()
    assert (out / "state" / "lock").read_text() == ""  # released on the way out


def test_watch_takes_the_clock(flows: Path, tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli([*watch_args(flows, tmp_path / "out", 1), "--now", "2026-10-01T00:00:00Z"])
    assert result.code == 2
    assert "--now cannot be combined with --watch" in result.err
