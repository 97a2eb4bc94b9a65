"""`flowfence accept|enforce|dismiss|reactivate NAMESPACE`: edit `DIR/decisions.yaml`.

Each command validates its input the way a hand edit is validated, writes the file atomically
(review/recording.py, which `flowfence serve` shares) and says what it did on stderr (stdout
carries only data, and these commands have none). The next `flowfence run` applies the
decision. `accept` and `enforce` refuse a hand-edited policy file, showing its diff, unless
`--keep-edits` (recording.check_edits).
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
KEEP_HELP = (
    "Keep a hand edit: freeze policies/NS.yaml although it differs from what flowfence last "
    "wrote (the difference is shown). Without it, an edited file is refused."
)


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
    moment = options.now_option(now)
    try:
        done = recording.record(
            out,
            verdict,
            namespace,
            reason=reason,
            author=author,
            expires=expires,
            now=moment,
            keep_edits=keep_edits,
        )
    except recording.HandEdited as refused:
        typer.echo(refused.diff, err=True, nl=False)
        raise
    edits = done.edits
    if edits.warning is not None:
        typer.echo(f"flowfence: warning: {edits.warning}", err=True)
    if edits.kept is not None:
        typer.echo(edits.diff, err=True, nl=False)
        typer.echo(
            f"flowfence: {done.decision.namespace}: keeping the hand edit above (--keep-edits)",
            err=True,
        )
    typer.echo(f"flowfence: {done.message()}", err=True)


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

    # dismiss freezes nothing, so it has no --keep-edits
    chosen = freeze if verdict in recording.FREEZES else command
    chosen.__doc__ = HELP[verdict]
    app.command(verdict)(chosen)


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
