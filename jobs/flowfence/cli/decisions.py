"""`flowfence accept|enforce|dismiss|reactivate NAMESPACE`: edit `DIR/decisions.yaml`.

Each command validates its input the way a hand edit is validated, writes the file atomically
and says what it did on stderr (stdout carries only data, and these commands have none). The
next `flowfence run` applies the decision.

`accept` and `enforce` freeze `DIR/policies/NS.yaml` as it is, so they first compare it with
what flowfence last wrote (review/written.py). A file that differs (a hand edit) is shown as a
unified diff on stderr and refused, unless `--keep-edits` says the edit is meant: the decision
then records the digest of the file kept, so the run freezes exactly that file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from flowfence.cli import options
from flowfence.core import times
from flowfence.core.durations import parse_duration, to_timedelta
from flowfence.core.errors import ConfigError
from flowfence.review import decisions as dec
from flowfence.review import written

HELP = {
    "accept": "Move the namespace's policy to the policy board: stagedAction Set, rules frozen, "
    "new flows reported as drift.",
    "enforce": "Enforce the namespace's policy: an enforced NetworkPolicy replaces the staged one.",
    "dismiss": "Dismiss the namespace's recommendation: no manifest is written for it.",
}
KEEP_HELP = (
    "Keep a hand edit: freeze policies/NS.yaml although it differs from what flowfence last "
    "wrote (the difference is shown). Without it, an edited file is refused."
)
FREEZES = frozenset({"accept", "enforce"})  # the verdicts that freeze the file on disk


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


Namespace = Annotated[str, typer.Argument(help="The namespace the decision is about.")]
Out = Annotated[
    Path, typer.Option("--out", help="Output directory holding decisions.yaml (as for run).")
]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (required); kept in the file.")]
Author = Annotated[
    str | None, typer.Option("--author", help="Who decides; default git user.name, else $USER.")
]
Expires = Annotated[
    str | None,
    typer.Option(
        "--expires",
        help="When the decision lapses back to learning: RFC 3339 or a duration "
        "from now (30d, 12h, 2w).",
    ),
]
KeepEdits = Annotated[bool, typer.Option("--keep-edits", help=KEEP_HELP)]


def check_edits(verdict: dec.Verdict, namespace: str, out: Path, keep: bool) -> str | None:
    """The digest of `DIR/policies/NS.yaml` when it is a hand edit kept with --keep-edits;
    None when it is what flowfence last wrote (or there is no file, or no record of it: the
    run then checks it against the state). A hand edit without --keep-edits is shown as a
    diff on stderr and refused."""
    rel = f"policies/{namespace}.yaml"
    path = out / rel
    if path.is_symlink():
        raise ConfigError(f"{path} is a symlink; flowfence freezes only files it owns")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    record = written.load(out)
    entry = record.get(rel)
    if record.problem is not None:
        typer.echo(f"flowfence: warning: {record.problem}", err=True)
    if entry is None or entry.holds(data):
        return None
    typer.echo(written.edit_diff(rel, entry, data), err=True, nl=False)
    if not keep:
        raise ConfigError(
            f"{path} differs from what flowfence last wrote (diff above); refusing to "
            f"{verdict} a hand edit: pass --keep-edits to keep it, or restore the file"
        )
    typer.echo(f"flowfence: {namespace}: keeping the hand edit above (--keep-edits)", err=True)
    return written.digest(data)


def _decide(
    verdict: dec.Verdict,
    namespace: str,
    reason: str | None,
    author: str | None,
    expires: str | None,
    out: Path,
    now: str | None,
    keep_edits: bool = False,
) -> None:
    if reason is None or not reason.strip():
        raise ConfigError(f"--reason: required, say why you {verdict} {namespace!r}")
    namespace = dec.check_namespace(namespace, "decision")  # before it names a path
    moment = options.now_option(now)
    kept = check_edits(verdict, namespace, out, keep_edits) if verdict in FREEZES else None
    current = dec.load(out)
    updated = dec.decide(
        current,
        namespace,
        verdict,
        reason=reason,
        author=author if author is not None else default_author(out),
        decided=moment,
        expires=parse_expires(expires, moment),
        keep_edits=kept,
    )
    out.mkdir(parents=True, exist_ok=True)
    dec.save(out, updated)
    entry = updated.entries[namespace]
    until = f" until {times.rfc3339(entry.expires)}" if entry.expires else ""
    typer.echo(
        f"flowfence: {namespace}: {verdict}{until} by {entry.author} "
        f"({dec.path_in(out)}); the next run applies it",
        err=True,
    )


def _register_verdict(app: typer.Typer, verdict: dec.Verdict) -> None:
    def freeze(
        namespace: Namespace,
        reason: Reason = None,
        author: Author = None,
        expires: Expires = None,
        out: Out = Path("out"),
        now: options.Now = None,
        keep_edits: KeepEdits = False,
    ) -> None:
        _decide(verdict, namespace, reason, author, expires, out, now, keep_edits)

    def command(
        namespace: Namespace,
        reason: Reason = None,
        author: Author = None,
        expires: Expires = None,
        out: Out = Path("out"),
        now: options.Now = None,
    ) -> None:
        _decide(verdict, namespace, reason, author, expires, out, now)

    chosen = freeze if verdict in FREEZES else command
    chosen.__doc__ = HELP[verdict]
    app.command(verdict)(chosen)


def register(app: typer.Typer) -> None:
    for verdict in dec.VERDICTS:
        _register_verdict(app, verdict)

    @app.command("reactivate")
    def reactivate(namespace: Namespace, out: Out = Path("out")) -> None:
        """Remove the namespace's decision: its policy goes back to learning."""
        namespace = dec.check_namespace(namespace, "reactivate")
        current = dec.load(out)
        if current.get(namespace) is None:
            typer.echo(f"flowfence: {namespace}: no decision to remove; already learning", err=True)
            return
        dec.save(out, current.without(namespace))
        typer.echo(f"flowfence: {namespace}: back to learning ({dec.path_in(out)})", err=True)
