"""The remote side of many edges as evaluation sees it, and which entity rules match it.

A rule's remote entity reads only what the evaluator resolves of the peer (evaluate.py,
`_resolve`): a pod or host endpoint's namespace and labels, a network set's name, namespace and
labels, any other peer's address, of which only the interval the policy set's CIDRs cut it into
matters (edge_classes.py `Bounds`). So edges are keyed by that (`side_ids`): a few thousand
sides for a large cluster, a hundred thousand public clients being a handful of intervals.

Whether an entity rule matches a side splits into the part that reads the side's identities
(selector, namespaceSelector, serviceAccounts, notSelector over its candidates) and the part
that reads its address or its set's nets (nets, notNets, ipVersion). The first runs in Polars,
every entity rule over every candidate at once (`candidate_truth`, selector_expr.py); the second
in Python through the evaluator's own functions, only for sides with an address or nets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import polars as pl

from flowfence.calico.address_class import overlaps, parse_ip, within
from flowfence.calico.edge_classes import Bounds
from flowfence.calico.evaluate import (
    LOCAL_TYPES,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_PREFIX,
    Evaluator,
    namespace_labels,
)
from flowfence.calico.policies import Direction, Policy, Tier
from flowfence.calico.policy_rules import EntityRule
from flowfence.calico.selector import Selector
from flowfence.calico.selector_expr import to_expr
from flowfence.calico.verdict import Endpoint

_Indexed: TypeAlias = list[tuple[int, Policy]]
_Chosen: TypeAlias = list[tuple[Tier, list[Policy]]]
SIDE = "__side"
_LABEL, _NS_LABEL, _SA_LABEL = "l:", "n:", "s:"
_CNS = "__cns"
_NAMED = (*LOCAL_TYPES, "ns")


@dataclass(frozen=True)
class Entity:
    """The side-reading part of one remote entity rule, in one policy's scope."""

    rule: EntityRule
    namespaced: bool
    namespace: str | None
    ip_version: int | None

    @property
    def reads_address(self) -> bool:
        return bool(self.rule.nets or self.rule.not_nets) or self.ip_version is not None

    @property
    def trivial(self) -> bool:
        """Matches every side: nothing to check."""
        return not self.reads_address and not self.rule.selects_endpoints

    def address_part(self, evaluator: Evaluator, endpoint: Endpoint) -> bool:
        """nets, notNets and ipVersion against the side of `endpoint` (evaluate.py)."""
        side = evaluator._side(endpoint)
        version = self.ip_version
        if version is not None and side.ip is not None and side.ip.version != version:
            return False
        if self.rule.nets and not within(side.ip, side.set_nets, self.rule.nets):
            return False
        return not (self.rule.not_nets and overlaps(side.ip, side.set_nets, self.rule.not_nets))


@dataclass(frozen=True)
class Sides:
    """Per side id: a representative endpoint, whether it has an address or set nets, and
    whether it is a `net` peer without an address (a class of addresses: the reference
    evaluator's, address_class.py)."""

    reps: tuple[Endpoint, ...]
    addressed: tuple[bool, ...]
    classes: tuple[bool, ...]


def side_ids(evaluator: Evaluator, frame: pl.DataFrame, prefix: str) -> tuple[pl.Series, Sides]:
    """Per row of `frame` the id of the side its `prefix` endpoint presents."""

    def col(c: str) -> pl.Expr:
        return pl.col(f"{prefix}_{c}")

    named = col("type").is_in(list(_NAMED)).fill_null(False)
    addresses = Bounds.of_policies(evaluator).keys(frame.get_column(f"{prefix}_ip"))
    keyed = frame.select(
        col("type").alias("__t"),
        pl.when(named).then(col("namespace")).alias("__ns"),
        pl.when(col("type") == "ns").then(col("name_aggr")).alias("__n"),
        pl.when(named).then(col("labels")).alias("__l"),
        pl.when(~named).then(col("ip")).alias("__ip"),
        pl.when(~named).then(addresses).alias("__k"),
    )
    key = ["__t", "__ns", "__n", "__l", "__k"]
    distinct = (
        keyed.with_row_index("__row")
        .group_by(key)
        .agg(pl.col("__row").min(), pl.col("__ip").first())
        .sort("__row")
        .with_row_index(SIDE)
    )
    ids = keyed.join(distinct.select(*key, SIDE), on=key, how="left", nulls_equal=True)
    reps, addressed, classes = [], [], []
    for t, ns, name, labels, ip in distinct.select("__t", "__ns", "__n", "__l", "__ip").rows():
        endpoint = Endpoint(t or "", ns, name, ip, tuple(labels or ()))
        side = evaluator._side(endpoint)
        reps.append(endpoint)
        addressed.append(side.ip is not None or bool(side.set_nets))
        classes.append(t == "net" and parse_ip(ip) is None)
    return ids.get_column(SIDE), Sides(tuple(reps), tuple(addressed), tuple(classes))


def candidate_truth(
    evaluator: Evaluator, sides: Sides, entities: Sequence[Entity]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(side, entity) pairs where some candidate of the side is a positive match of the
    entity (`_positive`), and pairs where some candidate matches its notSelector."""
    rows: list[dict[str, object]] = []
    for i, rep in enumerate(sides.reps):
        for cand in evaluator._side(rep).candidates:
            row: dict[str, object] = {SIDE: i, _CNS: cand.namespace}
            row.update((_LABEL + k, v) for k, v in cand.labels.items())
            row.update(
                (_SA_LABEL + k[len(SERVICE_ACCOUNT_PREFIX) :], v)
                for k, v in cand.labels.items()
                if k.startswith(SERVICE_ACCOUNT_PREFIX)
            )
            if cand.namespace is not None:
                extra = evaluator._ns_extra.get(cand.namespace)
                labels = namespace_labels(cand.namespace, extra)
                row.update((_NS_LABEL + k, v) for k, v in labels.items())
            rows.append(row)
    empty = pl.DataFrame(schema={SIDE: pl.UInt32, "__e": pl.UInt32})
    if not rows:
        return empty, empty
    names = sorted({k for row in rows for k in row} - {SIDE})
    cands = pl.from_dicts(rows, schema={SIDE: pl.UInt32, **dict.fromkeys(names, pl.String)})
    columns = frozenset(cands.columns)
    exprs: list[pl.Expr] = []
    for e, entity in enumerate(entities):
        if entity.rule.selects_endpoints:
            exprs.append(_positive(entity, columns).alias(f"p{e}"))
        if entity.rule.not_selector is not None:
            exprs.append(to_expr(entity.rule.not_selector, _LABEL, columns).alias(f"q{e}"))
    if not exprs:
        return empty, empty
    long = (
        cands.select(SIDE, *exprs)
        .group_by(SIDE)
        .agg(pl.exclude(SIDE).any())
        .unpivot(index=SIDE)
        .filter(pl.col("value"))
        .select(
            SIDE,
            pl.col("variable").str.slice(0, 1).alias("__kind"),
            pl.col("variable").str.slice(1).cast(pl.UInt32).alias("__e"),
        )
    )
    pos = long.filter(pl.col("__kind") == "p").select(SIDE, "__e")
    neg = long.filter(pl.col("__kind") == "q").select(SIDE, "__e")
    return pos, neg


def _positive(entity: Entity, columns: frozenset[str]) -> pl.Expr:
    """evaluate.py `_positive` over the candidate rows."""
    rule = entity.rule
    if rule.namespace_selector is not None:
        scope = _namespace_match(rule.namespace_selector, columns)
    elif entity.namespaced:
        scope = pl.col(_CNS).eq_missing(pl.lit(entity.namespace, dtype=pl.String))
    else:
        scope = pl.lit(True)
    parts = [scope]
    if rule.selector is not None:
        parts.append(to_expr(rule.selector, _LABEL, columns))
    sa = rule.service_accounts
    if sa is not None:
        if _LABEL + SERVICE_ACCOUNT_LABEL not in columns:
            return pl.lit(False)  # no candidate has a service account
        account = pl.col(_LABEL + SERVICE_ACCOUNT_LABEL)
        parts.append(account.is_not_null())
        if sa.names:
            names = pl.Series([sorted(sa.names)], dtype=pl.List(pl.String))
            parts.append(account.is_in(names).fill_null(False))
        if sa.selector is not None:
            parts.append(to_expr(sa.selector, _SA_LABEL, columns))
    return pl.all_horizontal(parts)


def _namespace_match(selector: Selector, columns: frozenset[str]) -> pl.Expr:
    """evaluate.py `_ns_match`: global() reads the entity's own labels; otherwise only a
    namespaced entity matches, by its namespace's labels."""
    if selector.uses_global:
        return to_expr(selector, _LABEL, columns)
    return pl.col(_CNS).is_not_null() & to_expr(selector, _NS_LABEL, columns)


def matching(
    evaluator: Evaluator,
    marked: pl.DataFrame,
    steps: pl.DataFrame,
    sides: Sides,
    entities: Sequence[Entity],
) -> pl.DataFrame:
    """(`__prog`, side, `__k`) wherever step `__k` of a program, whose remote entity is `__c`
    (`steps`), matches a side the program's edges (`marked`) meet: evaluate.py `_side_matches`
    with the rule's ipVersion."""
    pairs = marked.select("__prog", SIDE).unique()
    empty = pairs.select("__prog", SIDE, pl.lit(0, dtype=pl.UInt32).alias("__k")).clear()
    if not steps.height:
        return empty
    flags = pl.DataFrame(
        {
            "__c": pl.Series(range(len(entities)), dtype=pl.UInt32),
            "__sel": [e.rule.selects_endpoints for e in entities],
            "__reads": [e.reads_address for e in entities],
            "__nets": [bool(e.rule.nets) for e in entities],
        }
    )
    at = pl.Series([[i for i, a in enumerate(sides.addressed) if a]], dtype=pl.List(pl.UInt32))
    steps = steps.join(flags, on="__c")
    # An entity that selects matches only where a candidate is positive (`pos`, sparse): start
    # from those pairs rather than from every (program, side, step).
    pos, neg = candidate_truth(evaluator, sides, entities)
    chosen = (
        steps.filter(pl.col("__sel"))
        .join(pos.rename({"__e": "__c"}), on="__c")
        .join(pairs, on=["__prog", SIDE], how="semi")
        .join(neg.rename({"__e": "__c"}), on=["__c", SIDE], how="anti")
    )
    # One that does not select reads only the address. On a side without one (or set nets)
    # an entity matches unless it has nets (within() is false without either, overlaps() too).
    plain = steps.filter(~pl.col("__sel") & ~pl.col("__nets")).join(pairs, on="__prog")
    netted = steps.filter(~pl.col("__sel") & pl.col("__nets")).join(
        pairs.filter(pl.col(SIDE).is_in(at)), on="__prog"
    )
    rows = pl.concat([chosen, plain, netted], how="diagonal")
    check = pl.col("__reads") & pl.col(SIDE).is_in(at)
    need = rows.filter(check).select("__c", SIDE).unique()
    ok = [entities[c].address_part(evaluator, sides.reps[s]) for c, s in need.rows()]
    checked = need.with_columns(pl.Series("__a", ok, dtype=pl.Boolean))
    rows = rows.join(checked, on=["__c", SIDE], how="left")
    return rows.filter(pl.when(check).then("__a").otherwise(~pl.col("__nets"))).select(
        "__prog", SIDE, "__k"
    )


class Selection:
    """evaluate.py `_selected`, trying at an endpoint only the policies that can select it:
    the global ones, and the namespaced ones of its namespace if it is a pod."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.tiers: list[tuple[Tier, _Indexed, dict[str | None, _Indexed]]] = []
        for tier in evaluator.tiers:
            glob: _Indexed = []
            by_ns: dict[str | None, _Indexed] = defaultdict(list)
            for i, p in enumerate(tier.policies):
                (by_ns[p.namespace] if p.kind.namespaced else glob).append((i, p))
            self.tiers.append((tier, glob, by_ns))
        self.cache: dict[tuple[str, str | None, tuple[str, ...]], _Chosen] = {}

    def __call__(
        self, endpoint: Endpoint, direction: Direction
    ) -> tuple[tuple[Tier, tuple[Policy, ...]], ...]:
        key = (endpoint.type, endpoint.namespace, endpoint.labels)
        found = self.cache.get(key)
        if found is None:
            evaluator = self.evaluator
            entity = evaluator._side(endpoint).candidates[0]
            is_wep = endpoint.type == "wep"
            found = self.cache[key] = []
            for tier, glob, by_ns in self.tiers:
                tried = sorted(glob + (by_ns.get(entity.namespace, []) if is_wep else []))
                chosen = [p for _, p in tried if evaluator._selects(p, entity, is_wep)]
                found.append((tier, chosen))
        out = ((t, tuple(p for p in chosen if direction in p.types)) for t, chosen in found)
        return tuple((t, chosen) for t, chosen in out if chosen)
