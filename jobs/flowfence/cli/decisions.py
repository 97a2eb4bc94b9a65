"""`flowfence accept|enforce|dismiss|reactivate NAMESPACE`: edit `DIR/decisions.yaml`.

Each command validates its input the way a hand edit is validated, writes the file atomically
and says what it did on stderr (stdout carries only data, and these commands have none). The
next `flowfence run` applies the decision.
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

HELP = {
    "accept": "Move the namespace's policy to the policy board: stagedAction Set, rules frozen, "
    "new flows reported as drift.",
    "enforce": "Enforce the namespace's policy: an enforced NetworkPolicy replaces the staged one.",
    "dismiss": "Dismiss the namespace's recommendation: no manifest is written for it.",
}


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


def _decide(
    verdict: dec.Verdict,
    namespace: str,
    reason: str | None,
    author: str | None,
    expires: str | None,
    out: Path,
    now: str | None,
) -> None:
    if reason is None or not reason.strip():
        raise ConfigError(f"--reason: required, say why you {verdict} {namespace!r}")
    moment = options.now_option(now)
    current = dec.load(out)
    updated = dec.decide(
        current,
        namespace,
        verdict,
        reason=reason,
        author=author if author is not None else default_author(out),
        decided=moment,
        expires=parse_expires(expires, moment),
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
    def command(
        namespace: Namespace,
        reason: Annotated[
            str | None, typer.Option("--reason", help="Why (required); kept in the file.")
        ] = None,
        author: Annotated[
            str | None,
            typer.Option("--author", help="Who decides; default git user.name, else $USER."),
        ] = None,
        expires: Annotated[
            str | None,
            typer.Option(
                "--expires",
                help="When the decision lapses back to learning: RFC 3339 or a duration "
                "from now (30d, 12h, 2w).",
            ),
        ] = None,
        out: Out = Path("out"),
        now: options.Now = None,
    ) -> None:
        _decide(verdict, namespace, reason, author, expires, out, now)

    command.__doc__ = HELP[verdict]
    app.command(verdict)(command)


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
