"""What report.html and `flowfence serve` show, taken from the run report (run_report.py).

One view model for both: the overview (per namespace its status, stagedAction, decision, rule
counts, last change and risks), each namespace's rules with why they exist, its changes, stale
rules and drift. `load` rebuilds the run report from `report.json`, which is how the server
reads an output directory; a run builds the same model from the report it just computed.

Every string here is data: the templates escape it (Jinja2 autoescape), nothing is markup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from flowfence.calico.names import Rejection
from flowfence.report import markdown_model, run_report
from flowfence.report.change_set import RuleView


@dataclass(frozen=True)
class RuleRow:
    direction: str
    action: str
    scope: str
    peer: str
    protocol: str
    ports: str
    flows: int | None
    bytes: int | None
    first_seen: str
    last_seen: str
    why: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class NamespaceView:
    namespace: str
    status: str
    previous_status: str | None
    staged_action: str
    decision: Mapping[str, str] | None  # what the run applied (report.json)
    decision_text: str | None
    change: str
    kind: str | None
    last_change: str  # lastUpdated: when its rules last changed
    manifest: str | None
    rules: tuple[RuleRow, ...]
    added: tuple[RuleRow, ...]
    removed: tuple[RuleRow, ...]
    stale: tuple[RuleRow, ...]
    drift: tuple[RuleRow, ...]
    risks: tuple[str, ...]
    notes: tuple[str, ...]
    diff: str

    @property
    def egress(self) -> int:
        return sum(1 for r in self.rules if r.direction == "egress")

    @property
    def ingress(self) -> int:
        return sum(1 for r in self.rules if r.direction == "ingress")

    @property
    def anchor(self) -> str:
        # Namespace names are DNS-1123 labels (screened), so the id needs no escaping.
        return f"ns-{self.namespace}"


@dataclass(frozen=True)
class Page:
    now: str
    since: str
    until: str
    flavor: str
    tier: str
    plan: str
    namespaces: tuple[NamespaceView, ...]
    warnings: tuple[str, ...]
    lapsed: tuple[str, ...]
    excluded_namespaces: tuple[Mapping[str, str], ...]
    rejected: tuple[Rejection, ...] = ()  # rows screening dropped, with their samples

    def get(self, namespace: str) -> NamespaceView | None:
        return next((n for n in self.namespaces if n.namespace == namespace), None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def why(rule: run_report.RuleEntry) -> str:
    """Why the rule exists: its evidence, and what it allows beyond what was seen."""
    view = RuleView(**vars(rule))
    ev = rule.evidence
    parts = []
    if ev is not None:
        parts.append(
            f"seen in {_plural(ev.flows, 'flow')} on {_plural(ev.days, 'day')} "
            f"({_plural(ev.edges, 'edge')})"
        )
    else:
        parts.append("its evidence is gone")
    if view.widening:
        parts.append(view.widening)
    if view.cuts:
        parts.append("may cut observed traffic: " + view.cuts)
    return "; ".join(parts)


def rule_row(rule: run_report.RuleEntry) -> RuleRow:
    ev = rule.evidence
    return RuleRow(
        direction=rule.direction,
        action=rule.action,
        scope=rule.scope,
        peer=rule.peer,
        protocol=rule.protocol,
        ports=",".join(rule.ports) or "any",
        flows=ev.flows if ev is not None else None,
        bytes=ev.bytes if ev is not None else None,
        first_seen=ev.first_seen if ev is not None else "",
        last_seen=ev.last_seen if ev is not None else "",
        why=why(rule),
        flags=tuple(rule.flags),
    )


def risks(ns: markdown_model.Namespace) -> tuple[str, ...]:
    """Short labels for what report.md lists under Risks about this namespace."""
    found: list[str] = []
    c = ns.change
    if c is not None:
        if c.first_policy:
            found.append("first policy")
        if c.staged_action == "Set" and c.previous_staged_action != "Set":
            found.append("moved to the policy board")
        if c.newly_enforced:
            found.append("enforced")
        if c.kind == "NetworkPolicy" and c.removed_rules:
            found.append("rules removed from an enforced policy")
        if c.widening:
            found.append(f"widens access ({_plural(len(c.widening), 'rule')})")
        if c.cutting:
            found.append(f"may cut observed traffic ({_plural(len(c.cutting), 'rule')})")
    if ns.open_directions:
        found.append("left open: " + ", ".join(ns.open_directions))
    if ns.drift:
        found.append(f"drift ({_plural(len(ns.drift), 'rule')})")
    return tuple(found)


def plan_text(report: run_report.RunReport) -> str:
    plan = report.plan
    if not plan.get("files_changed") and not plan.get("drifted"):
        return "No changes."
    drifted = f"; {_plural(plan.get('drifted', 0), 'accepted policy')} drifted" * bool(
        plan.get("drifted")
    )
    return (
        f"Plan: {plan.get('add', 0)} to add, {plan.get('change', 0)} to change, "
        f"{plan.get('remove', 0)} to remove; {plan.get('rules_added', 0)} rules added, "
        f"{plan.get('rules_removed', 0)} removed{drifted}."
    )


def build(report: run_report.RunReport) -> Page:
    model = markdown_model.from_report(report)
    views = []
    for entry, ns in zip(report.namespaces, model.namespaces, strict=True):
        views.append(
            NamespaceView(
                namespace=entry.namespace,
                status=entry.status,
                previous_status=entry.previous_status,
                staged_action=entry.stagedAction,
                decision=entry.decision,
                decision_text=ns.decision,
                change=entry.change,
                kind=entry.kind,
                last_change=entry.lastUpdated,
                manifest=entry.manifest,
                rules=tuple(map(rule_row, entry.rules)),
                added=tuple(map(rule_row, entry.added_rules)),
                removed=tuple(map(rule_row, entry.removed_rules)),
                stale=tuple(map(rule_row, entry.stale_rules)),
                drift=tuple(map(rule_row, entry.drift)),
                risks=risks(ns),
                notes=ns.notes,
                diff=entry.diff,
            )
        )
    return Page(
        now=report.now,
        since=report.window["since"],
        until=report.window["until"],
        flavor=report.flavor,
        tier=report.tier,
        plan=plan_text(report),
        namespaces=tuple(views),
        warnings=report.warnings,
        lapsed=model.lapsed,
        excluded_namespaces=report.excluded_namespaces,
        rejected=report.rejected,
    )


# --- report.json back into the model ---------------------------------------------------------


def _rule(data: Mapping[str, Any]) -> run_report.RuleEntry:
    ev = data.get("evidence")
    return run_report.RuleEntry(
        direction=str(data["direction"]),
        action=str(data["action"]),
        scope=str(data["scope"]),
        peer=str(data["peer"]),
        protocol=str(data["protocol"]),
        ports=tuple(str(p) for p in data.get("ports") or ()),
        evidence=run_report.Evidence(**ev) if ev else None,
        flags=tuple(str(f) for f in data.get("flags") or ()),
    )


def _rules(items: Sequence[Mapping[str, Any]] | None) -> tuple[run_report.RuleEntry, ...]:
    return tuple(_rule(r) for r in items or ())


_RULE_LISTS = ("rules", "added_rules", "removed_rules", "stale_rules", "drift")


def _namespace(data: Mapping[str, Any]) -> run_report.NamespaceEntry:
    known = {f.name for f in fields(run_report.NamespaceEntry)} - {"diff"}
    values: dict[str, Any] = {k: v for k, v in data.items() if k in known}
    for name in _RULE_LISTS:
        values[name] = _rules(data.get(name))
    values["notes"] = tuple(data.get("notes") or ())
    values["flags"] = tuple(data.get("flags") or ())
    return run_report.NamespaceEntry(**values)


def _exclusions(items: Sequence[Mapping[str, Any]] | None) -> tuple[run_report.Exclusion, ...]:
    return tuple(run_report.Exclusion(**e) for e in items or ())


def load(data: Mapping[str, Any]) -> run_report.RunReport:
    """The run report a `report.json` was written from (without the YAML diffs, which the
    JSON leaves out)."""
    return run_report.RunReport(
        now=data["now"],
        window=dict(data["window"]),
        flavor=data["flavor"],
        tier=data["tier"],
        input=dict(data.get("input") or {}),
        namespaces=tuple(_namespace(n) for n in data.get("namespaces") or ()),
        excluded_namespaces=tuple(data.get("excluded_namespaces") or ()),
        excluded=_exclusions(data.get("excluded")),
        flagged=_exclusions(data.get("flagged")),
        rejected=tuple(
            Rejection(r["reason"], r["edges"], r["flows"], tuple(r.get("samples") or ()))
            for r in data.get("rejected") or ()
        ),
        warnings=tuple(data.get("warnings") or ()),
        stale_rules=tuple(
            run_report.StaleRule(s["namespace"], s["fully_stale"], s["pruned"], _rule(s["rule"]))
            for s in data.get("stale_rules") or ()
        ),
        incremental=dict(data.get("incremental") or {}),
        plan=dict(data.get("plan") or {}),
        other_files=tuple(data.get("other_files") or ()),
        lapsed_decisions=tuple(data.get("lapsed_decisions") or ()),
        policy_types=data.get("policy_types", "Both"),
    )
