"""Crash-safe file output: write to a temporary file, fsync, rename, fsync the directory.

A run killed at any point leaves either the previous file or the new one, never a torn one.
Files whose bytes would not change are not rewritten, so a GitOps tree only changes when a
policy does and file modification times stay meaningful.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


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
    """Atomically replace `path` with `data`. Returns False when the bytes were already there."""
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


def _inside(root: Path, rel: str) -> Path:
    # Relative paths are built from validated names, but a path must never leave the root.
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"refusing to write outside {root}: {rel!r}")
    return target
