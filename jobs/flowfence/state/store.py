"""Where the learning state lives: a local directory or an object-store prefix (`s3://…`).

A local directory is state.py's layout under lock.py's `flock`. On an object store there is no
lock: the manifest is the commit point and is written with a conditional put, so of two runs
that started from the same generation exactly one commits; the other fails with
`StateConflict` (exit 1) before it writes anything to its output directory.

The remote layout is the local one with one difference: a table object carries a random token
(`edges-000002-1f3a9c0e.parquet`), so two writers of the same generation never write the same
key, and a loser's tables are garbage that a later run deletes. The remote `manifest.json`
names those keys, so the state stays readable with plain Polars or DuckDB. A run works on a
local copy in a temporary directory: it downloads the manifest and the tables it names, lets
state.py load and commit there, then uploads the new tables (create-only) and replaces the
manifest with `If-Match` on the ETag it loaded (`If-None-Match: *` for a new state).

A state location holding table files but no manifest (a lost manifest) is refused rather
than taken for a new state, which would overwrite and garbage-collect what earlier runs learned.
`reset()` (`run --reset-state`) is the explicit way to start over: it moves the manifest and
the tables into a `reset-<UTC time>` folder (prefix) beside them, never deleting them.

Garbage collection deletes only table objects of a generation at or below the committed one
that the manifest does not name: tables a concurrent run is still writing for the next
generation are never touched.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from flowfence.core import atomic, lock, objects, objectstore
from flowfence.core.errors import ConfigError, StateError
from flowfence.core.objects import PreconditionLost
from flowfence.core.objectstore import S3Url, failure
from flowfence.state import tables as state

T = TypeVar("T")
_REMOTE_TABLE = re.compile(r"([a-z_]+)-(\d{6,})(?:-([0-9a-f]{8}))?\.parquet")


class StateConflict(StateError):
    """Another run committed the object-store state while this one was computing."""


class Store(Protocol):
    """The state operations of one run, local or remote."""

    @property
    def warning(self) -> str | None: ...

    def load(self) -> state.State: ...

    def collect_garbage(self, prior: state.State) -> None: ...

    def commit(self, prior: state.State, new_state: state.State) -> state.State: ...

    def reset(self) -> str | None:
        """Move the manifest and every table aside; where they went, None when nothing was
        there."""
        ...


def _aside_name() -> str:
    return f"reset-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"


def location(value: str | Path) -> Path | str:
    """`--state` as given: an `s3://` URL (validated, kept as text) or a local path."""
    text = str(value)
    if objectstore.is_url(text):
        return objectstore.parse(text).url
    if Path(value).is_file():
        raise ConfigError(f"--state {value}: is a file; expected a directory or s3://bucket/prefix")
    return Path(value)


@contextlib.contextmanager
def opened(where: Path | str) -> Iterator[Store]:
    """The state at `where` for one run: locked when local, staged in a temporary directory
    when remote."""
    if isinstance(where, str) and objectstore.is_url(where):
        root = objectstore.parse(where)
        with tempfile.TemporaryDirectory(prefix="flowfence-state-") as tmp:
            yield RemoteStore(root, Path(tmp), objectstore.filesystem())
        return
    directory = Path(where)
    with lock.acquire(directory) as held:
        yield LocalStore(directory, held.warning)


@dataclass
class LocalStore:
    directory: Path
    warning: str | None = None

    def load(self) -> state.State:
        return state.load(self.directory)

    def collect_garbage(self, prior: state.State) -> None:
        state.collect_garbage(self.directory, prior.table_files.values())

    def commit(self, prior: state.State, new_state: state.State) -> state.State:
        return state.commit(self.directory, prior, new_state)

    def reset(self) -> str | None:
        names = state.table_files_in(self.directory)
        if (self.directory / state.MANIFEST).exists():
            names.insert(0, state.MANIFEST)  # first: a reset cut short leaves orphans, refused
        if not names:
            return None
        aside = self.directory / _aside_name()
        aside.mkdir()
        for name in names:
            (self.directory / name).rename(aside / name)
        atomic.fsync(aside)
        atomic.fsync(self.directory)
        return str(aside)


@dataclass
class RemoteStore:
    """The state under `root`, staged in `stage` (see the module doc)."""

    root: S3Url
    stage: Path
    fs: Any
    warning: str | None = None
    etag: str | None = None  # of the manifest loaded; None: there was none
    remote: dict[str, str] = field(default_factory=dict)  # local table file -> remote name

    @property
    def _manifest(self) -> S3Url:
        return self.root.join(state.MANIFEST)

    def _refuse(self, problem: str) -> StateError:
        return StateError(
            f"state {self.root.url}: {problem}; refusing to use or overwrite it (move it away "
            "or pass another --state to start a new one)"
        )

    def load(self) -> state.State:
        blob = objects.read_object(self.fs, self._manifest)
        if blob is None:
            orphans = self._tables()
            pending = self.root.join(state.PENDING)
            if orphans and objects.read_object(self.fs, pending) is None:
                raise state.orphaned_refusal(self.root.url, orphans)
            self.etag, self.remote = None, {}
            return state.new()
        staged = self.stage / state.MANIFEST
        staged.write_bytes(blob.data)
        data = self._checked(lambda: state.read_manifest(self.stage))
        if data is None:  # the staged copy was just written; read_manifest found none
            raise self._refuse(f"cannot stage {state.MANIFEST}")
        tables = data.get("tables")
        remote: dict[str, str] = {}
        if isinstance(tables, dict):
            local_names: dict[str, str] = {}
            for name, key in tables.items():
                match = _REMOTE_TABLE.fullmatch(key) if isinstance(key, str) else None
                if match is None or match.group(1) != name:
                    raise self._refuse(f"{state.MANIFEST} names no valid object for {name!r}")
                local = f"{name}-{match.group(2)}.parquet"
                self._download(key, local)
                remote[local] = key
                local_names[name] = local
            staged.write_text(json.dumps({**data, "tables": local_names}))
        loaded = self._checked(lambda: state.load(self.stage))
        self.etag, self.remote = blob.etag, remote
        return loaded

    def _checked(self, step: Callable[[], T]) -> T:
        """Run a state.py step on the staged copy; its messages name the URL, not the copy."""
        try:
            return step()
        except StateError as exc:
            raise StateError(str(exc).replace(str(self.stage), self.root.url)) from None

    def _download(self, key: str, local: str) -> None:
        source = self.root.join(key)
        try:
            self.fs.get_file(source.path, str(self.stage / local))
        except FileNotFoundError:
            raise self._refuse(f"table {key} named by {state.MANIFEST} is missing") from None
        except OSError as exc:
            raise self._refuse(f"cannot read table {key}: {exc}") from None

    def _tables(self) -> list[str]:
        """The table objects under the root, named by the manifest or not."""
        names = objects.list_names(self.fs, self.root)
        return [n for n in names if (m := _REMOTE_TABLE.fullmatch(n)) and m[1] in state.TABLES]

    def reset(self) -> str | None:
        names = self._tables()
        if state.MANIFEST in objects.list_names(self.fs, self.root):
            names.insert(0, state.MANIFEST)  # first: a reset cut short leaves orphans, refused
        if not names:
            return None
        aside = self.root.join(_aside_name())
        for name in names:  # no rename on an object store: copy, then delete the original
            source = self.root.join(name)
            try:
                self.fs.copy(source.path, aside.join(name).path)
            except OSError as exc:
                raise failure("copy", source, exc) from None
            objects.delete(self.fs, [source])
        return aside.url

    def collect_garbage(self, prior: state.State) -> None:
        keep = set(self.remote.values())
        doomed = []
        for name in objects.list_names(self.fs, self.root):
            match = _REMOTE_TABLE.fullmatch(name)
            ours = match is not None and match.group(1) in state.TABLES
            if ours and match and name not in keep and int(match.group(2)) <= prior.generation:
                doomed.append(self.root.join(name))
        objects.delete(self.fs, doomed)

    def commit(self, prior: state.State, new_state: state.State) -> state.State:
        committed = state.commit(self.stage, prior, new_state)
        manifest = json.loads((self.stage / state.MANIFEST).read_bytes())
        token = secrets.token_hex(4)
        pending, first = self.root.join(state.PENDING), self.etag is None
        if first:  # a first run: tables it leaves without a manifest are not orphans
            objects.write_object(self.fs, pending, b"a first run is committing this state\n")
        remote: dict[str, str] = {}
        uploaded: list[S3Url] = []
        try:
            for local in committed.table_files.values():
                key = self.remote.get(local)
                if key is None:
                    key = f"{local.removesuffix('.parquet')}-{token}.parquet"
                    target = self.root.join(key)
                    data = (self.stage / local).read_bytes()
                    objects.put_if(self.fs, target, data, etag=None)
                    uploaded.append(target)
                remote[local] = key
            manifest["tables"] = {n: remote[f] for n, f in committed.table_files.items()}
            body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
            etag = objects.put_if(self.fs, self._manifest, body, etag=self.etag)
        except PreconditionLost:
            with contextlib.suppress(StateError, OSError):  # the winner's manifest is there
                objects.delete(self.fs, [*uploaded, pending] if first else uploaded)
            raise StateConflict(
                f"state {self.root.url}: another flowfence run committed a new generation "
                f"while this run was computing generation {committed.generation}; this run's "
                "result was not committed and no output was written (run again to build on "
                "the new state)"
            ) from None
        self.etag, self.remote = etag, remote
        if first:
            objects.delete(self.fs, [pending])
        self.collect_garbage(committed)
        return committed
