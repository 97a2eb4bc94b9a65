"""Calico open-source Goldmane flows (NDJSON from its push emitter) -> ingest rows.

Each line is a JSON-marshalled `goldmane.Flow` (reference/goldmane/api.proto): a top-level
`Key` (FlowKey) with snake_case fields, enums as integers (Go's encoding/json) or as their names
(protojson), int64 values as numbers or decimal strings, and zero values omitted. The mapping
follows §3.5 of the reference:

- EndpointType WorkloadEndpoint/HostEndpoint/NetworkSet/Network -> `wep`/`hep`/`ns`/`net`;
  Reporter Src/Dst -> `src`/`dst`; Action Allow/Deny/Pass -> `allow`/`deny`/`pass`.
- `source_name`/`dest_name` -> `*_name_aggr`; `dest_service_port_name` -> `dest_service_port`,
  `dest_service_port` -> `dest_service_port_num`; a port of 0 (omitted) is no port.
- The structured PolicyHit list -> hit strings in the Calico 3.32 format
  (`0|tier1|np:ns1/policy1|allow|0`, profiles `1|__PROFILE__|pro:kns.ns1|allow|0`); an
  EndOfTier hit names its trigger policy with rule index -1, as Goldmane's own ToString does.
- `num_connections_live` -> `num_flows`, `num_connections_started`/`_completed` ->
  `num_flows_started`/`_completed` (Felix's ConvertGoldmaneToFlowlog does the same).
- Goldmane has no IPs, `dest_domains` or `host`: those columns stay null.
"""

from __future__ import annotations

from typing import Any

from flowfence.calico.hits import (
    PROFILE_TIER,
    HitAction,
    HitKind,
    HitStyle,
    PolicyHit,
    format_hit,
    parse_hit,
)
from flowfence.ingest.rows import LineError, Row, epoch, integer, labels, text

_ENDPOINT = {1: "wep", 2: "hep", 3: "ns", 4: "net"}
_ENDPOINT_NAMES = {"workloadendpoint": 1, "hostendpoint": 2, "networkset": 3, "network": 4}
_REPORTER = {1: "src", 2: "dst"}
_REPORTER_NAMES = {"src": 1, "dst": 2}
_ACTION = {1: "allow", 2: "deny", 3: "pass"}
_ACTION_NAMES = {"allow": 1, "deny": 2, "pass": 3}
_HIT_ACTIONS: dict[int, HitAction] = {1: "allow", 2: "deny", 3: "pass"}
_UNSPECIFIED = {
    "endpointtypeunspecified",
    "reporterunspecified",
    "actionunspecified",
    "kindunspecified",
}

_KINDS: dict[int, tuple[HitKind, bool]] = {
    1: ("np", False),  # CalicoNetworkPolicy
    2: ("gnp", False),  # GlobalNetworkPolicy
    3: ("np", True),  # StagedNetworkPolicy
    4: ("gnp", True),  # StagedGlobalNetworkPolicy
    5: ("knp", True),  # StagedKubernetesNetworkPolicy
    6: ("knp", False),  # NetworkPolicy (Kubernetes)
    7: ("kanp", False),  # AdminNetworkPolicy (before Calico 3.32)
    8: ("kbanp", False),  # BaselineAdminNetworkPolicy (before Calico 3.32)
    9: ("pro", False),  # Profile
    11: ("kcnp", False),  # ClusterNetworkPolicy
}
_END_OF_TIER = 10
_KIND_NAMES = {
    "caliconetworkpolicy": 1,
    "globalnetworkpolicy": 2,
    "stagednetworkpolicy": 3,
    "stagedglobalnetworkpolicy": 4,
    "stagedkubernetesnetworkpolicy": 5,
    "networkpolicy": 6,
    "adminnetworkpolicy": 7,
    "baselineadminnetworkpolicy": 8,
    "profile": 9,
    "endoftier": 10,
    "clusternetworkpolicy": 11,
}


def _enum(value: Any, names: dict[str, int], field: str) -> int:
    """An enum given as its number or its name (any case); 0 when omitted or unspecified."""
    if value is None:
        return 0
    if isinstance(value, str):
        key = value.lower()
        if key in names:
            return names[key]
        if key in _UNSPECIFIED:
            return 0
        raise LineError(f"{field}: unknown value {value!r:.40}")
    number = integer(value, field)
    return 0 if number is None else number


def _mapped(value: Any, names: dict[str, int], table: dict[int, str], field: str) -> str | None:
    number = _enum(value, names, field)
    if number == 0:
        return None
    if number not in table:
        raise LineError(f"{field}: unknown value {number}")
    return table[number]


def _port(value: Any, field: str) -> int | None:
    number = integer(value, field)
    return number or None


def _hit(raw: Any, field: str) -> str:
    """One structured PolicyHit as a Calico hit string; LineError if it cannot be one."""
    if not isinstance(raw, dict):
        raise LineError(f"{field}: expected an object")
    kind_number = _enum(raw.get("kind"), _KIND_NAMES, f"{field}.kind")
    rule_index = integer(raw.get("rule_index"), f"{field}.rule_index") or 0
    policy: dict[str, Any] = raw
    if kind_number == _END_OF_TIER:
        trigger = raw.get("trigger")
        if not isinstance(trigger, dict):
            raise LineError(f"{field}: an EndOfTier hit without its trigger policy")
        policy = trigger
        kind_number = _enum(policy.get("kind"), _KIND_NAMES, f"{field}.trigger.kind")
        rule_index = -1
    if kind_number not in _KINDS:
        raise LineError(f"{field}: unknown policy kind {kind_number}")
    kind, staged = _KINDS[kind_number]
    tier = text(raw.get("tier"), f"{field}.tier") or text(policy.get("tier"), f"{field}.tier")
    action = _HIT_ACTIONS.get(_enum(raw.get("action"), _ACTION_NAMES, f"{field}.action"))
    name = text(policy.get("name"), f"{field}.name")
    namespace = text(policy.get("namespace"), f"{field}.namespace") or None
    index = integer(raw.get("policy_index"), f"{field}.policy_index") or 0
    if kind == "pro":
        tier = PROFILE_TIER  # Goldmane leaves the tier of a profile hit empty
    if not tier or not name or action is None:
        raise LineError(f"{field}: a policy hit needs a tier, a name and an action")
    style: HitStyle = "legacy" if kind in ("kanp", "kbanp") else "3.32"
    try:
        hit = PolicyHit(index, tier, kind, namespace, name, staged, action, rule_index)
        formatted = format_hit(hit, style)
    except ValueError as exc:
        raise LineError(f"{field}: {exc}") from None
    # The components are untrusted: keep only hits that read back as exactly this hit.
    if parse_hit(formatted) != hit:
        raise LineError(f"{field}: not a valid Calico policy hit: {formatted!r:.80}")
    return formatted


def _trace(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise LineError(f"{field}: expected a list of policy hits")
    return [_hit(item, f"{field}[{i}]") for i, item in enumerate(value)]


def goldmane_row(doc: Any) -> Row:
    """One ingest row from one parsed Goldmane line; raises LineError naming the bad field."""
    if not isinstance(doc, dict):
        raise LineError(f"expected a JSON object, got {type(doc).__name__}")
    key = doc.get("Key", doc.get("key"))
    if not isinstance(key, dict):
        raise LineError("not a Goldmane flow: no Key object")
    policies = key.get("policies")
    if policies is not None and not isinstance(policies, dict):
        raise LineError("Key.policies: expected an object")
    trace = policies or {}
    return (
        epoch(doc.get("start_time"), "start_time"),
        epoch(doc.get("end_time"), "end_time"),
        _mapped(key.get("source_type"), _ENDPOINT_NAMES, _ENDPOINT, "Key.source_type"),
        text(key.get("source_namespace"), "Key.source_namespace") or None,
        text(key.get("source_name"), "Key.source_name") or None,
        None,
        labels(doc.get("source_labels"), "source_labels"),
        _mapped(key.get("dest_type"), _ENDPOINT_NAMES, _ENDPOINT, "Key.dest_type"),
        text(key.get("dest_namespace"), "Key.dest_namespace") or None,
        text(key.get("dest_name"), "Key.dest_name") or None,
        None,
        labels(doc.get("dest_labels"), "dest_labels"),
        _port(key.get("dest_port"), "Key.dest_port"),
        text(key.get("proto"), "Key.proto") or None,
        _mapped(key.get("action"), _ACTION_NAMES, _ACTION, "Key.action"),
        _mapped(key.get("reporter"), _REPORTER_NAMES, _REPORTER, "Key.reporter"),
        text(key.get("dest_service_namespace"), "Key.dest_service_namespace") or None,
        text(key.get("dest_service_name"), "Key.dest_service_name") or None,
        text(key.get("dest_service_port_name"), "Key.dest_service_port_name") or None,
        _port(key.get("dest_service_port"), "Key.dest_service_port"),
        None,
        _trace(trace.get("enforced_policies"), "Key.policies.enforced_policies"),
        _trace(trace.get("pending_policies"), "Key.policies.pending_policies"),
        integer(doc.get("num_connections_live"), "num_connections_live") or 0,
        integer(doc.get("num_connections_started"), "num_connections_started") or 0,
        integer(doc.get("num_connections_completed"), "num_connections_completed") or 0,
        integer(doc.get("bytes_in"), "bytes_in") or 0,
        integer(doc.get("bytes_out"), "bytes_out") or 0,
        integer(doc.get("packets_in"), "packets_in") or 0,
        integer(doc.get("packets_out"), "packets_out") or 0,
        None,
    )
