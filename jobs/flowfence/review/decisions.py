"""The decisions file `DIR/decisions.yaml`: what reviewers decided per namespace.

It is meant to be committed and reviewed like code, so it is plain YAML with a commented
header, namespaces sorted, and every hand edit validated with an error that names the
namespace and the field. A decision is one of

- `accept`: Calico's "move to the policy board": the staged policy gets `stagedAction: Set`
  and the engine stops changing its rules (new flows show up as drift in the report);
- `enforce`: a `NetworkPolicy` with the same name and spec replaces the staged one;
- `dismiss`: no manifest for the namespace (`stagedAction: Ignore` in the state);

each with a reason, an author and an optional expiry after which the namespace lapses back
to learning. `keep_edits` records that the decider saw the policy file differ from what
flowfence last wrote (a hand edit) and kept it (`--keep-edits`): the SHA-256 of the file kept,
so a later edit is not kept with it (review/written.py). Reactivating a namespace removes its
entry. flowfence never rewrites this file during a run: an expired entry stays until someone
removes it, and the report says it lapsed.
How a run applies the decisions to its policies is apply_decisions.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from flowfence.calico import names
from flowfence.core import atomic, times
from flowfence.core.errors import ConfigError

Verdict = Literal["accept", "enforce", "dismiss"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
FILE_NAME = "decisions.yaml"
API_VERSION = "flowfence.io/v1"
KIND = "Decisions"
# The staged action each decision gives the namespace's policy (Calico's field values).
STAGED_ACTION: Mapping[Verdict, str] = {"accept": "Set", "enforce": "Set", "dismiss": "Ignore"}
_FIELDS = ("decision", "reason", "author", "decided", "expires", "keep_edits")
_KEEP = re.compile(r"sha256:([0-9a-f]{64})")
_MAX_TEXT = 1024

HEADER = """\
# flowfence decisions: review and commit this file like code.
#
# One entry per namespace under `namespaces:`:
#   decision: accept | enforce | dismiss
#     accept   the staged policy gets stagedAction Set and stops changing; new flows it does
#              not cover are reported as drift
#     enforce  an enforced projectcalico.org/v3 NetworkPolicy replaces the staged policy
#     dismiss  no manifest for the namespace (stagedAction Ignore)
#   reason:   why (required)
#   author:   who decided (required)
#   decided:  when (RFC 3339, optional)
#   expires:  RFC 3339 time after which the namespace lapses back to learning (optional)
#   keep_edits: sha256:<digest> of a hand-edited policy file the decider kept (--keep-edits);
#             without it, accept/enforce never freeze a file flowfence did not write
#
# Edit by hand or with `flowfence accept|enforce|dismiss|reactivate NAMESPACE`.
"""


@dataclass(frozen=True)
class Decision:
    namespace: str
    decision: Verdict
    reason: str
    author: str
    decided: datetime | None = None
    expires: datetime | None = None
    keep_edits: str | None = None  # SHA-256 (hex) of the hand-edited policy file kept

    def active(self, now: datetime) -> bool:
        """False once the expiry has passed: the namespace is back to learning."""
        return self.expires is None or now < self.expires

    @property
    def staged_action(self) -> str:
        return STAGED_ACTION[self.decision]


@dataclass(frozen=True)
class Decisions:
    entries: Mapping[str, Decision]

    def get(self, namespace: str) -> Decision | None:
        return self.entries.get(namespace)

    def active(self, now: datetime) -> dict[str, Decision]:
        return {ns: d for ns, d in sorted(self.entries.items()) if d.active(now)}

    def expired(self, now: datetime) -> dict[str, Decision]:
        return {ns: d for ns, d in sorted(self.entries.items()) if not d.active(now)}

    def with_decision(self, decision: Decision) -> Decisions:
        return Decisions({**self.entries, decision.namespace: decision})

    def without(self, namespace: str) -> Decisions:
        return Decisions({ns: d for ns, d in self.entries.items() if ns != namespace})


EMPTY = Decisions({})


def path_in(out: Path) -> Path:
    return out / FILE_NAME


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: required, a non-empty string")
    if len(value) > _MAX_TEXT:
        raise ConfigError(f"{where}: longer than {_MAX_TEXT} characters")
    if any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise ConfigError(f"{where}: control characters are not allowed")
    return value.strip()


def check_namespace(namespace: object, where: str) -> str:
    if not isinstance(namespace, str) or not names.is_dns1123_label(namespace):
        raise ConfigError(f"{where}: namespace {namespace!r} is not a DNS-1123 label")
    return namespace


def parse_entry(namespace: str, raw: object, where: str) -> Decision:
    at = f"{where}: namespace {namespace!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{at}: expected a mapping with decision, reason and author")
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        raise ConfigError(f"{at}: unknown field {unknown[0]!r} (expected {', '.join(_FIELDS)})")
    verdict = raw.get("decision")
    if verdict not in VERDICTS:
        raise ConfigError(
            f"{at}: field 'decision': expected one of {', '.join(VERDICTS)}, got {verdict!r}"
        )
    decided = raw.get("decided")
    expires = raw.get("expires")
    keep = raw.get("keep_edits")
    kept = _KEEP.fullmatch(keep) if isinstance(keep, str) else None
    if keep is not None and kept is None:
        raise ConfigError(f"{at}: field 'keep_edits': expected sha256:<64 hex digits>")
    if kept is not None and verdict == "dismiss":
        raise ConfigError(f"{at}: field 'keep_edits': only accept and enforce keep a policy")
    return Decision(
        namespace=namespace,
        decision=verdict,
        reason=_text(raw.get("reason"), f"{at}: field 'reason'"),
        author=_text(raw.get("author"), f"{at}: field 'author'"),
        decided=None if decided is None else times.parse_field(decided, f"{at}: field 'decided'"),
        expires=None if expires is None else times.parse_field(expires, f"{at}: field 'expires'"),
        keep_edits=None if kept is None else kept.group(1),
    )


def parse(text: str, where: str = FILE_NAME) -> Decisions:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: malformed YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    if doc is None:
        return EMPTY
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a mapping with `namespaces:`")
    unknown = sorted(str(k) for k in doc if k not in ("apiVersion", "kind", "namespaces"))
    if unknown:
        raise ConfigError(f"{where}: unknown top-level field {unknown[0]!r}")
    if doc.get("apiVersion", API_VERSION) != API_VERSION:
        raise ConfigError(f"{where}: apiVersion must be {API_VERSION}, got {doc['apiVersion']!r}")
    if doc.get("kind", KIND) != KIND:
        raise ConfigError(f"{where}: kind must be {KIND}, got {doc['kind']!r}")
    raw = doc.get("namespaces") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: `namespaces` must map namespace names to decisions")
    entries: dict[str, Decision] = {}
    for key, value in raw.items():
        namespace = check_namespace(key, where)
        entries[namespace] = parse_entry(namespace, value, where)
    return Decisions(dict(sorted(entries.items())))


def load(out: Path) -> Decisions:
    """The decisions in `out/decisions.yaml`; none when the file does not exist."""
    path = path_in(out)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return EMPTY
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return parse(text, str(path))


def to_dict(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "decision": decision.decision,
        "reason": decision.reason,
        "author": decision.author,
    }
    if decision.decided is not None:
        out["decided"] = times.rfc3339(decision.decided)
    if decision.expires is not None:
        out["expires"] = times.rfc3339(decision.expires)
    if decision.keep_edits is not None:
        out["keep_edits"] = f"sha256:{decision.keep_edits}"
    return out


def dumps(decisions: Decisions) -> str:
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "namespaces": {ns: to_dict(d) for ns, d in sorted(decisions.entries.items())},
    }
    # Times are written as quoted strings so that every YAML reader keeps them as text.
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return HEADER + body


def save(out: Path, decisions: Decisions) -> bool:
    """Write the file atomically; False when its bytes would not change."""
    return atomic.write_text(path_in(out), dumps(decisions))


def decide(
    decisions: Decisions,
    namespace: str,
    verdict: Verdict,
    *,
    reason: str,
    author: str,
    decided: datetime | None = None,
    expires: datetime | None = None,
    keep_edits: str | None = None,
) -> Decisions:
    """A new Decisions with `namespace` set to `verdict` (validated like a hand edit);
    `keep_edits` the SHA-256 of a hand-edited policy file kept with it."""
    where = "decision"
    namespace = check_namespace(namespace, where)
    if expires is not None and decided is not None and expires <= decided:
        raise ConfigError(
            f"--expires {times.rfc3339(expires)} is not after now ({times.rfc3339(decided)})"
        )
    decision = Decision(namespace, verdict, reason, author, decided, expires, keep_edits)
    entry = parse_entry(namespace, to_dict(decision), where)
    return decisions.with_decision(entry)
