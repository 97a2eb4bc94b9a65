"""Calico Enterprise / Calico Cloud flow-log lines -> ingest rows.

Accepts the JSON objects Felix writes to `flows.log` on each node and Elasticsearch or Linseed
exports of them, where each line is a search hit `{"_index": ..., "_source": {<flow>}}`. Field
names are Calico's (reference §3.1): `start_time`/`end_time` Unix seconds, labels as
`{labels: [...]}`, `policies` as `{enforced_policies, pending_policies, transit_policies}` or
the deprecated `{all_policies}` (or a plain list of hits, as some exporters flatten it).
Extra fields (`source_name`, `process_*`, `tcp_*`, ...) are ignored.
"""

from __future__ import annotations

from typing import Any

from flowfence.ingest.rows import LineError, Row, epoch, integer, labels, text, texts

# Without these a line is not a flow log: it cannot be partitioned or routed.
_REQUIRED = ("start_time", "end_time", "source_type", "dest_type", "action", "reporter")


def flow_object(doc: Any) -> dict[str, Any]:
    """The flow inside a line: the object itself, or the `_source` of a search hit."""
    if not isinstance(doc, dict):
        raise LineError(f"expected a JSON object, got {type(doc).__name__}")
    if "_source" in doc:
        doc = doc["_source"]
        if not isinstance(doc, dict):
            raise LineError("_source: expected a JSON object")
    return doc


def _policies(value: Any) -> tuple[list[str] | None, list[str] | None]:
    """(enforced, pending) hit lists, resolved as docs/flow-contract.md describes."""
    if value is None or isinstance(value, list):
        return texts(value, "policies"), None
    if not isinstance(value, dict):
        raise LineError(f"policies: expected an object or a list, got {type(value).__name__}")
    enforced = texts(value.get("enforced_policies"), "policies.enforced_policies")
    if enforced is None:  # the deprecated field, for logs written before the split
        enforced = texts(value.get("all_policies"), "policies.all_policies")
    pending = texts(value.get("pending_policies"), "policies.pending_policies")
    texts(value.get("transit_policies"), "policies.transit_policies")
    return enforced, pending


def _domains(value: Any) -> list[str] | None:
    if isinstance(value, str):  # some exporters join the list with commas
        return [part for part in value.split(",") if part]
    return texts(value, "dest_domains")


def _proto(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(value, "proto")


def enterprise_row(doc: Any) -> Row:
    """One ingest row from one parsed line; raises LineError naming the bad field."""
    flow = flow_object(doc)
    missing = [name for name in _REQUIRED if flow.get(name) is None]
    if missing:
        raise LineError(f"not a Calico flow log: missing {', '.join(missing)}")
    enforced, pending = _policies(flow.get("policies"))
    get = flow.get
    return (
        epoch(get("start_time"), "start_time"),
        epoch(get("end_time"), "end_time"),
        text(get("source_type"), "source_type"),
        text(get("source_namespace"), "source_namespace"),
        text(get("source_name_aggr"), "source_name_aggr"),
        text(get("source_ip"), "source_ip"),
        labels(get("source_labels"), "source_labels"),
        text(get("dest_type"), "dest_type"),
        text(get("dest_namespace"), "dest_namespace"),
        text(get("dest_name_aggr"), "dest_name_aggr"),
        text(get("dest_ip"), "dest_ip"),
        labels(get("dest_labels"), "dest_labels"),
        integer(get("dest_port"), "dest_port"),
        _proto(get("proto")),
        text(get("action"), "action"),
        text(get("reporter"), "reporter"),
        text(get("dest_service_namespace"), "dest_service_namespace"),
        text(get("dest_service_name"), "dest_service_name"),
        text(get("dest_service_port"), "dest_service_port"),
        integer(get("dest_service_port_num"), "dest_service_port_num"),
        _domains(get("dest_domains")),
        enforced,
        pending,
        integer(get("num_flows"), "num_flows"),
        integer(get("num_flows_started"), "num_flows_started"),
        integer(get("num_flows_completed"), "num_flows_completed"),
        integer(get("bytes_in"), "bytes_in"),
        integer(get("bytes_out"), "bytes_out"),
        integer(get("packets_in"), "packets_in"),
        integer(get("packets_out"), "packets_out"),
        text(get("host"), "host"),
    )
