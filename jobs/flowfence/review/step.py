"""The review step of a run: decisions applied to the rendered manifests, drift of the frozen
policies, and the change set against the manifests on disk. Pure: the caller reads the
previous files and the decisions, and writes what comes back.

Order matters and is fixed here: render -> apply decisions (accept freezes, enforce converts,
dismiss drops; namespaces enforced in the cluster stop learning) -> drift of every frozen
policy over this run's learnable edges -> bytes -> changes against the previous files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl
import yaml

from flowfence.calico.policies import DEFAULT_TIER, PolicyKind, PolicySet, Tier
from flowfence.config.settings import Settings
from flowfence.learn import rules
from flowfence.learn.model import Recommendation, Rule
from flowfence.render.manifests import policy_name
from flowfence.report import model as rpt
from flowfence.review import changes, decisions, drift
from flowfence.review.changes import ChangeSet
from flowfence.state import tables as state

TIER = "policies/tier.yaml"
KINDS = ("created", "updated", "removed", "unchanged")
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Review:
    files: dict[str, bytes]  # policies/... -> bytes, after the decisions
    applied: decisions.Applied
    drift: dict[str, tuple[Rule, ...]]  # frozen namespaces -> learned rules they do not cover
    changes: ChangeSet
    in_cluster: tuple[str, ...]  # namespaces enforced in the cluster: learning stopped


def enforced_in_cluster(existing: PolicySet | None, tier: str) -> dict[str, PolicySet]:
    """Namespaces with an enforced Calico NetworkPolicy in our tier among --existing-policies,
    each with a PolicySet holding just that tier and policy (the drift base)."""
    if existing is None or (found := existing.tier(tier)) is None:
        return {}
    enforced = [p for p in found.policies if p.kind == PolicyKind.NP and p.namespace]
    out: dict[str, PolicySet] = {}
    for ns in sorted({str(p.namespace) for p in enforced}):
        mine = tuple(p for p in enforced if p.namespace == ns)
        out[ns] = PolicySet(tiers=(Tier(found.name, found.order, found.default_action, mine),))
    return out


def _drift(
    namespace: str,
    base: PolicySet | Sequence[Mapping[str, object]],
    tier: str,
    learnable: pl.DataFrame,
    settings: Settings,
    labels: Mapping[str, Mapping[str, str]],
) -> tuple[Rule, ...]:
    mine = learnable.filter(pl.col("namespace") == namespace)
    if not mine.height:
        return ()
    left = drift.uncovered(base, mine, tier, namespaces=labels)
    if not left.height:
        return ()
    return rules.build(left, [namespace], settings)[namespace].rules


def review(
    recs: Mapping[str, Recommendation],
    rendered: Mapping[str, bytes],
    settings: Settings,
    *,
    previous: Mapping[str, bytes],
    decided: decisions.Decisions,
    now: datetime,
    learnable: pl.DataFrame,
    existing: PolicySet | None = None,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> Review:
    """`rendered` are this run's learned files (policies/...), `previous` those on disk."""
    cluster = enforced_in_cluster(existing, settings.tier_name)
    applied = decisions.apply(rendered, previous, decided, now, enforced_in_cluster=tuple(cluster))
    files = applied.files
    tier_bytes = files.get(TIER)
    tier_doc = yaml.load(tier_bytes, Loader=_LOADER) if tier_bytes is not None else None
    found: dict[str, tuple[Rule, ...]] = {}
    for ns, doc in sorted(applied.frozen.items()):
        calico = doc.get("apiVersion") == decisions.CALICO_API
        base = [d for d in (tier_doc if calico else None, doc) if d is not None]
        tier = settings.tier_name if calico else DEFAULT_TIER
        found[ns] = _drift(ns, base, tier, learnable, settings, labels or {})
    in_cluster = tuple(ns for ns in sorted(cluster) if ns not in applied.applied)
    for ns in in_cluster:
        found[ns] = _drift(ns, cluster[ns], settings.tier_name, learnable, settings, labels or {})
    changed = {rel: data for rel, data in files.items() if previous.get(rel) != data}
    change_set = changes.compute(previous, files, index=changes.index_rules(changed, recs))
    return Review(files, applied, {k: v for k, v in found.items() if v}, change_set, in_cluster)


# --- the report ----------------------------------------------------------------------------


def _decision(d: decisions.Decision) -> dict[str, str]:
    out = {"decision": d.decision, "reason": d.reason, "author": d.author}
    if d.decided is not None:
        out["decided"] = decisions.rfc3339(d.decided)
    if d.expires is not None:
        out["expires"] = decisions.rfc3339(d.expires)
    return out


def _entry(
    entry: rpt.NamespaceEntry,
    checked: Review,
    previous_status: str | None,
    stale_rules: tuple[rpt.RuleEntry, ...],
) -> rpt.NamespaceEntry:
    ns = entry.namespace
    c = checked.changes.get(ns)
    decided = checked.applied.applied.get(ns)
    path = f"{changes.POLICIES}/{ns}.yaml"
    return replace(
        entry,
        stagedAction=checked.applied.staged_actions.get(ns, "Learn"),
        manifest=path if path in checked.files else None,
        previous_status=previous_status,
        decision=None if decided is None else _decision(decided),
        change=c.change if c is not None else "none",
        kind=c.kind if c is not None else None,
        previous_kind=c.previous_kind if c is not None else None,
        previous_stagedAction=c.previous_staged_action if c is not None else None,
        added_rules=tuple(v.entry() for v in c.added_rules) if c is not None else (),
        removed_rules=tuple(v.entry() for v in c.removed_rules) if c is not None else (),
        stale_rules=stale_rules,
        drift=tuple(changes.model_view(r).entry() for r in checked.drift.get(ns, ())),
        diff=c.diff if c is not None else "",
    )


def annotate(
    report: rpt.RunReport,
    checked: Review,
    previous_status: Mapping[str, str],
    settings: Settings,
) -> rpt.RunReport:
    """The run report with the review: per-namespace changes, decisions, drift, stale rules,
    and the plan. Namespaces whose manifest went away without being selected any more (gone
    from the cluster, deselected) get an entry of their own so the removal is reported."""
    stale: dict[str, list[rpt.RuleEntry]] = {}
    for row in report.stale_rules:
        stale.setdefault(row.namespace, []).append(row.rule)
    entries = {
        e.namespace: _entry(
            e, checked, previous_status.get(e.namespace), tuple(stale.get(e.namespace, ()))
        )
        for e in report.namespaces
    }
    for c in checked.changes.namespaces:
        if c.namespace not in entries and c.change == "removed":
            gone = rpt.NamespaceEntry(
                c.namespace, policy_name(settings, c.namespace), "NoData", "",
                checked.applied.staged_actions.get(c.namespace, "Learn"), None, (),
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
        {"namespace": ns, **_decision(d)} for ns, d in sorted(checked.applied.lapsed.items())
    )
    others = tuple(
        f for f in checked.changes.files if f not in {c.path for c in checked.changes.namespaces}
    )
    return replace(
        report, namespaces=namespaces, plan=plan, other_files=others, lapsed_decisions=lapsed
    )


# --- the baseline a run compares with --------------------------------------------------------

STATUS = "status:"


def baseline(
    disk: Mapping[str, bytes], recorded: pl.DataFrame, statuses: Mapping[str, str]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The policy files and namespace statuses before the run that committed `recorded`
    (state.BASELINE_SCHEMA): the files on disk and the state's statuses, that run undone."""
    files, before = dict(disk), dict(statuses)
    for row in recorded.iter_rows(named=True):
        item: str = row["item"]
        if item.startswith(STATUS):
            ns = item.removeprefix(STATUS)
            if row["present"]:
                before[ns] = bytes(row["data"]).decode()
            else:
                before.pop(ns, None)
        elif row["present"]:
            files[item] = row["data"]
        else:
            files.pop(item, None)
    return files, before


def baseline_table(
    before: Mapping[str, bytes],
    after: Mapping[str, bytes],
    old_status: Mapping[str, str],
    new_status: Mapping[str, str],
) -> pl.DataFrame:
    """What `baseline` needs to undo a run: the changed files' and statuses' earlier values."""
    rows = [
        (path, path in before, before.get(path))
        for path in sorted({*before, *after})
        if before.get(path) != after.get(path)
    ]
    rows += [
        (f"{STATUS}{ns}", ns in old_status, old_status[ns].encode() if ns in old_status else None)
        for ns in sorted({*old_status, *new_status})
        if old_status.get(ns) != new_status.get(ns)
    ]
    return pl.DataFrame(rows, schema=state.BASELINE_SCHEMA, orient="row")
