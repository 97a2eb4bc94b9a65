"""The recommendation run, stage by stage: read flows -> aggregate edges -> screen untrusted
strings -> exclude what higher tiers decide -> build rules -> render manifests -> report.

`compute` does everything but writing and returns the files to write; `run` writes them
atomically. Only the first two stages touch the flow logs (one DuckDB scan); the rest works on
the distinct edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from flowfence import atomic, edges, exclude, lifecycle, namespaces, rules, sources, validate
from flowfence import report as rpt
from flowfence.config import Settings
from flowfence.errors import FlowInputError
from flowfence.evaluate import Edge, Evaluator
from flowfence.model import Recommendation, Rule
from flowfence.policies import PolicySet, load_policies
from flowfence.render import policy_name, render


@dataclass(frozen=True)
class RunRequest:
    flows: str | Path
    out: Path
    settings: Settings
    now: datetime
    existing_policies: Path | None = None
    namespaces_file: Path | None = None


@dataclass(frozen=True)
class Computation:
    recommendations: Mapping[str, Recommendation]
    statuses: Mapping[str, tuple[str, datetime]]
    files: Mapping[str, bytes]
    report: rpt.RunReport


@dataclass(frozen=True)
class RunResult:
    computation: Computation
    written: tuple[str, ...]
    removed: tuple[str, ...]


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the memory, thread and spill settings applied."""
    # DuckDB's progress bar writes to stdout, which carries only data (`--output json`).
    config: dict[str, Any] = {"enable_progress_bar": False}
    if settings.memory_limit:
        config["memory_limit"] = settings.memory_limit
    if settings.threads:
        config["threads"] = settings.threads
    if settings.temp_dir:
        config["temp_directory"] = str(settings.temp_dir)
    return duckdb.connect(config=config)


def _existing_decider(
    policy_set: PolicySet, ns_labels: Mapping[str, Mapping[str, str]], before: float
) -> exclude.DecidedBefore:
    evaluator = Evaluator(policy_set, namespaces=ns_labels)

    def decided(frame: pl.DataFrame) -> list[str | None]:
        out: list[str | None] = []
        for row in frame.iter_rows(named=True):
            verdict = evaluator.evaluate(Edge.from_row(row), row["direction"], before_order=before)
            hit = verdict.deciding
            out.append(None if hit is None else f"{hit.tier}|{hit.policy}|{hit.action}")
        return out

    return decided


def compute(request: RunRequest) -> Computation:
    settings = request.settings
    now = request.now.astimezone(UTC)
    since = now - settings.initial_lookback
    con = connect(settings)
    try:
        source = sources.bind_flows(con, request.flows, since=since, until=now)
        try:
            all_edges = edges.aggregate(con, since=since, until=now)
        except duckdb.Error as exc:  # a corrupt data page only shows when it is read
            raise FlowInputError(f"{request.flows}: cannot read flow logs: {exc}") from exc
    finally:
        con.close()
    good, rejections = validate.screen(all_edges)

    ns_file = (
        namespaces.load_namespaces(request.namespaces_file) if request.namespaces_file else None
    )
    file_labels = ns_file.labels if ns_file else None
    selection = namespaces.select_namespaces(
        namespaces.discover_namespaces(good), file_labels, settings
    )
    decider = None
    warnings: list[str] = list(ns_file.problems) if ns_file else []
    tier_orders = exclude.known_tier_orders(settings)
    if request.existing_policies is not None:
        policy_set = load_policies(request.existing_policies)
        warnings.extend(policy_set.warnings)
        decider = _existing_decider(policy_set, file_labels or {}, settings.tier_order)
        # The Tier manifests tell the trace check where tiers not built into Calico sit.
        for tier in policy_set.tiers:
            if tier.name != settings.tier_name:
                tier_orders.setdefault(tier.name, tier.order)
    learnable, exclusions = exclude.exclude(
        good, selection.selected, settings, tier_orders=tier_orders, decided_before=decider
    )
    recs = rules.build(learnable, selection.selected, settings)
    statuses: dict[str, tuple[str, datetime]] = {}
    for ns, rec in recs.items():
        changed = rec.last_changed()
        state = lifecycle.status(
            changed,
            now.replace(tzinfo=None),
            interval=settings.interval,
            stabilization=settings.stabilization_period,
        )
        statuses[ns] = (state, changed or now.replace(tzinfo=None))
    files = render(recs, settings, statuses=statuses)
    report = _report(
        settings,
        now,
        since,
        source,
        all_edges,
        recs,
        statuses,
        files,
        selection,
        excluded=_exclusions(exclusions.excluded),
        flagged=_exclusions(exclusions.flagged),
        rejected=tuple(
            rpt.Rejection(r.reason, r.edges, r.flows, r.samples) for r in rejections.items
        ),
        warnings=tuple(warnings),
    )
    return Computation(recs, statuses, files, report)


def run(request: RunRequest) -> RunResult:
    computation = compute(request)
    out = request.out
    files = dict(computation.files)
    files["report.json"] = rpt.to_json(computation.report).encode()
    files["report.md"] = rpt.to_markdown(computation.report).encode()
    written, removed = atomic.sync_tree(out, files, owned="policies")
    return RunResult(computation, tuple(written), tuple(removed))


def _exclusions(tallies: Mapping[tuple[str, str], exclude.Tally]) -> tuple[rpt.Exclusion, ...]:
    return tuple(
        rpt.Exclusion(reason, policy, t.edges, t.flows, t.bytes)
        for (reason, policy), t in sorted(tallies.items())
    )


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


def _report(
    settings: Settings,
    now: datetime,
    since: datetime,
    source: sources.FlowSource,
    all_edges: pl.DataFrame,
    recs: Mapping[str, Recommendation],
    statuses: Mapping[str, tuple[str, datetime]],
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
        manifest = f"policies/{ns}.yaml" if f"policies/{ns}.yaml" in files else None
        entries.append(
            rpt.NamespaceEntry(
                namespace=ns,
                name=policy_name(settings, ns),
                status=statuses[ns][0],
                lastUpdated=rpt.rfc3339(statuses[ns][1]),
                stagedAction="Learn",
                manifest=manifest,
                rules=tuple(rule_entry(r) for r in rec.rules),
                notes=rec.folded,
                flags=rec.flags,
            )
        )
    return rpt.RunReport(
        now=rpt.rfc3339(now),
        window={"since": rpt.rfc3339(since), "until": rpt.rfc3339(now)},
        flavor=settings.flavor,
        tier=settings.tier_name,
        input={
            "files": len(source.files),
            "rows": int(all_edges.get_column("rows").sum()) if all_edges.height else 0,
            "flows": int(all_edges.get_column("flows").sum()) if all_edges.height else 0,
            "edges": all_edges.height,
        },
        namespaces=tuple(entries),
        excluded_namespaces=tuple(
            {"namespace": name, "reason": reason} for name, reason in selection.excluded
        ),
        excluded=excluded,
        flagged=flagged,
        rejected=rejected,
        warnings=warnings,
    )
