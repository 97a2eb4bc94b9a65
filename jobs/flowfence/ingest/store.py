"""The partitioned flow store that `ingest` and `receive` write: layout, manifest, commits.

Layout (readable by `sources.bind_flows`, which skips `_`-prefixed directories and the files
of inputs the manifest does not commit, core/ingest_commits.py)::

    STORE/date=YYYY-MM-DD/hour=HH/ingest-<id>-<chunk>_<n>.parquet   rows of one input
    STORE/date=YYYY-MM-DD/hour=HH/compact-<uuid>.parquet            after --compact
    STORE/_ingest/manifest.json   every ingested input: sha256 -> what it added
    STORE/_ingest/lock            core/lock.py's lock (waiting mode), held while the store changes
    STORE/_ingest/staging/        chunks being written, invisible to readers

An input (a file, the unread tail of a growing file, or one HTTP batch) is written to staging
first, then committed under the lock: every file is fsync'd and renamed into its partition,
the partition directories are fsync'd, and only then is the manifest replaced atomically. A
crash after the renames leaves files whose `<id>` (the first 16 hex digits of the input's
sha256) is not in the manifest; readers skip them, and the next writer removes them before
doing anything else, so an input is either in the store once, with its manifest entry, or not
at all, for readers as for writers.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from flowfence.core import atomic, checkpoints, lock, partitions, sql
from flowfence.core.errors import RuntimeFailure, StateError
from flowfence.core.ingest_commits import DATA_NAME as _OURS
from flowfence.core.ingest_commits import ID_LENGTH, MANIFEST_VERSION, input_id

__all__ = ["ID_LENGTH", "MANIFEST_VERSION", "CompactResult", "Entry", "Store", "input_id"]
_GLOB = re.compile(r"([\[*?])")


@dataclass(frozen=True)
class Entry:
    """One committed input. `size` and `sha256` cover the bytes consumed (for a growing file
    possibly less than the whole file); `lines` counts the lines consumed. `format` is `file`
    (plain, may grow), `gzip` or `batch` (one HTTP request body)."""

    sha256: str
    source: str
    format: str
    size: int
    lines: int
    rows: int
    malformed: int
    ingested_at: str
    head: str = ""  # sha256 of the first min(4096, size) bytes, for plain files


@dataclass(frozen=True)
class CompactResult:
    partitions: int
    files_before: int
    files_after: int


def literal_glob(path: Path) -> str:
    """DuckDB globs every path it is given; bracket the metacharacters to match literally."""
    return _GLOB.sub(r"[\1]", str(path))


class Store:
    """A flow store rooted at `root`. Methods that change it take the lock themselves."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.meta = self.root / "_ingest"
        self.manifest_path = self.meta / "manifest.json"
        self.journal_path = self.meta / "compact.json"
        self.staging = self.meta / "staging"
        self.tmp = self.meta / "tmp"
        self._recovered = False
        if self.root.exists() and not self.root.is_dir():
            raise RuntimeFailure(f"store {self.root}: exists and is not a directory")
        for directory in (self.staging, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)

    # ---- locking and recovery -------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (waiting for other writers); the first holder in this process
        recovers what an interrupted writer left."""
        with lock.acquire(self.meta, wait=True):
            if not self._recovered:
                self._recover()
                self._recovered = True
            yield

    def _recover(self) -> None:
        """Finish an interrupted compaction, drop files of inputs that never committed and
        staging left by dead writers (call with the lock held)."""
        self._finish_compaction()
        known = {sha[:ID_LENGTH] for sha in self.entries()}
        for file in self._data_files():
            ident = input_id(file.relative_to(self.root).as_posix())
            if ident is not None and ident not in known:
                file.unlink()
        for leftover in self.staging.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)

    def _data_files(self) -> Iterator[Path]:
        for partition in sorted(self.root.glob(partitions.HOUR_GLOB)):
            if partition.is_dir():
                yield from sorted(p for p in partition.iterdir() if p.is_file())

    # ---- manifest -------------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        try:
            doc = json.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.manifest_path}: unreadable ingest manifest: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
            raise StateError(f"{self.manifest_path}: not a version {MANIFEST_VERSION} manifest")
        try:
            return {sha: Entry(**fields) for sha, fields in doc["entries"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{self.manifest_path}: malformed entry: {exc}") from None

    def _write_entries(self, entries: Mapping[str, Entry]) -> None:
        doc: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "entries": {sha: asdict(e) for sha, e in sorted(entries.items())},
        }
        atomic.write_text(self.manifest_path, json.dumps(doc, indent=1, sort_keys=True) + "\n")

    # ---- writing --------------------------------------------------------------------------

    def new_staging(self) -> Path:
        path = self.staging / uuid.uuid4().hex
        path.mkdir()
        return path

    def write_chunk(
        self, con: duckdb.DuckDBPyConnection, staging: Path, sha256: str, chunk: int
    ) -> None:
        """COPY the registered Arrow table `ingest_chunk` into `staging`, by date and hour."""
        pattern = f"ingest-{sha256[:ID_LENGTH]}-{chunk}_{{i}}"
        sql.execute(con, "ingest_write_chunk", out=str(staging), pattern=pattern)

    def commit(self, staging: Path, entry: Entry) -> bool:
        """Move the staged files into the store and record `entry`, durably; False (and the
        staging discarded) when an input with the same sha256 is already there."""
        try:
            with self.locked():
                entries = self.entries()
                if entry.sha256 in entries:
                    return False
                if not self.manifest_path.exists():
                    # Readers take a tree with a manifest for a store and skip the files it
                    # does not commit (core/ingest_commits.py): it must exist before any file.
                    self._write_entries(entries)
                self._move_in(staging)
                checkpoints.reached("ingest-after-move")
                entries[entry.sha256] = entry
                self._write_entries(entries)
                return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _move_in(self, staging: Path) -> None:
        moves: list[tuple[Path, Path]] = []
        for file in sorted(staging.rglob("*.parquet")):
            rel = file.parent.relative_to(staging).as_posix()
            if not partitions.is_hour_path(rel) or not _OURS.fullmatch(file.name):
                raise RuntimeFailure(f"unexpected staged file {file}")
            target = self.root / rel / file.name
            if target.exists():
                raise RuntimeFailure(f"{target} already exists")
            moves.append((file, target))
        for file, _ in moves:
            atomic.fsync(file)
        for file, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            file.rename(target)
        # The renames must be on disk before the manifest says the input is in the store.
        for directory in sorted({t.parent for _, t in moves} | {t.parent.parent for _, t in moves}):
            atomic.fsync(directory)
        atomic.fsync(self.root)

    # ---- compaction -----------------------------------------------------------------------

    def compact(self, con: duckdb.DuckDBPyConnection) -> CompactResult:
        """Merge the files of each partition into one, sorted by start_time."""
        merged = before = after = 0
        with self.locked():
            for partition in sorted(self.root.glob(partitions.HOUR_GLOB)):
                files = [p for p in sorted(partition.glob("*.parquet")) if _OURS.fullmatch(p.name)]
                before += len(files)
                if len(files) < 2:
                    after += len(files)
                    continue
                self._compact_one(con, partition, files)
                merged += 1
                after += 1
        return CompactResult(merged, before, after)

    def _compact_one(
        self, con: duckdb.DuckDBPyConnection, partition: Path, files: list[Path]
    ) -> None:
        name = f"compact-{uuid.uuid4().hex}.parquet"
        tmp = partition / f".{name}.tmp"
        journal = {
            "partition": partition.relative_to(self.root).as_posix(),
            "new": name,
            "tmp": tmp.name,
            "old": [f.name for f in files],
        }
        atomic.write_text(self.journal_path, json.dumps(journal) + "\n")
        sql.execute(con, "ingest_compact", files=[literal_glob(f) for f in files], out=str(tmp))
        atomic.fsync(tmp)
        tmp.rename(partition / name)
        atomic.fsync(partition)
        checkpoints.reached("compact-after-rename")
        self._finish_compaction()

    def _finish_compaction(self) -> None:
        """Complete (new file in place: drop the old ones) or undo (drop the temporary file)
        the compaction the journal names."""
        try:
            journal = json.loads(self.journal_path.read_bytes())
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise StateError(f"{self.journal_path}: unreadable: {exc}") from None
        partition = self.root / str(journal["partition"])
        if not partitions.is_hour_path(str(journal["partition"])):
            raise StateError(f"{self.journal_path}: bad partition {journal['partition']!r}")
        names = [str(journal["new"]), str(journal["tmp"]), *map(str, journal["old"])]
        if any("/" in n or n.startswith("..") for n in names):
            raise StateError(f"{self.journal_path}: bad file name")
        if (partition / names[0]).exists():
            for old in names[2:]:
                (partition / old).unlink(missing_ok=True)
        else:
            (partition / names[1]).unlink(missing_ok=True)
        atomic.fsync(partition)
        self.journal_path.unlink()
        atomic.fsync(self.meta)
