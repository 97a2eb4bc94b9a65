"""Recommendation status, from the state of the previous run, the new rules and `--now`.

Per namespace the state keeps a digest of its policy document (status and lastUpdated masked,
the rules' firstSeen provenance left out). A run whose rules give another digest *changed* the
namespace: status `Learning`, `lastUpdated` = this run's `--now`. Otherwise `lastUpdated`
stays, and the time since then picks the status with Calico's timing (reference §1.6):
`Stabilizing` once unchanged for more than 2 x interval, `Stable` once unchanged for more than
the stabilization period. Two statuses Calico defines but never sets come first:

- `NoData`: no flows at all seen for the namespace yet (a namespace known only from
  `--namespaces`);
- `Stale`: the namespace's newest flow is more than `staleNamespacePeriod` older than the
  newest flow in the state (measured against the data, not the clock, so a pause in the flow
  logs does not turn every namespace stale).

A namespace deleted from the cluster (absent from `--namespaces`) keeps a row with status
`Deleted`, a marker of the state only, never written into a policy: `learning_since` is when
the deletion was seen, so old flows still in the state do not bring it back and, should it
return, it learns only from what came after (`deleted`).

Schedule-aware: for a namespace with a daily or weekly rhythm (rhythm.py), `Stable` also
needs one full period of data (a day, a week) observed since the last change; until then it
stays `Stabilizing`. Everything derives from the state, the data and `--now`, so identical
inputs give identical statuses and bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from flowfence.state.rhythm import PERIOD, Rhythm

Status = Literal["Learning", "Stabilizing", "Stable", "NoData", "Stale", "Deleted"]
STAGED_ACTION = "Learn"
DELETED: Status = "Deleted"


def status(
    last_changed: datetime | None,
    now: datetime,
    *,
    interval: timedelta,
    stabilization: timedelta,
) -> Status:
    """Calico's timing alone: `None` (never changed) is NoData."""
    if last_changed is None:
        return "NoData"
    # Calico ignores a stabilization period shorter than the interval.
    stabilization = max(stabilization, interval)
    unchanged = now - last_changed
    if unchanged > stabilization:
        return "Stable"
    if unchanged > 2 * interval:
        return "Stabilizing"
    return "Learning"


# Provenance, not policy: an earlier sighting (a backfill) is not a change of the rules.
PROVENANCE = frozenset({"flowfence.io/firstSeen"})
# The lifecycle's own outputs in a policy (Calico's annotations; ours on the kubernetes flavor)
# are masked with the values the digest has always been taken with (a policy rendered as
# Learning since the epoch), so the digests kept in existing states stay valid.
MASKED = {
    f"{prefix}/{key}": value
    for prefix in ("policyrecommendation.tigera.io", "flowfence.io")
    for key, value in (("status", "Learning"), ("lastUpdated", "1970-01-01T00:00:00Z"))
}


def _policy_part(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: MASKED.get(k, _policy_part(v)) for k, v in doc.items() if k not in PROVENANCE}
    if isinstance(doc, list):
        return [_policy_part(v) for v in doc]
    return doc


def policy_digest(doc: Any) -> str:
    """A digest of a policy document (JSON with sorted keys): its status and lastUpdated, the
    outputs of the lifecycle, masked, and provenance left out."""
    text = json.dumps(_policy_part(doc), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


EMPTY_DIGEST = policy_digest(None)  # a namespace without rules has no document


@dataclass(frozen=True)
class Timing:
    interval: timedelta
    stabilization: timedelta
    stale_namespace: timedelta


@dataclass(frozen=True)
class NamespaceState:
    """One row of the state's namespaces table (times naive UTC)."""

    namespace: str
    status: Status
    last_updated: datetime
    staged_action: str
    digest: str
    first_run: datetime
    learning_since: datetime
    rules: int
    rhythm: Rhythm | None
    last_flow: datetime | None


def decide(
    previous: NamespaceState | None,
    *,
    namespace: str,
    rules_digest: str,
    rules: int,
    learning_since: datetime,
    last_flow: datetime | None,
    newest_flow: datetime | None,
    rhythm: Rhythm | None,
    now: datetime,
    timing: Timing,
) -> NamespaceState:
    """The namespace's state after this run (see the module doc)."""
    changed = previous is None or previous.digest != rules_digest
    updated = now if changed or previous is None else previous.last_updated
    state: Status
    if last_flow is None:
        state = "NoData"
    elif newest_flow is not None and newest_flow - last_flow > timing.stale_namespace:
        state = "Stale"
    else:
        state = status(updated, now, interval=timing.interval, stabilization=timing.stabilization)
        observed = (newest_flow - updated) if newest_flow is not None else timedelta(0)
        if state == "Stable" and rhythm is not None and observed < PERIOD[rhythm]:
            state = "Stabilizing"
    return NamespaceState(
        namespace=namespace,
        status=state,
        last_updated=updated,
        staged_action=previous.staged_action if previous else STAGED_ACTION,
        digest=rules_digest,
        first_run=previous.first_run if previous else now,
        learning_since=learning_since,
        rules=rules,
        rhythm=rhythm,
        last_flow=last_flow,
    )


def deleted(previous: NamespaceState, now: datetime) -> NamespaceState:
    """The marker of a namespace seen deleted at `now` (see the module doc)."""
    return NamespaceState(
        namespace=previous.namespace,
        status=DELETED,
        last_updated=now,
        staged_action=previous.staged_action,
        digest=EMPTY_DIGEST,
        first_run=previous.first_run,
        learning_since=now,
        rules=0,
        rhythm=None,
        last_flow=previous.last_flow,
    )
