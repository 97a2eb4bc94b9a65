"""GitOps output: commit what a run wrote to the git work tree that holds DIR, and push it.

flowfence commits only its own paths (`policies/`, `decisions.yaml`, `report.md`,
`report.html`, which a reviewer opens from the pull request, the record of what it wrote,
`.flowfence-written.json`, which `accept` compares hand edits with, and the `.gitignore` it
writes), and only when a policy or a decision changed: a run that changes nothing but the
report's timestamps makes no commit. Other changes staged or made in the same work tree are
left alone (`git commit --only` with pathspecs). The state never goes
into git: it lives outside the repository (`--state`) or under `DIR/state/`, which the
`.gitignore` in DIR keeps out.

The real `git` binary runs through subprocess with a timeout; its failures become
`RuntimeFailure` (or `ConfigError` when DIR is not in a work tree) quoting git's own message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowfence.core import atomic, lock, times
from flowfence.core.errors import ConfigError, RuntimeFailure
from flowfence.report.change_set import ChangeSet
from flowfence.review import changes, decisions, written

COMMITTED = (
    "policies",
    "decisions.yaml",
    "report.md",
    "report.html",
    written.FILE_NAME,
    ".gitignore",
)
# What a decision or a policy is: a change to one of these makes a commit.
DECISIONS = "decisions.yaml"
TRIGGERS = ("policies", DECISIONS)
IGNORED = ("/state/", "/report.json", f"/{lock.OUT_LOCK_NAME}")
GITIGNORE_HEADER = "# Written by flowfence: run state and the JSON report stay out of git."
TIMEOUT = 120.0
MAX_BODY_LINES = 60


@dataclass(frozen=True)
class CommitResult:
    committed: bool
    commit: str | None
    message: str
    pushed: bool = False


def _git_binary() -> str:
    git = shutil.which("git")
    if git is None:
        raise RuntimeFailure("--git-commit: the git binary is not on PATH")
    return git


def git(
    cwd: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd`; a non-zero exit raises RuntimeFailure with git's message."""
    # No pager, no prompts: a CronJob has no terminal to answer a credential prompt.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            [_git_binary(), *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"git {args[0]}: no answer after {TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise RuntimeFailure(f"git {args[0]}: cannot run git: {exc}") from exc
    if check and done.returncode != 0:
        why = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise RuntimeFailure(f"git {args[0]} failed: {' / '.join(why) or 'no output'}")
    return done


def work_tree(out: Path) -> Path:
    """The top of the git work tree holding `out`; ConfigError when there is none."""
    if not out.is_dir():
        raise ConfigError(f"--git-commit: {out} does not exist")
    found = git(out, "rev-parse", "--show-toplevel", check=False)
    if found.returncode != 0:
        raise ConfigError(
            f"--git-commit: {out} is not inside a git work tree (git init, or clone the repo)"
        )
    return Path(found.stdout.strip())


def write_gitignore(out: Path) -> bool:
    """Make `out/.gitignore` ignore the state and the JSON report, keeping lines users added."""
    path = out / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    missing = [p for p in IGNORED if p not in lines]
    if not missing:
        return False
    if GITIGNORE_HEADER not in lines:
        lines = [*lines, GITIGNORE_HEADER] if lines else [GITIGNORE_HEADER]
    at = lines.index(GITIGNORE_HEADER) + 1
    lines[at:at] = missing
    return atomic.write_text(path, "\n".join(lines) + "\n")


def pending(out: Path, paths: Sequence[str] = TRIGGERS) -> list[str]:
    """Paths under `out` (relative to it) that differ from HEAD, untracked ones included."""
    existing = [p for p in paths if (out / p).exists() or _tracked(out, p)]
    if not existing:
        return []
    status = git(
        out, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *existing
    ).stdout
    names = []
    for entry in status.split("\0"):
        if len(entry) > 3:
            names.append(entry[3:])
    return sorted(names)


def _tracked(out: Path, path: str) -> bool:
    return bool(git(out, "ls-files", "--", path).stdout.strip())


def decision_changes(out: Path) -> list[str]:
    """One line per namespace whose decision differs from the committed decisions.yaml."""
    shown = git(out, "show", f"HEAD:./{decisions.FILE_NAME}", check=False)
    before = decisions.parse(shown.stdout) if shown.returncode == 0 else decisions.EMPTY
    after = decisions.load(out)
    lines = []
    for ns in sorted({*before.entries, *after.entries}):
        old, new = before.get(ns), after.get(ns)
        if old == new:
            continue
        if new is None:
            lines.append(f"{ns}: reactivated (was {old.decision if old else '?'})")
        else:
            until = f" until {times.rfc3339(new.expires)}" if new.expires else ""
            lines.append(f"{ns}: {new.decision}{until} by {new.author}: {new.reason}")
    return lines


def message(changes: ChangeSet, decisions_changed: Sequence[str] = ()) -> str:
    """The commit message: a subject counting the change, then one line per namespace."""
    touched = [c for c in changes.namespaces if c.change != "unchanged"]
    parts = []
    if touched:
        noun = "namespace" if len(touched) == 1 else "namespaces"
        parts.append(f"{len(touched)} {noun} (+{changes.added} -{changes.removed} rules)")
    if decisions_changed:
        noun = "decision" if len(decisions_changed) == 1 else "decisions"
        parts.append(f"{len(decisions_changed)} {noun}")
    subject = "flowfence: " + ("; ".join(parts) if parts else "update policies")
    body = []
    for c in touched:
        line = f"- {c.namespace}: {c.change}"
        if c.added_rules or c.removed_rules:
            line += f", +{len(c.added_rules)} -{len(c.removed_rules)} rules"
        if c.kind != c.previous_kind and c.kind and c.previous_kind:
            line += f", {c.previous_kind} -> {c.kind}"
        elif c.staged_action != c.previous_staged_action and c.staged_action:
            line += f", stagedAction {c.previous_staged_action} -> {c.staged_action}"
        body.append(line)
        for rule in (*c.added_rules, *c.removed_rules):
            sign = "+" if rule in c.added_rules else "-"
            ports = ",".join(rule.ports) or "any port"
            body.append(f"  {sign} {rule.direction} {rule.protocol} {ports} {rule.peer}")
    body += [f"- decision: {d}" for d in decisions_changed]
    if len(body) > MAX_BODY_LINES:
        rest = len(body) - MAX_BODY_LINES
        body = [*body[:MAX_BODY_LINES], f"... and {rest} more lines; see report.md"]
    return subject + ("\n\n" + "\n".join(body) if body else "") + "\n"


def commit(out: Path, text: str, only: Sequence[str] = COMMITTED) -> CommitResult:
    """Commit flowfence's paths in DIR (`only` those) when a policy or a decision changed."""
    work_tree(out)
    if not pending(out, [p for p in TRIGGERS if p in only]):
        return CommitResult(False, None, text)
    paths = [p for p in only if (out / p).exists() or _tracked(out, p)]
    git(out, "add", "--all", "--", *paths)
    # --only: commit these paths as they are now, whatever else the index holds.
    git(out, "commit", "--quiet", "--only", "--no-verify", "-F", "-", "--", *paths, stdin=text)
    head = git(out, "rev-parse", "HEAD").stdout.strip()
    return CommitResult(True, head, text)


def preflight(out: Path, *, push_too: bool = False) -> None:
    """Refuse what would make `--git-commit` go astray or `--git-push` fail, before anything
    is written or committed: DIR outside a work tree, a detached HEAD (the commit would be on
    no branch, and `git push` has nothing to push it to), and for `--git-push` no remote to
    push to, or one that does not answer (`git ls-remote`, with git's own credentials)."""
    top = work_tree(out)
    flag = "--git-push" if push_too else "--git-commit"
    if not _branch(out):
        at = git(out, "rev-parse", "--short", "HEAD", check=False).stdout.strip() or "no commit"
        raise ConfigError(
            f"{flag}: HEAD is detached (at {at}) in {top}: a commit there would be on no branch; "
            "check out the branch to commit to (git switch BRANCH) and run again"
        )
    if not push_too:
        return
    remote = _push_remote(out)
    answer = git(out, "ls-remote", "--heads", "--", remote, check=False)
    if answer.returncode != 0:
        why = [line for line in answer.stderr.splitlines() if line.strip()]
        raise RuntimeFailure(
            f"--git-push: cannot reach remote {remote!r} ({' / '.join(why) or 'no answer'}); "
            "nothing was written or committed"
        )


def _branch(out: Path) -> str:
    """The branch HEAD is on ('' when detached); an unborn branch counts."""
    return git(out, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()


def _push_remote(out: Path) -> str:
    """The remote `push` sends to: the branch's upstream remote, else `origin`, else the first."""
    configured = git(out, "config", "--get", f"branch.{_branch(out)}.remote", check=False)
    if configured.returncode == 0 and configured.stdout.strip():
        return configured.stdout.strip()
    remotes = git(out, "remote").stdout.split()
    if not remotes:
        raise ConfigError("--git-push: the repository has no remote (git remote add origin URL)")
    return "origin" if "origin" in remotes else remotes[0]


def push(out: Path) -> str:
    """Push the current branch to its upstream, or to `origin` when it has none."""
    upstream = git(out, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
    if upstream.returncode == 0:
        git(out, "push", "--quiet")
        return upstream.stdout.strip()
    remote = _push_remote(out)
    branch = _branch(out)
    if not branch:
        raise RuntimeFailure("--git-push: HEAD is detached; check out a branch to push")
    git(out, "push", "--quiet", "--set-upstream", remote, f"HEAD:refs/heads/{branch}")
    return f"{remote}/{branch}"


def committed_policies(out: Path) -> dict[str, bytes]:
    """The files under `out/policies/` as HEAD has them (relative to `out`), read in one go."""
    if git(out, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        return {}
    prefix = git(out, "rev-parse", "--show-prefix").stdout.strip()
    listed = git(out, "ls-tree", "-r", "-z", "--full-name", "HEAD", "--", "policies").stdout
    names = [n.split("\t", 1)[1] for n in listed.split("\0") if "\t" in n]
    if not names:
        return {}
    done = subprocess.run(
        [_git_binary(), "cat-file", "--batch"],
        cwd=out,
        input="".join(f"HEAD:{n}\n" for n in names).encode(),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeFailure(f"git cat-file failed: {done.stderr.decode(errors='replace')}")
    files: dict[str, bytes] = {}
    data, at = done.stdout, 0
    for name in names:
        header_end = data.index(b"\n", at)
        size = int(data[at:header_end].split()[2])
        files[name.removeprefix(prefix)] = data[header_end + 1 : header_end + 1 + size]
        at = header_end + 1 + size + 1
    return files


def publish(out: Path, *, push_too: bool = False, decisions_only: bool = False) -> CommitResult:
    """`--git-commit` (and `--git-push`): commit DIR's changes against HEAD with a summary.
    `preflight` runs first: nothing is committed that could not go on a branch and be pushed.
    `decisions_only`: commit `decisions.yaml` alone (`flowfence serve`: the policies on disk
    are the last run's, or someone's hand edit, which only a run may replace)."""
    preflight(out, push_too=push_too)
    if decisions_only:
        text = message(changes.compute({}, {}), decision_changes(out))
        result = commit(out, text, only=(DECISIONS,))
    else:
        change_set = changes.compute(committed_policies(out), changes.read_policies(out))
        result = commit(out, message(change_set, decision_changes(out)))
    if push_too:
        push(out)
        return CommitResult(result.committed, result.commit, result.message, pushed=True)
    return result
