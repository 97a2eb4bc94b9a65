"""Calico policy-hit strings (`enforced_policies` / `pending_policies`) parsed into `PolicyHit`.

A hit is `<index>|<tier>|<name part>|<action>|<rule index>`. Two name-part syntaxes exist:

- Calico <= 3.31 and Calico Enterprise: the kind is implied by prefixes, e.g. `tier.name`,
  `ns/tier.name`, `ns/tier.staged:name` (also `ns/staged:tier.name`), `ns/knp.default.name`,
  `ns/staged:knp.default.name`, `kanp.adminnetworkpolicy.name`, `__PROFILE__.kns.ns`.
- Calico >= 3.32: an explicit kind, `np:ns/name`, `snp:ns/name`, `gnp:name`, `sgnp:name`,
  `knp:ns/name`, `sknp:ns/name`, `kcnp:name`, `pro:kns.ns`.

Some producers write `-` for the rule index or leave the field out; both parse as `None`.
The strings are untrusted: every component is validated (tier and namespace DNS-1123 labels,
names DNS subdomains) so a parsed hit is safe to print or embed. Anything else gives `None`;
parsing never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from flowfence.calico.names import is_dns1123_label, is_dns1123_subdomain

HitKind = Literal["np", "gnp", "knp", "kanp", "kbanp", "kcnp", "pro"]
HitAction = Literal["allow", "deny", "pass"]
HitStyle = Literal["3.32", "legacy"]

PROFILE_TIER = "__PROFILE__"
END_OF_TIER = -1
MAX_HIT_LENGTH = 1024

_NAMESPACED: frozenset[str] = frozenset({"np", "knp"})
_STAGEABLE: frozenset[str] = frozenset({"np", "gnp", "knp"})
_KIND_BY_PREFIX: dict[str, tuple[HitKind, bool]] = {
    "np": ("np", False),
    "snp": ("np", True),
    "gnp": ("gnp", False),
    "sgnp": ("gnp", True),
    "knp": ("knp", False),
    "sknp": ("knp", True),
    "kcnp": ("kcnp", False),
    "pro": ("pro", False),
}
_PREFIX_BY_KIND = {v: k for k, v in _KIND_BY_PREFIX.items()}
_ACTIONS: dict[str, HitAction] = {"allow": "allow", "deny": "deny", "pass": "pass"}
_INDEX = re.compile(r"[0-9]{1,9}")
_RULE_INDEX = re.compile(r"-?[0-9]{1,9}")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_][-A-Za-z0-9_.]{0,252}")
_KNP = "knp.default."
_KANP = "kanp.adminnetworkpolicy."
_KBANP = "kbanp.baselineadminnetworkpolicy."
_STAGED = "staged:"


@dataclass(frozen=True)
class PolicyHit:
    """One step of a policy trace. `name` is the policy name without tier or kind prefixes
    (3.32 strings carry names as created, which may still start with `<tier>.`)."""

    index: int
    tier: str
    kind: HitKind
    namespace: str | None
    name: str
    staged: bool
    action: HitAction
    rule_index: int | None

    def __post_init__(self) -> None:
        if (self.kind == "pro") != (self.tier == PROFILE_TIER):
            raise ValueError("profile hits, and only they, use tier __PROFILE__")
        if self.staged and self.kind not in _STAGEABLE:
            raise ValueError(f"kind {self.kind} has no staged form")

    @property
    def is_profile(self) -> bool:
        return self.kind == "pro"

    @property
    def is_end_of_tier(self) -> bool:
        return self.rule_index == END_OF_TIER

    @property
    def policy(self) -> str:
        """A display name: `<tier>|<3.32 kind>:[<ns>/]<name>`, e.g. `security|snp:shop/db`."""
        prefix = _PREFIX_BY_KIND.get((self.kind, self.staged), self.kind)
        ns = f"{self.namespace}/" if self.namespace else ""
        # Before 3.32 a tiered policy's name carried a `<tier>.` prefix; 3.32 traces may show it
        # or not. Strip it so one policy is one row in the report whichever format logged it.
        name = self.name.removeprefix(f"{self.tier}.") if self.tier else self.name
        return f"{self.tier}|{prefix}:{ns}{name or self.name}"


def parse_hit(text: str) -> PolicyHit | None:
    """Parse one hit string; `None` if it is malformed or any component is invalid."""
    if len(text) > MAX_HIT_LENGTH or not text.isascii():
        return None
    parts = text.split("|")
    if len(parts) == 4:
        parts.append("-")
    if len(parts) != 5:
        return None
    index_s, tier, name_part, action, rule_s = parts
    hit_action = _ACTIONS.get(action)
    if _INDEX.fullmatch(index_s) is None or hit_action is None:
        return None
    if tier != PROFILE_TIER and not is_dns1123_label(tier):
        return None
    rule_index: int | None = None
    if rule_s != "-":
        if _RULE_INDEX.fullmatch(rule_s) is None or int(rule_s) < -2:
            return None
        rule_index = int(rule_s)
    head, colon, rest = name_part.partition(":")
    if colon and head in _KIND_BY_PREFIX:
        named = _name_part_332(head, rest)
    else:
        named = _name_part_legacy(tier, name_part)
    if named is None:
        return None
    kind, namespace, name, staged = named
    if not _valid_components(kind, namespace, name):
        return None
    try:
        return PolicyHit(int(index_s), tier, kind, namespace, name, staged, hit_action, rule_index)
    except ValueError:
        return None


_Named = tuple[HitKind, str | None, str, bool]


def _name_part_332(prefix: str, rest: str) -> _Named | None:
    kind, staged = _KIND_BY_PREFIX[prefix]
    if kind in _NAMESPACED:
        namespace, slash, name = rest.partition("/")
        return (kind, namespace, name, staged) if slash else None
    return (kind, None, rest, staged)


def _name_part_legacy(tier: str, part: str) -> _Named | None:
    namespace: str | None = None
    if "/" in part:
        namespace, _, part = part.partition("/")
    if tier == PROFILE_TIER:
        if namespace is None and part.startswith(f"{PROFILE_TIER}."):
            return ("pro", None, part[len(PROFILE_TIER) + 1 :], False)
        return None
    staged = part.startswith(_STAGED)
    if staged:
        part = part[len(_STAGED) :]
    if part.startswith(_KNP):
        return ("knp", namespace, part[len(_KNP) :], staged) if tier == "default" else None
    kind: HitKind = "np" if namespace is not None else "gnp"
    if not staged and namespace is None:
        specials: tuple[tuple[str, HitKind], ...] = (
            (_KANP, "kanp"),
            (_KBANP, "kbanp"),
            (f"kcnp.{tier}.", "kcnp"),
        )
        for prefix, special in specials:
            if part.startswith(prefix):
                return (special, None, part[len(prefix) :], False)
    if not part.startswith(f"{tier}."):
        return None
    part = part[len(tier) + 1 :]
    if not staged and part.startswith(_STAGED):  # Enterprise layout `<tier>.staged:<name>`
        staged, part = True, part[len(_STAGED) :]
    return (kind, namespace, part, staged)


def _valid_components(kind: HitKind, namespace: str | None, name: str) -> bool:
    if namespace is not None and not is_dns1123_label(namespace):
        return False
    if kind == "pro":
        return _PROFILE_NAME.fullmatch(name) is not None
    return is_dns1123_subdomain(name)


def format_hit(hit: PolicyHit, style: HitStyle = "3.32") -> str:
    """The hit as Calico writes it; `parse_hit(format_hit(h, s)) == h` for every valid hit
    that the style can express (3.32 has no AdminNetworkPolicy kinds)."""
    if style == "3.32":
        prefix = _PREFIX_BY_KIND.get((hit.kind, hit.staged))
        if prefix is None:
            raise ValueError(f"kind {hit.kind} has no Calico 3.32 form")
        if (hit.kind in _NAMESPACED) != (hit.namespace is not None):
            raise ValueError(f"kind {hit.kind} namespace mismatch")
        ns = f"{hit.namespace}/" if hit.namespace is not None else ""
        name_part = f"{prefix}:{ns}{hit.name}"
    else:
        name_part = _legacy_name_part(hit)
    fields = [str(hit.index), hit.tier, name_part, hit.action]
    if hit.rule_index is not None:
        fields.append(str(hit.rule_index))
    elif style == "3.32":
        fields.append("-")
    return "|".join(fields)


def _legacy_name_part(hit: PolicyHit) -> str:
    ns = f"{hit.namespace}/" if hit.namespace is not None else ""
    staged = _STAGED if hit.staged else ""
    if hit.kind == "pro":
        return f"{PROFILE_TIER}.{hit.name}"
    if hit.kind == "knp":
        return f"{ns}{staged}{_KNP}{hit.name}"
    if hit.kind in ("kanp", "kbanp", "kcnp"):
        prefix = {"kanp": _KANP, "kbanp": _KBANP}.get(hit.kind, f"kcnp.{hit.tier}.")
        return f"{prefix}{hit.name}"
    if (hit.kind == "np") != (hit.namespace is not None):
        raise ValueError(f"kind {hit.kind} namespace mismatch")
    return f"{ns}{hit.tier}.{staged}{hit.name}"
