"""The learning state between runs: a few Parquet tables and one small JSON manifest.

Layout of the state directory (`DIR/state/` unless `--state` moves it):

    manifest.json            {"format": "flowfence-state", "schema": 3, "generation": N,
                              "origin", "watermark", "now", "tables": {name: file}}
    edges-00000N.parquet     the screened edges of every sealed read, evidence merged
    activity-00000N.parquet  flows per namespace and UTC hour (rhythm detection)
    namespaces-00000N.parquet  per selected namespace: status, lastUpdated, stagedAction,
                              digest of its rules, when it joined, its learning window
    files-00000N.parquet     every sealed flow-log file: path, partition, size, mtime
    runs-00000N.parquet      one row per committed run: what it read
    manifests-00000N.parquet the policy files last written: document key and SHA-256
    baseline-00000N.parquet  what the committing run compared its output with
    open_files-, open_edges-, open_activity-00000N.parquet  the units still open, as read
                              (state/open_units.py: the next run takes them, not a read)
    first-run.pending        only while a first run commits (see below)
    quiet.json               left by a run that changed nothing (run/quiet.py); not a table
    lock                     see lock.py

Readable with plain DuckDB or Polars: `manifest.json` names the current file of each table
(`pl.read_parquet(state / manifest["tables"]["edges"])`). Not a DuckDB database file, whose
storage format changes between DuckDB versions.

Commit point: new tables are written under new names (temporary file, fsync, rename), then the
manifest naming them replaces the old one atomically, then the tables no manifest names are
deleted. A run killed anywhere leaves the old manifest with its tables, or the new one with
its tables. A table whose content did not change keeps its file. A manifest that cannot be
read, or tables it names that are missing or of the wrong shape, make `load` refuse the state
(StateError) without touching it; so does a manifest of a newer schema. So do table files
without a manifest (a lost manifest), unless `first-run.pending` says they are a first run's
that died before its manifest: that marker is written before a first commit's tables and
removed once its manifest is in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import polars as pl

from flowfence import __version__
from flowfence.core import atomic, checkpoints, times
from flowfence.core.errors import RuntimeFailure, StateError
from flowfence.flows.edges import EDGE_SCHEMA

FORMAT = "flowfence-state"
# 2: the baseline table; 3: the open-unit cache (older states load them empty)
SCHEMA_VERSION = 3
MANIFEST = "manifest.json"
PENDING = "first-run.pending"

_TS = pl.Datetime("us")
EDGES_SCHEMA: dict[str, pl.DataType] = {**EDGE_SCHEMA, "day_list": pl.List(pl.Date())}
ACTIVITY_SCHEMA: dict[str, pl.DataType] = {
    "namespace": pl.String(),
    "hour": _TS,
    "flows": pl.Int64(),
}
NAMESPACES_SCHEMA: dict[str, pl.DataType] = {
    "namespace": pl.String(),
    "status": pl.String(),
    "last_updated": _TS,
    "staged_action": pl.String(),
    "digest": pl.String(),
    "first_run": _TS,
    "learning_since": _TS,
    "rules": pl.Int64(),
    "rhythm": pl.String(),
    "last_flow": _TS,
}
FILES_SCHEMA: dict[str, pl.DataType] = {
    "rel": pl.String(),
    "unit": pl.String(),
    "start": _TS,
    "end": _TS,
    "size": pl.Int64(),
    "mtime_ns": pl.Int64(),
    "empty": pl.Boolean(),  # no rows (a sealed file that holds no flows)
    "generation": pl.Int64(),
}
RUNS_SCHEMA: dict[str, pl.DataType] = {
    "generation": pl.Int64(),
    "now": _TS,
    "origin": _TS,
    "files_read": pl.Int64(),
    "files_sealed": pl.Int64(),
    "rows_read": pl.Int64(),
    "flows_read": pl.Int64(),
    "late_ignored": pl.Int64(),
    "backfill_files": pl.Int64(),
    "pruned_edges": pl.Int64(),
}
# The manifests the last run wrote: a key of each document and the SHA-256 of its bytes, so an
# unchanged document is not rendered to YAML again (PyYAML's emitter dominates a small run).
MANIFESTS_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "doc_key": pl.String(),
    "sha256": pl.String(),
}
# What the run that committed this generation compared its output with (review.py), so that a
# rerun at the same --now (after a crash between the policies and the report, or a plain
# retry) reports the same change instead of "no changes": per `item`, a policy file it changed
# (`policies/<file>`, data its earlier bytes, `present` false when it did not exist) or the
# earlier status of a namespace whose status it changed (`status:<namespace>`).
BASELINE_SCHEMA: dict[str, pl.DataType] = {
    "item": pl.String(),
    "present": pl.Boolean(),
    "data": pl.Binary(),
}
# The units still open after the run that committed this generation, as it read them: their
# files (FILES_SCHEMA, `generation` the run that read them) and their edges and activity per
# unit. A later run takes a unit from here instead of reading it again when its files are the
# same and it ended before that run's --now (state/open_units.py). Not learned evidence: the
# next run merges it as it would merge a fresh read.
OPEN_EDGES_SCHEMA: dict[str, pl.DataType] = {"unit": pl.String(), **EDGES_SCHEMA}
OPEN_ACTIVITY_SCHEMA: dict[str, pl.DataType] = {"unit": pl.String(), **ACTIVITY_SCHEMA}
TABLES: Mapping[str, dict[str, pl.DataType]] = MappingProxyType(
    {
        "edges": EDGES_SCHEMA,
        "activity": ACTIVITY_SCHEMA,
        "namespaces": NAMESPACES_SCHEMA,
        "files": FILES_SCHEMA,
        "runs": RUNS_SCHEMA,
        "manifests": MANIFESTS_SCHEMA,
        "baseline": BASELINE_SCHEMA,
        "open_files": FILES_SCHEMA,
        "open_edges": OPEN_EDGES_SCHEMA,
        "open_activity": OPEN_ACTIVITY_SCHEMA,
    }
)
# The schema that added each later table: an older state loads it empty.
_ADDED_IN = {"baseline": 2, "open_files": 3, "open_edges": 3, "open_activity": 3}
# Bookkeeping, not learning: a run that would change only these commits nothing.
_NOT_CONTENT = frozenset({"runs", "baseline"})
_NAMES = "|".join(TABLES)
_TABLE_FILE = re.compile(rf"(?:{_NAMES})-\d{{6,}}\.parquet")
_TEMP_FILE = re.compile(rf"\.(?:(?:{_NAMES})-\d{{6,}}\.parquet|manifest\.json)\..*\.tmp")


def empty_table(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[name])


@dataclass(frozen=True)
class State:
    """The state as of one generation. Times are naive UTC, like the `flows` view.

    origin: the start of the evidence window (rows ending before it were never read).
    watermark: the end of the newest hive partition read (None when none was).
    now: `--now` of the run that committed this generation.
    files: the names the tables were loaded from (empty for a new state).
    """

    generation: int
    origin: datetime | None
    watermark: datetime | None
    now: datetime | None
    edges: pl.DataFrame = field(default_factory=lambda: empty_table("edges"))
    activity: pl.DataFrame = field(default_factory=lambda: empty_table("activity"))
    namespaces: pl.DataFrame = field(default_factory=lambda: empty_table("namespaces"))
    files: pl.DataFrame = field(default_factory=lambda: empty_table("files"))
    runs: pl.DataFrame = field(default_factory=lambda: empty_table("runs"))
    manifests: pl.DataFrame = field(default_factory=lambda: empty_table("manifests"))
    baseline: pl.DataFrame = field(default_factory=lambda: empty_table("baseline"))
    open_files: pl.DataFrame = field(default_factory=lambda: empty_table("open_files"))
    open_edges: pl.DataFrame = field(default_factory=lambda: empty_table("open_edges"))
    open_activity: pl.DataFrame = field(default_factory=lambda: empty_table("open_activity"))
    table_files: Mapping[str, str] = field(default_factory=dict)

    def table(self, name: str) -> pl.DataFrame:
        frame: pl.DataFrame = getattr(self, name)
        return frame

    def same_content(self, other: State) -> bool:
        """True when committing `other` over `self` would change nothing but the clock."""
        if (self.origin, self.watermark) != (other.origin, other.watermark):
            return False
        return all(self.table(n).equals(other.table(n)) for n in TABLES if n not in _NOT_CONTENT)


def new() -> State:
    return State(generation=0, origin=None, watermark=None, now=None)


def _refuse(directory: Path, problem: str) -> StateError:
    return StateError(
        f"state {directory}: {problem}; refusing to use or overwrite it (move it away or pass "
        "another --state to start a new one)"
    )


def _time(value: Any, directory: Path, key: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _refuse(directory, f"manifest field {key!r} is not a time")
    try:
        moment = times.parse(value)
    except times.TimeError:
        raise _refuse(directory, f"manifest field {key!r} is not a time: {value!r}") from None
    return times.naive_utc(moment)


def _stamp(value: datetime | None) -> str | None:
    # Microseconds kept: the watermark must come back exactly as it was.
    return None if value is None else times.rfc3339(value, fraction=True)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest as a mapping, None when there is none; StateError when unusable."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refuse(directory, f"cannot read {MANIFEST}: {exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise _refuse(directory, f"{MANIFEST} is corrupt (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _refuse(directory, f"{MANIFEST} is not a flowfence state manifest")
    schema = data.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise _refuse(directory, f"{MANIFEST} has no schema version")
    if schema > SCHEMA_VERSION:
        raise _refuse(
            directory,
            f"written by a newer flowfence (state schema {schema}, this version reads up to "
            f"{SCHEMA_VERSION}: {__version__})",
        )
    if schema < 1:
        raise _refuse(directory, f"unknown state schema {schema}")
    return data


def orphaned_refusal(where: str, tables: list[str]) -> StateError:
    """Table files without the manifest that names them: a lost manifest, not a new state.
    Starting over here would rewrite (and garbage-collect) what the earlier runs learned."""
    shown = ", ".join(tables[:3]) + (", ..." if len(tables) > 3 else "")
    return StateError(
        f"state {where}: {len(tables)} table file(s) ({shown}) but no {MANIFEST}; refusing "
        "to start a new state over them (restore the manifest, or pass --reset-state to move "
        "them aside into a reset-<time> folder there and start over)"
    )


def table_files_in(directory: Path) -> list[str]:
    """The names of the table files in `directory` (named by a manifest or not), sorted."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if _TABLE_FILE.fullmatch(p.name))


def load(directory: Path) -> State:
    """The state in `directory`; a new, empty state when there is neither a manifest nor a
    table file (tables without a manifest are refused: see `orphaned_refusal`)."""
    data = read_manifest(directory)
    if data is None:
        if (orphans := table_files_in(directory)) and not (directory / PENDING).exists():
            raise orphaned_refusal(str(directory), orphans)
        return new()
    generation = data.get("generation")
    tables = data.get("tables")
    if not isinstance(generation, int) or generation < 1 or not isinstance(tables, dict):
        raise _refuse(directory, f"{MANIFEST} lacks its generation or tables")
    frames: dict[str, pl.DataFrame] = {}
    names: dict[str, str] = {}
    for name, schema in TABLES.items():
        file = tables.get(name)
        if file is None and data.get("schema", 0) < _ADDED_IN.get(name, 1):
            frames[name] = empty_table(name)
            continue
        if not isinstance(file, str) or not _TABLE_FILE.fullmatch(file):
            raise _refuse(directory, f"{MANIFEST} names no valid file for table {name!r}")
        try:
            frame = pl.read_parquet(directory / file)
        except FileNotFoundError:
            raise _refuse(directory, f"table {file} named by {MANIFEST} is missing") from None
        except (OSError, pl.exceptions.PolarsError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _refuse(directory, f"table {file} is unreadable ({reason})") from None
        if dict(frame.schema) != schema:
            raise _refuse(directory, f"table {file} does not have the {name} columns")
        frames[name] = frame
        names[name] = file
    return State(
        generation=generation,
        origin=_time(data.get("origin"), directory, "origin"),
        watermark=_time(data.get("watermark"), directory, "watermark"),
        now=_time(data.get("now"), directory, "now"),
        table_files=MappingProxyType(names),
        **frames,
    )


def _write_table(path: Path, frame: pl.DataFrame, generation: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        atomic.fsync(tmp)
        tmp.replace(path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError | pl.exceptions.PolarsError):
            # Before the manifest: the state on disk is still the previous generation.
            raise RuntimeFailure(
                f"cannot write state table {path}: {_io_reason(exc)}; the state is unchanged "
                f"(still generation {generation - 1})"
            ) from exc
        raise


def _io_reason(exc: BaseException) -> str:
    # Polars wraps the OS error (disk full) in a parquet message; the OS part is the news.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text.rpartition("underlying IO error: ")[2]


def commit(directory: Path, previous: State, new_state: State) -> State:
    """Write `new_state` as generation previous.generation + 1 (see the module doc for the
    order). Returns the committed state with its table file names."""
    generation = previous.generation + 1
    directory.mkdir(parents=True, exist_ok=True)
    if previous.generation == 0:  # tables without a manifest will be this run's, not orphans
        atomic.write_text(directory / PENDING, "a first run is committing this state\n")
    names: dict[str, str] = {}
    for name in TABLES:
        frame = new_state.table(name)
        old = previous.table_files.get(name)
        if old is not None and frame.equals(previous.table(name)):
            names[name] = old
            continue
        names[name] = f"{name}-{generation:06d}.parquet"
        _write_table(directory / names[name], frame, generation)
    atomic.fsync(directory)
    checkpoints.reached("after-state-tables")
    manifest = {
        "format": FORMAT,
        "schema": SCHEMA_VERSION,
        "generation": generation,
        "flowfence": __version__,
        "origin": _stamp(new_state.origin),
        "watermark": _stamp(new_state.watermark),
        "now": _stamp(new_state.now),
        "tables": names,
    }
    atomic.write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with contextlib.suppress(FileNotFoundError):
        (directory / PENDING).unlink()
    checkpoints.reached("after-manifest")
    collect_garbage(directory, names.values())
    checkpoints.reached("after-state")
    return replace(new_state, generation=generation, table_files=MappingProxyType(names))


def collect_garbage(directory: Path, keep: Any) -> list[str]:
    """Delete table files the manifest does not name and temporary files of killed runs.
    Only names this module writes are ever deleted."""
    kept = set(keep)
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for path in sorted(directory.iterdir()):
        name = path.name
        ours = _TABLE_FILE.fullmatch(name) or _TEMP_FILE.fullmatch(name)
        if ours and name not in kept and path.is_file():
            path.unlink()
            removed.append(name)
    if removed:
        atomic.fsync(directory)
    return removed
