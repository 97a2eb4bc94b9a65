"""Policy evaluation over many edges at once: one evaluation per class of edges that no
policy can tell apart, not one per edge.

Distinct edges grow with the cluster (every public client address is its own edge), but
what a policy set can see of an endpoint is small: which policies select it and which entity
rules its side matches (`Evaluator.signature`). Edges that agree on direction, the
signatures of both endpoints, protocol, destination port, service and domains get the same
verdict, so the frame is grouped by those (vectorised, in Polars), one representative edge per
class is evaluated by the reference evaluator, and the verdicts are joined back. The only part
of a verdict that names more than the class is the profile hit (`pro:kns.<namespace>`), so
classes keep the local namespace when the caller asks for whole verdicts (`by_namespace`).
Signatures are computed once per distinct endpoint: a few thousand for a large cluster.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import polars as pl

from flowfence.calico.evaluate import Evaluator
from flowfence.calico.policies import Direction
from flowfence.calico.policy_rules import IPNetwork
from flowfence.calico.verdict import Edge, Endpoint

_SIDE_COLUMNS = ("type", "namespace", "name_aggr", "ip", "labels")
_EDGE_COLUMNS = ("proto", "dest_port", "dest_service_namespace", "dest_service_name",
                 "dest_domains")  # fmt: skip
CLASS = "__class"


def _endpoint(row: Sequence[object]) -> Endpoint:
    kind, namespace, name, ip, labels = row
    return Endpoint(
        type=str(kind or ""),
        namespace=namespace if isinstance(namespace, str) else None,
        name=name if isinstance(name, str) else None,
        ip=ip if isinstance(ip, str) else None,
        labels=tuple(labels) if isinstance(labels, list | tuple) else (),
    )


def _policy_nets(evaluator: Evaluator) -> tuple[IPNetwork, ...]:
    """Every CIDR evaluation can test an address against: rule nets and notNets, and the nets
    of the network sets (which sets contain an address decides what selectors see of it)."""
    found: dict[IPNetwork, None] = {}
    for tier in evaluator.tiers:
        for policy in tier.policies:
            for direction in ("ingress", "egress"):
                for rule in policy.rules(direction):
                    for entity in (rule.source, rule.destination):
                        found.update(dict.fromkeys((*entity.nets, *entity.not_nets)))
    for netset in evaluator.policies.network_sets:
        found.update(dict.fromkeys(netset.nets))
    return tuple(found)


def _address_key(ip: str | None, nets: tuple[IPNetwork, ...]) -> tuple[object, ...]:
    """All a `net` endpoint shows evaluation: its IP version and which of `nets` hold it."""
    try:
        address = ipaddress.ip_address(ip.strip()) if ip else None
    except ValueError:
        address = None
    if address is None:
        return (None,)
    return (address.version, *(address in net for net in nets))


# A dotted quad as ipaddress accepts it (no leading zeros, no spaces); others take its path.
_DOTTED = r"^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$"


def _v4_keys(ip: pl.Expr, nets: tuple[IPNetwork, ...]) -> pl.Expr:
    """In Polars, `_address_key` of a plain IPv4 address as text (its version and, per net of
    `nets`, whether it holds the address); null for anything else, which Python keys."""
    octets = [ip.str.extract(_DOTTED, i).cast(pl.Int64) for i in range(1, 5)]
    value = (octets[0] * 2**24) + (octets[1] * 2**16) + (octets[2] * 2**8) + octets[3]
    valid = ip.str.contains(_DOTTED) & pl.all_horizontal(o <= 255 for o in octets)
    bits = [
        (
            ((value // 2 ** (32 - n.prefixlen)) == (int(n.network_address) >> (32 - n.prefixlen)))
            if n.version == 4
            else pl.lit(False)
        ).cast(pl.String)
        for n in nets
    ]
    return pl.when(valid).then(pl.concat_str([pl.lit("4"), *bits], separator=","))


def _signatures(evaluator: Evaluator, frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """The distinct endpoints of one side with a dense id of their signature. A `net` peer is
    seen only through its address (evaluate.py, `_resolve`), so addresses in the same CIDRs of
    the policy set share one signature, computed once: a crowd of public clients is cheap (and
    for IPv4 the CIDR membership is computed in Polars, not per address in Python)."""
    columns = [f"{prefix}_{c}" for c in _SIDE_COLUMNS]
    nets = _policy_nets(evaluator)
    is_net = pl.col(f"{prefix}_type") == "net"
    distinct = (
        frame.select(columns)
        .unique()
        .with_columns(pl.when(is_net).then(_v4_keys(pl.col(f"{prefix}_ip"), nets)).alias("__v4"))
    )
    ids: dict[tuple[object, ...], int] = {}
    by_address: dict[object, tuple[object, ...]] = {}
    out = []
    for row in distinct.iter_rows():
        endpoint = _endpoint(row[:-1])
        if endpoint.type == "net":
            key = row[-1] if row[-1] is not None else _address_key(endpoint.ip, nets)
            sig = by_address.get(key)
            if sig is None:
                sig = by_address[key] = evaluator.signature(endpoint)
        else:
            sig = evaluator.signature(endpoint)
        out.append(ids.setdefault(sig, len(ids)))
    return distinct.drop("__v4").with_columns(pl.Series(f"__{prefix}_sig", out, dtype=pl.UInt32))


def classify(
    evaluator: Evaluator, frame: pl.DataFrame, *, by_namespace: bool = False
) -> tuple[pl.Series, list[tuple[Edge, Direction]]]:
    """Per row of `frame` (EDGE_SCHEMA columns plus `direction`) its class id, and per class
    one representative (edge, direction) to evaluate: `verdicts[ids]` is every row's verdict."""
    marked = frame.select(
        "direction", *(f"{p}_{c}" for p in ("source", "dest") for c in _SIDE_COLUMNS),
        *_EDGE_COLUMNS,
    ).with_row_index("__row")  # fmt: skip
    for prefix in ("source", "dest"):
        sigs = _signatures(evaluator, marked, prefix)
        columns = [f"{prefix}_{c}" for c in _SIDE_COLUMNS]
        marked = marked.join(sigs, on=columns, how="left", nulls_equal=True)
    local_ns = (
        pl.when(pl.col("direction") == "egress")
        .then(pl.col("source_namespace"))
        .otherwise(pl.col("dest_namespace"))
    )
    key = ["direction", "__source_sig", "__dest_sig", *_EDGE_COLUMNS]
    if by_namespace:
        marked = marked.with_columns(local_ns.alias("__local_ns"))
        key.append("__local_ns")
    firsts = (
        marked.group_by(key)
        .agg(pl.col("__row").min().alias("__first"))
        .sort("__first")
        .with_row_index(CLASS)
    )
    ids = (
        marked.join(firsts.select(*key, CLASS), on=key, how="left", nulls_equal=True)
        .sort("__row")
        .get_column(CLASS)
    )
    picked = frame.select(pl.all().gather(firsts.get_column("__first")))
    reps = [(Edge.from_row(row), row["direction"]) for row in picked.iter_rows(named=True)]
    return ids, reps


def deciding(evaluator: Evaluator, frame: pl.DataFrame, *, before_order: float | None) -> pl.Series:
    """Per row, `tier|policy|action` of the hit that decides it before `before_order`, or
    null: the evaluator's verdict, one evaluation per class."""
    ids, reps = classify(evaluator, frame)
    names: list[str | None] = []
    for edge, direction in reps:
        hit = evaluator.evaluate(edge, direction, before_order=before_order).deciding
        names.append(None if hit is None else f"{hit.tier}|{hit.policy}|{hit.action}")
    return pl.Series("__deciding", names, dtype=pl.String).gather(ids)
