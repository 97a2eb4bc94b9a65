"""`flowfence ingest --out s3://bucket/prefix`: the partitioned flow store on an object store.

The store's layout is ingest_store.py's (`date=YYYY-MM-DD/hour=HH/*.parquet`, the manifest of
ingested inputs in `_ingest/manifest.json`). A run works on a local staging store: it copies
the remote manifest into a temporary directory, lets ingest.py write the new inputs there (so
idempotency, growing files and malformed-line handling are exactly the local ones), then
publishes: the new Parquet objects first (streamed), the manifest last, with a conditional
put on the ETag it started from. Readers list the new objects before the manifest commits
them and skip them until it does (core/ingest_commits.py), as they skip renamed files on disk;
a store's first publication puts an empty manifest before any object, so a reader knows the
prefix for a store from the start.

Writers are serialised by a lock object, `_ingest/lock`, created with `If-None-Match: *` and
deleted at the end; a second ingest meanwhile is refused (exit 1) naming the holder. Holding
it, a writer first deletes data objects of inputs the manifest does not list (a run that died
between publishing its objects and its manifest), as ingest_store.py does on disk.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flowfence.core import checkpoints, ingest_commits, objects, objectstore, partitions
from flowfence.core.errors import BadInput, StateError
from flowfence.core.lock import Holder
from flowfence.core.objects import PreconditionLost
from flowfence.core.objectstore import S3Url
from flowfence.ingest import convert as ingest
from flowfence.ingest import scan, write
from flowfence.ingest.store import ID_LENGTH, Store, input_id

META = ingest_commits.META
EMPTY_MANIFEST = b'{\n "entries": {},\n "version": 1\n}\n'


class StoreLocked(StateError):
    """Another ingest holds the object-store lock."""


@contextlib.contextmanager
def _locked(fs: Any, root: S3Url) -> Iterator[None]:
    lock = root.join(META, "lock")
    try:
        objects.put_if(fs, lock, Holder.me().record(), etag=None)
    except PreconditionLost:
        held = objects.read_object(fs, lock)
        who = held.data.decode(errors="replace").strip() if held else "another writer"
        raise StoreLocked(
            f"store {root.url} is locked by {who}: another ingest is writing it; wait for it "
            f"to finish (or, if none is running, delete {lock.url})"
        ) from None
    try:
        yield
    finally:
        objects.delete(fs, [lock])


def _remote_data(fs: Any, root: S3Url) -> dict[str, str]:
    """The store's data objects this module or ingest_store.py wrote: relative key -> id."""
    fs.invalidate_cache()
    try:
        found = fs.find(root.path)
    except FileNotFoundError:
        return {}
    out = {}
    for name in found:
        rel = name[len(root.path) + 1 :]
        ident = input_id(rel)
        if ident is not None:
            out[rel] = ident
    return out


def ingest_to(
    sources: Sequence[Path],
    url: str,
    *,
    fmt: ingest.Format = "auto",
    compact: bool = False,
    chunk_rows: int = write.CHUNK_ROWS,
    max_line: int = scan.MAX_LINE_BYTES,
) -> ingest.IngestSummary:
    """`ingest.ingest` into the object-store location `url` (see the module doc)."""
    if compact:
        raise BadInput(
            "ingest: --compact needs a local store; an object store is compacted by running "
            "`flowfence ingest --compact` on a copy, or left to the reader"
        )
    root = objectstore.parse(url)
    fs = objectstore.filesystem()
    manifest = root.join(META, "manifest.json")
    with _locked(fs, root), tempfile.TemporaryDirectory(prefix="flowfence-ingest-") as tmp:
        stage = Path(tmp)
        blob = objects.read_object(fs, manifest)
        (stage / META).mkdir()
        if blob is not None:
            (stage / META / "manifest.json").write_bytes(blob.data)
        known = {sha[:ID_LENGTH] for sha in Store(stage).entries()}
        orphans = [
            root.join(rel) for rel, ident in _remote_data(fs, root).items() if ident not in known
        ]
        objects.delete(fs, orphans)
        summary = ingest.ingest(sources, stage, fmt=fmt, chunk_rows=chunk_rows, max_line=max_line)
        staged = sorted(p for p in stage.glob(f"{partitions.HOUR_GLOB}/*.parquet") if p.is_file())
        if staged and blob is None:
            etag = objects.put_if(fs, manifest, EMPTY_MANIFEST, etag=None)
            blob = objects.Blob(EMPTY_MANIFEST, etag)
        for file in staged:
            # Streamed (multipart when large): memory stays bounded; the lock means no other
            # writer, and recovery above removed objects of dead ones.
            objects.upload(fs, file, root.join(file.relative_to(stage).as_posix()))
        checkpoints.reached("ingest-after-upload")
        local = stage / META / "manifest.json"
        if local.exists() and (blob is None or local.read_bytes() != blob.data):
            objects.put_if(
                fs, manifest, local.read_bytes(), etag=None if blob is None else blob.etag
            )
    return summary
