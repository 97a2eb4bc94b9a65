"""The Spark engine computes the DuckDB engine's edges, and so the same manifests.

PySpark runs in local[2] mode on loopback only, one session for all Spark tests (sparktest.py).
Every comparison is against the DuckDB engine run on the same files in the same test: frames
after `edges.conform`, and manifest bytes through the downstream stages `pipeline.compute` uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import polars as pl
import pytest
import sparktest
from polars.testing import assert_frame_equal
from pyspark.sql import SparkSession

from flowfence.calico import names as validate
from flowfence.cli import app as cli
from flowfence.config.settings import Settings
from flowfence.core.errors import FlowInputError
from flowfence.flows import edges, encodings, sources, spark_engine, spark_files, spark_sql
from flowfence.learn import exclude, namespaces, rules
from flowfence.render import manifests as render
from flowfence.state import lifecycle

# One JVM for the Spark tests: with `pytest -n 2 --dist loadgroup` every test here runs in one
# worker (plain `--dist load` would start a Spark session in each worker that gets one of them).
pytestmark = pytest.mark.xdist_group("spark")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "data" / "demo"
NOW = datetime(2026, 11, 2, tzinfo=UTC)
SINCE = NOW - Settings().initial_lookback
DEMO_GLOB = str(DEMO / "**" / "*.parquet")


@pytest.fixture(scope="module")
def spark() -> SparkSession:
    return sparktest.session()


def _duckdb_edges(flows: Path, since: datetime | None, until: datetime | None) -> pl.DataFrame:
    con = duckdb.connect()
    try:
        sources.bind_flows(con, flows, since=since, until=until)
        return edges.aggregate(con, since=since, until=until)
    finally:
        con.close()


@pytest.fixture(scope="module")
def demo_frames(spark: SparkSession) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(DuckDB, Spark) edges of the demo over the window `flowfence run` reads by default."""
    duck = _duckdb_edges(DEMO, SINCE, NOW)
    on_spark = spark_engine.aggregate_spark(str(DEMO), since=SINCE, until=NOW, session=spark)
    return duck, on_spark


def _manifests(all_edges: pl.DataFrame, settings: Settings) -> Mapping[str, bytes]:
    """The stages after the aggregation, in the order pipeline.compute runs them."""
    good, _ = validate.screen(all_edges)
    ns_file = namespaces.load_namespaces(REPO / "fixtures" / "namespaces.yaml")
    selection = namespaces.select_namespaces(
        namespaces.discover_namespaces(good), ns_file.labels, settings
    )
    learnable, _ = exclude.exclude(
        good,
        selection.selected,
        settings,
        tier_orders=exclude.known_tier_orders(settings),
        decided_before=None,
    )
    recs = rules.build(learnable, selection.selected, settings)
    statuses = {}
    for ns, rec in recs.items():
        changed = rec.last_changed()
        state = lifecycle.status(
            changed,
            NOW.replace(tzinfo=None),
            interval=settings.interval,
            stabilization=settings.stabilization_period,
        )
        statuses[ns] = (state, changed or NOW.replace(tzinfo=None))
    return render.render(recs, settings, statuses=statuses)


def test_spark_edges_equal_duckdb_edges_on_the_demo(
    demo_frames: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    duck, on_spark = demo_frames
    assert duck.height > 100
    assert on_spark.schema == pl.Schema(edges.EDGE_SCHEMA)
    assert_frame_equal(on_spark, duck)


def test_spark_edges_render_byte_identical_manifests(
    demo_frames: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    duck, on_spark = demo_frames
    settings = Settings()
    expected = _manifests(duck, settings)
    assert len(expected) >= 3
    assert _manifests(on_spark, settings) == expected


def test_window_prunes_the_same_partitions_and_rows(spark: SparkSession) -> None:
    since, until = (
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 13, 15, tzinfo=UTC),
    )
    con = duckdb.connect()
    bound = sources.bind_flows(con, DEMO, since=since, until=until)
    listed = sorted(str(p) for p in DEMO.rglob("*.parquet"))
    naive = (since.replace(tzinfo=None), until.replace(tzinfo=None))
    kept = spark_files.select_files(listed, *naive)
    assert kept == list(bound.files)
    assert len(kept) == 9  # hours 05..13 of 24

    scanned = spark_engine.scan(DEMO, since=since, until=until, session=spark)
    assert [Path(urlsplit(f).path) for f in scanned.source.files] == [Path(f) for f in kept]
    assert scanned.source.hive and scanned.source.columns == bound.columns
    on_spark = scanned.edges
    assert_frame_equal(on_spark, _duckdb_edges(DEMO, since, until))
    early = on_spark.filter(pl.col("first_seen") < datetime(2026, 11, 1, 5, 25))
    assert early.height == 0  # 5-minute rows that ended before 05:30 are out

    nothing = spark_engine.aggregate_spark(
        DEMO, since=NOW + timedelta(days=3), until=None, session=spark
    )
    assert nothing.height == 0 and nothing.schema == pl.Schema(edges.EDGE_SCHEMA)


def test_paths_with_glob_and_uri_characters_are_read_literally(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "odd [dir] {x} #1 %20"
    for hour in ("04", "05", "06"):
        part = Path("date=2026-11-01") / f"hour={hour}"
        (root / part).mkdir(parents=True)
        for file in (DEMO / part).glob("*.parquet"):
            (root / part / file.name).write_bytes(file.read_bytes())
    since, until = datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 1, 7, tzinfo=UTC)
    scanned = spark_engine.scan(root, since=since, until=until, session=spark)
    assert len(scanned.source.files) == 2
    assert_frame_equal(scanned.edges, _duckdb_edges(root, since, until))


# Other encodings of the demo rows, written by DuckDB: each selects the contract columns
# from the raw demo and re-encodes some of them; the DuckDB engine reads them as well.
_ENCODINGS = {
    "timestamptz-map-list-number": """
        SELECT to_timestamp(start_time) AS start_time, to_timestamp(end_time) AS end_time,
               source_type, source_namespace, source_name_aggr, source_ip,
               map_from_entries(list_transform(source_labels.labels, lambda l: {
                   'k': split_part(l, '=', 1), 'v': split_part(l, '=', 2)})) AS source_labels,
               upper(dest_type) AS dest_type, dest_namespace, dest_name_aggr, dest_ip,
               dest_labels.labels AS dest_labels, CAST(dest_port AS BIGINT) AS dest_port,
               CASE proto WHEN 'tcp' THEN 6 WHEN 'udp' THEN 17 ELSE 1 END AS proto,
               action, reporter, dest_service_name, dest_service_port_num,
               array_to_string(list_transform(dest_domains, lambda d: upper(d)), ', ')
                   AS dest_domains,
               list_concat(policies.enforced_policies, ['-']) AS policies,
               bytes_in, bytes_out
        FROM read_parquet($files, hive_partitioning = false)
    """,
    "timestamp-float-enforced-or-all": """
        SELECT make_timestamp(start_time * 1000000 + 250000) AS start_time,
               CAST(end_time AS DOUBLE) + 0.5 AS end_time,
               source_type, coalesce(nullif(source_namespace, '-'), '') AS source_namespace,
               source_name_aggr, source_ip, source_labels,
               dest_type, dest_namespace, dest_name_aggr, dest_ip, dest_labels, dest_port,
               CASE proto WHEN 'tcp' THEN ' TCP' WHEN 'udp' THEN '17' ELSE proto END AS proto,
               upper(action) AS action, reporter,
               {'enforced_policies': CASE WHEN hash(start_time, host) % 2 = 0
                                          THEN policies.enforced_policies END,
                'all_policies': policies.enforced_policies,
                'pending_policies': policies.pending_policies} AS policies,
               num_flows, packets_in, packets_out, host
        FROM read_parquet($files, hive_partitioning = false)
    """,
}

# The fragments each encoding exercises (the demo itself covers the Calico OSS shape).
_SECTIONS = {
    "timestamptz-map-list-number": {
        "time_timestamptz", "labels_map", "labels_list", "proto_number", "domains_text",
        "hits_list", "absent_text", "absent_one", "absent_zero",
    },
    "timestamp-float-enforced-or-all": {
        "time_timestamp", "time_epoch_float", "proto_text", "hits_enforced_or_all",
        "hits_pending", "absent_list",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_ENCODINGS))
def test_other_encodings_normalise_alike(spark: SparkSession, tmp_path: Path, name: str) -> None:
    target = tmp_path / name / "flows.parquet"
    target.parent.mkdir()
    con = duckdb.connect()
    files = sorted(str(p) for p in DEMO.rglob("*.parquet"))
    rel = con.sql(_ENCODINGS[name], params={"files": files})
    rel.write_parquet(str(target))

    contract = {*encodings.REQUIRED, *encodings.OPTIONAL}
    read = con.read_parquet(str(target))
    duck_plan = encodings.plan(
        {c: t for c, t in zip(read.columns, read.types, strict=True) if c in contract}
    )
    spark_plan = spark_engine.plan(spark.read.parquet(str(target)), [str(target)])
    assert spark_plan == duck_plan
    assert {section for _, section, _ in duck_plan} >= _SECTIONS[name]

    duck = _duckdb_edges(target.parent, SINCE, NOW)
    on_spark = spark_engine.aggregate_spark(target.parent, since=SINCE, until=NOW, session=spark)
    assert duck.height > 100
    assert_frame_equal(on_spark, duck)


def test_input_errors_name_the_problem(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(FlowInputError, match="no such file"):
        spark_engine.aggregate_spark(tmp_path / "nowhere", since=None, until=None, session=spark)

    con = duckdb.connect()
    one = str(next(DEMO.rglob("*.parquet")))
    lacking = tmp_path / "lacking" / "flows.parquet"
    lacking.parent.mkdir()
    con.sql("SELECT * EXCLUDE (proto) FROM read_parquet($f)", params={"f": one}).write_parquet(
        str(lacking)
    )
    with pytest.raises(FlowInputError, match="missing required column proto"):
        spark_engine.aggregate_spark(lacking.parent, since=None, until=None, session=spark)

    wrong = tmp_path / "wrong" / "flows.parquet"
    wrong.parent.mkdir()
    con.sql(
        "SELECT * REPLACE (42 AS source_labels) FROM read_parquet($f)", params={"f": one}
    ).write_parquet(str(wrong))
    with pytest.raises(FlowInputError, match="'source_labels' has type int"):
        spark_engine.aggregate_spark(wrong.parent, since=None, until=None, session=spark)

    corrupt = tmp_path / "corrupt" / "flows.parquet"
    corrupt.parent.mkdir()
    data = bytearray(Path(one).read_bytes())
    data[200:2000] = b"\x55" * 1800  # data pages, not the footer: fails only when scanned
    corrupt.write_bytes(bytes(data))
    with pytest.raises(FlowInputError, match=r"cannot read: \[FAILED_READ_FILE"):
        spark_engine.aggregate_spark(corrupt.parent, since=None, until=None, session=spark)

    bad = tmp_path / "hive" / "date=2026-13-01" / "flows.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(Path(one).read_bytes())
    with pytest.raises(FlowInputError, match="bad partition directory 'date=2026-13-01'"):
        spark_engine.aggregate_spark(tmp_path / "hive", since=None, until=None, session=spark)


def test_every_normalising_fragment_translates_and_unknown_functions_are_refused() -> None:
    # The encoding tests above run most fragments on Spark; this keeps a fragment added to
    # sql/flows_normalise.sql from reaching Spark with a DuckDB-only function in it.
    # row_hash and hash_found serve DuckDB's pre-aggregation alone (flows/pregroup.py): Spark's
    # view is per row, and Spark's hash() is another function, so it is refused, not translated.
    duckdb_only = {"empty", "row_hash", "hash_found"}
    fragments = {k: v for k, v in encodings.sections().items() if k not in duckdb_only}
    for name, text in fragments.items():
        spark_text = spark_sql.translate(text.replace("{col}", '"c"'))
        assert "lambda" not in spark_text.lower(), name
    with pytest.raises(ValueError, match=r"hash\(\)"):
        spark_sql.translate(encodings.fragment("row_hash", "c"))
    assert spark_sql.translate("make_timestamp(epoch_us(t))") == "TIMESTAMP_MICROS(UNIX_MICROS(t))"
    with pytest.raises(ValueError, match="no Spark translation for DuckDB function"):
        spark_sql.translate("flowfence_unknown(t)")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "state" not in p.relative_to(root).parts
    }


def test_run_with_engine_spark_writes_what_duckdb_writes(
    spark: SparkSession, tmp_path: Path
) -> None:
    """`flowfence run --engine spark` end to end: two incremental runs, byte-identical output."""
    common = [
        "--flows",
        str(DEMO),
        "--namespaces",
        str(REPO / "fixtures" / "namespaces.yaml"),
        "--existing-policies",
        str(REPO / "fixtures" / "policies"),
        "--output",
        "json",
    ]
    outs = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / engine
        for now in ("2026-11-01T18:00:00Z", "2026-11-02T00:00:00Z"):
            args = ["run", *common, "--out", str(out), "--now", now, "--engine", engine]
            assert cli.main(args) == 0
        outs[engine] = _tree(out)
    assert outs["spark"].keys() == outs["duckdb"].keys()
    assert any(name.startswith("policies/") for name in outs["spark"])
    for name, data in outs["duckdb"].items():
        assert outs["spark"][name] == data, name
    assert spark.getActiveSession() is not None  # the caller's session is left running
