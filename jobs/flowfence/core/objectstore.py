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

Writers that must not overwrite each other use `put_if`: `If-None-Match: *` to create,
`If-Match: <etag>` to replace. A lost precondition is `PreconditionLost` (exit code 1).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb

from flowfence.core.errors import ConfigError, FlowInputError, RuntimeFailure, StateError

SCHEME = "s3://"
AddressingStyle = Literal["auto", "path", "virtual"]
_STYLES: tuple[AddressingStyle, ...] = ("auto", "path", "virtual")
# Bucket names per the S3 rules (no dots next to each other, no IP-address look-alikes).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+")
# A key segment typed by the operator: no globs (DuckDB and fsspec expand them), no
# query/fragment characters, no control characters, no backslashes.
_SEGMENT = re.compile(r"[^\x00-\x1f\x7f*?\[\]{}#\\]+")
_DATE = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_HOUR = re.compile(r"hour=(\d{2})")
_LOST_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})


class PreconditionLost(StateError):
    """A conditional put found the object changed (or created) by another writer."""


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


def _fail(what: str, url: S3Url, exc: BaseException) -> RuntimeFailure:
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


def hive_span(rel: str) -> tuple[datetime, datetime] | None:
    """The UTC span (naive) of a path under `date=YYYY-MM-DD[/hour=HH]`, None outside one.
    ValueError names a malformed partition directory."""
    day: date | None = None
    hour: int | None = None
    for name in rel.split("/")[:-1]:
        if name.startswith("date="):
            match = _DATE.fullmatch(name)
            try:
                day = date.fromisoformat(match.group(1)) if match else None
            except ValueError:
                day = None
            if day is None:
                raise ValueError(f"bad partition directory {name!r}, expected date=YYYY-MM-DD")
        elif name.startswith("hour="):
            match = _HOUR.fullmatch(name)
            if day is None or match is None or int(match.group(1)) > 23:
                raise ValueError(
                    f"bad partition directory {name!r}, expected hour=00..23 inside date=YYYY-MM-DD"
                )
            hour = int(match.group(1))
    if day is None:
        return None
    start = datetime(day.year, day.month, day.day)
    if hour is None:
        return start, start + timedelta(days=1)
    start += timedelta(hours=hour)
    return start, start + timedelta(hours=1)


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


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
    lo, hi = _naive(since), _naive(until)
    # A fresh listing every time (the cache only keeps parent entries up to date, not the
    # children of a prefix another process added to).
    fs.invalidate_cache()
    try:
        found: dict[str, dict[str, Any]] = fs.find(root.path, detail=True)
    except FileNotFoundError:
        found = {}
    except OSError as exc:
        raise _fail("list", root, exc) from None
    out: list[ObjectInfo] = []
    for name, info in found.items():
        if info.get("type") != "file" or not name.endswith(".parquet"):
            continue
        rel = name.rsplit("/", 1)[-1] if name == root.path else name[len(root.path) + 1 :]
        if any(p.startswith((".", "_")) for p in rel.split("/")):
            continue
        try:
            # The whole key counts, so a root at .../date=2026-11-01 still prunes by hour.
            span = hive_span(name[len(root.bucket) + 1 :])
        except ValueError as exc:
            raise FlowInputError(f"flow logs: {root.url}/{rel}: {exc}") from None
        if span is not None and not ((hi is None or span[0] < hi) and (lo is None or span[1] > lo)):
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


# ---- small objects --------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """An object's bytes and the ETag to make a later `put_if` conditional on."""

    data: bytes
    etag: str


async def _get(fs: Any, url: S3Url) -> Blob:
    resp = await fs._call_s3("get_object", Bucket=url.bucket, Key=url.key)
    async with resp["Body"] as body:
        data = await body.read()
    return Blob(bytes(data), str(resp["ETag"]))


def read_object(fs: Any, url: S3Url) -> Blob | None:
    """The object at `url` with its ETag, None when there is none (one GET, no cache)."""
    import fsspec.asyn  # type: ignore[import-untyped]

    try:
        blob: Blob = fsspec.asyn.sync(fs.loop, _get, fs, url)
    except FileNotFoundError as exc:
        if _code(exc) == "NoSuchBucket":
            raise _fail("read", url, exc) from None
        return None
    except OSError as exc:
        raise _fail("read", url, exc) from None
    return blob


def write_object(fs: Any, url: S3Url, data: bytes) -> str:
    """Put `data` at `url` unconditionally; returns the new ETag."""
    try:
        resp = fs.call_s3("put_object", Bucket=url.bucket, Key=url.key, Body=data)
    except OSError as exc:
        raise _fail("write", url, exc) from None
    fs.invalidate_cache(url.path)
    return str(resp["ETag"])


def _code(exc: BaseException) -> str | None:
    """The S3 error code behind an s3fs exception (s3fs keeps botocore's as the cause)."""
    response = getattr(exc.__cause__, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _lost(exc: BaseException) -> bool:
    code = _code(exc)
    if code is not None:
        return code in _LOST_CODES
    return isinstance(exc, FileExistsError)


def put_if(fs: Any, url: S3Url, data: bytes, *, etag: str | None) -> str:
    """Put `data` at `url` only if the object is still as this writer last saw it: absent
    (`etag=None`, `If-None-Match: *`) or at `etag` (`If-Match`). Returns the new ETag.

    PreconditionLost when another writer got there first. A write that landed but whose
    answer was lost (and whose retry then failed the precondition) still counts as done:
    the object holding exactly `data` is checked before giving up.
    """
    match = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
    try:
        resp = fs.call_s3("put_object", Bucket=url.bucket, Key=url.key, Body=data, **match)
    except OSError as exc:
        if not _lost(exc):
            raise _fail("write", url, exc) from None
        current = read_object(fs, url)
        if current is not None and current.data == data:
            return current.etag
        expected = "no object" if etag is None else f"ETag {etag}"
        raise PreconditionLost(
            f"object store: {url.url} was changed by another writer since this run read it "
            f"(expected {expected}); this run's result was not committed, the other "
            "writer's stands"
        ) from None
    finally:
        fs.invalidate_cache(url.path)
    return str(resp["ETag"])


def delete(fs: Any, urls: Iterable[S3Url]) -> None:
    """Delete the objects (missing ones are fine)."""
    paths = [u.path for u in urls]
    if not paths:
        return
    try:
        fs.rm(paths)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _fail("delete", S3Url(paths[0].split("/", 1)[0]), exc) from None


def upload(fs: Any, local: Path, url: S3Url) -> None:
    """Copy a local file (or a directory tree, recursively) to `url`."""
    try:
        fs.put(str(local), url.path, recursive=local.is_dir())
    except OSError as exc:
        raise _fail("upload to", url, exc) from None
    fs.invalidate_cache(url.path)


def list_names(fs: Any, url: S3Url) -> list[str]:
    """The names of the objects directly under `url` (no recursion), sorted."""
    try:
        entries = fs.ls(url.path, detail=True, refresh=True)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _fail("list", url, exc) from None
    prefix = url.path + "/"
    return sorted(
        e["name"][len(prefix) :]
        for e in entries
        if e.get("type") == "file" and e["name"].startswith(prefix)
    )
