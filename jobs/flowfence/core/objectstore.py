"""`s3://bucket/prefix` locations for flow logs, state and the ingest store.

Everything goes through fsspec's s3fs (aiobotocore underneath), never DuckDB's httpfs
extension: httpfs is downloaded on first use, which fails on a machine without internet.
DuckDB reads `s3://` paths through the same s3fs filesystem registered with the connection
(`register`), so `read_parquet('s3://…')` works offline, hive paths included.

Configuration comes from the usual AWS environment: `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL` (an S3-compatible store such as MinIO or Ceph), `AWS_REGION` or
`AWS_DEFAULT_REGION`, and credentials through botocore's own chain (`AWS_ACCESS_KEY_ID` /
`AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, a profile, IRSA web identity, ...).
`FLOWFENCE_S3_ADDRESSING_STYLE` (`path`, `virtual`, `auto`) overrides the addressing style,
which is `path` by default with a custom endpoint (what most S3-compatible stores need).

Single objects (a manifest, a lock) are read and written by objects.py, with conditional puts
for writers that must not overwrite each other.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import duckdb

from flowfence.core import partitions, times
from flowfence.core.errors import ConfigError, FlowInputError, RuntimeFailure

SCHEME = "s3://"
AddressingStyle = Literal["auto", "path", "virtual"]
_STYLES: tuple[AddressingStyle, ...] = ("auto", "path", "virtual")
# Bucket names per the S3 rules (no dots next to each other, no IP-address look-alikes).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
# A key segment typed by the operator: no globs (DuckDB and fsspec expand them), no
# query/fragment characters, no control characters, no backslashes.
_SEGMENT = re.compile(r"[^\x00-\x1f\x7f*?\[\]{}#\\]+")


@dataclass(frozen=True, order=True)
class S3Url:
    """A validated `s3://bucket/key` location; `key` has no leading or trailing slash and
    is empty for the bucket root."""

    bucket: str
    key: str = ""

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.path}"

    @property
    def path(self) -> str:
        """The fsspec path (`bucket/key`)."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def join(self, *names: str) -> S3Url:
        """A location below this one; each name is validated like a key segment."""
        segments = [s for n in names for s in n.split("/")]
        for segment in segments:
            _check_segment(segment, f"{self.url}/{'/'.join(names)}")
        return S3Url(self.bucket, "/".join([self.key, *segments] if self.key else segments))

    def __str__(self) -> str:
        return self.url


def is_url(target: str | os.PathLike[str]) -> bool:
    """True when `target` names an object-store location (`s3://…`)."""
    return isinstance(target, str) and target[: len(SCHEME)].lower() == SCHEME


def parse(url: str) -> S3Url:
    """`s3://bucket[/prefix]` as an S3Url; ConfigError (exit 2) for anything else."""
    if not url.startswith(SCHEME):
        raise ConfigError(f"{url!r}: not an object-store location (expected s3://bucket/prefix)")
    rest = url[len(SCHEME) :].rstrip("/")
    bucket, _, key = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IPV4.fullmatch(bucket):
        raise ConfigError(
            f"{url!r}: bad bucket name {bucket!r} (3-63 characters: a-z, 0-9, '.', '-')"
        )
    if key:
        for segment in key.split("/"):
            _check_segment(segment, url)
    return S3Url(bucket, key)


def _check_segment(segment: str, url: str) -> None:
    if segment in ("", ".", "..") or not _SEGMENT.fullmatch(segment):
        raise ConfigError(
            f"{url!r}: bad key segment {segment!r} (no empty, '.' or '..' segments, no glob, "
            "'#', backslash or control characters)"
        )


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach the store; credentials are left to botocore's chain."""

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: AddressingStyle = "auto"


def settings(env: Mapping[str, str] | None = None) -> S3Settings:
    """Settings from the AWS environment variables (see the module doc)."""
    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None and not re.fullmatch(r"https?://[^\s/?#]+/?", endpoint):
        raise ConfigError(
            f"AWS_ENDPOINT_URL(_S3)={endpoint!r}: expected http(s)://host[:port] with no path"
        )
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    raw = env.get("FLOWFENCE_S3_ADDRESSING_STYLE", "path" if endpoint else "auto")
    style = next((s for s in _STYLES if s == raw), None)
    if style is None:
        raise ConfigError(
            f"FLOWFENCE_S3_ADDRESSING_STYLE={raw!r}: expected one of {', '.join(_STYLES)}"
        )
    return S3Settings(endpoint_url=endpoint, region=region, addressing_style=style)


_shared: dict[S3Settings, Any] = {}
_shared_lock = threading.Lock()


def filesystem(config: S3Settings | None = None) -> Any:
    """The process's s3fs filesystem for `config` (the environment's when None).

    One instance per configuration, so DuckDB (through `register`) and the listing share
    s3fs' listing cache: DuckDB's many size look-ups per file are then free instead of a HEAD
    each. The cache never decides what a run reads: `list_parquet` drops it and lists anew,
    small objects are read with a plain GET, and this process's writes invalidate it.
    """
    # Imported here: s3fs pulls in aiobotocore and aiohttp (a quarter of a second), which a
    # run on local files does not need, and it is the optional `s3` extra.
    try:
        import s3fs  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError(
            f"s3:// locations need the s3 extra ({exc}): pip install 'flowfence[s3]'"
        ) from None

    config = settings() if config is None else config
    with _shared_lock:
        fs = _shared.get(config)
        if fs is None:
            client: dict[str, Any] = {}
            if config.region:
                client["region_name"] = config.region
            fs = s3fs.S3FileSystem(
                endpoint_url=config.endpoint_url,
                client_kwargs=client,
                config_kwargs={"s3": {"addressing_style": config.addressing_style}},
                skip_instance_cache=True,
                use_listings_cache=True,
            )
            _shared[config] = fs
    return fs


def register(con: duckdb.DuckDBPyConnection, fs: Any) -> None:
    """Let DuckDB read and write `s3://` paths through `fs` (replacing an earlier one)."""
    for protocol in ("s3", "s3a"):
        if con.filesystem_is_registered(protocol):
            con.unregister_filesystem(protocol)
    con.register_filesystem(fs)


def failure(what: str, url: S3Url, exc: BaseException) -> RuntimeFailure:
    """The RuntimeFailure (exit 1) for an operation on `url` the store refused."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RuntimeFailure(f"object store: cannot {what} {url.url}: {reason}")


# ---- listing ------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """One object under a listed root. rel: its key relative to the root ('/'-separated; the
    object's own name when the root is an object). mtime_ns: LastModified. start/end: the UTC
    span (naive) of its `date=`/`hour=` partition, None outside one."""

    url: str
    rel: str
    size: int
    etag: str
    mtime_ns: int
    start: datetime | None = None
    end: datetime | None = None


def list_parquet(
    fs: Any,
    root: S3Url,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ObjectInfo]:
    """The `*.parquet` objects at or under `root`, sorted by relative key.

    Keys with a segment starting with '.' or '_' (Spark's _temporary/, markers) are not flow
    data and are skipped. With `since`/`until` (timezone-aware), hive partitions whose span
    misses [since, until) are pruned. FlowInputError when there is nothing (or a malformed
    partition directory); RuntimeFailure when the store cannot be listed.
    """
    lo, hi = times.window_bound(since, "since"), times.window_bound(until, "until")
    # A fresh listing every time (the cache only keeps parent entries up to date, not the
    # children of a prefix another process added to).
    fs.invalidate_cache()
    try:
        found: dict[str, dict[str, Any]] = fs.find(root.path, detail=True)
    except FileNotFoundError:
        found = {}
    except OSError as exc:
        raise failure("list", root, exc) from None
    out: list[ObjectInfo] = []
    for name, info in found.items():
        if info.get("type") != "file" or not name.endswith(".parquet"):
            continue
        rel = name.rsplit("/", 1)[-1] if name == root.path else name[len(root.path) + 1 :]
        if any(p.startswith((".", "_")) for p in rel.split("/")):
            continue
        try:
            # The whole key counts, so a root at .../date=2026-11-01 still prunes by hour.
            span = partitions.span(name[len(root.bucket) + 1 :])
        except ValueError as exc:
            raise FlowInputError(f"flow logs: {root.url}/{rel}: {exc}") from None
        if span is not None and not partitions.meets(*span, lo, hi):
            continue
        modified = info.get("LastModified")
        mtime = int(modified.timestamp() * 1e9) if isinstance(modified, datetime) else 0
        out.append(
            ObjectInfo(
                url=f"{SCHEME}{name}",
                rel=rel,
                size=int(info.get("size") or 0),
                etag=str(info.get("ETag", "")),
                mtime_ns=mtime,
                start=span[0] if span else None,
                end=span[1] if span else None,
            )
        )
    if not out and lo is None and hi is None:
        raise FlowInputError(f"flow logs: {root.url}: no Parquet files (*.parquet) found")
    return sorted(out, key=lambda o: o.rel)
