"""One run per state: a second run is refused naming the holder; a dead holder's lock is
taken over with a warning."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import CliResult
from test_state_support import T0, kill, paused, run_args, spawn, statuses, steady, wait_for

from flowfence.core import lock

RunCli = Callable[[Sequence[str]], CliResult]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_held_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    with lock.acquire(tmp_path) as held:
        assert held.took_over is None
        with pytest.raises(lock.LockHeld) as info, lock.acquire(tmp_path):
            pass
    message = str(info.value)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "another flowfence run" in message
    # What to do instead of deleting the file, which the lock's own rule forbids.
    assert "wait for it to finish, or check that process" in message
    assert f"do not delete {tmp_path / 'lock'}" in message
    # Released: the file stays, empty, and the lock can be taken again.
    assert (tmp_path / "lock").read_text() == ""
    with lock.acquire(tmp_path) as again:
        assert again.took_over is None
        holder = json.loads((tmp_path / "lock").read_text())
        assert holder["pid"] == os.getpid()


def test_a_dead_holders_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    pid = dead_pid()
    record = {"pid": pid, "host": socket.gethostname(), "started": "2026-10-01T00:00:00Z"}
    (tmp_path / "lock").write_text(json.dumps(record))
    with lock.acquire(tmp_path) as held:
        assert held.took_over is not None and held.took_over.pid == pid
        warning = held.warning or ""
    assert f"pid {pid} on host {socket.gethostname()}" in warning
    assert "no such process" in warning


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    root = tmp_path / "flows"
    steady(root, T0, 3, [("web", "api", 8080)])
    return root


def test_a_second_run_is_refused_while_one_is_going(
    flows: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    out, pause = tmp_path / "out", tmp_path / "pause"
    now = T0 + timedelta(hours=3)
    first = spawn(run_args(flows, out, now), paused(pause, "after-read"))
    try:
        wait_for(pause, first)
        second = run_cli(run_args(flows, out, now))
        assert second.code == 1
        assert f"locked by pid {first.pid} on host {socket.gethostname()}" in second.err
        assert len(second.err.splitlines()) == 1 and "Traceback" not in second.err
        assert not (out / "report.json").exists()
    finally:
        pause.unlink(missing_ok=True)  # let the first run go on
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert statuses(out)["web"][0] == "Learning"
    assert run_cli(run_args(flows, out, now)).code == 0  # and now it is free


def test_a_run_on_the_same_out_with_another_state_is_refused(
    flows: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    """Two processes, two --state directories, one --out: the second stops before writing."""
    out, pause = tmp_path / "out", tmp_path / "pause"
    now = T0 + timedelta(hours=3)
    first = spawn(
        [*run_args(flows, out, now), "--state", tmp_path / "a"], paused(pause, "after-read")
    )
    try:
        wait_for(pause, first)
        second = spawn([*run_args(flows, out, now), "--state", tmp_path / "b"])
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        assert f"output directory {out} is locked by pid {first.pid} on host" in err
        assert f"do not delete {out / lock.OUT_LOCK_NAME}" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not (out / "report.json").exists() and not (tmp_path / "b").exists()
    finally:
        pause.unlink(missing_ok=True)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    # Free again once the first has finished.
    assert run_cli([*run_args(flows, out, now), "--state", tmp_path / "b"]).code == 0


def test_a_killed_runs_lock_is_taken_over(flows: Path, tmp_path: Path, run_cli: RunCli) -> None:
    out, pause = tmp_path / "out", tmp_path / "pause"
    now = T0 + timedelta(hours=3)
    victim = spawn(run_args(flows, out, now), paused(pause, "after-lock"))
    wait_for(pause, victim)
    kill(victim)
    result = run_cli(run_args(flows, out, now))
    assert result.code == 0, result.err
    assert f"took over a stale state lock from pid {victim.pid}" in result.err
    assert "no such process" in result.err


# ---- the waiting mode (the ingest store's writers queue) --------------------------------------


def test_waiting_holders_of_one_process_queue_in_turn(tmp_path: Path) -> None:
    inside: list[int] = []
    overlaps: list[int] = []
    entered = threading.Event()

    def writer(n: int) -> None:
        with lock.acquire(tmp_path, name="store-lock", wait=True):
            entered.set()
            if inside:
                overlaps.append(n)
            inside.append(n)
            time.sleep(0.02)
            inside.remove(n)

    with lock.acquire(tmp_path, name="store-lock", wait=True):
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        assert not entered.wait(0.2)  # all four wait while this holder has it
    for thread in threads:
        thread.join(timeout=30)
    assert entered.is_set() and overlaps == [] and inside == []
    assert (tmp_path / "store-lock").read_text() == ""


_HOLD = """
import sys, time
from pathlib import Path
from flowfence.core import lock
directory, marker = Path(sys.argv[1]), Path(sys.argv[2])
with lock.acquire(directory, name="store-lock", wait=True):
    marker.write_text("held")
    while marker.exists():
        time.sleep(0.01)
"""


def test_a_waiting_holder_waits_for_another_process(tmp_path: Path) -> None:
    marker = tmp_path / "held"
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        # The other mode, meanwhile, is refused at once, naming the holder.
        with (
            pytest.raises(lock.LockHeld, match=f"pid {child.pid} on host"),
            lock.acquire(tmp_path, name="store-lock"),
        ):
            pass
        got = threading.Event()
        took_over: list[lock.Holder | None] = []

        def wait() -> None:
            with lock.acquire(tmp_path, name="store-lock", wait=True) as held:
                took_over.append(held.took_over)
                got.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert not got.wait(0.3)
        marker.unlink()
        waiter.join(timeout=60)
        assert got.is_set() and took_over == [None]  # released cleanly, not crashed
    finally:
        marker.unlink(missing_ok=True)
        child.wait(timeout=60)
    assert child.returncode == 0


def test_a_lock_path_that_is_a_directory_is_one_line_exit_1(
    flows: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "out"
    (out / "state" / "lock").mkdir(parents=True)
    result = run_cli(run_args(flows, out, T0 + timedelta(hours=3)))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"flowfence: error: lock file {out / 'state' / 'lock'} is a directory, which flowfence "
        "never makes there; move it out of the way"
    ]
    assert "Traceback" not in result.err and result.out == ""
    assert not (out / "policies").exists() and not (out / "report.json").exists()


def test_a_state_path_that_is_a_file_is_one_line_exit_1(
    flows: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "state").write_text("not a directory\n")
    result = run_cli(run_args(flows, out, T0 + timedelta(hours=3)))
    assert result.code == 1
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err
    assert f"{out / 'state'} (or a folder above it) is a file, not a directory" in result.err
    assert (out / "state").read_text() == "not a directory\n"
