"""`--engine spark` on a Hadoop filesystem URL: Spark lists the files (spark_files.py), the
incremental planner prunes the partitions outside the window before anything is read, and the
run writes what the DuckDB engine writes from the same files.

`file://` stands in for `hdfs://` and `s3a://`: the listing goes through the same Hadoop
FileSystem API. The hive tree is made by `flowfence fixtures generate`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest
import sparktest
from conftest import CliResult
from pyspark.sql import SparkSession

from flowfence.cli import app as cli
from flowfence.core.errors import ConfigError, FlowInputError
from flowfence.flows import sources, spark_engine

pytestmark = pytest.mark.xdist_group("spark")

REPO = Path(__file__).resolve().parents[1]
# 30 hours from 2026-11-01T00; the default 24h lookback from FIRST starts at 2026-11-01T03.
FIRST, SECOND, THIRD = "2026-11-02T03:00:00Z", "2026-11-02T06:00:00Z", "2026-11-02T07:00:00Z"
GARBAGE = b"PAR1 this is not a Parquet file PAR1"
RunCli = Callable[[Sequence[str]], CliResult]


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    return sparktest.session()


def _generate(root: Path, hours: int) -> Path:
    args = ["fixtures", "generate", "--out", str(root), "--hours", str(hours)]
    assert cli.main([*args, "--rows", str(100 * hours)]) == 0
    return root


def _url(path: Path) -> str:
    # Not Path.as_uri(): Hadoop reads %-escapes literally.
    return "file://" + path.as_posix()


def test_hadoop_listing_matches_the_local_listing(spark: SparkSession, tmp_path: Path) -> None:
    flows = _generate(tmp_path / "flows", 4)
    hour = flows / "date=2026-11-01" / "hour=02"
    # What Spark and Hadoop leave beside the data, and other files: never flow logs.
    for junk in ("_SUCCESS", "_temporary/0/part-0.parquet", "date=2026-11-01/.part.parquet.crc",
                 "date=2026-11-01/hour=01/notes.txt", ".hidden/x.parquet"):  # fmt: skip
        (flows / junk).parent.mkdir(parents=True, exist_ok=True)
        (flows / junk).write_bytes(GARBAGE)
    single = next(hour.glob("*.parquet"))
    for local_path in (flows, hour, single):
        local, _ = sources.list_files(local_path)
        listed = spark_engine.list_files(_url(local_path), spark)
        assert len(listed) == (4 if local_path == flows else 1)
        assert [(f.rel, f.unit, f.start, f.end, f.size) for f in listed] == [
            (f.rel, f.unit, f.start, f.end, f.size) for f in local
        ]
        assert [urlsplit(f.path).scheme for f in listed] == ["file"] * len(listed)
        assert [urlsplit(f.path).path for f in listed] == [f.path for f in local]
        # Hadoop keeps milliseconds.
        assert [f.mtime_ns for f in listed] == [f.mtime_ns // 10**6 * 10**6 for f in local]
    assert [f.unit for f in spark_engine.list_files(_url(hour), spark)] == ["."]
    assert spark_engine.list_files(_url(single), spark)[0].start is None

    # A plain local path is listed by sources.py (nanosecond mtimes, as a DuckDB run records).
    assert spark_engine.list_files(str(flows), spark) == sources.list_files(flows)[0]


def test_hadoop_listing_skips_files_an_ingest_never_committed(
    spark: SparkSession, tmp_path: Path
) -> None:
    """An ingest store with the files of an input its manifest does not list (a writer killed
    between its renames and its manifest): Spark lists what sources.py lists, without them."""
    store = tmp_path / "store"
    assert cli.main(["ingest", "--out", str(store), str(REPO / "tests/ingest_data/flows.log")]) == 0
    committed = next(store.glob("date=*/hour=*/ingest-*.parquet"))
    orphan = committed.parent / "ingest-0123456789abcdef-0_0.parquet"
    shutil.copy(committed, orphan)
    listed = spark_engine.list_files(_url(store), spark)
    assert [f.rel for f in listed] == [f.rel for f in sources.list_files(store)[0]]
    assert orphan.relative_to(store).as_posix() not in {f.rel for f in listed}
    assert len(listed) == len(list(store.glob("date=*/hour=*/*.parquet"))) - 1


def test_hadoop_listing_errors_name_the_location(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(FlowInputError, match="nowhere: no such file or directory"):
        spark_engine.list_files(_url(tmp_path / "nowhere"), spark)
    (tmp_path / "empty" / "date=2026-11-01").mkdir(parents=True)
    with pytest.raises(FlowInputError, match=r"empty: no Parquet files \(\*\.parquet\) found"):
        spark_engine.list_files(_url(tmp_path / "empty"), spark)
    bad = tmp_path / "bad" / "date=2026-13-01" / "flows.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(GARBAGE)
    with pytest.raises(FlowInputError, match="bad partition directory 'date=2026-13-01'"):
        spark_engine.list_files(_url(tmp_path / "bad"), spark)
    with pytest.raises(FlowInputError, match='No FileSystem for scheme "nosuchfs"'):
        spark_engine.list_files("nosuchfs://somewhere/flows", spark)
    # pip's PySpark has no S3A jars: the message says what to add.
    with pytest.raises(ConfigError, match="S3AFileSystem not found: add the filesystem's jars"):
        spark_engine.list_files("s3a://flow-logs/calico", spark)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "state" not in p.relative_to(root).parts
    }


def _runs(out: Path) -> list[tuple[int, int]]:
    manifest = json.loads((out / "state" / "manifest.json").read_text())
    runs = pl.read_parquet(out / "state" / manifest["tables"]["runs"])
    return list(zip(runs["files_read"], runs["files_sealed"], strict=True))


def _run(run_cli: RunCli, engine: str, flows: str, out: Path, now: str) -> CliResult:
    return run_cli([
        "run", "--engine", engine, "--flows", flows, "--out", str(out), "--now", now,
        "--namespaces", str(REPO / "fixtures" / "namespaces.yaml"),
        "--existing-policies", str(REPO / "fixtures" / "policies"), "--output", "json",
    ])  # fmt: skip


def test_file_url_run_writes_what_duckdb_writes_and_reads_only_the_window(
    spark: SparkSession, tmp_path: Path, run_cli: RunCli
) -> None:
    flows = _generate(tmp_path / "flows", 30)
    # Before the window of every run below: a run that opened it would fail.
    (flows / "date=2026-11-01" / "hour=01" / "corrupt.parquet").write_bytes(GARBAGE)
    outs = {}
    for engine, location in (("duckdb", str(flows)), ("spark", _url(flows))):
        out = tmp_path / engine
        for now in (FIRST, SECOND):
            result = _run(run_cli, engine, location, out, now)
            assert result.code == 0, result.err
        outs[engine] = out
    spark_tree, duckdb_tree = _tree(outs["spark"]), _tree(outs["duckdb"])
    assert any(name.startswith("policies/") for name in spark_tree)
    assert spark_tree.keys() == duckdb_tree.keys()
    for name, data in duckdb_tree.items():
        assert spark_tree[name] == data, name
    # (files read, files sealed): 24 hours, the newest left open for lateArrivalGrace; then
    # the three new ones, nothing sealed before (the open one seals from the state's copy).
    assert _runs(outs["spark"]) == _runs(outs["duckdb"]) == [(24, 23), (3, 3)]

    # A corrupt file the next run does read (hour 05 is still open) stops it, named.
    corrupt = flows / "date=2026-11-02" / "hour=05" / "corrupt.parquet"
    corrupt.write_bytes(GARBAGE)
    failed = _run(run_cli, "spark", _url(flows), outs["spark"], THIRD)
    assert failed.code == 2, failed.err
    assert "flow logs:" in failed.err and str(corrupt) in failed.err
    assert _runs(outs["spark"]) == [(24, 23), (3, 3)]  # no state committed


def test_duckdb_engine_points_hadoop_urls_to_spark(tmp_path: Path, run_cli: RunCli) -> None:
    hdfs = _run(run_cli, "duckdb", "hdfs://namenode:8020/flows", tmp_path / "a", FIRST)
    assert hdfs.code == 2
    assert "hdfs://namenode:8020/flows: a Hadoop filesystem URL" in hdfs.err
    assert "--engine spark" in hdfs.err
    local = _run(run_cli, "duckdb", _url(tmp_path / "flows"), tmp_path / "b", FIRST)
    assert local.code == 2
    assert f"or give the local path {tmp_path / 'flows'}" in local.err
