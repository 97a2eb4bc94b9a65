"""One writer at a time: a lock file in a directory, held with `flock`.

Two users, two modes of the same lock:

- the state directory and the output directory of a run (`acquire(state)`,
  `acquire(out, name=OUT_LOCK_NAME)`): a second run on either is refused at once (LockHeld,
  exit 1) with a message naming the holder;
- the ingest store (`acquire(store / "_ingest", wait=True)`): writers queue, each commit
  waits for the one before it.

While held, the file holds the holder's pid, host and start time (JSON) for messages. The
kernel releases a `flock` when its process dies, however it dies, so a file that names a
holder but that nobody holds is stale: the next holder takes it over and `Lock.warning` names
the dead one. A clean release empties the file, so a non-empty file found unlocked always
means a crashed holder.

The file is never deleted: deleting a locked file lets a third process lock a fresh inode
while the first still holds the old one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flowfence.core import times
from flowfence.core.errors import StateError

LOCK_NAME = "lock"
OUT_LOCK_NAME = ".flowfence-lock"  # in DIR, beside policies/ (the .gitignore keeps it out of git)


class LockHeld(StateError):
    """Another run holds the state lock."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str

    @classmethod
    def me(cls) -> Holder:
        """This process, starting now."""
        return cls(os.getpid(), socket.gethostname(), times.rfc3339(times.now()))

    def record(self) -> bytes:
        """The JSON a lock file or lock object holds."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"


@dataclass(frozen=True)
class Lock:
    path: Path
    holder: Holder
    took_over: Holder | None  # the crashed holder whose lock this one took over

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


def _write(fd: int, data: bytes, *, sync: bool) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    if sync:
        os.fsync(fd)


# Threads of this process queue on a lock of their own before the kernel's, one per lock file,
# so at most one thread per process waits in `flock` and a held lock is never entered twice.
_in_process: dict[Path, threading.Lock] = {}
_in_process_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _in_process_guard:
        return _in_process.setdefault(path.resolve(), threading.Lock())


def _refused(directory: Path, path: Path, holder: Holder | None, what: str) -> LockHeld:
    who = holder.describe() if holder else "another process (starting up)"
    # Never advise deleting the file (module doc): the kernel frees the lock when its holder
    # exits, however it exits, so a held lock always means a live process.
    return LockHeld(
        f"{what} {directory} is locked by {who}: another flowfence run is using it; "
        f"wait for it to finish, or check that process (the lock frees itself when it exits; "
        f"do not delete {path})"
    )


def _open(directory: Path, path: Path) -> int:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StateError(f"{directory} (or a folder above it) is a file, not a directory") from None
    except OSError as exc:
        raise StateError(f"cannot make directory {directory}: {exc.strerror or exc}") from None
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise StateError(
            f"lock file {path} is a directory, which flowfence never makes there; "
            "move it out of the way"
        ) from None
    except OSError as exc:
        raise StateError(f"cannot open lock file {path}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def acquire(
    directory: Path, *, name: str = LOCK_NAME, wait: bool = False, what: str = "state"
) -> Iterator[Lock]:
    """Hold the lock file `directory/name` (both created if missing) for the `with` block.

    `wait`: block until the lock is free. Without it, LockHeld when another holder (another
    process, or another thread or `with` block of this one) has it; `what` names the
    directory in its message ("state", "output directory")."""
    path = directory / name
    fd = _open(directory, path)
    try:
        in_process = _thread_lock(path)
        if not in_process.acquire(blocking=wait):
            raise _refused(directory, path, _read_holder(fd), what)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _refused(directory, path, _read_holder(fd), what) from None
            previous = _read_holder(fd)
            me = Holder.me()
            # A crashed process's record survives in the page cache; syncing it also survives
            # a power cut. Worth it once per run, not on every store commit (many a second
            # under `receive`, each already syncing its files), so waiting holders skip it.
            _write(fd, me.record() + b"\n", sync=not wait)
            try:
                yield Lock(path, me, previous)
            finally:
                # Emptied before unlocking: an unlocked file that names a holder means a crash.
                _write(fd, b"", sync=not wait)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            in_process.release()
    finally:
        os.close(fd)
