"""The edge and verdict types of the evaluator: what goes in (Edge) and what comes out (Verdict).

An Edge is one distinct edge from `edges.py` (EDGE_SCHEMA), reduced to what policy evaluation
reads. A Verdict names the deciding policy and rule as Calico 3.32's policy-hit strings do,
`<index>|<tier>|<kind>:[<ns>/]<name>|<action>|<rule>` (rule -1: the tier's default action),
and carries the whole trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from flowfence.calico.policies import Direction

HitAction: TypeAlias = Literal["allow", "deny", "pass"]
PROFILE_TIER = "__PROFILE__"


@dataclass(frozen=True)
class Endpoint:
    """One side of an edge as the flow log describes it (strings untrusted, never parsed)."""

    type: str
    namespace: str | None = None
    name: str | None = None
    ip: str | None = None
    labels: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any], prefix: str) -> Endpoint:
        """One side (`source` or `dest`) of an EDGE_SCHEMA row."""
        return cls(
            type=str(row[f"{prefix}_type"] or ""),
            namespace=row[f"{prefix}_namespace"],
            name=row[f"{prefix}_name_aggr"],
            ip=row[f"{prefix}_ip"],
            labels=tuple(row[f"{prefix}_labels"] or ()),
        )


# The columns of an EDGE_SCHEMA row that Edge.from_row reads, all that evaluation sees of it:
# each side's ENDPOINT_FIELDS (`source_type`, `dest_labels`, ...) and the EDGE_SCALARS.
ENDPOINT_FIELDS = ("type", "namespace", "name_aggr", "ip", "labels")
EDGE_SCALARS = ("proto", "dest_port", "dest_service_namespace", "dest_service_name",
                "dest_domains")  # fmt: skip
EDGE_FIELDS: tuple[str, ...] = (
    *(f"{side}_{field}" for side in ("source", "dest") for field in ENDPOINT_FIELDS),
    *EDGE_SCALARS,
)


@dataclass(frozen=True)
class Edge:
    source: Endpoint
    dest: Endpoint
    dest_port: int | None = None
    proto: str | None = None
    dest_service_namespace: str | None = None
    dest_service_name: str | None = None
    dest_domains: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Edge:
        """An Edge from one EDGE_SCHEMA row (`frame.iter_rows(named=True)`)."""

        return cls(
            source=Endpoint.from_row(row, "source"),
            dest=Endpoint.from_row(row, "dest"),
            dest_port=row["dest_port"],
            proto=row["proto"],
            dest_service_namespace=row["dest_service_namespace"],
            dest_service_name=row["dest_service_name"],
            dest_domains=tuple(row["dest_domains"] or ()),
        )

    def local(self, direction: Direction) -> Endpoint:
        """The endpoint whose policy applies: the source for egress, the dest for ingress."""
        return self.source if direction == "egress" else self.dest


@dataclass(frozen=True)
class Hit:
    index: int
    tier: str
    policy: str
    action: HitAction
    rule: int

    def __str__(self) -> str:
        return f"{self.index}|{self.tier}|{self.policy}|{self.action}|{self.rule}"

    @property
    def end_of_tier(self) -> bool:
        return self.rule == -1


@dataclass(frozen=True)
class Verdict:
    """The outcome and trace; `action` is None when nothing before `before_order` decided.

    `possible` is set (and `action` None, `hits` empty) when the outcome is undetermined: a
    peer whose address the log aggregated away, with addresses of its class (address_class.py)
    getting different outcomes; it names them (`allow`, `deny`, `none` for undecided).
    """

    direction: Direction
    action: Literal["allow", "deny"] | None
    hits: tuple[Hit, ...]
    possible: tuple[str, ...] = ()

    @property
    def undetermined(self) -> bool:
        return bool(self.possible)

    @property
    def deciding(self) -> Hit | None:
        return self.hits[-1] if self.action is not None else None

    @property
    def trace(self) -> tuple[str, ...]:
        return tuple(str(h) for h in self.hits)

    @property
    def profile(self) -> bool:
        return self.deciding is not None and self.deciding.tier == PROFILE_TIER
