"""Round trip: the bundled demo day as Parquet, as Calico Enterprise JSON lines and as Goldmane
NDJSON gives the same recommendations once ingested.

The demo traffic (fixtures/data/demo, the generator's `demo` topology, seed 7, 2026-11-01) is
exported by tests/ingest_export.py the way each product writes it, ingested with
`flowfence ingest`, and `pipeline.compute` runs over each store with the golden run's inputs
(`--now 2026-11-02T00:00:00Z`, fixtures/namespaces.yaml, fixtures/policies).

- Enterprise JSON carries every field the Parquet fixture has: the manifests must be
  byte-identical to the fixture's in all three flavors.
- Goldmane carries no IP addresses, no `dest_domains` and no `host`. Private and public rules
  are built from addresses and domain rules from domains, so the Goldmane store is compared
  with the fixture after those three columns are blanked (done here with DuckDB): identical
  in all three flavors. Against the full fixture, only rules whose peer is an address or a
  domain may differ, which the last test checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from ingest_export import enterprise_docs, goldmane_docs, raw_rows, write_lines

from flowfence.config.settings import load_settings
from flowfence.ingest.convert import ingest
from flowfence.run import pipeline

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "fixtures" / "data" / "demo"
NOW = datetime(2026, 11, 2, tzinfo=UTC)
FLAVORS = ("calico-enterprise", "calico", "kubernetes")
ADDRESS_SCOPES = {"Private", "Public", "Domains"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("roundtrip")
    rows = raw_rows(DEMO)
    half = len(rows) // 2
    # Felix's flows.log (plain) plus an Elasticsearch export of the rest (gzip, _source hits)
    enterprise = [
        write_lines(root / "enterprise" / "flows.log", enterprise_docs(rows[:half])),
        write_lines(
            root / "enterprise" / "export.ndjson.gz",
            ({"_index": "flows", "_source": doc} for doc in enterprise_docs(rows[half:])),
            compress=True,
        ),
    ]
    # Goldmane batches: integer enums as Go's encoding/json writes them, names as protojson
    goldmane = [
        write_lines(root / "goldmane" / "b1.ndjson", goldmane_docs(rows[:half])),
        write_lines(root / "goldmane" / "b2.ndjson", goldmane_docs(rows[half:], enum_names=True)),
    ]
    summary_e = ingest(enterprise, root / "store-enterprise", fmt="enterprise")
    summary_g = ingest(goldmane, root / "store-goldmane", fmt="goldmane", compact=True)
    for summary in (summary_e, summary_g):
        assert (summary.rows, summary.malformed) == (len(rows), 0)
    return {
        "parquet": DEMO,
        "enterprise": root / "store-enterprise",
        "goldmane": root / "store-goldmane",
        "parquet-goldmane-visible": _blank_goldmane_gaps(DEMO, root / "visible"),
    }


def _blank_goldmane_gaps(source: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    con = duckdb.connect()
    try:
        con.register(
            "demo", con.read_parquet(str(source / "**" / "*.parquet"), hive_partitioning=False)
        )
        con.execute(
            "COPY (SELECT * REPLACE (NULL::VARCHAR AS source_ip, NULL::VARCHAR AS dest_ip, "
            "[]::VARCHAR[] AS dest_domains, NULL::VARCHAR AS host) FROM demo) TO $out "
            "(FORMAT parquet)",
            {"out": str(out / "demo.parquet")},
        )
    finally:
        con.close()
    return out


def manifests(flows: Path, flavor: str) -> Mapping[str, bytes]:
    request = pipeline.RunRequest(
        flows=flows,
        out=Path("unused"),
        settings=load_settings(None, None, flavor=flavor),
        now=NOW,
        existing_policies=REPO / "fixtures" / "policies",
        namespaces_file=REPO / "fixtures" / "namespaces.yaml",
    )
    files = pipeline.compute(request).files
    assert len(files) > 10, "the demo day should give a policy for most namespaces"
    return files


@pytest.mark.parametrize("flavor", FLAVORS)
def test_enterprise_json_gives_the_fixtures_manifests(stores: dict[str, Path], flavor: str) -> None:
    expected = manifests(stores["parquet"], flavor)
    got = manifests(stores["enterprise"], flavor)
    assert sorted(got) == sorted(expected)
    assert [n for n in expected if got[n] != expected[n]] == []


@pytest.mark.parametrize("flavor", FLAVORS)
def test_goldmane_ndjson_gives_the_manifests_of_the_same_traffic_without_addresses(
    stores: dict[str, Path], flavor: str
) -> None:
    expected = manifests(stores["parquet-goldmane-visible"], flavor)
    got = manifests(stores["goldmane"], flavor)
    assert sorted(got) == sorted(expected)
    assert [n for n in expected if got[n] != expected[n]] == []


def _rules_by_peer_name(files: Mapping[str, bytes]) -> dict[str, list[Any]]:
    """Rules whose peer is a namespace, a network set or a service, per policy file."""
    out: dict[str, list[Any]] = {}
    for name, data in files.items():
        doc = yaml.safe_load(data)
        if doc.get("kind") != "StagedNetworkPolicy":
            continue
        kept = []
        for direction in ("ingress", "egress"):
            for rule in doc["spec"].get(direction, []):
                scope = rule["metadata"]["annotations"]["policyrecommendation.tigera.io/scope"]
                if scope not in ADDRESS_SCOPES:
                    kept.append((direction, rule))
        out[name] = kept
    return out


def test_goldmane_agrees_with_the_full_fixture_on_every_rule_not_built_from_addresses(
    stores: dict[str, Path],
) -> None:
    full = manifests(stores["parquet"], "calico-enterprise")
    goldmane = manifests(stores["goldmane"], "calico-enterprise")
    assert full != goldmane  # the public and private rules do differ
    named_full, named_goldmane = _rules_by_peer_name(full), _rules_by_peer_name(goldmane)
    assert sum(len(rules) for rules in named_full.values()) > 20
    assert named_goldmane == named_full
