from __future__ import annotations

from pathlib import Path

import pytest

from flowfence.core import atomic
from flowfence.core.errors import OutputError, RuntimeFailure


def test_write_bytes_replaces_and_skips_identical(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.yaml"
    assert atomic.write_bytes(target, b"one") is True
    assert target.read_bytes() == b"one"
    mtime = target.stat().st_mtime_ns
    assert atomic.write_bytes(target, b"one") is False
    assert target.stat().st_mtime_ns == mtime
    assert atomic.write_bytes(target, b"two") is True
    assert target.read_bytes() == b"two"
    # No temporary files are left behind.
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.yaml"]


def test_sync_tree_removes_files_no_longer_produced(tmp_path: Path) -> None:
    written, removed = atomic.sync_tree(
        tmp_path, {"policies/a.yaml": b"a", "policies/b.yaml": b"b"}, owned="policies"
    )
    assert written == ["policies/a.yaml", "policies/b.yaml"]
    assert removed == []
    (tmp_path / "report.md").write_text("not owned")
    written, removed = atomic.sync_tree(tmp_path, {"policies/a.yaml": b"a"}, owned="policies")
    assert written == []
    assert removed == ["policies/b.yaml"]
    assert (tmp_path / "report.md").exists()
    assert not (tmp_path / "policies" / "b.yaml").exists()


def test_sync_tree_refuses_paths_outside_root(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="outside"):
        atomic.sync_tree(tmp_path / "out", {"../escape.yaml": b"x"}, owned="policies")
    assert not (tmp_path / "escape.yaml").exists()


def test_failed_write_leaves_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    atomic.write_bytes(target, b"old")

    def boom(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(RuntimeFailure, match=f"cannot write {target}: disk full"):
        atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
