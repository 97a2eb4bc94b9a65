"""A local S3-compatible server (moto) on 127.0.0.1 for object-storage tests.

Import the fixtures into a test module
(`from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401`, then ask for `s3`).
`moto_endpoint` starts one moto server per test process (each xdist worker has its own) on
127.0.0.1 with a free port. `s3` gives each test its own empty bucket and points the AWS
environment at the server, with every other way botocore could reach the network (instance
metadata, container credentials, profiles, proxies) switched off: nothing leaves loopback.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from flowfence.core import objects, objectstore

_buckets = itertools.count()
# Variables that would send botocore elsewhere than the local server.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_ENDPOINT_URL_S3",
    "FLOWFENCE_S3_ADDRESSING_STYLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@dataclass(frozen=True)
class S3:
    """One test's bucket on the local server. `fs` is a filesystem from the environment the
    fixture set, as the job builds it."""

    endpoint: str
    bucket: str
    fs: Any

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"

    def upload(self, local: Path, key: str) -> None:
        objects.upload(self.fs, local, objectstore.parse(self.url(key)))

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, fresh from the server (no listing cache)."""
        self.fs.invalidate_cache()
        found = self.fs.find(f"{self.bucket}/{prefix}".rstrip("/"))
        return sorted(k[len(self.bucket) + 1 :] for k in found)

    def get(self, key: str) -> bytes:
        blob = objects.read_object(self.fs, objectstore.parse(self.url(key)))
        assert blob is not None, f"no object {key}"
        return blob.data


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    # Werkzeug logs every request at INFO; a run reads hundreds of ranges.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(name="s3")
def s3_fixture(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> S3:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "flowfence-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "flowfence-test-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fs = objectstore.filesystem()
    bucket = f"flowfence-test-{next(_buckets)}"
    # us-east-1 takes no LocationConstraint (s3fs' mkdir would send one).
    fs.call_s3("create_bucket", Bucket=bucket)
    return S3(endpoint=moto_endpoint, bucket=bucket, fs=fs)
