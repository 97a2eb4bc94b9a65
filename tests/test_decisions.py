"""The decisions file: load/validate/save, hand edits, expiry, and the four CLI commands."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import crd
import pytest
import yaml
from conftest import CliResult

from flowfence.config.settings import Settings
from flowfence.core.errors import ConfigError
from flowfence.learn.model import Evidence, PortRange, Recommendation, Rule
from flowfence.render import manifests
from flowfence.render.yaml_text import dump
from flowfence.review import decisions as dec
from flowfence.review.apply_decisions import apply

NOW = datetime(2026, 11, 2, tzinfo=UTC)
SETTINGS = Settings()
Cli = Callable[[Sequence[object]], CliResult]


def write(out: Path, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "decisions.yaml").write_text(text)


def test_missing_file_means_no_decisions(tmp_path: Path) -> None:
    assert dec.load(tmp_path).entries == {}


def test_round_trip_is_sorted_commented_and_stable(tmp_path: Path) -> None:
    d = dec.decide(dec.EMPTY, "zeta", "dismiss", reason="retired", author="bob")
    d = dec.decide(
        d, "alpha", "accept", reason="reviewed", author="alice", decided=NOW,
        expires=NOW + timedelta(days=30),
    )  # fmt: skip
    assert dec.save(tmp_path, d) is True
    text = (tmp_path / "decisions.yaml").read_text()
    assert text.startswith("# flowfence decisions")
    body = yaml.safe_load(text)
    assert list(body["namespaces"]) == ["alpha", "zeta"]
    assert body["namespaces"]["alpha"]["expires"] == "2026-12-02T00:00:00Z"  # stays a string
    assert dec.load(tmp_path) == d
    # Same content: the file is not rewritten.
    assert dec.save(tmp_path, dec.load(tmp_path)) is False


def test_hand_edit_is_equally_valid(tmp_path: Path) -> None:
    write(
        tmp_path,
        "namespaces:\n"
        "  shop:\n"
        "    decision: enforce\n"
        "    reason: PR 42\n"
        "    author: carol\n"
        "    expires: 2026-11-05T00:00:00+01:00\n",  # unquoted: YAML reads a datetime
    )
    entry = dec.load(tmp_path).entries["shop"]
    assert entry.decision == "enforce"
    assert entry.expires == datetime(2026, 11, 4, 23, tzinfo=UTC)
    assert entry.staged_action == "Set"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("namespaces:\n  shop:\n    decision: approve\n    reason: r\n    author: a\n",
         "namespace 'shop': field 'decision': expected one of accept, enforce, dismiss"),
        ("namespaces:\n  shop:\n    decision: accept\n    author: a\n",
         "namespace 'shop': field 'reason': required"),
        ("namespaces:\n  shop:\n    decision: accept\n    reason: r\n    author: ''\n",
         "namespace 'shop': field 'author': required"),
        ("namespaces:\n  shop:\n    decision: accept\n    reason: r\n    author: a\n"
         "    reson: typo\n", "namespace 'shop': unknown field 'reson'"),
        ("namespaces:\n  shop:\n    decision: accept\n    reason: r\n    author: a\n"
         "    expires: 2026-12-01\n", "namespace 'shop': field 'expires': needs a time and a zone"),
        ("namespaces:\n  shop:\n    decision: accept\n    reason: r\n    author: a\n"
         "    expires: '2026-12-01T00:00:00'\n",
         "namespace 'shop': field 'expires': needs a time zone"),
        ("namespaces:\n  shop:\n    decision: accept\n    reason: r\n    author: a\n"
         "    expires: next week\n", "namespace 'shop': field 'expires': not an RFC 3339 time"),
        ("namespaces:\n  Shop_1:\n    decision: accept\n    reason: r\n    author: a\n",
         "namespace 'Shop_1' is not a DNS-1123 label"),
        ("namespaces:\n  shop: accept\n", "namespace 'shop': expected a mapping"),
        ("namespaces: [shop]\n", "`namespaces` must map"),
        ("kind: Other\nnamespaces: {}\n", "kind must be Decisions"),
        ("namespaces:\n  shop: {decision: accept\n", "malformed YAML"),
        ("nmespaces: {}\n", "unknown top-level field 'nmespaces'"),
    ],
)  # fmt: skip
def test_hand_edit_errors_name_namespace_and_field(tmp_path: Path, body: str, message: str) -> None:
    write(tmp_path, body)
    with pytest.raises(ConfigError, match=r"decisions\.yaml") as caught:
        dec.load(tmp_path)
    assert message in str(caught.value)


def test_expiry_lapses_back_to_learning() -> None:
    d = dec.decide(
        dec.EMPTY, "shop", "accept", reason="r", author="a", decided=NOW,
        expires=NOW + timedelta(hours=1),
    )  # fmt: skip
    d = dec.decide(d, "db", "dismiss", reason="r", author="a")
    assert set(d.active(NOW)) == {"db", "shop"}
    later = NOW + timedelta(hours=1)  # the expiry itself is already past the decision
    assert set(d.active(later)) == {"db"}
    assert set(d.expired(later)) == {"shop"}


def test_decide_rejects_an_expiry_in_the_past() -> None:
    with pytest.raises(ConfigError, match="not after now"):
        dec.decide(
            dec.EMPTY, "shop", "accept", reason="r", author="a", decided=NOW,
            expires=NOW - timedelta(days=1),
        )  # fmt: skip


def test_cli_accept_enforce_dismiss_reactivate(tmp_path: Path, run_cli: Cli) -> None:
    out = tmp_path / "out"
    now = ["--now", "2026-11-02T00:00:00Z"]
    r = run_cli(["accept", "shop", "--reason", "PR 7", "--author", "alice", "--out", out,
                 "--expires", "30d", *now])  # fmt: skip
    assert r.code == 0, r.err
    assert r.out == ""  # stdout carries only data
    assert "shop: accept until 2026-12-02T00:00:00Z by alice" in r.err
    r = run_cli(["dismiss", "legacy", "--reason", "retired", "--author", "bob", "--out", out, *now])
    assert r.code == 0, r.err
    loaded = dec.load(out)
    assert loaded.entries["shop"].expires == NOW + timedelta(days=30)
    assert loaded.entries["shop"].decided == NOW
    assert loaded.entries["legacy"].decision == "dismiss"
    # enforce replaces the accept
    r = run_cli(["enforce", "shop", "--reason", "soaked a week", "--author", "alice", "--out", out,
                 "--expires", "2027-01-01T00:00:00Z", *now])  # fmt: skip
    assert r.code == 0, r.err
    entry = dec.load(out).entries["shop"]
    assert (entry.decision, entry.reason) == ("enforce", "soaked a week")
    assert entry.expires == datetime(2027, 1, 1, tzinfo=UTC)
    r = run_cli(["reactivate", "legacy", "--out", out])
    assert r.code == 0
    assert set(dec.load(out).entries) == {"shop"}
    r = run_cli(["reactivate", "legacy", "--out", out])
    assert r.code == 0 and "already learning" in r.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["accept", "shop", "--author", "a"], "--reason: required"),
        (["accept", "Bad.NS", "--reason", "r", "--author", "a"], "not a DNS-1123 label"),
        (["dismiss", "shop", "--reason", "r", "--author", "a", "--expires", "soon"],
         "--expires: not an RFC 3339 time"),
        (["enforce", "shop", "--reason", "r", "--author", "a", "--expires", "0d"],
         "not in the future"),
    ],
)  # fmt: skip
def test_cli_errors_exit_2(tmp_path: Path, run_cli: Cli, args: list[str], message: str) -> None:
    r = run_cli([*args, "--out", tmp_path])
    assert r.code == 2
    assert message in r.err
    assert not (tmp_path / "decisions.yaml").exists()


def test_cli_refuses_a_broken_hand_edit_without_touching_it(tmp_path: Path, run_cli: Cli) -> None:
    write(tmp_path, "namespaces:\n  shop:\n    decision: nope\n")
    before = (tmp_path / "decisions.yaml").read_bytes()
    r = run_cli(["accept", "db", "--reason", "r", "--author", "a", "--out", tmp_path])
    assert r.code == 2 and "field 'decision'" in r.err
    assert (tmp_path / "decisions.yaml").read_bytes() == before


def test_default_author_from_git_then_user(
    tmp_path: Path, run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "user.name", "Gita Committer"], check=True)
    r = run_cli(["accept", "shop", "--reason", "r", "--out", repo])
    assert r.code == 0, r.err
    assert dec.load(repo).entries["shop"].author == "Gita Committer"
    # Outside a repository and without a global git identity, $USER is the author.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    monkeypatch.setenv("USER", "uma")
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    r = run_cli(["dismiss", "db", "--reason", "r", "--out", plain])
    assert r.code == 0, r.err
    assert dec.load(plain).entries["db"].author == "uma"


# --- applying decisions to rendered manifests ---------------------------------------------


def calico_network_policy_errors(doc: dict[str, Any]) -> list[str]:
    """A projectcalico.org/v3 NetworkPolicy against the real CRD, strict, plus Calico's rules."""
    return crd.validate_calico_network_policy(doc)


def _docs(*rules_by_ns: tuple[str, list[Rule]]) -> dict[str, dict[str, Any]]:
    """A run's documents (policies/... -> document) for these namespaces' rules."""
    recs = {
        ns: Recommendation(ns, egress=tuple(r for r in rs if r.direction == "egress"),
                           ingress=tuple(r for r in rs if r.direction == "ingress"))
        for ns, rs in rules_by_ns
    }  # fmt: skip
    return {f"policies/{name}": doc for name, doc in manifests.documents(recs, SETTINGS).items()}


def _written(docs: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The files a run writes for `docs` (what the next run finds on disk)."""
    return {rel: dump(doc) for rel, doc in docs.items()}


def _doc(files: dict[str, bytes], ns: str) -> dict[str, Any]:
    doc = yaml.safe_load(files[f"policies/{ns}.yaml"])
    assert isinstance(doc, dict)
    return doc


def _rule(peer: str, port: int, direction: str = "egress") -> Rule:
    ev = Evidence(datetime(2026, 11, 1), datetime(2026, 11, 1, 5), 3, 300, 1, 1)
    return Rule(direction, "Allow", "Namespace", "TCP", ev, (PortRange(port, port),), (peer,))  # type: ignore[arg-type]


def _decided(**verdicts: str) -> dec.Decisions:
    d = dec.EMPTY
    for ns, verdict in verdicts.items():
        d = dec.decide(d, ns, verdict, reason="r", author="a", expires=None)  # type: ignore[arg-type]
    return d


def test_apply_without_decisions_changes_nothing() -> None:
    docs = _docs(("shop", [_rule("db", 5432)]))
    applied = apply(docs, {}, dec.EMPTY, NOW)
    assert applied.documents == docs
    assert applied.staged_actions == {}
    assert applied.frozen == {}


def test_accept_freezes_the_reviewed_rules_with_staged_action_set() -> None:
    reviewed = _written(_docs(("shop", [_rule("db", 5432)])))
    learned_since = _docs(("shop", [_rule("db", 5432), _rule("kafka", 9092)]))
    applied = apply(learned_since, reviewed, _decided(shop="accept"), NOW)
    doc = applied.documents["policies/shop.yaml"]
    assert doc["kind"] == "StagedNetworkPolicy"
    assert doc["spec"]["stagedAction"] == "Set"
    assert next(iter(doc["spec"])) == "stagedAction"
    assert doc["metadata"]["labels"]["projectcalico.org/spec.stagedAction"] == "Set"
    # The rules are the reviewed ones, not this run's.
    assert doc["spec"]["egress"] == _doc(reviewed, "shop")["spec"]["egress"]
    assert applied.frozen["shop"] == doc
    assert applied.staged_actions == {"shop": "Set"}
    assert crd.validate_staged_policy(doc, enterprise=True) == []
    # The next run starts from the accepted manifest: the same bytes again.
    written = _written(applied.documents)
    again = apply(learned_since, written, _decided(shop="accept"), NOW)
    assert _written(again.documents) == written


def test_accept_without_a_previous_manifest_freezes_this_runs_rules() -> None:
    docs = _docs(("shop", [_rule("db", 5432)]))
    applied = apply(docs, {}, _decided(shop="accept"), NOW)
    shop = "policies/shop.yaml"
    assert applied.documents[shop]["spec"]["egress"] == docs[shop]["spec"]["egress"]


def test_enforce_emits_a_network_policy_valid_against_the_crd() -> None:
    docs = _docs(("shop", [_rule("db", 5432), _rule("web", 8080, "ingress")]))
    applied = apply(docs, _written(docs), _decided(shop="enforce"), NOW)
    doc, staged = applied.documents["policies/shop.yaml"], docs["policies/shop.yaml"]
    assert (doc["apiVersion"], doc["kind"]) == ("projectcalico.org/v3", "NetworkPolicy")
    assert doc["metadata"]["name"] == staged["metadata"]["name"]
    assert doc["spec"]["tier"] == staged["spec"]["tier"]
    assert doc["spec"]["selector"] == staged["spec"]["selector"]
    assert "stagedAction" not in doc["spec"]
    assert "projectcalico.org/spec.stagedAction" not in doc["metadata"]["labels"]
    assert all("metadata" not in r for d in ("ingress", "egress") for r in doc["spec"][d])
    assert [{k: v for k, v in r.items() if k != "metadata"} for r in staged["spec"]["egress"]] \
        == doc["spec"]["egress"]  # fmt: skip
    assert calico_network_policy_errors(doc) == []
    assert applied.staged_actions == {"shop": "Set"}
    # Enforced after accepted: the accepted (frozen) rules are what gets enforced.
    accepted = _written(apply(docs, {}, _decided(shop="accept"), NOW).documents)
    grown = _docs(("shop", [_rule("db", 5432), _rule("x", 1, "ingress"), _rule("web", 8080,
                  "ingress")]))  # fmt: skip
    later = apply(grown, accepted, _decided(shop="enforce"), NOW).documents
    assert later["policies/shop.yaml"] == doc


def test_dismiss_removes_the_manifest_and_expiry_restores_it() -> None:
    docs = _docs(("shop", [_rule("db", 5432)]), ("db", [_rule("shop", 5432, "ingress")]))
    d = dec.decide(
        dec.EMPTY, "shop", "dismiss", reason="r", author="a", decided=NOW,
        expires=NOW + timedelta(days=1),
    )  # fmt: skip
    applied = apply(docs, _written(docs), d, NOW)
    assert "policies/shop.yaml" not in applied.documents
    kustomization = applied.documents["policies/kustomization.yaml"]
    assert kustomization["resources"] == ["db.yaml", "tier.yaml"]
    assert applied.staged_actions == {"shop": "Ignore"}
    lapsed = apply(docs, _written(docs), d, NOW + timedelta(days=1))
    assert lapsed.documents == docs
    assert "shop" not in lapsed.staged_actions
    assert set(lapsed.lapsed) == {"shop"} and lapsed.applied == {}


def test_enforced_in_the_cluster_stops_learning() -> None:
    docs = _docs(("shop", [_rule("db", 5432)]), ("db", [_rule("shop", 5432, "ingress")]))
    applied = apply(docs, {}, dec.EMPTY, NOW, enforced_in_cluster=("shop",))
    assert "policies/shop.yaml" not in applied.documents
    assert "policies/db.yaml" in applied.documents
    assert applied.staged_actions["shop"] == "Set"
    # A decision still wins (the GitOps repository is where that policy comes from).
    kept = apply(docs, {}, _decided(shop="enforce"), NOW, enforced_in_cluster=("shop",))
    assert kept.documents["policies/shop.yaml"]["kind"] == "NetworkPolicy"
