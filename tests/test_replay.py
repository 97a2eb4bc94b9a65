"""`flowfence replay` over the bundled demo fixture with the hand-written set in tests/policies."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowfence.calico.evaluate import Edge, Evaluator
from flowfence.calico.hits import parse_hit
from flowfence.calico.policy_docs import load_namespaces, load_policies, policy_set
from flowfence.cli.app import main
from flowfence.core import database
from flowfence.core.errors import ConfigError
from flowfence.flows import edges, sources
from flowfence.replay import audit as replay
from flowfence.replay import render as replay_render

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fixtures" / "data" / "demo"
NAMESPACES = ROOT / "fixtures" / "namespaces.yaml"
POLICIES = Path(__file__).parent / "policies" / "replay"
ARGS = [
    "replay",
    "--policies",
    str(POLICIES),
    "--flows",
    str(DEMO),
    "--namespaces",
    str(NAMESPACES),
]

LOCKDOWN = "snp:shipping/lockdown.shipping"
POSTGRES = "knp:postgres/postgres-clients"
APP_LAYER = {"ads", "cart", "catalog", "checkout", "currency", "email", "frontend", "payment",
             "recommendation", "shipping"}  # fmt: skip


@pytest.fixture(scope="module")
def demo_edges() -> pl.DataFrame:
    con = duckdb.connect()
    sources.bind_flows(con, DEMO)
    return edges.aggregate(con)


def expected_hit(row: dict[str, Any]) -> str:
    """The verdict each demo edge must get, written from the policy files by hand."""
    if row["reporter"] == "src" and row["source_namespace"] == "shipping":
        if row["dest_namespace"] == "kube-system" and row["proto"] == "udp":
            return f"0|lockdown|{LOCKDOWN}|allow|0"
        if row["dest_type"] == "ns" and row["dest_name_aggr"] == "partner-apis":
            return f"0|lockdown|{LOCKDOWN}|allow|1"
        return f"0|lockdown|{LOCKDOWN}|deny|-1"
    if row["reporter"] == "dst" and row["dest_namespace"] == "postgres":
        if row["source_namespace"] in APP_LAYER and row["dest_port"] == 5432:
            return f"0|default|{POSTGRES}|allow|0"
        return f"0|default|{POSTGRES}|deny|-1"
    local = row["source_namespace"] if row["reporter"] == "src" else row["dest_namespace"]
    return f"0|__PROFILE__|pro:kns.{local}|allow|0"


def test_verdict_per_edge(demo_edges: pl.DataFrame) -> None:
    evaluator = Evaluator(
        load_policies(POLICIES), namespaces=load_namespaces(NAMESPACES), staged=True
    )
    seen: set[str] = set()
    for row in demo_edges.filter(pl.col("action") == "allow").iter_rows(named=True):
        direction = "egress" if row["reporter"] == "src" else "ingress"
        verdict = evaluator.evaluate(Edge.from_row(row), direction)
        assert str(verdict.deciding) == expected_hit(row), row
        seen.add(expected_hit(row).split("|", 2)[2])
    # Every branch of the hand-written table was exercised by the fixture.
    assert {f"{LOCKDOWN}|allow|0", f"{LOCKDOWN}|allow|1", f"{LOCKDOWN}|deny|-1",
            f"{POSTGRES}|allow|0", f"{POSTGRES}|deny|-1"} <= seen  # fmt: skip


def test_report_model(demo_edges: pl.DataFrame) -> None:
    report = replay.compute(
        demo_edges, load_policies(POLICIES), namespaces=load_namespaces(NAMESPACES)
    )
    allowed = demo_edges.filter(pl.col("action") == "allow")
    expected_denied = [r for r in allowed.iter_rows(named=True) if "|deny|" in expected_hit(r)]
    worst = sorted(expected_denied, key=lambda r: (-r["flows"], -r["bytes"]))
    assert [(d.flows, d.bytes, d.hit) for d in report.denied] == [
        (r["flows"], r["bytes"], expected_hit(r)) for r in worst
    ]
    assert report.summary.denied_flows == sum(r["flows"] for r in expected_denied)
    assert report.summary.evaluated_edges == allowed.height
    assert report.summary.evaluated_flows == int(allowed["flows"].sum())
    # The Ignore-d staged policy on redis is not evaluated at all.
    assert not any("redis" in t.policy and t.tier != "__PROFILE__" for t in report.policies)
    by_key = {(t.policy, t.end_of_tier): t for t in report.policies}
    lockdown_allowed = [
        r for r in allowed.iter_rows(named=True) if expected_hit(r).startswith("0|lockdown")
        and "|allow|" in expected_hit(r)
    ]  # fmt: skip
    assert by_key[(LOCKDOWN, False)].allowed_flows == sum(r["flows"] for r in lockdown_allowed)
    assert by_key[(LOCKDOWN, True)].denied_bytes == sum(
        r["bytes"] for r in expected_denied if r["source_namespace"] == "shipping"
    )


def test_json_output_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--output", "json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "4 allowed edges (777 flows) would be denied" in captured.err
    assert out["would_deny"] is True and out["tier"] is None
    assert [(d["direction"], d["dest"]["ip"] or d["source"]["namespace"], d["dest_port"],
             d["flows"], d["hit"]) for d in out["denied"]] == [
        ("egress", "10.20.0.11", 5432, 357, f"0|lockdown|{LOCKDOWN}|deny|-1"),
        ("egress", "10.20.0.12", 5432, 297, f"0|lockdown|{LOCKDOWN}|deny|-1"),
        ("ingress", "monitoring", 9102, 122, f"0|default|{POSTGRES}|deny|-1"),
        ("ingress", "batch", 5432, 1, f"0|default|{POSTGRES}|deny|-1"),
    ]  # fmt: skip
    first = out["denied"][0]
    assert first["source"] == {
        "type": "wep", "namespace": "shipping", "name": "shipping-gtrc4d7wx-*", "ip": None,
        "labels": ["app=shipping"],
    }  # fmt: skip
    assert first["trace"] == [first["hit"]]
    assert first["logged_policies"] and first["first_seen"].endswith("Z")
    assert out["summary"]["denied_edges"] == 4
    assert main([*ARGS, "--output", "json", "--fail-on-deny"]) == 3
    assert json.loads(capsys.readouterr().out) == out  # same report, only the exit code differs
    tier_only = [*ARGS, "--output", "json", "--tier", "lockdown", "--fail-on-deny"]
    assert main(tier_only) == 3
    scoped = json.loads(capsys.readouterr().out)
    assert scoped["tier"] == "lockdown" and len(scoped["denied"]) == 2
    assert {p["tier"] for p in scoped["policies"]} == {"lockdown"}


def test_no_denials_exit_zero_even_with_fail_on_deny(capsys: pytest.CaptureFixture[str]) -> None:
    # kube-admin holds no policy here: nothing in its scope is denied, so no exit 3.
    assert main([*ARGS, "--tier", "kube-admin", "--fail-on-deny", "--output", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# flowfence replay (tier `kube-admin`)")
    assert "None." in out


def test_markdown_and_table_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--output", "markdown"]) == 0
    md = capsys.readouterr().out
    assert (
        "| egress | wep:shipping/shipping-gtrc4d7wx-* | net:pvt 10.20.0.11 | tcp/5432 | 357 |" in md
    )
    assert f"| lockdown | {LOCKDOWN} (end of tier) | 2 |" in md
    assert main(ARGS) == 0
    table = capsys.readouterr().out
    assert "4 would be denied" in table and "10.20.0.11" in table


def test_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--tier", "nope"]) == 2
    assert "--tier 'nope': no such tier" in capsys.readouterr().err
    assert main([*ARGS, "--since", "yesterday"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [")
    assert main(["replay", "--policies", str(bad), "--flows", str(DEMO)]) == 2
    assert "bad.yaml: malformed YAML" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value", "hint"),
    [
        ("--since", "2026-11-01T00:00:00", "append Z for UTC, e.g. 2026-11-01T00:00:00Z"),
        ("--until", "2026-11-02", "e.g. 2026-11-02T00:00:00Z"),
    ],
)
def test_a_window_without_an_offset_is_refused_as_run_refuses_it(
    capsys: pytest.CaptureFixture[str], option: str, value: str, hint: str
) -> None:
    # replay used to take a zone-less time as UTC while `run --now` refused it; both refuse.
    assert main([*ARGS, "--output", "json", option, value]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{option}: needs a time" in captured.err and hint in captured.err


def test_duckdb_gets_the_resource_options_and_never_draws_its_progress_bar(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings: list[tuple[Any, ...]] = []
    real_connect = database.connect

    def connect(limits: Any = None, **options: Any) -> duckdb.DuckDBPyConnection:
        con = real_connect(limits, **options)
        settings.extend(
            con.sql(
                "SELECT current_setting('threads'), current_setting('memory_limit'), "
                "current_setting('temp_directory'), current_setting('enable_progress_bar_print')"
            ).fetchall()
        )
        # As a terminal or a notebook may: a bar for every query, at once.
        con.execute("SET progress_bar_time = 0")
        return con

    monkeypatch.setattr(database, "connect", connect)
    monkeypatch.setenv("FLOWFENCE_THREADS", "1")
    args = ["--output", "json", "--memory-limit", "512MiB", "--temp-dir", str(tmp_path)]
    assert main([*ARGS, *args]) == 0
    out = capfd.readouterr().out
    assert json.loads(out)["summary"]["edges"] > 0  # stdout is the report and nothing else
    assert settings == [(1, "512.0 MiB", str(tmp_path), False)]
    assert main([*ARGS, "--threads", "0"]) == 2
    assert "--threads: must be at least 1" in capfd.readouterr().err


def test_time_window_limits_the_edges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--output", "json", "--until", "2026-11-01T00:00:00Z"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["edges"] == 0 and out["denied"] == []


def test_pass_hits_are_tallied_with_the_later_decision() -> None:
    frame = pl.DataFrame(
        [{
            "reporter": "src", "action": "allow", "source_type": "wep", "source_namespace": "a",
            "source_name_aggr": "x-*", "source_ip": None, "source_labels": ["app=x"],
            "dest_type": "net", "dest_namespace": None, "dest_name_aggr": "pub",
            "dest_ip": "8.8.8.8", "dest_labels": [], "dest_port": 53, "proto": "udp",
            "dest_service_namespace": None, "dest_service_name": None,
            "dest_service_port_num": None, "dest_domains": [], "enforced_policies": [],
            "pending_policies": [], "first_seen": datetime(2026, 11, 1),
            "last_seen": datetime(2026, 11, 1, 1), "flows": 7, "bytes": 700, "packets": 9,
            "days": 1, "rows": 2,
        }],
        schema=edges.EDGE_SCHEMA,
    )  # fmt: skip
    docs = [
        {"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t"},
         "spec": {"order": 1, "defaultAction": "Pass"}},
        {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
         "metadata": {"name": "dns"},
         "spec": {"tier": "t", "egress": [{"action": "Pass", "protocol": "UDP"}]}},
        {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
         "metadata": {"name": "deny", "namespace": "a"}, "spec": {"egress": [{"action": "Deny"}]}},
    ]  # fmt: skip
    report = replay.compute(frame, policy_set(docs))
    rows = {(t.policy, t.end_of_tier): t for t in report.policies}
    assert (rows[("gnp:dns", False)].passed_flows, rows[("gnp:dns", False)].edges) == (7, 1)
    assert rows[("np:a/deny", False)].denied_bytes == 700
    assert [d.trace for d in report.denied] == [
        ("0|t|gnp:dns|pass|0", "1|default|np:a/deny|deny|0")
    ]
    assert replay_render.to_json(report) == replay_render.to_json(
        replay.compute(frame, policy_set(list(reversed(docs))))
    )
    with pytest.raises(ConfigError):
        replay.compute(frame, policy_set(docs), tier="missing")


def _semantic(hit: str) -> tuple[object, ...]:
    parsed = parse_hit(hit)
    assert parsed is not None, hit
    name = parsed.name.removeprefix(f"{parsed.tier}.")
    return (parsed.index, parsed.tier, parsed.kind, parsed.namespace, name, parsed.staged,
            parsed.action, parsed.rule_index)  # fmt: skip


def test_evaluator_reproduces_the_traces_recorded_in_the_fixture(
    demo_edges: pl.DataFrame,
) -> None:
    """The fixture's flow logs carry policy traces for fixtures/policies; ours must agree
    (the fixture writes both the 3.32 and the legacy name syntax, so compare parsed hits)."""
    fixture_policies = load_policies(ROOT / "fixtures" / "policies")
    evaluator = Evaluator(fixture_policies, namespaces=load_namespaces(NAMESPACES))
    compared = 0
    for row in demo_edges.iter_rows(named=True):
        direction = {"src": "egress", "dst": "ingress"}.get(row["reporter"])
        edge = Edge.from_row(row)
        if direction is None or not evaluator.applies(edge, direction):
            continue
        verdict = evaluator.evaluate(edge, direction)
        assert verdict.action == row["action"], row
        assert [_semantic(h) for h in verdict.trace] == [
            _semantic(h) for h in row["pending_policies"]
        ], row
        compared += 1
    assert compared == demo_edges.height


def test_markdown_keeps_untrusted_warnings_inert() -> None:
    """Warnings quote input (file names, policy names): no markup or mention reaches the
    Markdown meant for a pull-request comment."""
    summary = replay.ReplaySummary(0, 0, 0, 0, 0, 0, 0, 0, 0)
    hostile = "</details><img src=x onerror=alert(1)> @everyone | [x](https://e.example)\nmore"
    text = replay_render.to_markdown(replay.ReplayReport(None, summary, (), (), (hostile,)))
    assert "<img" not in text and "</details>" not in text and "@everyone" not in text
    assert "- &lt;/details&gt;&lt;img src=x onerror=alert(1)&gt; @\u200deveryone \\| " in text
    assert "\\[x\\](https://e.example) more" in text


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_report_does_not_depend_on_the_order_of_the_edges(
    demo_edges: pl.DataFrame, seed: int
) -> None:
    """replay reads its edges unsorted (edges.aggregate(ordered=False)): any order of the same
    edges gives the same report, also for listed edges tied on every field the report sorts by
    (here: copies of the denied edges that differ only in their logged policies)."""
    namespaces = load_namespaces(NAMESPACES)
    policies = load_policies(POLICIES)
    denied = replay.compute(demo_edges, policies, namespaces=namespaces).denied
    assert denied
    twins = demo_edges.filter(
        pl.col("action") == "allow",
        pl.col("reporter") == "src",
        pl.col("source_namespace") == "shipping",
    ).with_columns(pl.lit(["0|other|other.p|pass|0"]).alias("enforced_policies"))
    frame = edges.conform(pl.concat([demo_edges, twins]))
    expected = replay.compute(frame, policies, namespaces=namespaces)
    assert len(expected.denied) > len(denied)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    assert replay.compute(shuffled, policies, namespaces=namespaces) == expected
