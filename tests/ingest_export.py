"""Test helpers: export raw flow-log Parquet (the fixture shape) as the JSON lines Calico writes.

- `enterprise_docs`: Calico Enterprise flow-log objects as Felix writes them to `flows.log`
  (reference §3.1), with a few of the extra fields Felix adds that ingest must ignore.
- `goldmane_docs`: Goldmane `Flow` objects as its push emitter marshals them (api.proto,
  Go encoding/json): top-level `Key`, snake_case, zero values omitted, enums as integers (or as
  names with `enum_names=True`, as protojson writes them), the policy trace as structured
  PolicyHits parsed from the fixture's hit strings. Goldmane carries no IPs, no domains and no
  host, so those are dropped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from flowfence.calico.hits import PolicyHit, parse_hit
from flowfence.flows import sources

_ENDPOINT = {"wep": 1, "hep": 2, "ns": 3, "net": 4}
_ENDPOINT_NAMES = {1: "WorkloadEndpoint", 2: "HostEndpoint", 3: "NetworkSet", 4: "Network"}
_REPORTER = {"src": 1, "dst": 2}
_REPORTER_NAMES = {1: "Src", 2: "Dst"}
_ACTION = {"allow": 1, "deny": 2, "pass": 3}
_ACTION_NAMES = {1: "Allow", 2: "Deny", 3: "Pass"}
_KIND = {
    ("np", False): 1,
    ("gnp", False): 2,
    ("np", True): 3,
    ("gnp", True): 4,
    ("knp", True): 5,
    ("knp", False): 6,
    ("pro", False): 9,
    ("kcnp", False): 11,
}


def raw_rows(parquet_root: Path) -> list[dict[str, Any]]:
    """Every raw row of a fixture tree, in a stable order."""
    con = duckdb.connect()
    try:
        rel = con.read_parquet(str(parquet_root / "**" / "*.parquet"), hive_partitioning=False)
        rel = rel.order("start_time, end_time, reporter, source_name_aggr, dest_name_aggr, host")
        return list(rel.pl().iter_rows(named=True))
    finally:
        con.close()


def enterprise_docs(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        doc = dict(row)
        doc.pop("source_port", None)
        doc["source_name"] = "-"
        doc["dest_name"] = "-"
        doc["process_name"] = "-"
        doc["original_source_ips"] = None
        yield doc


def _hit(text: str, names: bool) -> dict[str, Any]:
    hit = parse_hit(text)
    assert hit is not None, text
    return _structured(hit, names)


def _structured(hit: PolicyHit, names: bool) -> dict[str, Any]:
    kind = _KIND[(hit.kind, hit.staged)]
    policy: dict[str, Any] = {"kind": kind, "name": hit.name}
    if hit.namespace:
        policy["namespace"] = hit.namespace
    if hit.kind != "pro":
        policy["tier"] = hit.tier
    action = _ACTION[hit.action]
    if hit.rule_index == -1:
        out: dict[str, Any] = {"kind": 10, "tier": hit.tier, "trigger": policy, "rule_index": -1}
    else:
        out = dict(policy)
        if hit.rule_index:
            out["rule_index"] = hit.rule_index
    out["action"] = _ACTION_NAMES[action] if names else action
    if names:
        out["kind"] = {9: "Profile", 10: "EndOfTier"}.get(out["kind"], out["kind"])
    if hit.index:
        out["policy_index"] = hit.index
    return out


def _nonzero(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v not in (None, 0, "", [], {}, "-")}


def goldmane_docs(
    rows: list[dict[str, Any]], *, enum_names: bool = False
) -> Iterator[dict[str, Any]]:
    for row in rows:
        source_type = _ENDPOINT[row["source_type"]]
        dest_type = _ENDPOINT[row["dest_type"]]
        reporter = _REPORTER[row["reporter"]]
        action = _ACTION[row["action"]]
        policies = row["policies"] or {}
        trace = {
            name: [_hit(h, enum_names) for h in policies.get(name) or []]
            for name in ("enforced_policies", "pending_policies")
        }
        key = _nonzero(
            {
                "source_name": row["source_name_aggr"],
                "source_namespace": row["source_namespace"],
                "source_type": _ENDPOINT_NAMES[source_type] if enum_names else source_type,
                "dest_name": row["dest_name_aggr"],
                "dest_namespace": row["dest_namespace"],
                "dest_type": _ENDPOINT_NAMES[dest_type] if enum_names else dest_type,
                "dest_port": row["dest_port"],
                "dest_service_name": row["dest_service_name"],
                "dest_service_namespace": row["dest_service_namespace"],
                "dest_service_port_name": row["dest_service_port"],
                "dest_service_port": row["dest_service_port_num"],
                "proto": row["proto"],
                "reporter": _REPORTER_NAMES[reporter] if enum_names else reporter,
                "action": _ACTION_NAMES[action] if enum_names else action,
                "policies": _nonzero(trace),
            }
        )
        yield _nonzero(
            {
                "Key": key,
                "start_time": row["start_time"],
                "end_time": row["end_time"],
                "source_labels": (row["source_labels"] or {}).get("labels"),
                "dest_labels": (row["dest_labels"] or {}).get("labels"),
                "packets_in": row["packets_in"],
                "packets_out": row["packets_out"],
                "bytes_in": row["bytes_in"],
                "bytes_out": row["bytes_out"],
                # Felix's ConvertFlowlogToGoldmane: NumFlows -> NumConnectionsLive.
                "num_connections_started": row["num_flows_started"],
                "num_connections_completed": row["num_flows_completed"],
                "num_connections_live": row["num_flows"],
            }
        )


def write_lines(path: Path, docs: Iterator[dict[str, Any]], *, compress: bool = False) -> Path:
    """NDJSON, lines separated by newlines (no trailing newline, as Goldmane's emitter)."""
    body = "\n".join(json.dumps(doc, separators=(",", ":")) for doc in docs).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(body, mtime=0) if compress else body)
    return path


def stored_rows(store: Path) -> int:
    """Raw rows behind the job's view of a store (the view is pre-aggregated: `rows`)."""
    con = duckdb.connect()
    try:
        sources.bind_flows(con, store)
        return int(con.table("flows").aggregate("sum(rows)").fetchall()[0][0])
    finally:
        con.close()
