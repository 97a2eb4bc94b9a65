"""`flowfence accept|enforce|dismiss|reactivate NAMESPACE`: edit `DIR/decisions.yaml`.

Each command validates its input the way a hand edit is validated, writes the file atomically
(review/recording.py, which `flowfence serve` shares) and says what it did on stderr (stdout
carries only data, and these commands have none). The next `flowfence run` applies the
decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowfence.cli import options
from flowfence.review import decisions as dec
from flowfence.review import recording

HELP = {
    "accept": "Move the namespace's policy to the policy board: stagedAction Set, rules frozen, "
    "new flows reported as drift.",
    "enforce": "Enforce the namespace's policy: an enforced NetworkPolicy replaces the staged one.",
    "dismiss": "Dismiss the namespace's recommendation: no manifest is written for it.",
}


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
    moment = options.now_option(now)
    done = recording.record(
        out, verdict, namespace, reason=reason, author=author, expires=expires, now=moment
    )
    typer.echo(f"flowfence: {done.message()}", err=True)


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
        if not recording.reactivate(out, namespace):
            typer.echo(f"flowfence: {namespace}: no decision to remove; already learning", err=True)
            return
        typer.echo(f"flowfence: {namespace}: back to learning ({dec.path_in(out)})", err=True)
