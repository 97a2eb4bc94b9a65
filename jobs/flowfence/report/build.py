"""The run report model (report.py) built from what a run computed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowfence.config.settings import Settings
from flowfence.learn import exclude, namespaces
from flowfence.learn.model import Recommendation, Rule
from flowfence.learn.stale import StaleRule
from flowfence.render.manifests import policy_name
from flowfence.report import model as rpt
from flowfence.state.lifecycle import NamespaceState


def peer_text(rule: Rule) -> str:
    """A short, human-readable name for the peer of a rule (reports only)."""
    if rule.scope == "Namespace":
        return "namespace " + ",".join(rule.namespaces)
    if rule.scope == "NetworkSet" and rule.netset is not None:
        where = rule.netset.namespace or "global"
        return f"networkset {where}/{rule.netset.name}"
    if rule.scope == "Service" and rule.service is not None:
        return f"service {rule.service.namespace or '-'}/{rule.service.name}"
    if rule.scope == "Domains":
        return "domains " + ",".join(rule.domains)
    nets = ",".join(rule.nets)
    return f"nets {nets}" + (f" except {len(rule.not_nets)} ranges" if rule.not_nets else "")


def rule_entry(rule: Rule) -> rpt.RuleEntry:
    ev = rule.evidence
    return rpt.RuleEntry(
        direction=rule.direction,
        action=rule.action,
        scope=rule.scope,
        peer=peer_text(rule),
        protocol=rule.protocol,
        ports=tuple(str(p) for p in rule.ports),
        evidence=rpt.Evidence(
            rpt.rfc3339(ev.first_seen),
            rpt.rfc3339(ev.last_seen),
            ev.flows,
            ev.bytes,
            ev.days,
            ev.edges,
        ),
        flags=rule.flags,
    )


def exclusions(tallies: Mapping[tuple[str, str], exclude.Tally]) -> tuple[rpt.Exclusion, ...]:
    return tuple(
        rpt.Exclusion(reason, policy, t.edges, t.flows, t.bytes)
        for (reason, policy), t in sorted(tallies.items())
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunFacts:
    """What the report says about one run besides the recommendations."""

    now: datetime
    since: datetime
    input: dict[str, int]
    incremental: dict[str, Any]
    states: Mapping[str, NamespaceState]
    stale_rules: tuple[StaleRule, ...]
    pruned: bool


def build(
    settings: Settings,
    facts: RunFacts,
    recs: Mapping[str, Recommendation],
    files: Mapping[str, bytes],
    selection: namespaces.SelectedNamespaces,
    *,
    excluded: tuple[rpt.Exclusion, ...],
    flagged: tuple[rpt.Exclusion, ...],
    rejected: tuple[rpt.Rejection, ...],
    warnings: tuple[str, ...],
) -> rpt.RunReport:
    entries = []
    for ns in sorted(recs):
        rec = recs[ns]
        state = facts.states[ns]
        manifest = f"policies/{ns}.yaml" if f"policies/{ns}.yaml" in files else None
        entries.append(
            rpt.NamespaceEntry(
                namespace=ns,
                name=policy_name(settings, ns),
                status=state.status,
                lastUpdated=rpt.rfc3339(state.last_updated),
                stagedAction=state.staged_action,
                manifest=manifest,
                rules=tuple(rule_entry(r) for r in rec.rules),
                notes=rec.folded,
                flags=rec.flags,
                rhythm=state.rhythm,
                last_flow=rpt.rfc3339(state.last_flow) if state.last_flow else None,
            )
        )
    return rpt.RunReport(
        now=rpt.rfc3339(_utc(facts.now)),
        window={"since": rpt.rfc3339(_utc(facts.since)), "until": rpt.rfc3339(_utc(facts.now))},
        flavor=settings.flavor,
        tier=settings.tier_name,
        input=facts.input,
        namespaces=tuple(entries),
        excluded_namespaces=tuple(
            {"namespace": name, "reason": reason} for name, reason in selection.excluded
        ),
        excluded=excluded,
        flagged=flagged,
        rejected=rejected,
        warnings=warnings,
        stale_rules=tuple(
            rpt.StaleRule(s.namespace, s.fully_stale, facts.pruned, rule_entry(s.rule))
            for s in facts.stale_rules
        ),
        incremental=facts.incremental,
    )
