"""Record a reviewer's decision in `DIR/decisions.yaml`: what `flowfence accept|enforce|dismiss|
reactivate` and the actions of `flowfence serve` both do, so a decision made in the browser is
validated, defaulted and written exactly as one made on the command line.

Each call loads the file (a broken hand edit is refused with the error that names the field),
validates the new entry as a hand edit would be, and writes the file atomically.

`accept` and `enforce` freeze `DIR/policies/NS.yaml` as it is, so they first compare it with
what flowfence last wrote (review/written.py). A file that differs (a hand edit) is refused with
its unified diff (HandEdited), unless `keep_edits` says the edit is meant: the decision then
records the digest of the file kept, so the run freezes exactly that file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flowfence.core import times
from flowfence.core.durations import parse_duration, to_timedelta
from flowfence.core.errors import ConfigError
from flowfence.review import decisions as dec
from flowfence.review import written

FREEZES = frozenset({"accept", "enforce"})  # the verdicts that freeze the file on disk


class HandEdited(ConfigError):
    """accept/enforce of a policy file that differs from what flowfence last wrote."""

    def __init__(self, message: str, diff: str) -> None:
        super().__init__(message)
        self.diff = diff


@dataclass(frozen=True)
class EditCheck:
    kept: str | None = None  # the digest of a hand edit kept with keep_edits
    diff: str = ""  # the kept edit's unified diff, "" when the file is flowfence's
    warning: str | None = None  # a record that could not be read


def check_edits(verdict: dec.Verdict, namespace: str, out: Path, keep: bool) -> EditCheck:
    """Whether `DIR/policies/NS.yaml` is what flowfence last wrote (or there is no file, or no
    record of it: the run then checks it against the state). A hand edit is refused
    (HandEdited, with its diff) unless `keep`."""
    rel = f"policies/{namespace}.yaml"
    path = out / rel
    if path.is_symlink():
        raise ConfigError(f"{path} is a symlink; flowfence freezes only files it owns")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EditCheck()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    record = written.load(out)
    entry = record.get(rel)
    if entry is None or entry.holds(data):
        return EditCheck(warning=record.problem)
    diff = written.edit_diff(rel, entry, data)
    if not keep:
        raise HandEdited(
            f"{path} differs from what flowfence last wrote (diff above); refusing to "
            f"{verdict} a hand edit: pass --keep-edits to keep it, or restore the file",
            diff,
        )
    return EditCheck(written.digest(data), diff, record.problem)


def default_author(out: Path) -> str:
    """`git config user.name` (of the repository holding DIR when there is one), else $USER."""
    git = shutil.which("git")
    if git is not None:
        where = out if out.is_dir() else Path.cwd()
        try:
            found = subprocess.run(
                [git, "config", "user.name"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            found = None
        if found is not None and found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    user = os.environ.get("USER", "").strip()
    if user:
        return user
    raise ConfigError("--author: not given, and neither `git config user.name` nor $USER is set")


def parse_expires(value: str | None, now: datetime) -> datetime | None:
    """An RFC 3339 time, or a duration from now (the settings' grammar plus weeks: 30d, 12h,
    2w, 90m, 1d12h)."""
    if value is None:
        return None
    text = value.strip()
    try:
        ahead = parse_duration(text, allow_days=True, allow_weeks=True)
    except ValueError:
        try:
            return times.parse(text)
        except times.TimeError as exc:
            raise ConfigError(
                f"--expires: {exc}; or a duration from now such as 30d, 12h or 2w"
            ) from None
    if ahead <= 0:
        raise ConfigError(f"--expires: {value!r} is not in the future")
    try:
        return now + to_timedelta(ahead)
    except OverflowError:
        raise ConfigError(f"--expires: {value!r} is too far in the future") from None


@dataclass(frozen=True)
class Recorded:
    decision: dec.Decision
    path: Path
    changed: bool  # the file's bytes changed
    edits: EditCheck = EditCheck()  # accept/enforce: the policy file's check

    def message(self, where: str | None = None) -> str:
        """What was recorded, in one line naming the file (`where`, else its path)."""
        d = self.decision
        until = f" until {times.rfc3339(d.expires)}" if d.expires else ""
        return (
            f"{d.namespace}: {d.decision}{until} by {d.author} ({where or self.path}); "
            "the next run applies it"
        )


def record(
    out: Path,
    verdict: dec.Verdict,
    namespace: str,
    *,
    reason: str | None,
    author: str | None,
    expires: str | None,
    now: datetime,
    keep_edits: bool = False,
) -> Recorded:
    """Set `namespace`'s decision to `verdict` in `out/decisions.yaml`. `author` None: the
    default author; `expires`: RFC 3339 or a duration from `now`; `keep_edits`: freeze a
    hand-edited policy file (accept/enforce) instead of refusing it."""
    if reason is None or not reason.strip():
        raise ConfigError(f"--reason: required, say why you {verdict} {namespace!r}")
    namespace = dec.check_namespace(namespace, "decision")  # before it names a path
    edits = check_edits(verdict, namespace, out, keep_edits) if verdict in FREEZES else EditCheck()
    current = dec.load(out)
    updated = dec.decide(
        current,
        namespace,
        verdict,
        reason=reason,
        author=author if author is not None else default_author(out),
        decided=now,
        expires=parse_expires(expires, now),
        keep_edits=edits.kept,
    )
    out.mkdir(parents=True, exist_ok=True)
    changed = dec.save(out, updated)
    return Recorded(updated.entries[namespace], dec.path_in(out), changed, edits)


def reactivate(out: Path, namespace: str) -> bool:
    """Remove `namespace`'s decision (back to learning); False when it had none."""
    namespace = dec.check_namespace(namespace, "reactivate")
    current = dec.load(out)
    if current.get(namespace) is None:
        return False
    dec.save(out, current.without(namespace))
    return True
