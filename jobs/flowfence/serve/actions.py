"""The actions of `flowfence serve`: accept, enforce, dismiss or reactivate a namespace from its
page. They go through review/recording.py, the code behind `flowfence accept|enforce|dismiss|
reactivate`, so a form is validated and written exactly as the command line would (a missing
reason, a bad expiry or a broken hand edit is refused with the same message), and, with
`--git-commit`, committed as a run commits (review/gitops.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flowfence.core import times
from flowfence.core.errors import ConfigError
from flowfence.review import decisions as dec
from flowfence.review import gitops, recording
from flowfence.serve.pages import Site

ACTIONS = (*dec.VERDICTS, "reactivate")
_MAX_FIELD = 2048  # longer than any valid reason (decisions.py allows 1024)


@dataclass(frozen=True)
class Done:
    message: str
    committed: str | None = None  # the commit, with --git-commit


def _field(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > _MAX_FIELD:
        raise ConfigError(f"{name}: longer than {_MAX_FIELD} characters")
    # A browser sends a textarea's line breaks as CRLF; decisions.yaml keeps plain newlines.
    return value.replace("\r\n", "\n").strip()


def act(site: Site, namespace: str, form: Mapping[str, str]) -> Done:
    """Record the form's decision for `namespace`; ConfigError (shown on the page) when the
    command line would refuse it too."""
    action = form.get("action", "")
    if action not in ACTIONS:
        raise ConfigError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    if site.git_commit:
        gitops.preflight(site.out)  # a detached HEAD refuses before decisions.yaml changes
    if action == "reactivate":
        removed = recording.reactivate(site.out, namespace)
        message = (
            f"{namespace}: back to learning; the next run applies it"
            if removed
            else f"{namespace}: no decision to remove; already learning"
        )
    else:
        verdict: dec.Verdict = action  # type: ignore[assignment]  # checked against ACTIONS
        try:
            done = recording.record(
                site.out,
                verdict,
                namespace,
                reason=_field(form, "reason"),
                author=_field(form, "author"),
                expires=_field(form, "expires"),
                now=site.now if site.now is not None else times.now(),
            )
        except recording.HandEdited:
            # The page has no --keep-edits: keeping an edit is a choice made reading its diff.
            raise ConfigError(
                f"policies/{namespace}.yaml differs from what flowfence last wrote (a hand "
                f"edit); the page does not {verdict} hand edits: restore the file, or read "
                f"the diff with `flowfence {verdict} {namespace} --keep-edits`"
            ) from None
        message = done.message(dec.FILE_NAME)  # the page names no server path
    if not site.git_commit:
        return Done(message)
    # Only decisions.yaml: the policies on disk are the last run's or a hand edit, and a
    # click on one namespace must not commit an edit of another.
    result = gitops.publish(site.out, decisions_only=True)
    return Done(message, result.commit if result.committed else None)
