"""An ingest killed between putting its files in place and committing its manifest: `run`
reads none of those rows, and the next ingest keeps every committed row and leaves no garbage.

The writer is a real `flowfence ingest` process stopped at the checkpoint between the two
steps (`ingest-after-move` on disk, `ingest-after-upload` on the local S3 server) and killed
with SIGKILL there, which is exactly a crash in the window.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ingest_export import stored_rows
from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401
from test_state_support import kill, paused, spawn, wait_for

from flowfence.cli.app import main
from flowfence.core import ingest_commits
from flowfence.core.errors import FlowInputError
from flowfence.flows import sources

DATA = Path(__file__).resolve().parent / "ingest_data"
FIRST = DATA / "flows.log"  # namespaces shop and data, from 2026-11-01T00
SECOND = DATA / "es-export.ndjson"  # namespace batch, at 2026-11-01T02


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "in").mkdir()
    return (
        Path(shutil.copy(FIRST, tmp_path / "in" / FIRST.name)),
        Path(shutil.copy(SECOND, tmp_path / "in" / SECOND.name)),
    )


def _data_files(store: Path) -> set[str]:
    return {p.relative_to(store).as_posix() for p in store.glob("date=*/hour=*/*.parquet")}


def _uncommitted(rels: set[str], manifest: bytes) -> set[str]:
    ids = ingest_commits.committed_ids(manifest)
    return {r for r in rels if ingest_commits.input_id(r) not in ids}


def _namespaces(flows: str, out: Path, now: str) -> list[str]:
    assert main(["run", "--flows", flows, "--out", str(out), "--now", now]) == 0
    report = json.loads((out / "report.json").read_text())
    return sorted(n["namespace"] for n in report["namespaces"])


def test_run_skips_files_an_interrupted_ingest_never_committed(tmp_path: Path) -> None:
    first, second = _inputs(tmp_path)
    store = tmp_path / "store"
    assert main(["ingest", "--out", str(store), str(first)]) == 0
    committed, rows = _data_files(store), stored_rows(store)

    pause = tmp_path / "pause"
    proc = spawn(["ingest", "--out", str(store), str(second)], paused(pause, "ingest-after-move"))
    wait_for(pause, proc)
    kill(proc)
    manifest = (store / "_ingest" / "manifest.json").read_bytes()
    orphans = _data_files(store) - committed
    # The window is real: the killed writer's files sit in a partition, uncommitted.
    assert orphans and _uncommitted(orphans, manifest) == orphans

    # Neither the listing of an incremental run nor a full read sees them.
    assert {f.rel for f in sources.list_files(store)[0]} == committed
    assert stored_rows(store) == rows
    assert _namespaces(str(store), tmp_path / "out", "2026-11-01T04:00:00Z") == ["data", "shop"]

    # The next ingest drops the orphans and commits the input again; nothing committed is lost.
    assert main(["ingest", "--out", str(store), str(second)]) == 0
    manifest = (store / "_ingest" / "manifest.json").read_bytes()
    assert not _uncommitted(_data_files(store), manifest)
    assert committed < _data_files(store)
    assert len(json.loads(manifest)["entries"]) == 2
    assert stored_rows(store) == rows + 2
    assert not any((store / "_ingest" / "staging").iterdir())
    out = tmp_path / "out"
    assert _namespaces(str(store), out, "2026-11-01T06:00:00Z") == ["batch", "data", "shop"]


def test_a_first_ingest_killed_before_its_manifest_is_not_read(tmp_path: Path) -> None:
    """The store's manifest exists before its first file, so the reader knows it is a store."""
    first, _ = _inputs(tmp_path)
    store = tmp_path / "store"
    pause = tmp_path / "pause"
    proc = spawn(["ingest", "--out", str(store), str(first)], paused(pause, "ingest-after-move"))
    wait_for(pause, proc)
    kill(proc)
    assert _data_files(store)
    assert json.loads((store / "_ingest" / "manifest.json").read_bytes())["entries"] == {}
    with pytest.raises(FlowInputError, match="not committed yet"):
        sources.list_files(store)
    assert main(["run", "--flows", str(store), "--out", str(tmp_path / "out")]) == 2


def test_a_tree_without_a_manifest_is_read_whole(tmp_path: Path) -> None:
    """A copy of the data files without `_ingest/` is not a store: every file is read."""
    first, _ = _inputs(tmp_path)
    store = tmp_path / "store"
    assert main(["ingest", "--out", str(store), str(first)]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("_ingest"))
    assert stored_rows(copy) == stored_rows(store) > 0


def test_run_skips_objects_an_interrupted_s3_ingest_never_committed(s3: S3, tmp_path: Path) -> None:
    first, second = _inputs(tmp_path)
    url = s3.url("store")
    assert main(["ingest", "--out", url, str(first)]) == 0
    committed = set(s3.keys("store"))

    pause = tmp_path / "pause"
    proc = spawn(["ingest", "--out", url, str(second)], paused(pause, "ingest-after-upload"))
    wait_for(pause, proc)
    kill(proc)
    manifest = s3.get("store/_ingest/manifest.json")
    orphans = {k.removeprefix("store/") for k in set(s3.keys("store")) - committed}
    orphans.discard("_ingest/lock")  # the killed writer's lock object stays
    assert orphans and _uncommitted(orphans, manifest) == orphans

    listed = {f.rel for f in sources.list_files(url)[0]}
    assert listed == {k.removeprefix("store/") for k in committed if k.endswith(".parquet")}
    assert _namespaces(url, tmp_path / "out", "2026-11-01T04:00:00Z") == ["data", "shop"]

    # The lock of the killed writer is an object nobody holds; the operator removes it, as
    # the refusal says, and the next ingest drops the orphans and commits the input again.
    s3.fs.rm(f"{s3.bucket}/store/_ingest/lock")
    assert main(["ingest", "--out", url, str(second)]) == 0
    manifest = s3.get("store/_ingest/manifest.json")
    data = {k.removeprefix("store/") for k in s3.keys("store") if k.endswith(".parquet")}
    assert not _uncommitted(data, manifest)
    assert len(json.loads(manifest)["entries"]) == 2
    out = tmp_path / "out"
    assert _namespaces(url, out, "2026-11-01T06:00:00Z") == ["batch", "data", "shop"]


def test_a_first_s3_ingest_puts_its_manifest_before_any_object(s3: S3, tmp_path: Path) -> None:
    first, _ = _inputs(tmp_path)
    url = s3.url("store")
    pause = tmp_path / "pause"
    proc = spawn(["ingest", "--out", url, str(first)], paused(pause, "ingest-after-upload"))
    wait_for(pause, proc)
    kill(proc)
    assert any(k.endswith(".parquet") for k in s3.keys("store"))
    assert json.loads(s3.get("store/_ingest/manifest.json"))["entries"] == {}
    with pytest.raises(FlowInputError, match="not committed yet"):
        sources.list_files(url)


def test_run_skips_the_files_a_compaction_under_way_replaces(tmp_path: Path) -> None:
    """`ingest --compact` renames the merged file in before deleting the files it replaces;
    a reader in between reads the merged file only, and the next writer finishes the job."""
    first, _ = _inputs(tmp_path)
    again = tmp_path / "in" / "again.log"
    again.write_text("".join(first.read_text().splitlines(keepends=True)[:2]))
    store = tmp_path / "store"
    assert main(["ingest", "--out", str(store), str(first), str(again)]) == 0
    rows = stored_rows(store)
    hour = store / "date=2026-11-01" / "hour=00"
    old = {p.name for p in hour.iterdir()}
    assert len(old) == 2

    pause = tmp_path / "pause"
    compact = ["ingest", "--out", str(store), "--compact"]
    proc = spawn(compact, paused(pause, "compact-after-rename"))
    wait_for(pause, proc)
    kill(proc)
    merged = {p.name for p in hour.iterdir()} - old
    assert len(merged) == 1 and old < {p.name for p in hour.iterdir()}  # both are there
    listed = {f.rel for f in sources.list_files(store)[0] if f.unit == "date=2026-11-01/hour=00"}
    assert listed == {f"date=2026-11-01/hour=00/{name}" for name in merged}
    assert stored_rows(store) == rows

    # The next writer finishes the compaction: the merged file alone, the same rows.
    assert main(compact) == 0
    assert {p.name for p in hour.iterdir()} == merged
    assert stored_rows(store) == rows
