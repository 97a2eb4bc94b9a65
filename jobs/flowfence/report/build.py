"""The run report model (run_report.py) built from what a run computed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowfence.calico import names
from flowfence.config.settings import Settings
from flowfence.core import times
from flowfence.learn import exclude, namespaces
from flowfence.learn.model import Recommendation, Rule
from flowfence.learn.stale import StaleRule
from flowfence.render.manifests import policy_name
from flowfence.report import change_set, run_report
from flowfence.state.lifecycle import NamespaceState


def rule_entry(rule: Rule) -> run_report.RuleEntry:
    return change_set.rule_view(rule).entry()


def exclusions(
    tallies: Mapping[tuple[str, str], exclude.Tally],
) -> tuple[run_report.Exclusion, ...]:
    return tuple(
        run_report.Exclusion(reason, policy, t.edges, t.flows, t.bytes)
        for (reason, policy), t in sorted(tallies.items())
    )


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
    excluded: tuple[run_report.Exclusion, ...],
    flagged: tuple[run_report.Exclusion, ...],
    rejected: tuple[names.Rejection, ...],
    warnings: tuple[str, ...],
) -> run_report.RunReport:
    entries = []
    for ns in sorted(recs):
        rec = recs[ns]
        state = facts.states[ns]
        manifest = f"policies/{ns}.yaml" if f"policies/{ns}.yaml" in files else None
        entries.append(
            run_report.NamespaceEntry(
                namespace=ns,
                name=policy_name(settings, ns),
                status=state.status,
                lastUpdated=times.rfc3339(state.last_updated),
                stagedAction=state.staged_action,
                manifest=manifest,
                rules=tuple(rule_entry(r) for r in rec.rules),
                notes=rec.folded,
                flags=rec.flags,
                rhythm=state.rhythm,
                last_flow=times.rfc3339(state.last_flow) if state.last_flow else None,
            )
        )
    return run_report.RunReport(
        now=times.rfc3339(facts.now),
        window={
            "since": times.rfc3339(facts.since),
            "until": times.rfc3339(facts.now),
        },
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
            run_report.StaleRule(s.namespace, s.fully_stale, facts.pruned, rule_entry(s.rule))
            for s in facts.stale_rules
        ),
        incremental=facts.incremental,
        policy_types=settings.policy_types,
    )
