"""One run at a time per state directory.

The lock is the file `lock` in the state directory, held with `flock` for the whole run and
holding the holder's pid, host and start time (JSON) for messages. The kernel releases a
`flock` when its process dies, however it dies, so a lock whose file still names a holder but
that nobody holds is stale: the next run takes it over with a warning naming the dead holder.
A lock another process holds is refused with a message naming it (exit 1). A clean exit
empties the file, so a non-empty file found unlocked always means a crashed run.

The file is never deleted: deleting a locked file lets a third process lock a fresh inode
while the first still holds the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowfence.core.errors import StateError

LOCK_NAME = "lock"


class LockHeld(StateError):
    """Another run holds the state lock."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"


@dataclass(frozen=True)
class Lock:
    path: Path
    holder: Holder
    took_over: Holder | None  # the crashed run whose lock this run took over

    @property
    def warning(self) -> str | None:
        if self.took_over is None:
            return None
        alive = ""
        if self.took_over.host == self.holder.host and not pid_alive(self.took_over.pid):
            alive = " (no such process)"
        return (
            f"took over a stale state lock from {self.took_over.describe()}{alive}; "
            "that run did not finish"
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 4096):
        raw += chunk
    if not raw.strip():
        return None
    try:
        data: Any = json.loads(raw)
        return Holder(int(data["pid"]), str(data["host"]), str(data["started"]))
    except (ValueError, KeyError, TypeError):
        return Holder(-1, "unknown", "unknown")


def _write(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)


@contextlib.contextmanager
def acquire(directory: Path) -> Iterator[Lock]:
    """Hold the lock of `directory` (created if missing) for the `with` block.

    Raises LockHeld when another live process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            who = holder.describe() if holder else "another process (starting up)"
            raise LockHeld(
                f"state {directory} is locked by {who}: another flowfence run is using it; "
                f"wait for it to finish (or, if no run is going, delete {path})"
            ) from None
        previous = _read_holder(fd)
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        me = Holder(os.getpid(), socket.gethostname(), started)
        _write(fd, (json.dumps(me.__dict__, sort_keys=True) + "\n").encode())
        try:
            yield Lock(path, me, previous)
        finally:
            # Emptied before unlocking: an unlocked file that names a holder means a crash.
            _write(fd, b"")
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
