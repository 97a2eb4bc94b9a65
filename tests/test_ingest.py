"""`flowfence ingest`: Calico Enterprise JSON lines and Goldmane NDJSON into the Parquet store.

The stores written here are read back through `sources.bind_flows`, the job's own loader, so
every assertion is about what `flowfence run` would see.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from ingest_export import stored_rows

from flowfence.cli.app import main
from flowfence.flows import sources
from flowfence.ingest.convert import ingest
from flowfence.ingest.enterprise import enterprise_row
from flowfence.ingest.goldmane import goldmane_row
from flowfence.ingest.rows import NAMES, LineError
from flowfence.ingest.store import Store

DATA = Path(__file__).resolve().parent / "ingest_data"


def flows(store: Path, order: str = "start_time, reporter, dest_port") -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        sources.bind_flows(con, store)
        return list(con.sql(f"SELECT * FROM flows ORDER BY {order}").pl().iter_rows(named=True))
    finally:
        con.close()


count = stored_rows


def raw(store: Path) -> list[dict[str, Any]]:
    """The rows as stored, straight from the Parquet files."""
    files = [str(store / f) for f in data_files(store)]
    return pq.ParquetDataset(files).read().to_pylist() if files else []


def data_files(store: Path) -> list[str]:
    return sorted(p.relative_to(store).as_posix() for p in store.glob("date=*/hour=*/*.parquet"))


def copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / "in" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / name, target)
    return target


# ---- Calico Enterprise ----------------------------------------------------------------------


def test_enterprise_flows_log_is_readable_by_the_job(tmp_path: Path) -> None:
    store = tmp_path / "store"
    summary = ingest([copy("flows.log", tmp_path)], store)
    assert (summary.rows, summary.malformed) == (3, 2)
    rows = flows(store)
    assert [(r["reporter"], r["action"], r["dest_port"]) for r in rows] == [
        ("src", "allow", 443),
        ("src", "allow", 7070),
        ("dst", "deny", 5432),
    ]
    stripe, cart, db = rows
    assert cart["source_labels"] == ["app=frontend", "tier=web"]
    assert cart["dest_service_name"] == "cart" and cart["dest_service_port_num"] == 7070
    assert cart["enforced_policies"] == ["0|__PROFILE__|pro:kns.shop|allow|0"]
    assert (cart["num_flows"], cart["bytes_in"], cart["packets_out"]) == (5, 20613, 18)
    # deprecated all_policies stands in for the enforced trace; Calico's `-` become NULL
    assert stripe["enforced_policies"] == ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"]
    assert stripe["dest_namespace"] is None and stripe["dest_service_name"] is None
    assert stripe["dest_domains"] == ["api.stripe.com"] and stripe["dest_ip"] == "198.51.100.7"
    assert db["source_type"] == "net" and db["source_namespace"] is None
    assert db["pending_policies"] == ["0|security|np:data/security.protect-db|deny|0"]
    # partitions come from start_time (UTC): 00:00 and 01:00 on 2026-11-01
    assert [f.split("/")[1] for f in data_files(store)] == ["hour=00", "hour=01"]


def test_malformed_lines_are_counted_and_sampled_with_line_numbers(tmp_path: Path) -> None:
    source = copy("flows.log", tmp_path)
    summary = ingest([source], tmp_path / "store")
    assert [(m.line, m.reason.split(" (")[0]) for m in summary.samples] == [
        (3, "not JSON"),
        (5, "start_time: not Unix seconds or an RFC 3339 time: 'yesterday'"),
    ]
    assert all(m.source == str(source) for m in summary.samples)


def test_elasticsearch_source_hits_gzip_and_plain_in_one_directory(tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "export.ndjson.gz").write_bytes(gzip.compress((DATA / "es-export.ndjson").read_bytes()))
    shutil.copy(DATA / "flows.log", src / "flows.log")
    (src / ".hidden").write_text("not flows\n")
    summary = ingest([src], tmp_path / "store")
    assert summary.count("ingested") == 2 and summary.rows == 5
    assert count(tmp_path / "store") == 5
    batch = [r for r in raw(tmp_path / "store") if r["source_namespace"] == "batch"]
    assert {r["dest_port"] for r in batch} == {22, 53}
    assert {r["host"] for r in batch} == {"node-3"}


def test_ingesting_the_same_file_twice_adds_nothing(tmp_path: Path) -> None:
    source = copy("flows.log", tmp_path)
    store = tmp_path / "store"
    ingest([source], store)
    before = data_files(store)
    again = ingest([source], store)
    assert again.count("skipped") == 1 and again.rows == 0
    # a copy under another name is the same content: skipped as well
    twin = tmp_path / "twin.log"
    shutil.copy(source, twin)
    assert ingest([twin], store).count("skipped") == 1
    assert data_files(store) == before
    assert count(store) == 3
    manifest = json.loads((store / "_ingest" / "manifest.json").read_text())
    assert len(manifest["entries"]) == 1


def test_a_growing_file_is_read_from_where_the_last_run_stopped(tmp_path: Path) -> None:
    lines = (DATA / "flows.log").read_bytes().splitlines(keepends=True)
    live = tmp_path / "flows.log"
    store = tmp_path / "store"
    # Felix is in the middle of writing line 3: an unterminated, unparseable tail
    live.write_bytes(b"".join(lines[:2]) + lines[3][:40])
    first = ingest([live], store)
    assert first.rows == 2 and first.files[0].pending_bytes == 40
    live.write_bytes(b"".join(lines[:2]) + lines[3])  # the line is complete now
    second = ingest([live], store)
    assert second.files[0].status == "appended" and second.rows == 1
    # rotation: the file, grown further, now lives under another name
    rotated = tmp_path / "flows.log.1"
    live.rename(rotated)
    rotated.write_bytes(b"".join(lines[:2]) + lines[3] + lines[0].replace(b"node-1", b"node-9"))
    third = ingest([rotated], store)
    assert third.files[0].status == "appended" and third.rows == 1
    assert count(store) == 4
    assert sorted(r["host"] for r in raw(store)).count("node-9") == 1


def test_a_crash_before_the_manifest_leaves_nothing_behind(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    ingest([copy("flows.log", tmp_path)], store_root)
    # simulate a writer killed after moving its files in, before its manifest entry
    orphan_dir = store_root / "date=2026-11-01" / "hour=05"
    orphan_dir.mkdir(parents=True)
    shutil.copy(
        next(store_root.glob("date=*/hour=00/*.parquet")),
        orphan_dir / "ingest-0123456789abcdef-0_0.parquet",
    )
    (store_root / "_ingest" / "staging" / "dead").mkdir()
    ingest([DATA / "es-export.ndjson"], store_root)
    assert not orphan_dir.exists() or not any(orphan_dir.iterdir())
    assert not any((store_root / "_ingest" / "staging").iterdir())
    assert count(store_root) == 5


def test_compact_merges_a_partitions_files_into_one(tmp_path: Path) -> None:
    store = tmp_path / "store"
    lines = (DATA / "flows.log").read_bytes().splitlines(keepends=True)
    for i, line in enumerate(lines):
        (tmp_path / f"part{i}.log").write_bytes(line)
        ingest([tmp_path / f"part{i}.log"], store)
    before = flows(store)
    assert len(data_files(store)) == 3  # lines 1 and 2 -> hour=00 (two files), line 4 -> 01
    summary = ingest([], store, compact=True)
    assert summary.compaction is not None
    assert (summary.compaction.partitions, summary.compaction.files_before) == (1, 3)
    files = data_files(store)
    assert len(files) == 2 and files[0].endswith(".parquet") and "compact-" in files[0]
    assert flows(store) == before
    merged = pq.read_table(store / files[0])
    assert merged.column("start_time").to_pylist() == sorted(
        merged.column("start_time").to_pylist()
    )
    assert not (store / "_ingest" / "compact.json").exists()


def test_interrupted_compaction_is_finished_by_the_next_writer(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    ingest([copy("flows.log", tmp_path)], store_root)
    partition = store_root / "date=2026-11-01" / "hour=00"
    old = sorted(p.name for p in partition.glob("*.parquet"))
    new = "compact-" + "0" * 32 + ".parquet"
    shutil.copy(partition / old[0], partition / new)  # the new file made it, the old ones stay
    journal = {"partition": "date=2026-11-01/hour=00", "new": new, "tmp": f".{new}.tmp", "old": old}
    (store_root / "_ingest" / "compact.json").write_text(json.dumps(journal))
    store = Store(store_root)
    with store.locked():
        pass
    assert sorted(p.name for p in partition.glob("*.parquet")) == [new]
    assert not (store_root / "_ingest" / "compact.json").exists()


# ---- Goldmane ---------------------------------------------------------------------------------


def test_goldmane_ndjson_maps_enums_policy_hits_and_counters(tmp_path: Path) -> None:
    store = tmp_path / "store"
    summary = ingest([copy("goldmane-batch.ndjson", tmp_path)], store, fmt="goldmane")
    assert (summary.rows, summary.malformed) == (3, 2)
    assert [m.line for m in summary.samples] == [4, 5]
    rows = {(r["reporter"], r["dest_port"]): r for r in flows(store)}
    egress = rows[("src", 7070)]
    assert (egress["source_type"], egress["dest_type"], egress["action"]) == ("wep", "wep", "allow")
    assert egress["source_name_aggr"] == "frontend-7d9f8b6c5-*"
    assert egress["dest_service_port"] == "grpc" and egress["dest_service_port_num"] == 7070
    assert egress["enforced_policies"] == [
        "0|platform|gnp:allow-dns|pass|-1",
        "1|__PROFILE__|pro:kns.shop|allow|0",
    ]
    assert egress["pending_policies"] == [
        "0|platform|gnp:allow-dns|pass|-1",
        "1|security|snp:shop/lockdown|allow|2",
    ]
    assert (egress["num_flows"], egress["num_flows_started"], egress["num_flows_completed"]) == (
        5,
        5,
        4,
    )
    assert egress["source_ip"] is None and egress["dest_domains"] == []
    # string enums (protojson) and int64 as text
    ingress = rows[("dst", 8080)]
    assert (ingress["source_type"], ingress["source_name_aggr"]) == ("net", "pub")
    assert ingress["source_namespace"] is None and ingress["source_labels"] == []
    assert ingress["enforced_policies"] == ["0|__PROFILE__|pro:kns.shop|allow|0"]
    denied = rows[("src", 5432)]
    assert denied["action"] == "deny" and denied["enforced_policies"] == [
        "0|default|knp:data/deny-all|deny|-1"
    ]
    assert (denied["num_flows"], denied["bytes_in"]) == (0, 0)  # zero values were omitted


_INVALID = "not a valid Calico policy hit"


@pytest.mark.parametrize(
    ("hit", "reason"),
    [
        ({"kind": 1, "name": "p", "tier": "t", "action": 1}, "namespace mismatch"),
        (
            {"kind": 2, "name": "x|allow|0", "tier": "t", "action": 1},
            "not a valid Calico policy hit",
        ),
        (
            {"kind": 2, "name": "p", "tier": "Bad_Tier", "action": 1},
            "not a valid Calico policy hit",
        ),
        ({"kind": 10, "tier": "t", "action": 2}, "without its trigger"),
        ({"kind": 2, "name": "p", "tier": "t"}, "needs a tier, a name and an action"),
        ({"kind": 42, "name": "p", "tier": "t", "action": 1}, "unknown policy kind 42"),
    ],
)
def test_untrusted_policy_hits_make_the_line_malformed(hit: dict[str, Any], reason: str) -> None:
    doc = {
        "Key": {"source_type": 1, "dest_type": 1, "policies": {"enforced_policies": [hit]}},
        "start_time": 1793491200,
        "end_time": 1793491500,
    }
    with pytest.raises(LineError, match=reason):
        goldmane_row(doc)


def test_format_auto_reads_both_formats_and_explicit_format_rejects_the_other(
    tmp_path: Path,
) -> None:
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(
        (DATA / "es-export.ndjson").read_bytes() + (DATA / "goldmane-batch.ndjson").read_bytes()
    )
    assert ingest([mixed], tmp_path / "auto").rows == 5
    only = ingest([mixed], tmp_path / "enterprise", fmt="enterprise")
    assert only.rows == 2 and only.samples[0].reason.startswith("not a Calico flow log")


def test_partition_values_come_only_from_timestamps(tmp_path: Path) -> None:
    doc = json.loads((DATA / "es-export.ndjson").read_text().splitlines()[0])["_source"]
    doc["source_namespace"] = "../../escape"
    doc["host"] = "date=1999-01-01/hour=99"
    doc["start_time"] = 1793545199  # 2026-11-01T14:59:59Z
    source = tmp_path / "evil.log"
    source.write_text(json.dumps(doc) + "\n")
    store = tmp_path / "store"
    ingest([source], store)
    assert [f.rsplit("/", 1)[0] for f in data_files(store)] == ["date=2026-11-01/hour=14"]
    (row,) = raw(store)
    assert row["source_namespace"] == "../../escape" and row["host"] == doc["host"]
    assert count(store) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.log", "store"]


def test_written_schema_uses_raw_calico_column_names(tmp_path: Path) -> None:
    store = tmp_path / "store"
    ingest([copy("flows.log", tmp_path)], store)
    schema = pq.read_schema(store / data_files(store)[0])
    expected = [n for n in NAMES if n not in ("enforced_policies", "pending_policies")]
    expected.insert(NAMES.index("enforced_policies"), "policies")
    assert schema.names == expected
    assert str(schema.field("policies").type) == (
        "struct<enforced_policies: list<element: string>, pending_policies: list<element: string>>"
    )
    assert (
        pq.ParquetFile(store / data_files(store)[0]).metadata.row_group(0).column(0).compression
        == "ZSTD"
    )


# ---- command line -----------------------------------------------------------------------------


def test_cli_json_summary_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    source = copy("flows.log", tmp_path)
    assert main(["ingest", str(source), "--out", str(store), "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"]["ingested"] == 1 and out["rows"] == 3 and out["malformed"] == 2
    assert out["malformed_samples"][0]["line"] == 3
    assert main(["ingest", str(source), "--out", str(store)]) == 0
    text = capsys.readouterr().out
    assert "skipped 1 already in the store" in text and "0 rows" in text
    truncated = tmp_path / "cut.log.gz"
    truncated.write_bytes(gzip.compress((DATA / "es-export.ndjson").read_bytes())[:-20])
    assert main(["ingest", str(truncated), "--out", str(store)]) == 2
    captured = capsys.readouterr()
    assert "failed: " in captured.out and "could not be read" in captured.err
    assert main(["ingest", str(tmp_path / "missing.log"), "--out", str(store)]) == 2
    assert main(["ingest", str(source), "--out", str(store), "--format", "csv"]) == 2


# ---- the DuckDB fast path ---------------------------------------------------------------------

_FELIX = json.loads((DATA / "flows.log").read_text().splitlines()[0])


def _variant(**changes: Any) -> dict[str, Any]:
    doc = dict(_FELIX)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


_DROP = object()
VARIANTS: dict[str, Any] = {
    "felix": _variant(),
    "nulls": _variant(source_labels=None, policies=None, dest_port=None, proto=None, host=None),
    "absent": _variant(dest_labels=_DROP, dest_domains=_DROP, num_flows=_DROP, dest_ip=_DROP),
    "labels null": _variant(source_labels={"labels": None}),
    "labels as list": _variant(source_labels=["app=a"]),
    "labels as map": _variant(source_labels={"app": "a", "tier": "web"}),
    "labels not strings": _variant(dest_labels={"labels": ["a=b", 7]}),
    "all_policies": _variant(policies={"all_policies": ["0|__PROFILE__|pro:kns.a|allow|0"]}),
    "enforced over all": _variant(policies={"enforced_policies": ["e"], "all_policies": ["a"]}),
    "policies list": _variant(policies=["0|__PROFILE__|pro:kns.a|allow|0"]),
    "bad transit": _variant(policies={"enforced_policies": [], "transit_policies": "x"}),
    "domains text": _variant(dest_domains="a.example,b.example"),
    "domains list": _variant(dest_domains=["a.example", "-"]),
    "proto number": _variant(proto=6),
    "proto float": _variant(proto=6.0),
    "port float": _variant(dest_port=7070.0),
    "port half": _variant(dest_port=7070.5),
    "port text": _variant(dest_port="7070"),
    "huge counter": _variant(bytes_in=2**64),
    "time text": _variant(start_time="2026-11-01T00:00:00Z"),
    "time float": _variant(end_time=1793491500.0),
    "time range": _variant(start_time=12),
    "type number": _variant(source_type=5),
    "type list": _variant(source_type=["wep"]),
    "no reporter": _variant(reporter=_DROP),
    "long name": _variant(dest_name_aggr="x" * 5000),
    "source hit": {"_index": "i", "_source": _variant()},
    "array line": [1, 2],
}


def _stored_row(store: Path) -> tuple[Any, ...] | None:
    files = data_files(store)
    if not files:
        return None
    (row,) = pq.read_table(store / files[0]).to_pylist()
    policies = row.pop("policies")
    values = [row[n] for n in NAMES if n not in ("enforced_policies", "pending_policies")]
    at = NAMES.index("enforced_policies")
    values[at:at] = [policies["enforced_policies"], policies["pending_policies"]]
    return tuple(values)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fast_path_or_fallback_store_what_the_line_parser_gives(name: str, tmp_path: Path) -> None:
    line = json.dumps(VARIANTS[name])
    try:
        expected: tuple[Any, ...] | None = enterprise_row(json.loads(line))
    except LineError:
        expected = None
    source = tmp_path / "one.log"
    source.write_text(line + "\n")
    summary = ingest([source], tmp_path / "store")
    # A line holding an array holds one document per element (documents.expand).
    documents = len(VARIANTS[name]) if isinstance(VARIANTS[name], list) else 1
    assert summary.malformed == (documents if expected is None else 0)
    assert _stored_row(tmp_path / "store") == expected
    if name in ("felix", "nulls", "absent", "labels null", "enforced over all", "proto number"):
        assert summary.files[0].parser == "duckdb"
    if name in ("labels as map", "domains text", "port text", "time text", "source hit"):
        assert summary.files[0].parser == "python"


def test_fast_path_handles_gzip_and_matches_the_line_parser(tmp_path: Path) -> None:
    lines = [json.dumps(_variant(start_time=1793491200 + 300 * i, host=f"n{i}")) for i in range(30)]
    clean = tmp_path / "clean.log.gz"
    clean.write_bytes(gzip.compress("\n".join(lines).encode()))
    dirty = tmp_path / "dirty.log"
    dirty.write_text("\n".join([*lines, "{oops"]) + "\n")
    fast = ingest([clean], tmp_path / "fast")
    slow = ingest([dirty], tmp_path / "slow")
    assert [f.parser for f in (*fast.files, *slow.files)] == ["duckdb", "python"]
    assert fast.rows == slow.rows == 30 and slow.malformed == 1
    assert flows(tmp_path / "fast") == flows(tmp_path / "slow")
    schemas = {str(pq.read_schema(p)) for p in (tmp_path / "fast").rglob("*.parquet")}
    schemas |= {str(pq.read_schema(p)) for p in (tmp_path / "slow").rglob("*.parquet")}
    assert len(schemas) == 1
