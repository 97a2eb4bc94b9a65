"""What a run changes, as the reports show it: per namespace, how its manifest changed and the
rules added and removed, each described for a reader (`RuleView`).

review/changes.py computes the change set; report/markdown.py and the commit message of
review/gitops.py render it. Model rules without a manifest of their own (drift, stale rules)
are described with `rule_view`, in the same words as the rules read from a manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from flowfence.calico import cidr
from flowfence.core import times
from flowfence.learn.model import ANY_PORT, MAY_CUT, PRIVATE_FALLBACK, PUBLIC_FALLBACK, Rule
from flowfence.report import run_report

ChangeKind = Literal["created", "updated", "removed", "unchanged"]


@dataclass(frozen=True)
class RuleView(run_report.RuleEntry):
    """A rule as the reports show it, plus what a diff needs and the report does not."""

    # The rule's identity across runs: its manifest text without metadata.
    key: str = field(default="", compare=False)

    @property
    def widening(self) -> str | None:
        """Why this rule widens access beyond what was observed, or None."""
        reasons = []
        if PUBLIC_FALLBACK in self.flags or self.peer.startswith(("nets 0.0.0.0/0", "nets ::/0")):
            reasons.append("allows any public address")
        if PRIVATE_FALLBACK in self.flags:
            reasons.append("allows all private (RFC 1918) addresses")
        port_protocol = self.protocol in ("TCP", "UDP", "SCTP") and self.scope != "Service"
        if ANY_PORT in self.flags or (port_protocol and not self.ports):
            reasons.append("allows every port (some flows had no destination port)")
        if self.protocol == "any":
            reasons.append("allows every protocol (Kubernetes NetworkPolicy cannot name it)")
        return "; ".join(reasons) or None

    @property
    def cuts(self) -> str | None:
        """Why enforcing this rule may deny traffic it was learned from, or None."""
        if MAY_CUT in self.flags:
            return (
                f"excludes {', '.join(cidr.LABELLED_PUB[4])} (IPv6: "
                f"{', '.join(cidr.LABELLED_PUB[6])}), which Felix logs as public; the flows "
                "had no addresses, so traffic there (cloud metadata at 169.254.169.254) "
                "would be denied once enforced"
            )
        return None

    def entry(self) -> run_report.RuleEntry:
        """The report's form of the rule."""
        return run_report.RuleEntry(
            **{f.name: getattr(self, f.name) for f in fields(run_report.RuleEntry)}
        )


@dataclass(frozen=True)
class NamespaceChange:
    namespace: str
    path: str
    change: ChangeKind
    previous_kind: str | None
    kind: str | None
    previous_staged_action: str | None
    staged_action: str | None
    added_rules: tuple[RuleView, ...]
    removed_rules: tuple[RuleView, ...]
    diff: str

    @property
    def first_policy(self) -> bool:
        """The namespace had no policy: once enforced, it turns default-deny."""
        return self.change == "created"

    @property
    def newly_enforced(self) -> bool:
        # A staged policy replaced by the enforced one (Kubernetes policies are never staged).
        return self.kind == "NetworkPolicy" and self.previous_kind == "StagedNetworkPolicy"

    @property
    def widening(self) -> tuple[RuleView, ...]:
        return tuple(r for r in self.added_rules if r.widening)

    @property
    def cutting(self) -> tuple[RuleView, ...]:
        return tuple(r for r in self.added_rules if r.cuts)


@dataclass(frozen=True)
class ChangeSet:
    namespaces: tuple[NamespaceChange, ...]
    files: tuple[str, ...]  # every file under policies/ whose bytes change (or that goes)

    @property
    def changed(self) -> bool:
        return bool(self.files)

    def get(self, namespace: str) -> NamespaceChange | None:
        return next((c for c in self.namespaces if c.namespace == namespace), None)

    @property
    def added(self) -> int:
        return sum(len(c.added_rules) for c in self.namespaces)

    @property
    def removed(self) -> int:
        return sum(len(c.removed_rules) for c in self.namespaces)


# --- model rules ------------------------------------------------------------------------------


def nets_text(nets: Sequence[str], not_nets: Sequence[str]) -> str:
    text = "nets " + ",".join(nets)
    return text + (f" except {len(not_nets)} ranges" if not_nets else "")


def peer_text(rule: Rule) -> str:
    """A short, human-readable name for the peer of a rule (reports only)."""
    if rule.scope == "Namespace":
        return "namespace " + ",".join(rule.namespaces)
    if rule.scope == "NetworkSet" and rule.netset is not None:
        return f"networkset {rule.netset.namespace or 'global'}/{rule.netset.name}"
    if rule.scope == "Service" and rule.service is not None:
        return f"service {rule.service.namespace or '-'}/{rule.service.name}"
    if rule.scope == "Domains":
        return "domains " + ",".join(rule.domains)
    return nets_text(rule.nets, rule.not_nets)


def evidence(rule: Rule) -> run_report.Evidence:
    ev = rule.evidence
    return run_report.Evidence(
        times.rfc3339(ev.first_seen), times.rfc3339(ev.last_seen), ev.flows, ev.bytes,
        ev.days, ev.edges,
    )  # fmt: skip


def rule_view(rule: Rule) -> RuleView:
    """A model rule described as the report describes a manifest rule, with its evidence."""
    return RuleView(
        rule.direction, rule.action, rule.scope, peer_text(rule), rule.protocol,
        tuple(str(p) for p in rule.ports), evidence(rule), rule.flags,
    )  # fmt: skip
