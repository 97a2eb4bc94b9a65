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
Signatures are computed once per distinct endpoint: a few thousand for a large cluster. A
`net` peer's class is the interval of addresses the policy set's CIDRs cannot split (its
signature would be a function of it), so a hundred thousand client addresses cost nothing.
Replay and exclusion evaluate through vector_eval.py, which sends here only the edges whose
peer is a `net` without an address (address_class.py), and uses the interval keys below.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import polars as pl

from flowfence.calico.address_class import class_key, parse_ip
from flowfence.calico.evaluate import Evaluator
from flowfence.calico.policies import Direction
from flowfence.calico.policy_rules import IPNetwork
from flowfence.calico.verdict import EDGE_SCALARS, ENDPOINT_FIELDS, Edge, Endpoint

_SIDE_COLUMNS = ENDPOINT_FIELDS
_EDGE_COLUMNS = EDGE_SCALARS
CLASS = "__class"


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


def _entity_rules(evaluator: Evaluator) -> int:
    """Predicate checks in one signature: a selection per policy, two per rule."""
    return sum(
        1 + 2 * (len(p.ingress) + len(p.egress)) for t in evaluator.tiers for p in t.policies
    )


@dataclass(frozen=True)
class Bounds:
    """The edges of the elementary intervals the policy set's CIDRs cut each IP family into:
    addresses in one interval lie in exactly the same CIDRs, so evaluation cannot tell them
    apart. An address's class is its family and interval (bisect over the sorted edges)."""

    v4: tuple[int, ...]
    v6: tuple[int, ...]

    @staticmethod
    def of(nets: tuple[IPNetwork, ...]) -> Bounds:
        edges: dict[int, set[int]] = {4: set(), 6: set()}
        for net in nets:
            edges[net.version] |= {int(net.network_address), int(net.broadcast_address) + 1}
        return Bounds(tuple(sorted(edges[4])), tuple(sorted(edges[6])))

    @staticmethod
    def of_policies(evaluator: Evaluator) -> Bounds:
        return Bounds.of(_policy_nets(evaluator))

    def key(self, ip: str | None) -> str:
        address = parse_ip(ip)
        if address is None:
            return "none"
        edges = self.v4 if address.version == 4 else self.v6
        return f"{address.version}:{bisect.bisect_right(edges, int(address))}"

    def keys(self, ips: pl.Series) -> pl.Series:
        """`key` of every address of `ips`, null where null: plain IPv4 text in Polars, the
        rest (IPv6, odd text) through `key` once per distinct value."""
        fast = pl.select(_v4_keys(pl.lit(ips), self).alias(ips.name)).to_series()
        others = ips.filter(fast.is_null()).drop_nulls().unique()
        if not others.len():
            return fast
        found = [self.key(ip) for ip in others.to_list()]
        slow = ips.replace_strict(others, found, default=None, return_dtype=pl.String)
        return fast.fill_null(slow)


# A dotted quad as ipaddress accepts it (no leading zeros, no spaces); others take its path.
_DOTTED = r"^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$"


def _v4_keys(ip: pl.Expr, bounds: Bounds) -> pl.Expr:
    """`Bounds.key` of a plain IPv4 address as text, in Polars; null for anything else."""
    octets = [ip.str.extract(_DOTTED, i).cast(pl.Int64) for i in range(1, 5)]
    value = (octets[0] * 2**24) + (octets[1] * 2**16) + (octets[2] * 2**8) + octets[3]
    valid = ip.str.contains(_DOTTED) & pl.all_horizontal(o <= 255 for o in octets)
    edges = pl.lit(pl.Series(bounds.v4, dtype=pl.Int64))
    index = edges.search_sorted(value, side="right") if bounds.v4 else pl.lit(0)
    return pl.when(valid).then(pl.format("4:{}", index))


# Signatures cost (distinct endpoints) x (policies + entity rules) predicate checks. Past this
# many, an endpoint is its own class (its identity is a finer key than its signature, so still
# exact): a set of hundreds of staged policies would otherwise cost more than it saves.
SIGNATURE_BUDGET = 3_000_000


def _signatures(evaluator: Evaluator, frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """The distinct endpoints of one side with a dense id of their class. A `net` peer is seen
    only through its address (evaluate.py, `_resolve`), so its class is its address interval
    (`Bounds`): a crowd of public clients is a handful of classes, keyed in Polars. Other
    endpoints are classed by `Evaluator.signature` when that is affordable, else by identity."""
    columns = [f"{prefix}_{c}" for c in _SIDE_COLUMNS]
    bounds = Bounds.of_policies(evaluator)
    is_net = pl.col(f"{prefix}_type") == "net"
    distinct = frame.select(columns).unique()
    addresses = bounds.keys(distinct.get_column(f"{prefix}_ip"))
    distinct = distinct.with_columns(pl.when(is_net).then(addresses).alias("__v4"))
    others = distinct.filter(~is_net.fill_null(False)).height
    signed = others * _entity_rules(evaluator) <= SIGNATURE_BUDGET
    ids: dict[object, int] = {}
    out = []
    for row in distinct.iter_rows(named=True):
        endpoint = Endpoint.from_row(row, prefix)
        key: object
        if endpoint.type == "net" and parse_ip(endpoint.ip) is None:
            # No address: the class its label names (evaluate.py evaluates all of it).
            key = ("net", class_key(endpoint.name))
        elif endpoint.type == "net":
            key = ("net", row["__v4"])
        elif signed:
            key = evaluator.signature(endpoint)
        else:
            key = endpoint
        out.append(ids.setdefault(key, len(ids)))
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
