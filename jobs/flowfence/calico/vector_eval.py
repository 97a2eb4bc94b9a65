"""The evaluator's verdicts for every edge of a frame, with Python bounded by what the policy
set and the distinct endpoints are, never by the edges.

Evaluation at one endpoint (evaluate.py) walks the policies that select it, tier by tier, and
takes the first rule that matches. A rule matches when each of its independent parts does:
- its local entity, against the local endpoint: decided once per distinct local endpoint
  (with the policies that select it: its *program*, the ordered steps that can match there);
- its remote entity's identity and address part, against the remote side (vector_sides.py);
- protocol, destination ports and notPorts, against (proto, port; named ports by the
  destination's inventory pods);
- destination services and domains, against the edge's service and domains.
Each part is computed once per distinct (program, value) and becomes a bit mask over the
program's steps; an edge's mask is the AND of its parts' masks, and its verdict a function of
(program, mask) alone, walked in Python once per distinct pair (a few thousand).

A `net` peer without an address stands for a class of addresses (address_class.py): those
edges go to the reference evaluator, one evaluation per class (edge_classes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import TypeAlias, cast

import polars as pl

from flowfence.calico import edge_classes, vector_sides
from flowfence.calico.evaluate import HEP_PROFILE, LOCAL_TYPES, Evaluator
from flowfence.calico.policies import Direction, Policy, Tier
from flowfence.calico.policy_rules import (
    DomainPattern,
    PortMatch,
    Rule,
    ServiceMatch,
    flow_protocol,
)
from flowfence.calico.vector_sides import SIDE, Entity
from flowfence.calico.verdict import (
    ENDPOINT_FIELDS,
    PROFILE_TIER,
    Edge,
    Endpoint,
    Hit,
    HitAction,
    Verdict,
)

_COLUMNS = ENDPOINT_FIELDS
# The edge columns each part of a rule reads (the remote side's id for the remote entity).
_PARTS = (
    [SIDE],
    ["proto", "dest_port", "__nsig"],
    ["dest_service_namespace", "dest_service_name"],
    ["dest_domains"],
)
_L4Part: TypeAlias = tuple[int | None, int | None, PortMatch | None, PortMatch | None]
_POWERS = [1 << j for j in range(64)]
_ACTIONS: dict[str, HitAction] = {"Allow": "allow", "Deny": "deny", "Pass": "pass"}


@dataclass(frozen=True)
class _Step:
    policy: Policy
    rule: Rule
    # Per part (remote entity, l4, services, domains) its id, None where it matches anything.
    parts: tuple[int | None, int | None, int | None, int | None]


@dataclass(frozen=True)
class _Program:
    direction: Direction
    local: Endpoint
    tiers: tuple[tuple[Tier, tuple[Policy, ...]], ...]
    steps: tuple[_Step, ...]
    ranges: tuple[tuple[int, int], ...]  # per tier, its steps [start, end)


class _Ids:
    """Dense ids for hashable parts, in first-seen order."""

    def __init__(self) -> None:
        self.ids: dict[Hashable, int] = {}
        self.items: list[Hashable] = []

    def get(self, item: Hashable) -> int:
        found = self.ids.get(item)
        if found is None:
            found = self.ids[item] = len(self.items)
            self.items.append(item)
        return found


def _never(rule: Rule) -> bool:
    """Rules no flow can match: Log, unmatchable, or a source port, service or domain
    (flow logs carry none, evaluate.py `_entity_matches`)."""
    src = rule.source
    return (
        rule.action == "Log"
        or bool(rule.unmatchable)
        or src.ports is not None
        or src.services is not None
        or bool(src.domains)
    )


def _program(
    evaluator: Evaluator,
    selection: vector_sides.Selection,
    direction: Direction,
    local: Endpoint,
    parts: tuple[_Ids, _Ids, _Ids, _Ids],
) -> _Program:
    entities, l4s, services, domains = parts
    side = evaluator._side(local)
    tiers = selection(local, direction)
    steps: list[_Step] = []
    ranges = []
    for _, selecting in tiers:
        start = len(steps)
        for policy in selecting:
            for rule in policy.rules(direction):
                near, far = (
                    (rule.source, rule.destination)
                    if direction == "egress"
                    else (rule.destination, rule.source)
                )
                if _never(rule) or not evaluator._side_matches(near, side, policy):
                    continue
                entity = Entity(
                    replace(far, ports=None, not_ports=None, services=None, domains=()),
                    policy.kind.namespaced, policy.namespace, rule.ip_version,
                )  # fmt: skip
                dst = rule.destination
                l4 = (rule.protocol, rule.not_protocol, dst.ports, dst.not_ports)
                ids = (
                    None if entity.trivial else entities.get(entity),
                    None if l4 == (None, None, None, None) else l4s.get(l4),
                    None if dst.services is None else services.get(dst.services),
                    None if not dst.domains else domains.get(dst.domains),
                )
                steps.append(_Step(policy, rule, ids))
        ranges.append((start, len(steps)))
    return _Program(direction, local, tiers, tuple(steps), tuple(ranges))


def _walk(program: _Program, mask: int, before: float | None) -> Verdict:
    """evaluate.py `_evaluate`, reading which steps match from `mask` (bit k: step k)."""
    hits: list[Hit] = []
    direction = program.direction
    for (tier, selecting), (start, end) in zip(program.tiers, program.ranges, strict=True):
        if before is not None and (tier.order is None or tier.order >= before):
            return Verdict(direction, None, tuple(hits))
        hit = Hit(len(hits), tier.name, selecting[0].hit_name,
                  "deny" if tier.default_action == "Deny" else "pass", -1)  # fmt: skip
        for k in range(start, end):
            if mask >> k & 1:
                step = program.steps[k]
                action = _ACTIONS[step.rule.action]
                hit = Hit(len(hits), tier.name, step.policy.hit_name, action, step.rule.index)
                break
        hits.append(hit)
        if hit.action != "pass":
            return Verdict(direction, hit.action, tuple(hits))
    if before is not None:
        return Verdict(direction, None, tuple(hits))
    local = program.local
    profile = f"pro:kns.{local.namespace}" if local.type == "wep" else HEP_PROFILE
    hits.append(Hit(len(hits), PROFILE_TIER, profile, "allow", 0))
    return Verdict(direction, "allow", tuple(hits))


def _words(n: int) -> list[str]:
    return [f"__w{w}" for w in range(n)]


def _bits(steps: pl.DataFrame, keys: list[str], words: int) -> pl.DataFrame:
    """Per `keys`, the mask of the steps `__k` in `steps`, as 64-bit words."""
    k = pl.col("__k")
    bit = (k % 64).replace_strict(list(range(64)), _POWERS, return_dtype=pl.UInt64)
    return steps.group_by(keys).agg(
        pl.when(k // 64 == w).then(bit).otherwise(0).sum().cast(pl.UInt64).alias(name)
        for w, name in enumerate(_words(words))
    )


def _part_rows(
    pairs: pl.DataFrame, steps: pl.DataFrame, value: list[str], truth: Callable[..., bool]
) -> pl.DataFrame:
    """(program, value, step) where the step's part `__c` holds for the value: one Python
    call per distinct (part, value)."""
    rows = pairs.join(steps, on="__prog")
    distinct = rows.select("__c", *value).unique()
    ok = [truth(*row) for row in distinct.iter_rows()]
    checked = distinct.with_columns(pl.Series("__ok", ok, dtype=pl.Boolean))
    return rows.join(checked, on=["__c", *value], nulls_equal=True).filter(pl.col("__ok"))


def verdicts(
    evaluator: Evaluator, frame: pl.DataFrame, *, before_order: float | None = None
) -> tuple[pl.Series, list[Verdict]]:
    """Per row of `frame` (EDGE_SCHEMA columns plus `direction`) an index into the returned
    verdicts: `evaluator.evaluate(edge, direction, before_order=...)` of that row's edge."""
    egress = pl.col("direction") == "egress"
    near, far = ("source", "dest"), ("dest", "source")
    marked = frame.with_row_index("__row").with_columns(
        *(pl.when(egress).then(pl.col(f"{a}_{c}")).otherwise(pl.col(f"{b}_{c}")).alias(f"local_{c}")
          for c in _COLUMNS for a, b in [near]),
        *(pl.when(egress).then(pl.col(f"{a}_{c}")).otherwise(pl.col(f"{b}_{c}")).alias(f"remote_{c}")
          for c in _COLUMNS for a, b in [far]),
    )  # fmt: skip
    bad = marked.filter(~pl.col("local_type").is_in(sorted(LOCAL_TYPES)).fill_null(True))
    if bad.height:
        raise ValueError(f"no policy applies at a {bad.get_column('local_type')[0]!r}")
    side, sides = vector_sides.side_ids(evaluator, marked, "remote")
    marked = marked.with_columns(side)
    by_class = pl.col(SIDE).is_in([i for i, c in enumerate(sides.classes) if c])
    fast = marked.filter(~by_class)
    ids, found = _fast(evaluator, fast, sides, before_order)
    slow = marked.filter(by_class)
    if slow.height:
        # A class of addresses: the reference evaluator at each address its cuts leave.
        slow_ids, reps = edge_classes.classify(evaluator, slow, by_namespace=True)
        found += [evaluator.evaluate(e, d, before_order=before_order) for e, d in reps]
        ids = pl.concat(
            [ids, slow.select("__row", (slow_ids + len(found) - len(reps)).alias("__v"))]
        )
    return ids.sort("__row").get_column("__v").cast(pl.UInt32).rename("__verdict"), found


def _fast(
    evaluator: Evaluator, marked: pl.DataFrame, sides: vector_sides.Sides, before: float | None
) -> tuple[pl.DataFrame, list[Verdict]]:
    local = ["direction", "local_type", "local_namespace", "local_labels"]
    keys = marked.select(local).unique(maintain_order=True).with_row_index("__prog")
    parts = (_Ids(), _Ids(), _Ids(), _Ids())
    selection = vector_sides.Selection(evaluator)
    programs = [
        _program(evaluator, selection, d, Endpoint(t, ns, None, None, tuple(labels or ())), parts)
        for d, t, ns, labels in keys.select(local).rows()
    ]
    marked = marked.join(keys, on=local, how="left", nulls_equal=True)
    marked = marked.with_columns(pl.lit(0, dtype=pl.UInt32).alias("__nsig"))
    dests: list[Endpoint | None] = [None]
    if evaluator._ports.inventory is not None:
        marked, dests = _named_signatures(evaluator, marked)
    words = max(1, -(-max((len(p.steps) for p in programs), default=0) // 64))
    names = _words(words)
    # Per part, the steps that match anything (a constant mask per program) and the others.
    consts = [[0] * len(_PARTS) for _ in programs]
    steps_of: list[list[tuple[int, int, int]]] = [[] for _ in _PARTS]
    for i, program in enumerate(programs):
        for k, step in enumerate(program.steps):
            for part, value in enumerate(step.parts):
                if value is None:
                    consts[i][part] |= 1 << k
                else:
                    steps_of[part].append((i, k, value))
    const = pl.DataFrame(
        {"__prog": pl.Series(range(len(programs)), dtype=pl.UInt32)}
        | {f"__c{part}_{w}": pl.Series([c[part] >> (64 * w) & (2**64 - 1) for c in consts],
                                       dtype=pl.UInt64)
           for part in range(len(_PARTS)) for w in range(words)}
    )  # fmt: skip
    steps = [
        pl.DataFrame(rows, schema={"__prog": pl.UInt32, "__k": pl.UInt32, "__c": pl.UInt32},
                     orient="row")
        for rows in steps_of
    ]  # fmt: skip
    entities = [e for e in parts[0].items if isinstance(e, Entity)]
    truths = (
        None,
        _l4_truth(evaluator, parts[1].items, dests),
        _service_truth(parts[2].items),
        _domain_truth(parts[3].items),
    )
    marked = marked.join(const, on="__prog", how="left")
    for part, columns in enumerate(_PARTS):
        truth = truths[part]
        if truth is None:
            matched = vector_sides.matching(evaluator, marked, steps[part], sides, entities)
        else:
            matched = _part_rows(marked.select("__prog", *columns).unique(), steps[part],
                                 columns, truth)  # fmt: skip
        table = _bits(matched, ["__prog", *columns], words)
        renamed = table.rename({n: f"__v{part}_{w}" for w, n in enumerate(names)})
        marked = marked.join(renamed, on=["__prog", *columns], how="left", nulls_equal=True)
    marked = marked.with_columns(
        pl.reduce(
            lambda a, b: a & b,
            [pl.col(f"__c{p}_{w}") | pl.col(f"__v{p}_{w}").fill_null(0) for p in range(4)],
        ).alias(name)
        for w, name in enumerate(names)
    )
    combos = marked.select("__prog", *names).unique(maintain_order=True).with_row_index("__v")
    found = [
        _walk(programs[row[0]], sum(m << (64 * w) for w, m in enumerate(row[1:])), before)
        for row in combos.select("__prog", *names).rows()
    ]
    ids = marked.join(combos, on=["__prog", *names], how="left").select("__row", "__v")
    return ids, found


def _l4_truth(
    evaluator: Evaluator, items: list[Hashable], dests: list[Endpoint | None]
) -> Callable[..., bool]:
    """evaluate.py's protocol, destination ports and notPorts checks of one part."""
    named = evaluator._ports

    def truth(part: int, proto: str | None, port: int | None, nsig: int) -> bool:
        protocol, not_protocol, ports, not_ports = cast(_L4Part, items[part])
        number = flow_protocol(proto)
        if protocol is not None and number != protocol:
            return False
        if not_protocol is not None and number == not_protocol:
            return False
        if ports is not None:
            dest = dests[nsig] or Endpoint("")
            if not named.matches(ports, Edge(Endpoint(""), dest, port, proto)):
                return False
        return not (not_ports is not None and not_ports.matches(port))

    return truth


def _service_truth(items: list[Hashable]) -> Callable[..., bool]:
    """evaluate.py's destination services check."""

    def truth(part: int, namespace: str | None, name: str | None) -> bool:
        service = cast(ServiceMatch, items[part])
        return name == service.name and namespace == service.namespace

    return truth


def _domain_truth(items: list[Hashable]) -> Callable[..., bool]:
    """evaluate.py's destination domains check."""

    def truth(part: int, domains: list[str] | None) -> bool:
        patterns = cast(tuple[DomainPattern, ...], items[part])
        return any(p.matches(d) for p in patterns for d in domains or ())

    return truth


def _named_signatures(
    evaluator: Evaluator, marked: pl.DataFrame
) -> tuple[pl.DataFrame, list[Endpoint | None]]:
    """Per row an id of the named ports its destination's inventory pods give
    (named_ports.py), and per id one such destination."""
    columns = [f"dest_{c}" for c in _COLUMNS]
    distinct = marked.select(columns).unique(maintain_order=True)
    ids = _Ids()
    out: list[int] = []
    dests: list[Endpoint | None] = []
    for row in distinct.iter_rows(named=True):
        endpoint = Endpoint.from_row(row, "dest")
        n = ids.get(evaluator._ports.signature(endpoint))
        if n == len(dests):
            dests.append(endpoint)
        out.append(n)
    keyed = distinct.with_columns(pl.Series("__nsig", out, dtype=pl.UInt32))
    marked = marked.drop("__nsig").join(keyed, on=columns, how="left", nulls_equal=True)
    return marked, dests


def deciding(evaluator: Evaluator, frame: pl.DataFrame, *, before_order: float | None) -> pl.Series:
    """Per row, `tier|policy|action` of the hit that decides it before `before_order`, or
    null: the evaluator's verdict."""
    ids, found = verdicts(evaluator, frame, before_order=before_order)
    names: list[str | None] = []
    for verdict in found:
        hit = verdict.deciding
        names.append(None if hit is None else f"{hit.tier}|{hit.policy}|{hit.action}")
    return pl.Series("__deciding", names, dtype=pl.String).gather(ids)
