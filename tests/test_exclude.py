from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from flowfence.calico.hits import parse_hit
from flowfence.config.settings import Settings
from flowfence.flows.edges import EDGE_SCHEMA
from flowfence.learn import exclude as ex

PROFILE = "9|__PROFILE__|__PROFILE__.kns.shop|allow|0"
PROFILE_332 = "9|__PROFILE__|pro:kns.shop|allow|0"
ORDERS = {**ex.BUILTIN_TIER_ORDERS, "security": 100.0, "platform": 20_000.0, "last": None}

BASE: dict[str, Any] = {
    "reporter": "src",
    "action": "allow",
    "source_type": "wep",
    "source_namespace": "shop",
    "source_name_aggr": "web-*",
    "source_ip": None,
    "source_labels": ["app=web"],
    "dest_type": "wep",
    "dest_namespace": "db",
    "dest_name_aggr": "pg-*",
    "dest_ip": None,
    "dest_labels": ["app=pg"],
    "dest_port": 5432,
    "proto": "tcp",
    "dest_service_namespace": None,
    "dest_service_name": None,
    "dest_service_port_num": None,
    "dest_domains": [],
    "enforced_policies": [PROFILE],
    "pending_policies": [],
    "first_seen": datetime(2026, 11, 1),
    "last_seen": datetime(2026, 11, 1, 1),
    "flows": 10,
    "bytes": 1000,
    "packets": 20,
    "days": 1,
    "rows": 2,
}


def edges(*changes: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{**BASE, **c} for c in changes], schema=EDGE_SCHEMA)


def run(
    *changes: dict[str, Any], settings: Settings | None = None, **kw: Any
) -> tuple[pl.DataFrame, ex.Exclusions]:
    kw.setdefault("tier_orders", ORDERS)
    return ex.exclude(edges(*changes), ["shop", "db"], settings or Settings(), **kw)


def learned(trace: list[str], pending: list[str] | None = None, **kw: Any) -> bool:
    kept, _ = run({"enforced_policies": trace, "pending_policies": pending or []}, **kw)
    return kept.height == 1


@pytest.mark.parametrize(
    "trace",
    [
        ["0|security|security.block-egress|deny|0"],  # legacy GNP
        ["0|security|shop/security.allow-db|allow|1"],  # legacy NP
        ["0|security|security.staged:quarantine|deny|-1", PROFILE],  # legacy staged, end of tier
        ["0|security|shop/staged:security.x|allow|0"],  # OSS <= 3.31 staged layout
        ["0|security|gnp:block-egress|deny|0"],  # 3.32
        ["0|security|snp:shop/x|deny|-1", PROFILE_332],  # 3.32 staged
        ["0|kube-admin|kcnp:cluster-guard|allow|0"],  # built-in order 1000
        ["0|kube-admin|kcnp:guard|pass|0", "1|security|gnp:x|deny|2"],  # pass, then decided
    ],
)
def test_decided_by_an_earlier_tier_is_excluded(trace: list[str]) -> None:
    assert not learned(trace)


@pytest.mark.parametrize(
    "trace",
    [
        [PROFILE],  # unprotected: what Calico Enterprise learns
        [PROFILE_332],
        ["0|default|shop/default.allow-web|allow|0"],  # default tier, order 1e6 > 10000
        ["0|default|shop/knp.default.allow-web|allow|0"],  # Kubernetes NetworkPolicy
        ["0|default|knp:shop/allow-web|allow|0"],
        ["0|platform|gnp:p|allow|0"],  # custom tier after ours
        ["0|last|gnp:p|allow|0"],  # order null means last
        ["0|kube-baseline|kcnp:b|allow|0"],
        ["0|security|security.s|pass|0", PROFILE],  # an earlier tier passes: not decided
        [],  # no trace at all: nothing decided before us
    ],
)
def test_decided_after_our_tier_or_by_profile_is_learned(trace: list[str]) -> None:
    assert learned(trace)


def test_own_tier_hits_never_exclude() -> None:
    ours = "0|namespace-isolation|shop/namespace-isolation.staged:shop-rec|allow|3"
    assert learned(["0|namespace-isolation|snp:shop/rec|deny|-1"])
    assert learned([ours])
    assert learned([ours], settings=Settings(tier_name="namespace-isolation"))
    # When the recommendation tier is another one, namespace-isolation is an ordinary tier.
    recs = Settings(tier_name="recs", tier_order=50_000)
    orders = {**ORDERS, "namespace-isolation": 10_000.0}
    assert not learned([ours], settings=recs, tier_orders=orders)


def test_pending_trace_takes_precedence_over_enforced() -> None:
    security_allow = "0|security|gnp:allow-all|allow|0"
    staged_deny = "0|security|sgnp:lockdown|deny|0"
    assert learned([security_allow], pending=[PROFILE])  # staged world: unprotected
    assert not learned([PROFILE], pending=[staged_deny])  # staged deny counts like enforced
    assert not learned([PROFILE], pending=[security_allow])


def test_tier_order_ties_break_by_name() -> None:
    orders = {**ORDERS, "aaa": 10_000.0, "zzz": 10_000.0}
    assert not learned(["0|aaa|gnp:p|allow|0"], tier_orders=orders)
    assert learned(["0|zzz|gnp:p|allow|0"], tier_orders=orders)


def test_default_tier_orders_include_config_tier_orders() -> None:
    settings = Settings(tier_orders={"security": 5.0})
    kept, exc = ex.exclude(
        edges({"enforced_policies": ["0|security|gnp:x|deny|0"]}), ["shop"], settings
    )
    assert kept.height == 0
    assert (ex.DENIED_BEFORE, "security|gnp:x") in exc.excluded


def test_unknown_tier_and_malformed_traces_learned_and_flagged_by_default() -> None:
    kept, exc = run(
        {"enforced_policies": ["0|mystery|gnp:m|deny|0"], "flows": 3},
        {"enforced_policies": ["garbage|||", PROFILE], "flows": 4, "bytes": 7},
    )
    assert kept.height == 2
    assert exc.excluded == {}
    assert exc.flagged == {
        (ex.UNKNOWN_TIER, "mystery|gnp:m"): ex.Tally(1, 3, 1000),
        (ex.MALFORMED, "'garbage|||'"): ex.Tally(1, 4, 7),
    }


def test_unknown_tiers_exclude_setting() -> None:
    strict = Settings(unknown_tiers="exclude")
    kept, exc = run(
        {"enforced_policies": ["0|mystery|gnp:m|deny|0"]},
        {"enforced_policies": ["0|tier|x\ny|allow|0"]},
        settings=strict,
    )
    assert kept.height == 0
    assert set(exc.excluded) == {
        (ex.UNKNOWN_TIER, "mystery|gnp:m"),
        (ex.MALFORMED, "'0|tier|x\\ny|allow|0'"),
    }
    assert exc.flagged == {}


def test_exclusions_are_counted_per_reason_and_policy() -> None:
    deny = "0|security|security.block|deny|0"
    allow = "0|security|shop/security.open|allow|1"
    kept, exc = run(
        {"enforced_policies": [deny], "flows": 1, "bytes": 10},
        {"enforced_policies": [deny], "flows": 2, "bytes": 20, "dest_port": 1},
        {"enforced_policies": [allow], "flows": 5, "bytes": 50},
        {"flows": 7},
    )
    assert kept.height == 1
    assert exc.excluded == {
        (ex.ALLOWED_BEFORE, "security|np:shop/open"): ex.Tally(1, 5, 50),
        (ex.DENIED_BEFORE, "security|gnp:block"): ex.Tally(2, 3, 30),
    }
    assert exc.total_excluded == ex.Tally(3, 8, 80)


def test_learnability_direction_and_namespace() -> None:
    kept, exc = run(
        {"reporter": "src"},  # egress from shop
        {"reporter": "dst"},  # ingress to db
        {"reporter": "dst", "dest_namespace": "other"},  # not selected
        {"reporter": "src", "source_type": "hep", "source_namespace": None},
        {"reporter": "fwd"},
        {"action": "deny", "flows": 4},
        {"reporter": "dst", "dest_type": "net", "dest_namespace": None, "dest_name_aggr": "pub"},
    )
    assert kept.select("direction", "namespace").rows() == [("egress", "shop"), ("ingress", "db")]
    assert {k: v.edges for k, v in exc.not_learnable.items()} == {
        ex.NOT_SELECTED: 1,
        ex.NOT_WORKLOAD: 2,
        ex.FORWARDED: 1,
        ex.NOT_ALLOWED: 1,
    }
    assert exc.not_learnable[ex.NOT_ALLOWED].flows == 4
    assert set(kept.columns) == {*EDGE_SCHEMA, "direction", "namespace"}


def test_decided_before_callback_excludes_after_the_trace_check() -> None:
    seen: list[int] = []

    def evaluator(frame: pl.DataFrame) -> list[str | None]:
        seen.append(frame.height)
        return ["security/deny-db" if p == 5432 else None for p in frame.get_column("dest_port")]

    kept, exc = run(
        {"dest_port": 5432},
        {"dest_port": 80},
        {"dest_port": 81, "enforced_policies": ["0|security|gnp:x|deny|0"]},
        decided_before=evaluator,
    )
    assert seen == [2]  # the trace-excluded edge never reaches the evaluator
    assert kept.get_column("dest_port").to_list() == [80]
    assert exc.excluded[(ex.EXISTING_POLICY, "security/deny-db")] == ex.Tally(1, 10, 1000)
    with pytest.raises(ValueError, match="returned 1 values for 2 edges"):
        run({}, {"dest_port": 1}, decided_before=lambda f: [None])


def test_each_distinct_trace_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(text: str) -> Any:
        calls.append(text)
        return parse_hit(text)

    monkeypatch.setattr(ex, "parse_hit", counting)
    rows = [
        {"dest_port": p, "enforced_policies": ["0|default|gnp:d|pass|0", PROFILE]}
        for p in range(500)
    ]
    rows += [{"dest_port": p, "enforced_policies": [PROFILE]} for p in range(500)]
    kept, _ = run(*rows)
    assert kept.height == 1000
    assert sorted(calls) == sorted(["0|default|gnp:d|pass|0", PROFILE])


def test_edges_read_back_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "edges.parquet"
    edges({}, {"pending_policies": ["0|security|sgnp:x|deny|0"]}).write_parquet(path)
    kept, exc = ex.exclude(pl.read_parquet(path), ["shop"], Settings(), ORDERS)
    assert kept.height == 1
    assert list(exc.excluded) == [(ex.DENIED_BEFORE, "security|sgnp:x")]


def test_null_policy_lists_are_empty_traces() -> None:
    kept, exc = run({"enforced_policies": None, "pending_policies": None})
    assert kept.height == 1 and exc.flagged == {}


@pytest.mark.parametrize(
    "trace",
    [
        ["0|allow-tigera|kube-system/allow-tigera.cluster-dns|allow|0"],  # Calico Enterprise
        ["0|allow-tigera|allow-tigera.default-deny|deny|-1"],
        ["0|calico-system|np:kube-system/calico-system.cluster-dns|allow|0"],  # renamed, 3.32
        # Its name before the operator (CNX, Calico Enterprise 2.x), in the 2019 published
        # records (tests/calico_records/intrusion-detection-watch-flows.json)
        ["0|allow-cnx|calico-monitoring/allow-cnx.elasticsearch-access|allow"],
    ],
)
def test_the_operators_tier_is_known_out_of_the_box(trace: list[str]) -> None:
    # main: `tier with unknown order`, flagged and learned again; now order 100 (the operator's).
    kept, exc = ex.exclude(edges({"enforced_policies": trace}), ["shop"], Settings())
    assert kept.height == 0 and exc.flagged == {}
    assert ex.known_tier_orders(Settings())["allow-tigera"] == 100.0


def test_the_operators_tier_order_can_be_overridden() -> None:
    trace = ["0|calico-system|np:kube-system/calico-system.cluster-dns|allow|0"]
    after_ours = Settings(tier_orders={"calico-system": 20_000.0})
    kept, exc = ex.exclude(edges({"enforced_policies": trace}), ["shop"], after_ours)
    assert kept.height == 1 and exc.excluded == {} and exc.flagged == {}
    assert ex.known_tier_orders(after_ours)["allow-tigera"] == 100.0
