"""The rule builder: learnable edges in, one least-privilege `Recommendation` per namespace out.

Classification follows the Calico Enterprise engine (`rules.go`) by the remote endpoint (the
destination for egress, the source for ingress), with these deliberate departures:

- Private and Public peers name the observed addresses (cidr.py) instead of all of RFC 1918 or
  a port-only catch-all; a Public rule falls back to "any public address" (0.0.0.0/0 minus
  non-public and cluster ranges, flagged `public-fallback`) only past `public_cidr_cap` or when
  the flow logs aggregated the addresses away. Public addresses are never widened into a
  covering prefix: that would admit unrelated third parties.
- Address-like peers (domains, private and public addresses) are grouped by their exact port
  set: every peer in a rule was seen on exactly that rule's ports, so no (peer, port) pair that
  was never observed is allowed. Calico groups domains per single port; grouping per port set
  with contiguous ports merged gives fewer rules for the same traffic.
- Service rules carry no ports (the CRD rejects services with ports).
- On flavor `calico` and `kubernetes` (no `domains` field) a domain rule names the observed
  destination IPs and keeps the names for an annotation; on `kubernetes` there are no Service
  rules: service traffic is treated by address like any public peer.

`build` is pure: the grouping runs in Polars (rule_groups.py), Python only turns the final
groups into rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from flowfence.calico import cidr
from flowfence.learn import fold, rule_groups
from flowfence.learn.model import (
    ANY_PORT,
    ENTERPRISE_SELECTOR,
    LEFT_OPEN,
    MAY_CUT,
    OVER_CAP,
    PRIVATE_FALLBACK,
    PUBLIC_FALLBACK,
    Action,
    Direction,
    Evidence,
    NetSetRef,
    Recommendation,
    Rule,
    RuleSettings,
    Scope,
    ServiceRef,
    dns_label,
    hostname,
    label_key,
    label_value,
    merge_ports,
    sort_rules,
)

UNSUPPORTED_PEERS = "unsupported-peers"

# Labels Calico itself adds; only the set's own labels select it on open-source Calico too.
_IMPLICIT_LABEL_PREFIX = "projectcalico.org/"


@dataclass(frozen=True)
class _Group:
    """One row of `rule_groups.groups`, typed."""

    namespace: str
    direction: Direction
    scope: Scope
    action: Action
    protocol: str
    peer: str
    family: int | None
    ports: tuple[int, ...]
    no_port: bool
    items: tuple[str, ...]
    missing: bool
    labels: tuple[tuple[str, ...], ...]
    domains: tuple[str, ...]
    evidence: Evidence

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Group:
        return cls(
            namespace=row["namespace"],
            direction=row["direction"],
            scope=row["scope"],
            action=row["action"],
            protocol=row["protocol"],
            peer=row["peer"],
            family=row["family"],
            ports=tuple(row["ports"]),
            no_port=row["no_port"],
            items=tuple(row["items"]),
            missing=row["missing"],
            labels=tuple(tuple(x) for x in row["labels"]),
            domains=tuple(row["domains"]),
            evidence=Evidence(
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                flows=row["flows"],
                bytes=row["bytes"],
                days=row["days"],
                edges=row["edges"],
            ),
        )

    def base(self, **fields: Any) -> Rule:
        """A rule for this group; a port-bearing protocol seen without a port allows any port."""
        any_port = self.no_port and self.scope != "Service"
        flags = (ANY_PORT,) if any_port else ()
        ports = () if self.no_port else merge_ports(self.ports)
        note = "some flows had no destination port: any port is allowed" if any_port else ""
        fields.setdefault("ports", ports)
        fields["flags"] = tuple(sorted({*flags, *fields.get("flags", ())}))
        fields["note"] = "; ".join(n for n in (fields.get("note", ""), note) if n)
        return Rule(
            direction=self.direction,
            action=self.action,
            scope=self.scope,
            protocol=self.protocol,
            evidence=self.evidence,
            **fields,
        )


def _netset_labels(observations: Iterable[tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    """The set's own labels seen on every flow to it (intersection), sorted; implicit ones out."""
    common: set[str] | None = None
    for labels in observations:
        common = set(labels) if common is None else common & set(labels)
    pairs = []
    for text in sorted(common or ()):
        key, sep, value = text.partition("=")
        if sep and not key.startswith(_IMPLICIT_LABEL_PREFIX):
            pairs.append((label_key(key), label_value(value)))
    return tuple(pairs)


def _peer_rule(group: _Group) -> Rule:
    """Rules whose peer is a name: Namespace, NetworkSet, Service, enterprise Domains."""
    if group.scope == "Namespace":
        return group.base(namespaces=(dns_label(group.peer, "peer namespace"),))
    if group.scope == "NetworkSet":
        ns, _, name = group.peer.partition("/")
        labels = _netset_labels(group.labels)
        ref = NetSetRef(name=name, namespace=ns or None, labels=labels)
        if labels:
            return group.base(netset=ref)
        note = "selected by Calico Enterprise's implicit name/kind labels (no own labels seen)"
        return group.base(netset=ref, flags=(ENTERPRISE_SELECTOR,), note=note)
    if group.scope == "Service":
        ns, _, name = group.peer.partition("/")
        return group.base(service=ServiceRef(namespace=ns or None, name=name), ports=())
    return group.base(domains=tuple(sorted({hostname(d) for d in group.items})))


def _address_rules(group: _Group, settings: RuleSettings) -> list[Rule]:
    """Private rules and calico-flavor Domains rules (Public is decided per bucket)."""
    if group.scope == "Domains":
        domains = tuple(sorted({hostname(d) for d in group.domains}))
        return [group.base(nets=cidr.collapse(group.items), domains=domains)]
    rules = []
    if group.items:
        within = cidr.RFC1918 if group.family == 4 else cidr.PRIVATE_V6
        nets = cidr.aggregate(group.items, settings.private_cidr_cap, within=within)
        over = len(nets) > settings.private_cidr_cap
        note = "observed addresses span more private ranges than the CIDR cap" if over else ""
        rules.append(group.base(nets=nets, flags=(OVER_CAP,) if over else (), note=note))
    if group.missing:
        note = "flow logs had no private addresses: all of RFC 1918 is allowed"
        rules.append(group.base(nets=cidr.RFC1918, flags=(PRIVATE_FALLBACK,), note=note))
    return rules


def _public_rules(groups: list[_Group], settings: RuleSettings) -> list[Rule]:
    """Public rules of one (namespace, direction, protocol, family) bucket."""
    addresses = cidr.collapse(a for g in groups for a in g.items)
    missing = any(g.missing for g in groups)
    if not missing and len(addresses) <= settings.public_cidr_cap:
        return [g.base(nets=cidr.collapse(g.items)) for g in groups]
    fam: cidr.Family = 6 if groups[0].family == 6 else 4
    why = (
        "flow logs had no public addresses"
        if missing
        else f"{len(addresses)} public addresses exceed the cap of {settings.public_cidr_cap}"
    )
    head = groups[0]
    evidence = head.evidence
    for g in groups[1:]:
        evidence = evidence.merge(g.evidence)
    no_port = any(g.no_port for g in groups)
    ports = tuple(sorted({p for g in groups for p in g.ports}))
    merged = replace(head, no_port=no_port, ports=ports, evidence=evidence)
    note = f"{why}: any public {'IPv6' if fam == 6 else 'IPv4'} address is allowed"
    flags: tuple[str, ...] = (PUBLIC_FALLBACK,)
    if missing:
        flags += (MAY_CUT,)
        note += (
            f"; it excludes {', '.join(cidr.LABELLED_PUB[fam])}, which Felix also logs as "
            "public, so traffic there seen without an address would be cut once enforced"
        )
    fallback = merged.base(
        nets=(cidr.ANY[fam],),
        not_nets=cidr.exclusions(fam, settings.cluster_cidrs),
        flags=flags,
        note=note,
    )
    # Observed addresses the fallback excludes (a metadata endpoint logged as `pub`) keep a
    # rule of their own: the fallback must not cut what was seen.
    cut = cidr.inside(addresses, cidr.LABELLED_PUB[fam])
    if not cut:
        return [fallback]
    seen = [g for g in groups if cidr.inside(g.items, cut)]
    return [fallback, *(g.base(nets=cidr.inside(g.items, cut)) for g in seen)]


def build(
    edges: pl.DataFrame, namespaces: Sequence[str], settings: RuleSettings
) -> dict[str, Recommendation]:
    """One Recommendation per requested namespace (empty when it has no learnable edges).

    `edges` has the EDGE_SCHEMA columns plus `direction` and `namespace`. Raises ValueError
    when a string that would reach a rule is not a valid name, label, domain or address.
    """
    wanted = sorted({dns_label(ns, "namespace") for ns in namespaces})
    edges = edges.filter(pl.col("namespace").is_in(wanted))
    remote = rule_groups.remote(edges, settings)
    lost = remote.filter(pl.col("scope").is_null()).select("namespace", "direction").unique()
    unsupported = set(lost["namespace"].to_list())
    unexpressed = set(lost.iter_rows())  # bounded by namespaces x 2
    rows = rule_groups.groups(remote.filter(pl.col("scope").is_not_null()), edges)
    folds, rows = rule_groups.crowded_namespace_folds(
        rows, settings.max_rules, fold.ONE_SELECTOR, fold.CHUNK_BUDGET
    )
    by_ns: dict[str, list[Rule]] = defaultdict(list)
    step1: dict[str, dict[Direction, list[str]]] = defaultdict(dict)
    for (ns, direction), rules, notes in _prefolded(folds):
        by_ns[ns].extend(rules)
        step1[ns][direction] = notes
    public: dict[tuple[str, str, str, str, int], list[_Group]] = defaultdict(list)
    for row in rows.iter_rows(named=True):
        group = _Group.of(row)
        if group.scope == "Public":
            key = (group.namespace, group.direction, group.action, group.protocol)
            public[(*key, group.family or 4)].append(group)
        elif group.scope == "Private" or (group.scope == "Domains" and group.family):
            by_ns[group.namespace].extend(_address_rules(group, settings))
        else:
            by_ns[group.namespace].append(_peer_rule(group))
    for (ns, *_), groups in sorted(public.items()):
        by_ns[ns].extend(_public_rules(groups, settings))
    out: dict[str, Recommendation] = {}
    for ns in wanted:
        rules = by_ns.get(ns, [])
        rec = Recommendation(
            namespace=ns,
            egress=sort_rules(r for r in rules if r.direction == "egress"),
            ingress=sort_rules(r for r in rules if r.direction == "ingress"),
            flags=(UNSUPPORTED_PEERS,) if ns in unsupported else (),
        )
        rec = fold.fit(rec, settings, step1.get(ns))
        left_open = tuple(
            LEFT_OPEN[d]
            for d in ("egress", "ingress")
            if (ns, d) in unexpressed and not (rec.egress if d == "egress" else rec.ingress)
        )
        out[ns] = replace(rec, flags=(*rec.flags, *left_open)) if left_open else rec
    return out


def _prefolded(
    folds: pl.DataFrame,
) -> Iterable[tuple[tuple[str, Direction], list[Rule], list[str]]]:
    """Per crowded (namespace, direction): the namespace fold's rules and notes, built from
    rule_groups' per-fold rows (fold.prefolded), a handful of rules rather than one per peer."""
    place: tuple[str, Direction] | None = None
    rules: list[Rule] = []
    notes: list[str] = []
    # `folds` is sorted by fold key then chunk: consecutive rows of one key are one fold.
    key: tuple[object, ...] | None = None
    part: list[dict[str, Any]] = []

    def flush() -> tuple[list[Rule], str | None]:
        head = part[0]
        chunks = [
            (
                tuple(dns_label(p, "peer namespace") for p in row["peers"]),
                Evidence(row["first_seen"], row["last_seen"], row["flows"], row["bytes"],
                         row["days"], row["edges"]),
            )
            for row in part
        ]  # fmt: skip
        member = _Group.of(
            {**head, "scope": "Namespace", "peer": chunks[0][0][0], "family": None,
             "ports": head["eff_ports"], "items": [], "missing": False, "labels": [],
             "domains": []}
        )  # fmt: skip
        return fold.prefolded(_peer_rule(member), chunks, head["members"])

    for row in folds.iter_rows(named=True):
        row_key = tuple(
            tuple(v) if isinstance(v, list) else v
            for v in (row["namespace"], row["direction"], row["action"], row["protocol"],
                      row["no_port"], row["eff_ports"])
        )  # fmt: skip
        if row_key != key and part:
            made, note = flush()
            rules.extend(made)
            notes.extend([note] if note is not None else [])
            part = []
        here = (row["namespace"], row["direction"])
        if here != place:
            if place is not None:
                yield place, rules, notes
            place, rules, notes = here, [], []
        key = row_key
        part.append(row)
    if part:
        made, note = flush()
        rules.extend(made)
        notes.extend([note] if note is not None else [])
    if place is not None:
        yield place, rules, notes
