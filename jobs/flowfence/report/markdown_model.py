"""What report.md says, taken from the run report: per namespace its status, its manifest's
change (rules added and removed, the YAML diff), its decision, drift and stale rules; for the
run, what higher tiers decided, the rejected input, warnings and lapsed decisions.

report/markdown.py renders it; `from_report` builds it from the run report (run_report.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowfence.calico import names
from flowfence.learn.model import LEFT_OPEN
from flowfence.report import run_report
from flowfence.report.change_set import NamespaceChange, RuleView


@dataclass(frozen=True)
class Namespace:
    """What the report says about one namespace."""

    namespace: str
    status: str
    previous_status: str | None
    staged_action: str
    change: NamespaceChange | None = None
    rules: int = 0
    decision: str | None = None  # one line: verdict, author, reason, expiry
    drift: tuple[RuleView, ...] = ()
    stale: tuple[RuleView, ...] = ()
    notes: tuple[str, ...] = ()
    # Directions its policy leaves open (no rules under policyTypes WithRules, or traffic no
    # rule can express): "egress", "ingress".
    open_directions: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.change is not None and self.change.change != "unchanged"

    @property
    def needs_look(self) -> bool:
        return bool(self.changed or self.drift or self.stale or self.status_changed)

    @property
    def status_changed(self) -> bool:
        return self.previous_status is not None and self.previous_status != self.status


@dataclass(frozen=True)
class Report:
    now: str
    since: str
    until: str
    flavor: str
    tier: str
    namespaces: tuple[Namespace, ...]
    other_files: tuple[str, ...] = ()  # tier.yaml, kustomization.yaml ... that changed
    excluded: tuple[run_report.Exclusion, ...] = ()
    flagged: tuple[run_report.Exclusion, ...] = ()
    rejected: tuple[names.Rejection, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    lapsed: tuple[str, ...] = ()  # decisions whose expiry has passed, one line each
    stale: tuple[run_report.StaleRule, ...] = ()  # every namespace's stale rules, one table
    policy_types: str = "Both"
    frozen_risks: tuple[dict[str, Any], ...] = ()  # run_report.RunReport.frozen_risks


def _view(entry: run_report.RuleEntry) -> RuleView:
    return RuleView(**vars(entry))


def _decision_text(decision: dict[str, str] | None) -> str | None:
    if not decision:
        return None
    until = f", until {decision['expires']}" if decision.get("expires") else ""
    return f"{decision['decision']} by {decision['author']}{until}: {decision['reason']}"


def _open(entry: run_report.NamespaceEntry, policy_types: str) -> tuple[str, ...]:
    """The directions its policy leaves out of its types (model.Recommendation.isolates)."""
    if entry.manifest is None:
        return ()
    present = {r.direction for r in entry.rules}
    return tuple(
        d
        for d in ("ingress", "egress")
        if d not in present and (policy_types != "Both" or LEFT_OPEN[d] in entry.flags)
    )


def _namespace(entry: run_report.NamespaceEntry, policy_types: str) -> Namespace:
    change = NamespaceChange(
        namespace=entry.namespace,
        path=entry.manifest or f"policies/{entry.namespace}.yaml",
        change=entry.change,  # type: ignore[arg-type]
        previous_kind=entry.previous_kind,
        kind=entry.kind,
        previous_staged_action=entry.previous_stagedAction,
        staged_action=entry.stagedAction if entry.kind == "StagedNetworkPolicy" else None,
        added_rules=tuple(map(_view, entry.added_rules)),
        removed_rules=tuple(map(_view, entry.removed_rules)),
        diff=entry.diff,
    )
    has_file = entry.kind is not None or entry.previous_kind is not None
    return Namespace(
        namespace=entry.namespace,
        status=entry.status,
        previous_status=entry.previous_status,
        staged_action=entry.stagedAction,
        change=change if has_file else None,
        rules=len(entry.rules),
        decision=_decision_text(entry.decision),
        drift=tuple(map(_view, entry.drift)),
        stale=tuple(map(_view, entry.stale_rules)),
        notes=(*entry.flags, *entry.notes),
        open_directions=_open(entry, policy_types),
    )


def from_report(report: run_report.RunReport) -> Report:
    return Report(
        now=report.now,
        since=report.window["since"],
        until=report.window["until"],
        flavor=report.flavor,
        tier=report.tier,
        namespaces=tuple(_namespace(ns, report.policy_types) for ns in report.namespaces),
        other_files=report.other_files,
        excluded=report.excluded,
        flagged=report.flagged,
        rejected=report.rejected,
        warnings=report.warnings,
        lapsed=tuple(
            f"{d['namespace']}: {d['decision']} by {d['author']} expired {d['expires']}; "
            "learning again (remove the entry or decide again)"
            for d in report.lapsed_decisions
        ),
        stale=report.stale_rules,
        policy_types=report.policy_types,
        frozen_risks=report.frozen_risks,
    )
