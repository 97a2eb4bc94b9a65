from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_changes import SETTINGS, rec, rule

from flowfence.render.manifests import documents, with_status
from flowfence.state.lifecycle import (
    EMPTY_DIGEST,
    NamespaceState,
    Timing,
    decide,
    policy_digest,
    status,
)

NOW = datetime(2026, 11, 2)
INTERVAL = timedelta(seconds=150)
STABLE = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(0), "Learning"),
        (timedelta(seconds=300), "Learning"),  # exactly 2 x interval is not "more than"
        (timedelta(seconds=301), "Stabilizing"),
        (timedelta(minutes=10), "Stabilizing"),
        (timedelta(minutes=10, seconds=1), "Stable"),
        (timedelta(days=3), "Stable"),
    ],
)
def test_status_follows_calico_timing(age: timedelta, expected: str) -> None:
    assert status(NOW - age, NOW, interval=INTERVAL, stabilization=STABLE) == expected


def test_no_rules_is_no_data() -> None:
    assert status(None, NOW, interval=INTERVAL, stabilization=STABLE) == "NoData"


def test_stabilization_shorter_than_interval_is_ignored() -> None:
    hour = timedelta(hours=1)
    got = status(NOW - timedelta(minutes=90), NOW, interval=hour, stabilization=timedelta(0))
    assert got == "Stable"
    got = status(NOW - timedelta(minutes=30), NOW, interval=hour, stabilization=timedelta(0))
    assert got == "Learning"


# ---- decide: the status of a namespace from its previous state ------------------------------

TIMING = Timing(
    interval=INTERVAL, stabilization=timedelta(hours=6), stale_namespace=timedelta(days=30)
)
EARLIER = NOW - timedelta(days=3)


def previous(digest: str = "a", updated: datetime = EARLIER) -> NamespaceState:
    return NamespaceState(
        namespace="web",
        status="Stable",
        last_updated=updated,
        staged_action="Learn",
        digest=digest,
        first_run=EARLIER,
        learning_since=EARLIER - timedelta(hours=24),
        rules=2,
        rhythm=None,
        last_flow=NOW,
    )


def decide_now(prev: NamespaceState | None, **changes: Any) -> NamespaceState:
    args: dict[str, Any] = {
        "namespace": "web",
        "rules_digest": "a",
        "rules": 2,
        "learning_since": EARLIER - timedelta(hours=24),
        "last_flow": NOW - timedelta(minutes=5),
        "newest_flow": NOW - timedelta(minutes=5),
        "rhythm": None,
        "now": NOW,
        "timing": TIMING,
    }
    args.update(changes)
    return decide(prev, **args)


def test_first_run_is_learning_now() -> None:
    got = decide_now(None)
    assert (got.status, got.last_updated, got.first_run) == ("Learning", NOW, NOW)
    assert got.staged_action == "Learn"


def test_changed_rules_go_back_to_learning() -> None:
    got = decide_now(previous(), rules_digest="b")
    assert (got.status, got.last_updated) == ("Learning", NOW)
    assert got.first_run == EARLIER


def test_unchanged_rules_keep_last_updated() -> None:
    got = decide_now(previous(updated=NOW - timedelta(hours=1)))
    assert (got.status, got.last_updated) == ("Stabilizing", NOW - timedelta(hours=1))
    assert decide_now(previous()).status == "Stable"


@pytest.mark.parametrize(
    ("rhythm", "observed", "expected"),
    [
        (None, timedelta(hours=7), "Stable"),
        ("daily", timedelta(hours=7), "Stabilizing"),
        ("daily", timedelta(days=1), "Stable"),
        ("weekly", timedelta(days=6), "Stabilizing"),
        ("weekly", timedelta(days=7), "Stable"),
    ],
)
def test_a_rhythm_needs_a_full_period_of_data(
    rhythm: str | None, observed: timedelta, expected: str
) -> None:
    updated = NOW - timedelta(days=8)  # long past the stabilization period by the clock
    got = decide_now(previous(updated=updated), rhythm=rhythm, newest_flow=updated + observed)
    assert got.status == expected


def test_nodata_and_stale_come_first() -> None:
    assert decide_now(None, last_flow=None, newest_flow=None).status == "NoData"
    quiet = decide_now(previous(), last_flow=NOW - timedelta(days=31))
    assert quiet.status == "Stale"
    # Measured against the newest flow, not the clock: a pause in the flow logs is not Stale.
    paused = decide_now(
        previous(), last_flow=NOW - timedelta(days=40), newest_flow=NOW - timedelta(days=39)
    )
    assert paused.status == "Stable"


def test_policy_digest_ignores_provenance_only() -> None:
    rule = {"action": "Allow", "metadata": {"annotations": {"flowfence.io/firstSeen": "x"}}}
    moved = {"action": "Allow", "metadata": {"annotations": {"flowfence.io/firstSeen": "y"}}}
    other = {"action": "Pass", "metadata": {"annotations": {"flowfence.io/firstSeen": "x"}}}
    assert policy_digest({"spec": [rule]}) == policy_digest({"spec": [moved]})
    assert policy_digest({"spec": [rule]}) != policy_digest({"spec": [other]})
    assert policy_digest(None) == EMPTY_DIGEST


@pytest.mark.parametrize("flavor", ["calico-enterprise", "calico", "kubernetes"])
def test_policy_digest_masks_the_status_the_lifecycle_decides(flavor: str) -> None:
    """The digest is taken from the run's own document, whatever status it says: the same
    digest as the document rendered Learning since the epoch (how it was taken before)."""
    settings = replace(SETTINGS, flavor=flavor)
    recs = {"shop": rec("shop", rule(), rule("ingress", namespaces=("web",)))}
    epoch = documents(recs, settings, statuses={"shop": ("Learning", datetime(1970, 1, 1))})
    stable = with_status(documents(recs, settings)["shop.yaml"], "Stable", NOW)
    assert stable != epoch["shop.yaml"]
    assert policy_digest(stable) == policy_digest(epoch["shop.yaml"])
    fewer = {"shop": rec("shop", rule())}
    assert policy_digest(documents(fewer, settings)["shop.yaml"]) != policy_digest(stable)
