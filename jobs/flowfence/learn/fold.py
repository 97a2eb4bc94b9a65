"""maxRules: fold a direction that has too many rules until it fits, never dropping traffic.

Calico declares `maxRules` but never enforces it. We do, per namespace and direction, by
applying these steps in order and stopping as soon as the direction fits:

1. `namespaces`: Namespace rules with the same action, protocol and ports become one rule with
   `projectcalico.org/name in {...}`. Nothing new is allowed. Calico Enterprise's CRDs cap a
   selector at 1024 characters, so a list too long for one selector is split over as few
   rules as fit (in name order).
2. `domains`: all Domains rules of a protocol (and IP family, when they name addresses) become
   one rule with the union of domains and ports.
3. `ports`: Namespace rules of the same action and protocol become one rule with the union of
   peer namespaces and of ports (contiguous ports merged into ranges).
4. `addresses`: Private rules of a protocol and family become one rule with the union of ports
   and the addresses re-aggregated within `private_cidr_cap`; Public rules likewise, falling
   back to "any public address" when the union exceeds `public_cidr_cap`.

Steps 2-4 widen: a peer may now be reached on a port it was only seen on with another peer.
Rules allowing any port are merged only with each other, so one port-less rule never opens
every port to the peers it is folded with. Each step is applied to the whole direction (simple
and deterministic), and every merge is recorded in a human-readable note. A direction that
still does not fit after step 4 gains nothing from the widening: it keeps only step 1's
lossless fold, stays over the limit and is flagged `over-max-rules:<direction>`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence

from flowfence.calico import cidr
from flowfence.learn.model import (
    FOLDED,
    PUBLIC_FALLBACK,
    Direction,
    Evidence,
    PortRange,
    Recommendation,
    Rule,
    RuleSettings,
    merge_ports,
    sort_rules,
)

OVER_MAX_RULES = "over-max-rules"

Step = Callable[[Sequence[Rule], RuleSettings], tuple[list[Rule], list[str]]]


def _evidence(rules: Sequence[Rule]) -> Evidence:
    out = rules[0].evidence
    for rule in rules[1:]:
        out = out.merge(rule.evidence)
    return out


def _ports(rules: Sequence[Rule]) -> tuple[tuple[int, int], ...] | None:
    """Union of ports; None when one rule allows any port (then the union does too)."""
    if any(not r.ports for r in rules):
        return None
    return tuple((p.lo, p.hi) for r in rules for p in r.ports)


def _merge(rules: Sequence[Rule], note: str, **fields: object) -> Rule:
    ports = _ports(rules)
    merged_ports = () if ports is None else merge_ports(PortRange(lo, hi) for lo, hi in ports)
    flags = tuple(sorted({FOLDED, *(f for r in rules for f in r.flags)}))
    notes = [note, *sorted({r.note for r in rules if r.note})]
    base: dict[str, object] = {
        "ports": merged_ports,
        "evidence": _evidence(rules),
        "flags": flags,
        "note": "; ".join(notes),
    }
    base.update(fields)
    return rules[0].with_(**base)


def _describe(rule: Rule) -> str:
    ports = ",".join(str(p) for p in rule.ports) or "any port"
    return f"{rule.protocol} {ports}"


# Calico Enterprise's CRD limit on a rule's namespaceSelector (open source has none).
MAX_SELECTOR = 1024
# `projectcalico.org/name in {...}` costs 27 characters plus len(name) + 4 per name (quotes and
# ", ", one separator fewer than names): names whose costs sum to at most ONE_SELECTOR fit one.
ONE_SELECTOR = MAX_SELECTOR - len("projectcalico.org/name in {}") + 2
# Longer lists are cut where the running cost crosses a multiple of CHUNK_BUDGET: a chunk then
# costs at most CHUNK_BUDGET plus one name (a DNS label, at most 63 + 4), within ONE_SELECTOR.
# A running sum, not a greedy loop, so that rule_groups.py cuts crowded folds the same way in
# Polars as this module does in Python.
CHUNK_BUDGET = ONE_SELECTOR - (63 + 4)


def name_cost(name: str) -> int:
    return len(name) + 4


def selector_chunks(names: Sequence[str]) -> list[tuple[str, ...]]:
    """`names` (sorted) in consecutive runs whose `projectcalico.org/name in {...}` selector
    (render/manifests.namespace_selector) stays within MAX_SELECTOR characters."""
    costs = [name_cost(n) for n in names]
    if sum(costs) <= ONE_SELECTOR:
        return [tuple(names)] if names else []
    chunks: dict[int, list[str]] = defaultdict(list)
    running = 0
    for name, cost in zip(names, costs, strict=True):
        running += cost
        chunks[(running - 1) // CHUNK_BUDGET].append(name)
    return [tuple(chunk) for _, chunk in sorted(chunks.items())]


def _regroup(
    rules: Sequence[Rule],
    key: Callable[[Rule], Hashable | None],
    merge: Callable[[list[Rule]], list[Rule]],
    label: str,
) -> tuple[list[Rule], list[str]]:
    """Merge rules sharing a (non-None) key; keep the others. Notes for each real merge."""
    groups: dict[Hashable, list[Rule]] = defaultdict(list)
    out: list[Rule] = []
    for rule in rules:
        k = key(rule)
        if k is None:
            out.append(rule)
        else:
            groups[k].append(rule)
    notes = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        merged = merge(members)
        out.extend(merged)
        notes.append(_fold_note(len(members), label, merged))
    return out, sorted(notes)


def _fold_note(count: int, label: str, merged: Sequence[Rule]) -> str:
    into = "one" if len(merged) == 1 else f"{len(merged)} (one selector is too long)"
    return f"{merged[0].direction}: folded {count} {label} into {into} ({_describe(merged[0])})"


_SAME_PORTS = "with the same ports"
_NAMESPACE_FOLD = "Namespace rules with identical ports"


def prefolded(
    template: Rule, chunks: Sequence[tuple[tuple[str, ...], Evidence]], members: int
) -> tuple[list[Rule], str | None]:
    """Step 1's rules and note for a fold rule_groups.crowded_namespace_folds computed:
    `template` is one member's rule (members differ only in peer and evidence), `chunks` the
    selector-sized runs of peers with their evidence. The same rules and note `_namespaces`
    gives for the members' rules."""
    if members == 1:
        return [template], None
    total = sum(len(names) for names, _ in chunks)
    rules = []
    for names, evidence in chunks:
        part = f"{len(names)} of {total}" if len(chunks) > 1 else f"{total}"
        note = f"{part} peer namespaces {_SAME_PORTS}"
        rules.append(_merge([template], note, namespaces=names, evidence=evidence))
    return rules, _fold_note(members, _NAMESPACE_FOLD, rules)


def _merge_namespaces(members: list[Rule], why: str) -> list[Rule]:
    """Namespace rules as one rule per selector-sized run of peer names; each merged rule's
    evidence is that of the rules whose peers it holds."""
    names = sorted({ns for r in members for ns in r.namespaces})
    chunks = selector_chunks(names)
    if len(chunks) == 1:
        return [_merge(members, f"{len(names)} peer namespaces {why}", namespaces=tuple(names))]
    out = []
    for chunk in chunks:
        held = set(chunk)
        part = [r for r in members if held & set(r.namespaces)]
        # A member whose peers straddle two runs lends its ports and evidence to both.
        note = f"{len(chunk)} of {len(names)} peer namespaces {why}"
        out.append(_merge(part, note, namespaces=chunk))
    return out


def _namespaces(rules: Sequence[Rule], _: RuleSettings) -> tuple[list[Rule], list[str]]:
    def key(r: Rule) -> Hashable | None:
        return (r.action, r.protocol, r.ports) if r.scope == "Namespace" else None

    def merge(members: list[Rule]) -> list[Rule]:
        return _merge_namespaces(members, _SAME_PORTS)

    return _regroup(rules, key, merge, _NAMESPACE_FOLD)


def _domains(rules: Sequence[Rule], _: RuleSettings) -> tuple[list[Rule], list[str]]:
    def key(r: Rule) -> Hashable | None:
        return (r.action, r.protocol, r.family, not r.ports) if r.scope == "Domains" else None

    def merge(members: list[Rule]) -> list[Rule]:
        domains = tuple(sorted({d for r in members for d in r.domains}))
        nets = cidr.collapse(n for r in members for n in r.nets)
        note = f"{len(members)} domain rules merged to fit maxRules"
        return [_merge(members, note, domains=domains, nets=nets)]

    return _regroup(rules, key, merge, "Domains rules")


def _ports_step(rules: Sequence[Rule], _: RuleSettings) -> tuple[list[Rule], list[str]]:
    def key(r: Rule) -> Hashable | None:
        return (r.action, r.protocol, not r.ports) if r.scope == "Namespace" else None

    def merge(members: list[Rule]) -> list[Rule]:
        return _merge_namespaces(members, "share the union of their ports to fit maxRules")

    return _regroup(rules, key, merge, "Namespace rules of one protocol")


def _addresses(rules: Sequence[Rule], settings: RuleSettings) -> tuple[list[Rule], list[str]]:
    def key(r: Rule) -> Hashable | None:
        if r.scope in ("Private", "Public"):
            return (r.scope, r.action, r.protocol, r.family, not r.ports)
        return None

    def merge(members: list[Rule]) -> list[Rule]:
        return [_merge_addresses(members)]

    def _merge_addresses(members: list[Rule]) -> Rule:
        nets = [n for r in members for n in r.nets]
        fam: cidr.Family = 6 if members[0].family == 6 else 4
        if members[0].scope == "Private":
            within = cidr.RFC1918 if fam == 4 else cidr.PRIVATE_V6
            agg = cidr.aggregate(nets, settings.private_cidr_cap, within=within)
            return _merge(members, "private rules merged to fit maxRules", nets=agg)
        named = cidr.collapse(nets)
        fallback = any(PUBLIC_FALLBACK in r.flags for r in members)
        if not fallback and len(named) <= settings.public_cidr_cap:
            return _merge(members, "public rules merged to fit maxRules", nets=named)
        merged = _merge(
            members,
            "public rules merged to fit maxRules: any public address is allowed",
            nets=(cidr.ANY[fam],),
            not_nets=cidr.exclusions(fam, settings.cluster_cidrs),
        )
        return merged.with_(flags=tuple(sorted({*merged.flags, PUBLIC_FALLBACK})))

    return _regroup(rules, key, merge, "address rules")


STEPS: tuple[Step, ...] = (_namespaces, _domains, _ports_step, _addresses)


def fit_direction(
    rules: Sequence[Rule],
    direction: Direction,
    settings: RuleSettings,
    step1: Sequence[str] | None = None,
) -> tuple[tuple[Rule, ...], list[str], bool]:
    """(rules, notes, fits) for one direction. `step1`: the notes of the namespace fold when
    `rules` are already its result (rule_groups folded a crowded direction), else None.

    When even the last step does not fit, the widening steps bought nothing: the direction
    keeps only the lossless namespace fold and is reported as over the limit.
    """
    current = sort_rules(rules)
    notes: list[str] = sorted(step1) if step1 is not None else []
    for step in STEPS if step1 is None else STEPS[1:]:
        if len(current) <= settings.max_rules:
            return current, notes, True
        folded, step_notes = step(current, settings)
        current = sort_rules(folded)
        notes.extend(step_notes)
    if len(current) <= settings.max_rules:
        return current, notes, True
    if step1 is None:
        kept, notes = _namespaces(sort_rules(rules), settings)
    else:
        kept, notes = list(rules), sorted(step1)
    notes.append(
        f"{direction}: {len(kept)} rules exceed maxRules {settings.max_rules} even after"
        " folding; kept them unwidened rather than drop observed traffic"
    )
    return sort_rules(kept), notes, False


def fit(
    rec: Recommendation,
    settings: RuleSettings,
    step1: Mapping[Direction, Sequence[str]] | None = None,
) -> Recommendation:
    """The recommendation with each direction folded to at most `max_rules`, if possible.
    `step1`: per direction whose namespace fold rule_groups already did, its notes."""
    done = step1 or {}
    egress, egress_notes, egress_fits = fit_direction(
        rec.egress, "egress", settings, done.get("egress")
    )
    ingress, ingress_notes, ingress_fits = fit_direction(
        rec.ingress, "ingress", settings, done.get("ingress")
    )
    # The recommendation's flags summarise its rules' (public-fallback, ...) for the report.
    flags: Iterable[str] = (
        *rec.flags,
        *(flag for rule in (*egress, *ingress) for flag in rule.flags),
        *(() if egress_fits else (f"{OVER_MAX_RULES}:egress",)),
        *(() if ingress_fits else (f"{OVER_MAX_RULES}:ingress",)),
    )
    return Recommendation(
        namespace=rec.namespace,
        egress=egress,
        ingress=ingress,
        folded=(*rec.folded, *egress_notes, *ingress_notes),
        flags=tuple(sorted(set(flags))),
    )
