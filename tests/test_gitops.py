"""GitOps output against a real git repository and a bare remote.

A run's files are written the way `flowfence run` writes them (atomic.sync_tree) into DIR, a
folder inside a work tree; `gitops.publish` must commit only when a policy or a decision
changed, exactly once, with a message that names the namespaces and rules, a tree holding
only flowfence's paths (never the state), and push to the remote.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from flowfence.config.settings import Settings
from flowfence.core import atomic
from flowfence.core.errors import ConfigError, RuntimeFailure
from flowfence.learn.model import Evidence, PortRange, Recommendation, Rule
from flowfence.render import manifests as render
from flowfence.review import decisions, gitops

SETTINGS = Settings()
EV = Evidence(datetime(2026, 11, 1), datetime(2026, 11, 1, 5), 7, 700, 1, 1)


def ns_rule(peer: str, port: int, direction: str = "egress") -> Rule:
    return Rule(direction, "Allow", "Namespace", "TCP", EV, (PortRange(port, port),), (peer,))  # type: ignore[arg-type]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No user or system git config (signing, hooks, templates) leaks into the test.
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-config"))
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """(work tree, bare remote); the work tree has one commit of its own and an upstream."""
    remote = tmp_path / "remote.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "config", "user.name", "CI Bot")
    git(work, "config", "user.email", "ci@example.com")
    (work / "README.md").write_text("cluster config\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "init")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "-u", "origin", "main")
    return work, remote


def write_run(out: Path, recs: list[Recommendation], report: str = "report\n") -> None:
    """What a run writes: policies/, report.md, report.json, the state, the .gitignore."""
    files = dict(render.render({r.namespace: r for r in recs}, SETTINGS))
    files["report.md"] = report.encode()
    files["report.json"] = b'{"now": "' + report.encode().strip() + b'"}\n'
    atomic.sync_tree(out, files, owned="policies")
    (out / "state").mkdir(exist_ok=True)
    (out / "state" / "rules.parquet").write_bytes(report.encode())
    gitops.write_gitignore(out)


def commits(work: Path) -> list[str]:
    return git(work, "log", "--format=%H").splitlines()


def tree(work: Path) -> set[str]:
    return set(git(work, "ls-tree", "-r", "--name-only", "HEAD").splitlines())


SHOP = Recommendation("shop", egress=(ns_rule("db", 5432), ns_rule("redis", 6379)))
DB = Recommendation("db", ingress=(ns_rule("shop", 5432, "ingress"),))


def test_commit_only_on_change_with_message_and_tree(repo: tuple[Path, Path]) -> None:
    work, remote = repo
    out = work / "flowfence"
    write_run(out, [SHOP, DB], "run 1\n")
    first = gitops.publish(out, push_too=True)
    assert first.committed and first.pushed
    assert len(commits(work)) == 2
    subject, _, body = git(work, "log", "-1", "--format=%B").partition("\n\n")
    assert subject == "flowfence: 2 namespaces (+3 -0 rules)"
    assert "- db: created, +1 -0 rules" in body
    assert "  + egress TCP 5432 namespace db" in body
    assert tree(work) == {
        "README.md",
        "flowfence/.gitignore",
        "flowfence/report.md",
        "flowfence/policies/db.yaml",
        "flowfence/policies/shop.yaml",
        "flowfence/policies/tier.yaml",
        "flowfence/policies/kustomization.yaml",
    }
    assert git(remote, "rev-parse", "main") == first.commit
    # The state and the JSON report stay out of git: nothing untracked is left behind.
    assert git(work, "status", "--porcelain") == ""

    # A run that changes only the report's times makes no commit.
    write_run(out, [SHOP, DB], "run 2\n")
    again = gitops.publish(out, push_too=True)
    assert not again.committed and again.commit is None
    assert len(commits(work)) == 2

    # One namespace changes: exactly one commit, naming the rules added and removed.
    shop2 = Recommendation("shop", egress=(ns_rule("db", 5432), ns_rule("kafka", 9092)))
    write_run(out, [shop2, DB], "run 3\n")
    third = gitops.publish(out)
    assert third.committed and not third.pushed
    assert len(commits(work)) == 3
    message = git(work, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "flowfence: 1 namespace (+1 -1 rules)"
    assert "- shop: updated, +1 -1 rules" in message
    assert "  + egress TCP 9092 namespace kafka" in message
    assert "  - egress TCP 6379 namespace redis" in message
    assert "db:" not in message
    assert git(work, "show", "HEAD:flowfence/report.md") == "run 3"
    changed = git(work, "diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD").splitlines()
    assert set(changed) == {"flowfence/policies/shop.yaml", "flowfence/report.md"}
    # Not pushed this time; the next push carries it.
    assert git(remote, "rev-parse", "main") == first.commit
    gitops.push(out)
    assert git(remote, "rev-parse", "main") == third.commit


def test_removed_namespace_and_decision_change(repo: tuple[Path, Path]) -> None:
    work, _ = repo
    out = work / "ff"
    write_run(out, [SHOP, DB])
    assert gitops.publish(out).committed
    d = decisions.decide(decisions.EMPTY, "shop", "dismiss", reason="retired", author="ann")
    decisions.save(out, d)
    write_run(out, [DB], "run 2\n")  # the dismissed namespace's file goes away
    result = gitops.publish(out)
    assert result.committed
    message = git(work, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "flowfence: 1 namespace (+0 -2 rules); 1 decision"
    assert "- shop: removed, +0 -2 rules" in message
    assert "- decision: shop: dismiss by ann: retired" in message
    assert "ff/policies/shop.yaml" not in tree(work)
    assert "ff/decisions.yaml" in tree(work)
    # A decision alone (no policy change) is a change worth a commit.
    decisions.save(out, d.without("shop"))
    write_run(out, [DB], "run 3\n")
    result = gitops.publish(out)
    assert result.committed
    assert "- decision: shop: reactivated (was dismiss)" in git(work, "log", "-1", "--format=%B")


def test_other_staged_work_is_not_committed(repo: tuple[Path, Path]) -> None:
    work, _ = repo
    out = work / "ff"
    (work / "notes.txt").write_text("wip\n")
    git(work, "add", "notes.txt")
    write_run(out, [SHOP])
    assert gitops.publish(out).committed
    assert "notes.txt" not in tree(work)
    assert git(work, "diff", "--cached", "--name-only") == "notes.txt"  # still staged


def test_gitignore_keeps_user_lines_and_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.bak\n")
    assert gitops.write_gitignore(tmp_path) is True
    text = (tmp_path / ".gitignore").read_text()
    assert text.startswith("*.bak\n# Written by flowfence")
    assert "/state/\n" in text and "/report.json\n" in text
    assert gitops.write_gitignore(tmp_path) is False


def test_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="not inside a git work tree"):
        gitops.publish(plain)
    with pytest.raises(ConfigError, match="does not exist"):
        gitops.publish(tmp_path / "missing")
    lone = tmp_path / "lone"
    git(tmp_path, "init", "-q", "-b", "main", str(lone))
    git(lone, "config", "user.name", "x")
    git(lone, "config", "user.email", "x@example.com")
    write_run(lone, [SHOP])
    with pytest.raises(ConfigError, match="has no remote"):
        gitops.publish(lone, push_too=True)
    # Refused before committing: nothing was committed that could not be pushed.
    assert git(lone, "rev-list", "--all") == ""


def test_push_without_upstream_sets_it(repo: tuple[Path, Path], tmp_path: Path) -> None:
    _, remote = repo
    fresh = tmp_path / "fresh"
    git(tmp_path, "init", "-q", "-b", "main", str(fresh))
    git(fresh, "config", "user.name", "x")
    git(fresh, "config", "user.email", "x@example.com")
    git(fresh, "remote", "add", "origin", str(remote))
    git(fresh, "fetch", "-q", "origin")
    git(fresh, "reset", "-q", "origin/main")
    write_run(fresh / "out", [SHOP])
    result = gitops.publish(fresh / "out", push_too=True)
    assert result.pushed and git(remote, "rev-parse", "main") == result.commit


def test_a_detached_head_is_refused_before_committing(repo: tuple[Path, Path]) -> None:
    work, remote = repo
    git(work, "switch", "-q", "--detach")
    head = git(work, "rev-parse", "HEAD")
    out = work / "flowfence"
    write_run(out, [SHOP])
    for push_too in (False, True):
        with pytest.raises(ConfigError, match=r"HEAD is detached \(at [0-9a-f]+\) in .*git switch"):
            gitops.publish(out, push_too=push_too)
    assert git(work, "rev-parse", "HEAD") == head and commits(work) == [head]
    assert git(remote, "rev-parse", "main") == head
    # On a branch again, the same files are committed and pushed.
    git(work, "switch", "-q", "main")
    result = gitops.publish(out, push_too=True)
    assert result.committed and git(remote, "rev-parse", "main") == result.commit


def test_an_unreachable_remote_is_refused_before_committing(
    repo: tuple[Path, Path], tmp_path: Path
) -> None:
    work, remote = repo
    git(work, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    out = work / "flowfence"
    write_run(out, [SHOP])
    before = commits(work)
    with pytest.raises(RuntimeFailure, match=r"cannot reach remote 'origin' \(.*gone\.git"):
        gitops.publish(out, push_too=True)
    assert commits(work) == before
    # --git-commit alone does not need the remote.
    assert gitops.publish(out).committed and len(commits(work)) == 2
    git(work, "remote", "set-url", "origin", str(remote))
    assert gitops.publish(out, push_too=True).pushed
    assert git(remote, "rev-parse", "main") == commits(work)[0]
