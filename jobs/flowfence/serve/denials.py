"""The flows a namespace's policy would deny if enforced: the replay stage (replay/audit.py)
run over the edges the learning state stores, with this policy and its tier only.

The policy is the file in `DIR/policies/` (for an accepted or enforced namespace, the frozen
rules); the edges are the state's sealed edges, the window the recommendations were learned
from. Staged policies are previewed as enforced, as `flowfence replay` does. Results are kept
per (state generation, policy file), so a page reload does not replay again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from flowfence.calico import policy_docs
from flowfence.core import times
from flowfence.core.errors import FlowfenceError
from flowfence.replay import audit, render
from flowfence.state import tables

LIMIT = 50  # edges listed, worst first


@dataclass(frozen=True)
class Denied:
    direction: str
    source: str
    dest: str
    port: str
    flows: int
    bytes: int
    policy: str
    last_seen: str


@dataclass(frozen=True)
class Denials:
    available: bool
    note: str  # why nothing is shown, or what was replayed
    edges: tuple[Denied, ...] = ()
    total_edges: int = 0
    total_flows: int = 0
    undetermined: int = 0
    decided_earlier: int = 0


def _row(d: audit.DeniedEdge) -> Denied:
    return Denied(
        direction=d.direction,
        source=render.endpoint_text(d.source),
        dest=render.endpoint_text(d.dest),
        port=render.port_text(d),
        flows=d.flows,
        bytes=d.bytes,
        policy=d.hit,
        last_seen=times.rfc3339(d.last_seen) if d.last_seen else "",
    )


@functools.lru_cache(maxsize=64)
def _replay(key: _Key) -> Denials:
    loaded = tables.load(key.state_dir)
    edges = loaded.edges.filter(
        (pl.col("source_namespace") == key.namespace) | (pl.col("dest_namespace") == key.namespace)
    )
    loader = policy_docs.Loader()
    # The cluster's own policies first (earlier tiers, network sets), then our tier and the
    # namespace's policy: the folder's other files are other namespaces' business.
    for path in (key.existing, key.tier, key.policy):
        if path is not None and path.exists():
            loader.add_path(path)
    report = audit.compute(edges, loader.build(), tier=key.tier_name)
    s = report.summary
    return Denials(
        available=True,
        note=f"replayed over {s.evaluated_edges} stored edges ({s.evaluated_flows} flows) "
        f"of state generation {key.generation}",
        edges=tuple(_row(d) for d in report.denied[:LIMIT]),
        total_edges=s.denied_edges,
        total_flows=s.denied_flows,
        undetermined=s.undetermined_edges,
        decided_earlier=s.decided_earlier_edges,
    )


@dataclass(frozen=True)
class _Key:
    state_dir: Path
    generation: int
    namespace: str
    policy: Path
    tier: Path
    tier_name: str
    existing: Path | None
    stamp: tuple[float, int]  # the policy file's mtime and size: an edited file replays again


def denials(
    out: Path,
    state_dir: Path,
    namespace: str,
    manifest: str | None,
    *,
    tier_name: str,
    existing: Path | None = None,
) -> Denials:
    """What the namespace's policy file would deny over the stored edges (worst first);
    `existing`: the cluster's policies (`run --existing-policies`), for earlier tiers and the
    network sets the rules name."""
    if manifest is None:
        return Denials(False, "no policy file for this namespace")
    policy = out / manifest
    if not policy.is_file():
        return Denials(False, f"{manifest} is not in the output directory")
    manifest_json = tables.read_manifest(state_dir) if state_dir.is_dir() else None
    if manifest_json is None:
        return Denials(False, f"no learning state at {state_dir} (serve --state PATH)")
    stat = policy.stat()
    key = _Key(
        state_dir, int(manifest_json.get("generation", 0)), namespace, policy,
        policy.parent / "tier.yaml", tier_name, existing, (stat.st_mtime, stat.st_size),
    )  # fmt: skip
    try:
        return _replay(key)
    except FlowfenceError as exc:
        return Denials(False, f"replay failed: {exc}")
