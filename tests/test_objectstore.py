"""objectstore.py against a real S3-compatible server (moto) on 127.0.0.1: URL validation,
settings from the AWS environment, listing with hive pruning, DuckDB reading `s3://` Parquet
through the registered s3fs filesystem (no httpfs), and conditional puts (objects.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import s3fs  # type: ignore[import-untyped]
from s3server import S3, moto_endpoint, s3_fixture  # noqa: F401

from flowfence.core import objects, objectstore
from flowfence.core.errors import ConfigError, FlowInputError, RuntimeFailure, StateError
from flowfence.core.objects import PreconditionLost
from flowfence.core.objectstore import S3Url

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "data" / "demo"
ONE = DEMO / "date=2026-11-01" / "hour=07" / "flows-000-0.parquet"


# ---- URLs and settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "key"),
    [
        ("s3://flows", "flows", ""),
        ("s3://flows/", "flows", ""),
        ("s3://my.bucket-1/calico/flows/", "my.bucket-1", "calico/flows"),
        ("s3://b12/date=2026-11-01/hour=00", "b12", "date=2026-11-01/hour=00"),
    ],
)
def test_parse_accepts_bucket_and_prefix(url: str, bucket: str, key: str) -> None:
    parsed = objectstore.parse(url)
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert objectstore.parse(parsed.url) == parsed
    assert objectstore.is_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "flows/local",
        "S3://flows/x",
        "s3://",
        "s3://ab",
        "s3://Upper/x",
        "s3://a..b/x",
        "s3://192.168.1.1/x",
        "s3://bucket//x",
        "s3://bucket/../etc",
        "s3://bucket/a/./b",
        "s3://bucket/*.parquet",
        "s3://bucket/a[1]",
        "s3://bucket/x#frag",
        "s3://bucket/x?versionId=1",
        "s3://bucket/new\nline",
    ],
)
def test_parse_rejects_what_is_not_a_plain_location(url: str) -> None:
    with pytest.raises(ConfigError):
        objectstore.parse(url)


def test_join_validates_each_segment() -> None:
    root = objectstore.parse("s3://bucket/state")
    assert root.join("manifest.json").url == "s3://bucket/state/manifest.json"
    assert root.join("a/b", "c").key == "state/a/b/c"
    assert S3Url("bucket").join("x").path == "bucket/x"
    for bad in ("..", "a//b", "x*", ""):
        with pytest.raises(ConfigError):
            root.join(bad)


def test_settings_follow_the_aws_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://generic:9000",
        "AWS_ENDPOINT_URL_S3": "https://minio.local:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
    }
    got = objectstore.settings(env)
    assert got.endpoint_url == "https://minio.local:9000"
    assert got.region == "eu-central-1"
    assert got.addressing_style == "path"
    plain = objectstore.settings({"AWS_DEFAULT_REGION": "us-west-2"})
    assert (plain.endpoint_url, plain.region, plain.addressing_style) == (
        None,
        "us-west-2",
        "auto",
    )
    styled = objectstore.settings({**env, "FLOWFENCE_S3_ADDRESSING_STYLE": "virtual"})
    assert styled.addressing_style == "virtual"
    for bad in (
        {"AWS_ENDPOINT_URL": "minio:9000"},
        {"AWS_ENDPOINT_URL": "http://host/path"},
        {"FLOWFENCE_S3_ADDRESSING_STYLE": "sideways"},
    ):
        with pytest.raises(ConfigError):
            objectstore.settings(bad)


# ---- listing and DuckDB ---------------------------------------------------------------


def test_list_parquet_lists_prunes_and_skips_markers(s3: S3) -> None:
    s3.upload(DEMO, "flows")
    s3.upload(ONE, "flows/_temporary/0/part.parquet")
    s3.upload(ONE, "flows/date=2026-11-01/hour=03/.part.parquet")
    s3.upload(REPO / "fixtures" / "namespaces.yaml", "flows/README.yaml")
    root = objectstore.parse(s3.url("flows"))
    listed = objectstore.list_parquet(s3.fs, root)
    local = sorted(p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*.parquet"))
    assert [o.rel for o in listed] == local
    assert all(o.url == f"{root.url}/{o.rel}" for o in listed)
    assert {o.size for o in listed} == {p.stat().st_size for p in DEMO.rglob("*.parquet")}
    assert all(o.etag and o.mtime_ns > 0 for o in listed)

    window = objectstore.list_parquet(
        s3.fs,
        root,
        since=datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        until=datetime(2026, 11, 1, 9, tzinfo=UTC),
    )
    assert [o.rel.split("/")[1] for o in window] == ["hour=06", "hour=07", "hour=08"]
    assert (window[0].start, window[0].end) == (
        datetime(2026, 11, 1, 6),
        datetime(2026, 11, 1, 7),
    )

    day = objectstore.parse(s3.url("flows/date=2026-11-01"))
    late = objectstore.list_parquet(s3.fs, day, since=datetime(2026, 11, 1, 22, tzinfo=UTC))
    assert [o.rel for o in late] == ["hour=22/flows-000-0.parquet", "hour=23/flows-000-0.parquet"]

    single = objectstore.parse(s3.url("flows/date=2026-11-01/hour=07/flows-000-0.parquet"))
    assert [o.rel for o in objectstore.list_parquet(s3.fs, single)] == ["flows-000-0.parquet"]


def test_list_parquet_reports_empty_and_malformed_inputs(s3: S3) -> None:
    with pytest.raises(FlowInputError, match="no Parquet files"):
        objectstore.list_parquet(s3.fs, objectstore.parse(s3.url("nothing")))
    s3.upload(ONE, "bad/date=2026-11-31/x.parquet")
    with pytest.raises(FlowInputError, match=r"date=2026-11-31"):
        objectstore.list_parquet(s3.fs, objectstore.parse(s3.url("bad")))


def test_duckdb_reads_s3_parquet_through_the_registered_filesystem(s3: S3) -> None:
    s3.upload(DEMO, "flows")
    urls = [o.url for o in objectstore.list_parquet(s3.fs, objectstore.parse(s3.url("flows")))]
    local = [str(p) for p in sorted(DEMO.rglob("*.parquet"))]
    con = duckdb.connect()
    objectstore.register(con, s3.fs)
    objectstore.register(con, s3.fs)  # a second registration replaces the first
    query = (
        "SELECT hour, count(*) AS n, sum(bytes_in)::BIGINT AS b FROM read_parquet($f, "
        "hive_partitioning = true) GROUP BY hour ORDER BY hour"
    )
    remote = con.sql(query, params={"f": urls}).fetchall()
    assert remote == duckdb.connect().sql(query, params={"f": local}).fetchall()
    assert len(remote) == 24
    glob = con.sql(
        "SELECT count(*) FROM read_parquet($g, hive_partitioning = true) WHERE hour = '05'",
        params={"g": s3.url("flows/**/*.parquet")},
    ).fetchall()
    assert glob == [(dict((h, n) for h, n, _ in remote)["05"],)]
    meta = con.sql(
        "SELECT sum(num_rows)::BIGINT FROM parquet_file_metadata($f)", params={"f": urls}
    )
    assert meta.fetchall() == [(sum(n for _, n, _ in remote),)]
    # Offline by construction: httpfs is neither loaded nor needed.
    loaded = con.sql(
        "SELECT extension_name FROM duckdb_extensions() WHERE loaded AND extension_name = 'httpfs'"
    ).fetchall()
    assert loaded == []


def test_duckdb_writes_a_parquet_object(s3: S3) -> None:
    con = duckdb.connect()
    objectstore.register(con, s3.fs)
    target = s3.url("out/t.parquet")
    con.sql(
        f"COPY (SELECT range AS i FROM range(5)) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
    )
    assert con.sql(
        "SELECT sum(i)::BIGINT FROM read_parquet($t)", params={"t": target}
    ).fetchall() == [(10,)]
    assert s3.keys("out") == ["out/t.parquet"]


# ---- small objects and conditional puts -----------------------------------------------


def test_read_write_and_delete_small_objects(s3: S3) -> None:
    url = objectstore.parse(s3.url("state/manifest.json"))
    assert objects.read_object(s3.fs, url) is None
    etag = objects.write_object(s3.fs, url, b"one")
    blob = objects.read_object(s3.fs, url)
    assert blob == objects.Blob(b"one", etag)
    assert objects.list_names(s3.fs, objectstore.parse(s3.url("state"))) == ["manifest.json"]
    objects.delete(s3.fs, [url, url.join("absent")])
    assert objects.read_object(s3.fs, url) is None
    assert objects.list_names(s3.fs, objectstore.parse(s3.url("state"))) == []


def test_put_if_create_only_lets_one_writer_win(s3: S3) -> None:
    url = objectstore.parse(s3.url("state/manifest.json"))
    first = objects.put_if(s3.fs, url, b"writer A", etag=None)
    with pytest.raises(PreconditionLost, match="changed by another writer") as lost:
        objects.put_if(s3.fs, url, b"writer B", etag=None)
    assert isinstance(lost.value, StateError)
    assert lost.value.exit_code == 1
    assert s3.get("state/manifest.json") == b"writer A"
    # The same bytes again is a retried write whose answer was lost, not a second writer.
    assert objects.put_if(s3.fs, url, b"writer A", etag=None) == first


def test_put_if_replace_needs_the_etag_last_read(s3: S3) -> None:
    url = objectstore.parse(s3.url("state/manifest.json"))
    base = objects.put_if(s3.fs, url, b"generation 1", etag=None)
    # Two writers read generation 1; A commits generation 2 first, B's replace must fail.
    a = objects.put_if(s3.fs, url, b"generation 2 by A", etag=base)
    assert a != base
    with pytest.raises(PreconditionLost, match=base.replace('"', "")):
        objects.put_if(s3.fs, url, b"generation 2 by B", etag=base)
    assert s3.get("state/manifest.json") == b"generation 2 by A"
    # Replacing an object someone deleted meanwhile is lost too.
    objects.delete(s3.fs, [url])
    with pytest.raises(PreconditionLost):
        objects.put_if(s3.fs, url, b"generation 3 by A", etag=a)
    assert objects.read_object(s3.fs, url) is None


def test_missing_bucket_is_a_runtime_failure(s3: S3) -> None:
    url = objectstore.parse("s3://flowfence-no-such-bucket/state/manifest.json")
    with pytest.raises(RuntimeFailure, match="flowfence-no-such-bucket"):
        objects.read_object(s3.fs, url)
    with pytest.raises(RuntimeFailure):
        objects.write_object(s3.fs, url, b"x")


def test_each_listing_sees_what_another_client_wrote_since(s3: S3) -> None:
    s3.upload(ONE, "flows/date=2026-11-01/hour=07/a.parquet")
    root = objectstore.parse(s3.url("flows"))
    assert [o.rel for o in objectstore.list_parquet(s3.fs, root)] == [
        "date=2026-11-01/hour=07/a.parquet"
    ]
    assert objectstore.filesystem() is s3.fs  # one instance per configuration and process
    other = s3fs.S3FileSystem(
        endpoint_url=s3.endpoint, key="flowfence-test", secret="x", skip_instance_cache=True
    )
    other.put(str(ONE), f"{s3.bucket}/flows/date=2026-11-01/hour=08/b.parquet")
    assert len(objectstore.list_parquet(s3.fs, root)) == 2
