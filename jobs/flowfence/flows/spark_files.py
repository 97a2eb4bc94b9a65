"""Flow-log files as Spark sees them: Hadoop paths, partition spans, and the listing of a
Hadoop filesystem URL through the Spark session.

`--engine spark` reads `s3a://`, `hdfs://`, `file://` and any other URL Spark has a Hadoop
FileSystem for. Such a location is listed through the session's own JVM
(`FileSystem.listFiles(root, recursive)` on `spark._jsc.hadoopConfiguration()`), so the listing
uses exactly the filesystems, credentials and settings Spark reads with (`spark.hadoop.*`,
core-site.xml, the S3A jars): nothing is configured twice. Each file becomes the
`sources.FileInfo` the incremental planner takes (size, mtime, hive span), and the planner drops
the partitions outside the window before Spark is asked to read anything: the listing touches
metadata only, and a file outside the window is never opened.

Plain local paths and `s3://` are listed by sources.py whatever the engine, so a state written
by one engine is read by the other without every file looking changed (Hadoop keeps mtimes in
milliseconds, the local lister in nanoseconds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from flowfence.core import ingest_commits, objectstore, partitions
from flowfence.core.errors import FlowInputError
from flowfence.flows import sources

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# `s3a://bucket`, `file://`, `file:`: not urlsplit, which would cut a path at `#` or `?`.
_SCHEME_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?")
_HADOOP_GLOB = re.compile(r"([\\\[\]{}*?])")
_NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Span:
    """The UTC hours (or day) a hive partition holds, by start_time; None outside hive."""

    start: datetime | None = None
    end: datetime | None = None

    def meets(self, since: datetime | None, until: datetime | None) -> bool:
        return partitions.meets(self.start, self.end, since, until)


def list_files(spark: SparkSession, url: str) -> tuple[sources.FileInfo, ...]:
    """Every flow-log file under the Hadoop URL `url`, listed through `spark`'s FileSystem,
    as `sources.list_files` describes local files: sorted by relative path, hidden names
    (`_SUCCESS`, `_temporary/`, `.crc`) and other suffixes skipped. Opens no file.

    Raises FlowInputError when nothing is there; JVM errors (no FileSystem for the scheme,
    access denied) propagate as py4j errors for the engine to translate.
    """
    jvm: Any = spark._jvm
    root = jvm.org.apache.hadoop.fs.Path(url)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(root):
        raise FlowInputError(f"flow logs: {url}: no such file or directory")
    top = fs.getFileStatus(root)
    qualified = str(top.getPath().toString())
    if top.isFile():
        # A single file is read whatever its directory is called, as sources.py does.
        name = qualified.rpartition("/")[2]
        return (_info(top, qualified, name, name, Span()),)
    # Every call on a JVM object is a round trip to the JVM: six per file, the least that
    # gives its path, size and mtime (Hadoop paths print unescaped, so the qualified root is
    # a prefix of each).
    base = qualified.rstrip("/") + "/"
    found = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        path = str(status.getPath().toString())
        rel = path.removeprefix(base)
        parts = rel.split("/")
        if rel == path or not rel.endswith(".parquet"):
            continue
        if any(p.startswith((".", "_")) for p in parts):
            continue
        span = partition_span(path)
        unit = ("/".join(parts[:-1]) or ".") if span.start is not None else rel
        found.append(_info(status, path, rel, unit, span))
    # Files of ingest inputs not committed yet are skipped, as sources.py skips them.
    hidden = sources.uncommitted(
        [f.path for f in found], lambda root, rel: _read(jvm, fs, root, rel)
    )
    if len(hidden) == len(found):
        note = ingest_commits.note(hidden)
        raise FlowInputError(f"flow logs: {url}: no Parquet files (*.parquet) found{note}")
    return tuple(sorted((f for f in found if f.path not in hidden), key=lambda f: f.rel))


def _read(jvm: Any, fs: Any, root: str, rel: str) -> bytes | None:
    """The bytes of `root/rel` (an ingest store's manifest or journal) through the Hadoop
    FileSystem, None if absent."""
    path = jvm.org.apache.hadoop.fs.Path(literal(f"{root}/{rel}"))
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        data: bytes = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data)


def _info(status: Any, path: str, rel: str, unit: str, span: Span) -> sources.FileInfo:
    """A Hadoop FileStatus as a FileInfo; `path` is the qualified one Spark reads back."""
    return sources.FileInfo(
        path=path,
        rel=rel,
        unit=unit,
        start=span.start,
        end=span.end,
        size=int(status.getLen()),
        mtime_ns=int(status.getModificationTime()) * _NS_PER_MS,
    )


def select_files(files: Sequence[str], since: datetime | None, until: datetime | None) -> list[str]:
    """The files whose hive partition span meets [since, until) (naive UTC), sorted.

    The rule of sources.py: every `date=`/`hour=` directory on the path counts, files outside
    hive partitions are always kept, a malformed partition name is an input error.
    """
    return sorted(f for f in files if partition_span(f).meets(since, until))


def partition_span(file: str) -> Span:
    """The span of a file under date=YYYY-MM-DD[/hour=HH]; other key=value dirs are ignored."""
    parent = PurePosixPath(_SCHEME_AUTHORITY.sub("", file)).parent.parts
    try:
        span = partitions.span("/".join([*parent, "file"]))
    except ValueError as exc:
        raise FlowInputError(f"flow logs: {file}: {exc}") from None
    return Span() if span is None else Span(*span)


def root(flows: str | Path) -> str:
    """A Hadoop path: URIs as given, local paths made absolute (and checked, as sources.py does)."""
    text = str(flows)
    if sources.is_hadoop_url(flows) or objectstore.is_url(text):
        return literal(text)
    local = Path(text)
    if not local.exists():
        raise FlowInputError(f"flow logs: {local}: no such file or directory")
    # Not Path.as_uri(): Hadoop would read its %-escapes literally.
    return literal("file://" + local.absolute().as_posix())


def literal(path: str) -> str:
    """Hadoop expands globs in every path it is given; escape them to match literally."""
    return _HADOOP_GLOB.sub(r"\\\1", path)
