"""Risks of a frozen (accepted or enforced) policy, compared with this run's recommendation.

A frozen policy keeps the rules it had when it was reviewed, or the rules someone kept with
`--keep-edits`; either way a reviewer must see when it lets through more than flowfence would
recommend now, or when it is not where flowfence puts its policies. Both policies are parsed
with the Calico model the evaluator uses (calico/policy_docs.py), and the frozen one
`allows-more` when

- it does not restrict a direction the recommendation restricts (missing from its `types`);
- it selects other endpoints than the recommendation (another `selector` or
  `serviceAccountSelector`): the endpoints it leaves out are not isolated;
- one of its Allow or Pass rules is not within a single Allow rule of the recommendation
  (protocol, ports, nets, selectors, services and domains each the same or narrower).

The comparison is conservative: a rule it cannot prove within the recommendation is reported.
It is `outside-tier` when its tier is not the recommendation's (ours). Namespaced kinds only
reach this far (apply_decisions.policy_of), so another kind or namespace never gets frozen.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from flowfence.calico.policies import DEFAULT_TIER, Policy, PolicyKind
from flowfence.calico.policy_docs import policy_set
from flowfence.calico.policy_rules import EntityRule, PortMatch, Rule
from flowfence.core.errors import PolicyError

ALLOWS_MORE = "allows-more"
OUTSIDE_TIER = "outside-tier"
EDITED = "edited"
KEPT_EDITS = "kept-edits"
MAX_ITEMS = 5  # rules named per risk; the count says how many there are
MAX_ITEM_CHARS = 200
DIRECTIONS = ("egress", "ingress")


def risk(namespace: str, kind: str, detail: str, items: Sequence[str] = ()) -> dict[str, Any]:
    """A risk as the report keeps it: `items` are texts from the policy (untrusted: the report
    puts them in code spans)."""
    return {"namespace": namespace, "risk": kind, "detail": detail, "items": list(items)}


def _policy(doc: Mapping[str, Any], namespace: str) -> Policy | None:
    found = [p for p in policy_set([doc]).policies() if p.namespace == namespace]
    return found[0] if len(found) == 1 else None


def _ports_within(inner: PortMatch | None, outer: PortMatch | None) -> bool:
    if outer is None:
        return True
    if inner is None:
        return False
    ranges = all(
        any(o.first <= r.first and r.last <= o.last for o in outer.ranges) for r in inner.ranges
    )
    return ranges and set(inner.named) <= set(outer.named)


def _nets_within(
    inner: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
    outer: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> bool:
    if not outer:
        return True
    return bool(inner) and all(
        any(n.version == o.version and n.subnet_of(o) for o in outer)  # type: ignore[arg-type]
        for n in inner
    )


def _same_or_open(inner: object, outer: object) -> bool:
    return outer is None or inner == outer


def _entity_within(inner: EntityRule, outer: EntityRule) -> bool:
    """Every peer `inner` admits is admitted by `outer` (provably; else False)."""
    domains_ok = not outer.domains or (
        bool(inner.domains) and {d.text for d in inner.domains} <= {d.text for d in outer.domains}
    )
    return (
        _nets_within(inner.nets, outer.nets)
        and set(outer.not_nets) <= set(inner.not_nets)
        and _same_or_open(inner.selector, outer.selector)
        and _same_or_open(inner.not_selector, outer.not_selector)
        and _same_or_open(inner.namespace_selector, outer.namespace_selector)
        and _same_or_open(inner.service_accounts, outer.service_accounts)
        and _same_or_open(inner.services, outer.services)
        and _ports_within(inner.ports, outer.ports)
        and _same_or_open(inner.not_ports, outer.not_ports)
        and domains_ok
    )


def _rule_within(inner: Rule, outer: Rule) -> bool:
    if outer.action != "Allow" or outer.unmatchable:
        return False
    return (
        _same_or_open(inner.protocol, outer.protocol)
        and _same_or_open(inner.not_protocol, outer.not_protocol)
        and _same_or_open(inner.ip_version, outer.ip_version)
        and _entity_within(inner.source, outer.source)
        and _entity_within(inner.destination, outer.destination)
    )


def _rule_text(doc: Mapping[str, Any], direction: str, rule: Rule) -> str:
    spec = doc.get("spec")
    rules = spec.get(direction) if isinstance(spec, dict) else None
    raw = rules[rule.index] if isinstance(rules, list) and rule.index < len(rules) else None
    if not isinstance(raw, dict):
        return f"{direction} rule {rule.index + 1}"
    body = json.dumps({k: v for k, v in raw.items() if k != "metadata"}, sort_keys=True)
    text = f"{direction} {body}"
    return text if len(text) <= MAX_ITEM_CHARS else text[: MAX_ITEM_CHARS - 3] + "..."


def _wider(frozen: Policy, doc: Mapping[str, Any], rec: Policy) -> tuple[list[str], list[str]]:
    """Why `frozen` allows more than `rec`: reasons, and the rules no recommended rule holds."""
    reasons: list[str] = []
    loose = [d for d in DIRECTIONS if d in rec.types and d not in frozen.types]
    if loose:
        reasons.append(f"it does not restrict {' or '.join(loose)}, which the recommendation does")
    if (frozen.selector, frozen.service_account_selector) != (
        rec.selector,
        rec.service_account_selector,
    ):
        reasons.append("it selects other endpoints than the recommendation")
    extra: list[str] = []
    for direction in DIRECTIONS:
        if direction not in frozen.types or direction not in rec.types:
            continue  # unrestricted by the recommendation: nothing can be more than that
        allowed = rec.egress if direction == "egress" else rec.ingress
        for rule in frozen.egress if direction == "egress" else frozen.ingress:
            if rule.action not in ("Allow", "Pass") or rule.unmatchable:
                continue
            if not any(_rule_within(rule, r) for r in allowed):
                extra.append(_rule_text(doc, direction, rule))
    if extra:
        reasons.append(f"{len(extra)} of its rules allow traffic no recommended rule allows")
    return reasons, extra


def assess(
    namespace: str,
    frozen_doc: Mapping[str, Any],
    recommended_doc: Mapping[str, Any] | None,
    tier: str,
) -> list[dict[str, Any]]:
    """The risks of `frozen_doc`, the namespace's frozen policy, against `recommended_doc`
    (this run's recommendation; None when there is none: only the tier is checked, against
    `tier`, ours)."""
    try:
        frozen = _policy(frozen_doc, namespace)
        rec = _policy(recommended_doc, namespace) if recommended_doc is not None else None
    except PolicyError as exc:
        return [risk(namespace, ALLOWS_MORE, "the frozen policy cannot be evaluated", [str(exc)])]
    if frozen is None:
        return [risk(namespace, ALLOWS_MORE, "the frozen policy cannot be evaluated")]
    found: list[dict[str, Any]] = []
    expected = rec.tier if rec is not None else tier
    if frozen.kind.enforced is PolicyKind.KNP and rec is None:
        expected = DEFAULT_TIER  # a Kubernetes NetworkPolicy is always in Calico's default tier
    if frozen.tier != expected:
        found.append(
            risk(
                namespace,
                OUTSIDE_TIER,
                f"the frozen policy is in another tier than flowfence's ({expected})",
                [f"tier {frozen.tier}"],
            )
        )
    if rec is not None:
        reasons, extra = _wider(frozen, frozen_doc, rec)
        if reasons:
            found.append(risk(namespace, ALLOWS_MORE, "; ".join(reasons), extra[:MAX_ITEMS]))
    return found
