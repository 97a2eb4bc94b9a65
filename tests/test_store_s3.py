"""store_s3.py: `ingest` into an object-store location on the local S3 server (moto on
127.0.0.1): the same objects a local store gets, idempotent, serialised by a lock object."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from ingest_export import enterprise_docs, raw_rows, write_lines
from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401

from flowfence.core import objects, objectstore
from flowfence.core.errors import BadInput
from flowfence.ingest import store_s3
from flowfence.ingest.convert import ingest
from flowfence.ingest.store_s3 import StoreLocked

REPO = Path(__file__).resolve().parents[1]
HOURS = REPO / "fixtures" / "data" / "demo" / "date=2026-11-01"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two Felix flows.log files: hours 00-01 and hour 02 of the demo day."""
    root = tmp_path_factory.mktemp("logs")
    first = raw_rows(HOURS / "hour=00") + raw_rows(HOURS / "hour=01")
    return [
        write_lines(root / "a" / "flows.log", enterprise_docs(first)),
        write_lines(root / "b" / "flows.log", enterprise_docs(raw_rows(HOURS / "hour=02"))),
    ]


def _local(tmp_path: Path, logs: list[Path]) -> Path:
    store = tmp_path / "local"
    ingest(logs, store, fmt="enterprise")
    return store


def _rows(con: duckdb.DuckDBPyConnection, files: list[str]) -> list[tuple[object, ...]]:
    query = "SELECT * FROM read_parquet($f, hive_partitioning = false) ORDER BY ALL"
    return con.sql(query, params={"f": files}).fetchall()


def test_ingest_to_s3_publishes_what_a_local_store_holds(
    s3: S3, logs: list[Path], tmp_path: Path
) -> None:
    summary = store_s3.ingest_to(logs, s3.url("store"), fmt="enterprise")
    assert summary.count("ingested") == 2
    local = _local(tmp_path, logs)
    keys = s3.keys("store")
    data = sorted(k for k in keys if k.endswith(".parquet"))
    expected = sorted(
        f"store/{p.relative_to(local).as_posix()}" for p in local.glob("date=*/hour=*/*.parquet")
    )
    assert data == expected
    assert {k.split("/")[2] for k in data} == {"hour=00", "hour=01", "hour=02"}
    assert set(keys) - set(data) == {"store/_ingest/manifest.json"}  # the lock is gone
    remote = json.loads(s3.get("store/_ingest/manifest.json"))
    mine = json.loads((local / "_ingest" / "manifest.json").read_bytes())
    assert remote["entries"].keys() == mine["entries"].keys()

    con = duckdb.connect()
    objectstore.register(con, s3.fs)
    assert _rows(con, [f"s3://{s3.bucket}/{k}" for k in data]) == _rows(
        con, [str(local / k.removeprefix("store/")) for k in data]
    )

    # Ingesting the same files again adds nothing and writes nothing.
    etag = objects.read_object(s3.fs, objectstore.parse(s3.url("store/_ingest/manifest.json")))
    again = store_s3.ingest_to(logs, s3.url("store"), fmt="enterprise")
    assert again.count("skipped") == 2 and again.rows == 0
    assert s3.keys("store") == keys
    after = objects.read_object(s3.fs, objectstore.parse(s3.url("store/_ingest/manifest.json")))
    assert after == etag


def test_a_second_ingest_is_refused_while_the_lock_is_held(s3: S3, logs: list[Path]) -> None:
    lock = objectstore.parse(s3.url("store/_ingest/lock"))
    objects.write_object(s3.fs, lock, b'{"host": "node-7", "pid": 42}')
    with pytest.raises(StoreLocked, match=r"locked by .*node-7.*delete s3://.*/_ingest/lock"):
        store_s3.ingest_to(logs, s3.url("store"), fmt="enterprise")
    assert s3.keys("store") == ["store/_ingest/lock"]  # nothing written, the lock kept
    objects.delete(s3.fs, [lock])
    assert store_s3.ingest_to(logs[:1], s3.url("store"), fmt="enterprise").rows > 0


def test_objects_of_an_unfinished_ingest_are_removed(s3: S3, logs: list[Path]) -> None:
    store_s3.ingest_to(logs[:1], s3.url("store"), fmt="enterprise")
    kept = s3.keys("store")
    # A writer that died after publishing its objects, before its manifest.
    dead = "store/date=2026-11-01/hour=05/ingest-00000000deadbeef-0_0.parquet"
    s3.upload(HOURS / "hour=05" / "flows-000-0.parquet", dead)
    foreign = "store/date=2026-11-01/hour=05/exported-by-spark.parquet"
    s3.upload(HOURS / "hour=05" / "flows-000-0.parquet", foreign)
    store_s3.ingest_to(logs[1:], s3.url("store"), fmt="enterprise")
    keys = s3.keys("store")
    assert dead not in keys
    assert foreign in keys  # not ours: never deleted
    assert set(kept) < set(keys)


def test_compact_needs_a_local_store(s3: S3, logs: list[Path]) -> None:
    with pytest.raises(BadInput, match="--compact"):
        store_s3.ingest_to(logs, s3.url("store"), compact=True)
    assert s3.keys("store") == []
