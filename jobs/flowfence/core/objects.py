"""Single objects in the store: read one with its ETag, write, put conditionally, delete,
upload a file, list the names under a prefix.

Writers that must not overwrite each other use `put_if`: `If-None-Match: *` to create,
`If-Match: <etag>` to replace. A lost precondition is `PreconditionLost` (exit code 1).
Every call goes to the store (no listing cache), and every write drops the cached entries
of what it wrote, so a reader in this process never sees a stale object.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowfence.core.errors import StateError
from flowfence.core.objectstore import S3Url, failure

_LOST_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})


class PreconditionLost(StateError):
    """A conditional put found the object changed (or created) by another writer."""


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
            raise failure("read", url, exc) from None
        return None
    except OSError as exc:
        raise failure("read", url, exc) from None
    return blob


def write_object(fs: Any, url: S3Url, data: bytes) -> str:
    """Put `data` at `url` unconditionally; returns the new ETag."""
    try:
        resp = fs.call_s3("put_object", Bucket=url.bucket, Key=url.key, Body=data)
    except OSError as exc:
        raise failure("write", url, exc) from None
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
            raise failure("write", url, exc) from None
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
        raise failure("delete", S3Url(paths[0].split("/", 1)[0]), exc) from None


def upload(fs: Any, local: Path, url: S3Url) -> None:
    """Copy a local file (or a directory tree, recursively) to `url`."""
    try:
        fs.put(str(local), url.path, recursive=local.is_dir())
    except OSError as exc:
        raise failure("upload to", url, exc) from None
    fs.invalidate_cache(url.path)


def list_names(fs: Any, url: S3Url) -> list[str]:
    """The names of the objects directly under `url` (no recursion), sorted."""
    try:
        entries = fs.ls(url.path, detail=True, refresh=True)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise failure("list", url, exc) from None
    prefix = url.path + "/"
    return sorted(
        e["name"][len(prefix) :]
        for e in entries
        if e.get("type") == "file" and e["name"].startswith(prefix)
    )
