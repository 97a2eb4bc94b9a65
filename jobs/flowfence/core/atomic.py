"""Crash-safe file output: write to a temporary file, fsync, rename, fsync the directory.

A run killed at any point leaves either the previous file or the new one, never a torn one.
Files whose bytes would not change are not rewritten, so a GitOps tree only changes when a
policy does and file modification times stay meaningful.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from flowfence.core.errors import OutputError, RuntimeFailure


def fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (a rename or unlink in it), to disk.

    A rename is durable only once its directory is synced, so every writer here syncs the
    file before renaming it and the directory after."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> bool:
    """Atomically replace `path` with `data`. Returns False when the bytes were already there.

    OutputError when `path` is a symlink: the rename would silently replace someone's link,
    and reading through it (to compare) could follow it anywhere. RuntimeFailure naming the
    path when the write fails (disk full, permissions); the previous file is then intact."""
    if path.is_symlink():
        raise _symlink(path)
    try:
        return _replace(path, data)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}") from exc


def _replace(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync(path.parent)
    return True


def write_text(path: Path, text: str) -> bool:
    return write_bytes(path, text.encode("utf-8"))


def sync_tree(root: Path, files: Mapping[str, bytes], *, owned: str) -> tuple[list[str], list[str]]:
    """Make `root/owned/` hold exactly the `files` under it (relative paths, '/'-separated).

    Files are written atomically, unchanged ones are left alone, and files under `owned/` that
    are no longer produced (a namespace that disappeared) are removed. Returns (written,
    removed) relative paths, sorted.
    """
    written: list[str] = []
    for rel, data in sorted(files.items()):
        target = _inside(root, rel)
        if write_bytes(target, data):
            written.append(rel)
    removed: list[str] = []
    owned_dir = root / owned
    if owned_dir.is_dir():
        for path in sorted(owned_dir.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel not in files and not path.name.startswith("."):
                path.unlink()
                removed.append(rel)
        if removed:
            fsync(owned_dir)
    return written, removed


def check_writable(root: Path, rels: Iterable[str]) -> None:
    """OutputError for the first of `rels` that write_bytes/sync_tree would refuse, so a run can
    refuse before it commits anything rather than halfway through its outputs."""
    for rel in sorted(rels):
        target = _inside(root, rel)
        if target.is_symlink():
            raise _symlink(target)


def _symlink(path: Path) -> OutputError:
    return OutputError(
        f"{path} is a symlink; flowfence writes only regular files it owns there: "
        "remove the link (or point the output somewhere else)"
    )


def _inside(root: Path, rel: str) -> Path:
    # Relative paths are built from validated names, but a path must never leave the root,
    # not even through a symlinked folder (`policies` -> elsewhere). The file itself is not
    # resolved: write_bytes refuses a symlink rather than write through it.
    target = root / rel
    if not target.parent.resolve().is_relative_to(root.resolve()):
        raise OutputError(f"refusing to write {rel} outside {root} (is a folder a symlink?)")
    return target
