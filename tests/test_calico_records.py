"""Published Calico Enterprise flow records (tests/calico_records, see PROVENANCE.md) through
the real `flowfence ingest` and `flowfence run`, and the export layouts ingest recognises by
content: JSON lines, a JSON array, an Elasticsearch `_search` response, pretty-printed
documents one after the other; empty or unreadable files fail with exit 2.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from published_records import COUNTS, RECORDS_DIR, all_documents, documents_in, record_files

from flowfence.cli.app import main
from flowfence.flows import sources

FILES = record_files()
SCOPE = """apiVersion: projectcalico.org/v3
kind: PolicyRecommendationScope
metadata:
  name: default
spec:
  initialLookback: 87600h
"""
ALL_DOCS = all_documents()


def ingest_json(sources_: list[Path], store: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    code = main(["ingest", *map(str, sources_), "--out", str(store), "--output", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out[: out.rindex("}") + 1]) if "{" in out else None


def stored(store: Path) -> list[dict[str, Any]]:
    files = sorted(str(p) for p in store.glob("date=*/hour=*/*.parquet"))
    return pq.ParquetDataset(files).read().to_pylist() if files else []


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    policies = row["policies"] or {}
    return (
        row["start_time"], row["source_namespace"], row["source_name_aggr"],
        row["dest_namespace"], row["dest_name_aggr"], row["dest_port"], row["proto"],
        row["action"], row["reporter"], tuple(policies.get("enforced_policies") or ()),
    )  # fmt: skip


def doc_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    policies = doc.get("policies") or {}
    hits = policies.get("enforced_policies") or policies.get("all_policies") or ()
    return (
        doc["start_time"], doc.get("source_namespace"), doc.get("source_name_aggr"),
        doc.get("dest_namespace"), doc.get("dest_name_aggr"), doc.get("dest_port"),
        doc.get("proto"), doc["action"], doc["reporter"], tuple(hits),
    )  # fmt: skip


def test_the_record_files_are_the_ones_listed_with_their_provenance() -> None:
    on_disk = {p.name for p in RECORDS_DIR.iterdir() if p.name != "PROVENANCE.md"}
    assert on_disk == set(COUNTS)
    provenance = (RECORDS_DIR / "PROVENANCE.md").read_text()
    assert all(f"`{name}`" in provenance for name in COUNTS)
    assert {p.name: len(documents_in(p)) for p in FILES} == COUNTS
    assert all("start_time" in doc for doc in ALL_DOCS)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_published_record_is_ingested(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = documents_in(path)
    code, summary = ingest_json([path], tmp_path / "store", capsys)
    assert code == 0
    assert summary["rows"] == COUNTS[path.name] and summary["malformed"] == 0
    assert summary["sources"][0]["status"] == "ingested"
    rows = stored(tmp_path / "store")
    assert sorted(map(key, rows)) == sorted(map(doc_key, docs))
    assert {r["host"] for r in rows} == {d.get("host") for d in docs}


def test_run_succeeds_on_the_ingested_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    code, _ = ingest_json(FILES, store, capsys)
    assert code == 0
    (tmp_path / "scope.yaml").write_text(SCOPE)
    args = ["run", "--flows", str(store), "--out", str(out), "--now", "2026-01-01T00:00:00Z"]
    assert main([*args, "--config", str(tmp_path / "scope.yaml"), "--output", "json"]) == 0
    capsys.readouterr()
    policy = yaml.safe_load((out / "policies" / "policy-demo.yaml").read_text())
    ingress = policy["spec"]["ingress"]
    assert [r["destination"]["ports"] for r in ingress] == [[80]]


# ---- layouts --------------------------------------------------------------------------------


def as_lines(docs: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def as_search(docs: list[dict[str, Any]], indent: int | None) -> str:
    hits = [{"_index": "tigera_secure_ee_flows.c.20200811", "_id": str(i), "_source": d}
            for i, d in enumerate(docs)]  # fmt: skip
    body = {"took": 3, "timed_out": False, "hits": {"total": {"value": len(docs)}, "hits": hits}}
    return json.dumps(body, indent=indent)


LAYOUTS = {
    "lines": as_lines,
    "array": lambda docs: json.dumps(docs, indent=2) + "\n",
    "compact array": json.dumps,
    "search pretty": lambda docs: as_search(docs, 2),
    "search one line": lambda docs: as_search(docs, None),
    "pretty one after another": lambda docs: "\n".join(json.dumps(d, indent=4) for d in docs),
    "hits one a line": lambda docs: "".join(json.dumps({"_source": d}) + "\n" for d in docs),
}


def ingest_text(text: str, tmp_path: Path, name: str, compress: bool = False) -> Any:
    source = tmp_path / name
    data = text.encode()
    source.write_bytes(gzip.compress(data) if compress else data)
    store = tmp_path / f"store-{name}"
    code = main(["ingest", str(source), "--out", str(store), "--output", "json"])
    return code, store


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=st.lists(st.sampled_from(ALL_DOCS), min_size=1, max_size=12),
    layout=st.sampled_from(sorted(LAYOUTS)),
    compress=st.booleans(),
)
def test_every_layout_of_the_same_documents_stores_the_same_rows(
    docs: list[dict[str, Any]],
    layout: str,
    compress: bool,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp = tmp_path_factory.mktemp("layout")
    code, store = ingest_text(LAYOUTS[layout](docs), tmp, "export", compress)
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["malformed"] == 0
    assert sorted(map(key, stored(store))) == sorted(map(doc_key, docs))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not a flow log\nat all\n", "line 1: not JSON"),
        ("{\n  not a flow log\n}\n", "line 2: not JSON"),
        ('{"kind": "Pod", "metadata": {}}\n', "line 1: not a Calico flow log: missing start_time"),
        ('[\n  {"start_time": 1597086849,\n', "no flow record could be read"),
    ],
)
def test_a_file_with_nothing_readable_fails_with_exit_2(
    text: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "export.json"
    source.write_text(text)
    assert main(["ingest", str(source), "--out", str(tmp_path / "store")]) == 2
    captured = capsys.readouterr()
    assert f"failed: {source}: " in captured.out and reason in captured.out
    assert str(source) in captured.err
    assert stored(tmp_path / "store") == []


@pytest.mark.parametrize(
    "text", ["", "\n  \n", "[]", '{"took": 1, "hits": {"total": 0, "hits": []}}']
)
def test_a_file_with_no_flows_is_read_not_failed(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Felix starts an empty flows.log after each rotation; an export may match nothing. Neither
    # is unreadable, so neither fails a run over a log directory.
    code, store = ingest_text(text, tmp_path, "flows.log")
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["files"]["ingested"] == 1
    assert summary["rows"] == 0 and summary["malformed"] == 0
    assert stored(store) == []


def test_a_broken_document_reports_its_line_and_keeps_what_came_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = json.dumps(ALL_DOCS[:2], indent=2)
    cut = text[: text.rindex("]")] + ',\n  {"start_time": }\n]'
    code, store = ingest_text(cut, tmp_path, "cut.json")
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["rows"] == 2 and summary["malformed"] == 1
    line = cut[: cut.rindex('{"start_time": }')].count("\n") + 1
    assert summary["malformed_samples"][0]["line"] == line
    assert len(stored(store)) == 2


def test_an_integer_past_pythons_digit_limit_is_a_malformed_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # json raises a plain ValueError past 4300 digits: it ended the run in a traceback.
    text = json.dumps(ALL_DOCS[:2], indent=2)
    huge = text[: text.rindex("]")] + ',\n  {"start_time": ' + "9" * 5000 + "}\n]"
    code, store = ingest_text(huge, tmp_path, "huge.json")
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["rows"] == 2 and summary["malformed"] == 1
    assert "integer too long" in summary["malformed_samples"][0]["reason"]
    assert len(stored(store)) == 2


def test_json_lines_with_a_broken_first_line_are_still_read_line_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = '{"start_time": 15970\n' + as_lines(ALL_DOCS[:2])
    code, _ = ingest_text(text, tmp_path, "flows.log")
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["rows"] == 2 and summary["malformed"] == 1
    assert summary["malformed_samples"][0]["line"] == 1


def test_an_oversized_single_value_is_refused_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowfence.ingest import documents

    monkeypatch.setattr(documents, "MAX_VALUE_CHARS", 1000)
    monkeypatch.setattr(documents, "_CHUNK", 100)
    code, _ = ingest_text(as_search(ALL_DOCS[:5], 2), tmp_path, "big.json")
    assert code == 2
    assert "convert the file to JSON lines" in capsys.readouterr().out


# ---- peers and ports ------------------------------------------------------------------------


# policy-demo access -> nginx:80, reported by the destination (tigera/docs, PROVENANCE.md)
DEMO = documents_in(RECORDS_DIR / "tigera-docs-aggregation.pretty.json")[0]


def _flow(**changes: Any) -> dict[str, Any]:
    base = dict(DEMO)
    base.update(changes)
    return base


def bound_ports(store: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        sources.bind_flows(con, store)
        return con.sql("SELECT source_name_aggr, dest_port, proto FROM flows").fetchall()
    finally:
        con.close()


def test_the_published_port_zero_record_is_bound_with_no_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Calico Enterprise 2.x wrote dest_port 0 for a TCP flow (intrusion-detection-search.json).
    code, _ = ingest_json([RECORDS_DIR / "intrusion-detection-search.json"], tmp_path, capsys)
    assert code == 0
    assert bound_ports(tmp_path) == [("pub", None, "tcp")]


def test_dest_port_zero_or_null_is_no_port_never_port_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [_flow(dest_port=0), _flow(dest_port=None), _flow(dest_port=80)]
    code, store = ingest_text(as_lines(docs), tmp_path, "flows.log")
    capsys.readouterr()
    assert code == 0
    assert sorted(port for _, port, _ in bound_ports(store) if port is not None) == [80]
    assert len(bound_ports(store)) == 3


def _learn(docs: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    code, store = ingest_text(as_lines(docs), tmp_path, "flows.log")
    assert code == 0
    (tmp_path / "scope.yaml").write_text(SCOPE)
    out = tmp_path / "out"
    args = ["run", "--flows", str(store), "--out", str(out), "--now", "2020-08-12T00:00:00Z"]
    assert main([*args, "--config", str(tmp_path / "scope.yaml"), "--output", "json"]) == 0
    capsys.readouterr()
    policy = out / "policies" / "policy-demo.yaml"
    # The recommendation replayed over the flows it was learned from denies none of them.
    replay = ["replay", "--policies", str(out / "policies"), "--flows", str(store)]
    assert main([*replay, "--since", "2020-01-01T00:00:00Z", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["denied"] == []
    return yaml.safe_load(policy.read_text())["spec"] if policy.exists() else {}


def _from_net(name: str, ip: str | None, port: int | None) -> dict[str, Any]:
    return _flow(
        source_type="net", source_name_aggr=name, source_namespace="-", source_ip=ip,
        source_labels=None, dest_port=port, reporter="dst",
    )  # fmt: skip


def test_a_network_peer_other_than_pub_or_pvt_is_an_external_peer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _learn([_from_net("aws", "52.95.110.1", 443)], tmp_path, capsys)
    rules = [r for r in spec["ingress"] if "nets" in r.get("source", {})]
    assert [(r["source"]["nets"], r["destination"]["ports"]) for r in rules] == [
        (["52.95.110.1/32"], [443])
    ]
    assert rules[0]["metadata"]["annotations"]["policyrecommendation.tigera.io/scope"] == "Public"


def test_an_aws_peer_without_address_is_the_metadata_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Calico Enterprise 2.x's Felix labelled exactly 169.254.169.254 `aws`, and its 2019 logs
    (tests/calico_records/intrusion-detection-watch-flows.json: coredns to `aws` UDP 53) name
    it without an address. Before, that became the public fallback, which excludes link-local:
    flagged may-cut, and enforcement would have denied the very flows it was learned from."""
    spec = _learn([_from_net("aws", None, 53)], tmp_path, capsys)
    rules = [r for r in spec["ingress"] if "nets" in r.get("source", {})]
    assert [(r["source"]["nets"], r["source"].get("notNets")) for r in rules] == [
        (["169.254.169.254/32"], None)
    ]
    flags = rules[0]["metadata"]["annotations"].get("flowfence.io/flags", "")
    assert "public-fallback" not in flags and "may-cut-observed" not in flags
    # Replay knows the label's address too: allowed, not undetermined.
    store, out = tmp_path / "store-flows.log", tmp_path / "out"
    replay = ["replay", "--policies", str(out / "policies"), "--flows", str(store)]
    assert main([*replay, "--since", "2020-01-01T00:00:00Z", "--output", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["undetermined"] == [] and result["denied"] == []
    assert result["summary"]["allowed_edges"] == result["summary"]["evaluated_edges"] > 0


def test_a_network_peer_with_an_invalid_name_is_still_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _learn([_from_net("Bad Name!", "52.95.110.1", 443)], tmp_path, capsys)
    assert not [r for r in spec.get("ingress", []) if "nets" in r.get("source", {})]


def test_ingest_help_names_the_layouts_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for layout in ("JSON lines", "JSON array", "_search response", "pretty-printed"):
        assert layout in text
