"""The run report with the review (outcome.py) added: per namespace its manifest's change,
its decision, drift and stale rules; for the run, the plan (manifests added, changed, removed,
rules added and removed, drift) and the lapsed decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from flowfence.config.settings import Settings
from flowfence.learn.namespaces import DELETED
from flowfence.render.manifests import policy_name
from flowfence.report import run_report
from flowfence.report.change_set import rule_view
from flowfence.review import changes, decisions
from flowfence.review.outcome import Review

KINDS = ("created", "updated", "removed", "unchanged")


def _entry(
    entry: run_report.NamespaceEntry,
    checked: Review,
    previous_status: str | None,
    stale_rules: tuple[run_report.RuleEntry, ...],
) -> run_report.NamespaceEntry:
    ns = entry.namespace
    c = checked.changes.get(ns)
    decided = checked.applied.applied.get(ns)
    path = f"{changes.POLICIES}/{ns}.yaml"
    return replace(
        entry,
        stagedAction=checked.applied.staged_actions.get(ns, "Learn"),
        manifest=path if path in checked.files else None,
        previous_status=previous_status,
        decision=None if decided is None else decisions.to_dict(decided),
        change=c.change if c is not None else "none",
        kind=c.kind if c is not None else None,
        previous_kind=c.previous_kind if c is not None else None,
        previous_stagedAction=c.previous_staged_action if c is not None else None,
        added_rules=tuple(v.entry() for v in c.added_rules) if c is not None else (),
        removed_rules=tuple(v.entry() for v in c.removed_rules) if c is not None else (),
        stale_rules=stale_rules,
        drift=tuple(rule_view(r).entry() for r in checked.drift.get(ns, ())),
        diff=c.diff if c is not None else "",
    )


def annotate(
    report: run_report.RunReport,
    checked: Review,
    previous_status: Mapping[str, str],
    settings: Settings,
) -> run_report.RunReport:
    """The run report with the review: per-namespace changes, decisions, drift, stale rules,
    and the plan. Namespaces whose manifest went away without being selected any more get an
    entry of their own so the removal is reported, with its reason as a note: a namespace
    deleted from the cluster (status `Deleted`), or one the selector no longer selects."""
    stale: dict[str, list[run_report.RuleEntry]] = {}
    for row in report.stale_rules:
        stale.setdefault(row.namespace, []).append(row.rule)
    entries = {
        e.namespace: _entry(
            e, checked, previous_status.get(e.namespace), tuple(stale.get(e.namespace, ()))
        )
        for e in report.namespaces
    }
    # Why a namespace without a recommendation is gone: deleted, or no longer selected.
    reasons = {e["namespace"]: e["reason"] for e in report.excluded_namespaces}
    for c in checked.changes.namespaces:
        if c.namespace not in entries and c.change == "removed":
            reason = reasons.get(c.namespace)
            gone = run_report.NamespaceEntry(
                c.namespace, policy_name(settings, c.namespace),
                "Deleted" if reason == DELETED else "NoData", "",
                checked.applied.staged_actions.get(c.namespace, "Learn"), None, (),
                notes=(reason,) if reason else (),
            )  # fmt: skip
            entries[c.namespace] = _entry(gone, checked, previous_status.get(c.namespace), ())
    namespaces = tuple(entries[ns] for ns in sorted(entries))
    counts = {kind: sum(1 for e in namespaces if e.change == kind) for kind in KINDS}
    plan = {
        "add": counts["created"],
        "change": counts["updated"],
        "remove": counts["removed"],
        "unchanged": counts["unchanged"],
        "rules_added": sum(len(e.added_rules) for e in namespaces),
        "rules_removed": sum(len(e.removed_rules) for e in namespaces),
        "drifted": sum(1 for e in namespaces if e.drift),
        "files_changed": len(checked.changes.files),
    }
    lapsed = tuple(
        {"namespace": ns, **decisions.to_dict(d)}
        for ns, d in sorted(checked.applied.lapsed.items())
    )
    others = tuple(
        f for f in checked.changes.files if f not in {c.path for c in checked.changes.namespaces}
    )
    return replace(
        report,
        namespaces=namespaces,
        plan=plan,
        other_files=others,
        lapsed_decisions=lapsed,
        frozen_risks=checked.applied.risks,
    )
