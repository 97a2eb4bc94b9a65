"""What evaluation knows of a network peer's address, including a peer the log gives none.

Calico Enterprise aggregates the addresses of network peers away by default and keeps only
Felix's label: `pvt` when the address lies in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16,
`pub` otherwise: only those three IPv4 blocks, not fc00::/7 (projectcalico/calico,
felix/collector/types/endpoint/endpoint.go, `getSubnetType`, commit
e164f1d2c8411514b4cee96a58ba10b1a2ebe84f). Such a peer is a class of addresses, not one address:
- `pvt` is RFC 1918, exactly Felix's blocks (cidr.RFC1918, flowfence's private fallback);
- `pub` is everything else, as Felix labels it: also 100.64.0.0/10, 127.0.0.0/8,
  169.254.0.0/16 (the cloud metadata service) and every IPv6 address. flowfence's own public
  fallback leaves those special blocks out, so a `pub` peer without an address replays as
  undetermined against it (allow or deny): the log cannot say whether the flow went to the
  metadata service, and calling it allowed would hide a denial (docs/review.md);
- `aws` (Calico Enterprise 2.x) is the EC2 metadata address alone (cidr.AWS_METADATA);
- a `net` peer with another label (or none) and no address may be anything.
A rule's `nets` decide a class only where they cover the whole class or none of it, and a
policy set decides it only where every address of the class gets the same outcome. So an
address-less peer is evaluated at one address per interval of the class that the relevant
CIDRs cannot split (addresses in one interval lie in exactly the same CIDRs, so evaluation
cannot tell them apart): agreeing, the class gets that verdict (the trace of the lowest
address), disagreeing, it is undetermined and names the outcomes it could have.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable
from typing import TypeAlias

from flowfence.calico import cidr
from flowfence.calico.policies import Direction, NetworkSet, Policy, Tier
from flowfence.calico.policy_rules import IPNetwork
from flowfence.calico.verdict import Verdict

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
# (IP version, first, last) as integers: a closed interval of one family.
Span: TypeAlias = tuple[int, int, int]

_V4_LAST = 2**32 - 1
_V6_LAST = 2**128 - 1


def _spans(blocks: Iterable[str]) -> list[Span]:
    nets = sorted(ipaddress.IPv4Network(b) for b in blocks)
    return [(4, int(n.network_address), int(n.broadcast_address)) for n in nets]


def _complement(blocks: Iterable[str]) -> tuple[Span, ...]:
    """IPv4 minus `blocks` (which may nest or overlap)."""
    spans: list[Span] = []
    start = 0
    for _, first, last in _spans(blocks):
        if first > start:
            spans.append((4, start, first - 1))
        start = max(start, last + 1)
    if start <= _V4_LAST:
        spans.append((4, start, _V4_LAST))
    return tuple(spans)


PRIVATE: tuple[Span, ...] = tuple(_spans(cidr.RFC1918))
PUBLIC: tuple[Span, ...] = (*_complement(cidr.RFC1918), (6, 0, _V6_LAST))
ANY: tuple[Span, ...] = ((4, 0, _V4_LAST), (6, 0, _V6_LAST))
_AWS_INT = int(ipaddress.IPv4Address(cidr.AWS_METADATA))
_AWS: tuple[Span, ...] = ((4, _AWS_INT, _AWS_INT),)


def parse_ip(text: str | None) -> IPAddress | None:
    """The address evaluation sees in a flow log's IP text (None: no usable address)."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def peer_class(kind: str, name: str | None, ip: str | None) -> tuple[Span, ...] | None:
    """The addresses a `net` peer without a usable address may have (None: not such a peer)."""
    if kind != "net" or parse_ip(ip) is not None:
        return None
    if name == "pvt":
        return PRIVATE
    if name == "pub":
        return PUBLIC
    if name == "aws":
        return _AWS
    return ANY


def class_key(name: str | None) -> str:
    """The edge-class key of an address-less `net` peer: its label keeps the class apart."""
    return f"none:{name if name in ('pvt', 'pub', 'aws') else '-'}"


def cuts(
    selecting: Iterable[tuple[Tier, tuple[Policy, ...]]],
    direction: Direction,
    network_sets: Iterable[NetworkSet],
) -> list[IPNetwork]:
    """The CIDRs that can tell a remote peer's addresses apart where `selecting` (the policies
    that apply, per tier) decide: their rules' remote-side nets and notNets, and the network
    sets' nets when a rule has a selector (a selector sees an address by the sets holding it)."""
    found: list[IPNetwork] = []
    selectors = False
    for _, policies in selecting:
        for policy in policies:
            for rule in policy.rules(direction):
                entity = rule.destination if direction == "egress" else rule.source
                found += (*entity.nets, *entity.not_nets)
                selectors = selectors or entity.selects_endpoints or entity.not_selector is not None
    if selectors:
        found += (n for s in network_sets for n in s.nets)
    return found


def representatives(spans: Iterable[Span], nets: Iterable[IPNetwork]) -> list[IPAddress]:
    """One address per interval of `spans` that no CIDR of `nets` splits (its first one)."""
    cuts: dict[int, set[int]] = {4: set(), 6: set()}
    for net in nets:
        cuts[net.version] |= {int(net.network_address), int(net.broadcast_address) + 1}
    ordered = {v: sorted(c) for v, c in cuts.items()}
    out: list[IPAddress] = []
    for version, first, last in spans:
        edges = ordered[version]
        starts = [
            first,
            *edges[bisect.bisect_right(edges, first) : bisect.bisect_right(edges, last)],
        ]
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        out.extend(make(s) for s in starts)
    return out


def class_verdict(
    addresses: Iterable[IPAddress], evaluate_at: Callable[[IPAddress], Verdict]
) -> Verdict:
    """The verdict every address shares, or an undetermined one naming the outcomes seen.

    Stops once both allow and deny were seen: the class is undetermined whatever follows.
    """
    first: Verdict | None = None
    seen: dict[str, None] = {}
    for address in addresses:
        verdict = evaluate_at(address)
        first = first or verdict
        seen[verdict.action or "none"] = None
        if "allow" in seen and "deny" in seen:
            break
    if first is None:
        raise ValueError("an address class without addresses")
    if len(seen) == 1:
        return first
    return Verdict(first.direction, None, (), possible=tuple(sorted(seen)))


def within(
    ip: IPAddress | None, set_nets: tuple[IPNetwork, ...], nets: tuple[IPNetwork, ...]
) -> bool:
    """A rule's `nets` match: the address lies in one, or (a network-set peer, whose addresses
    flows do not carry) every CIDR of the set lies inside the rule's nets."""
    if ip is not None:
        return any(ip in n for n in nets)
    return bool(set_nets) and all(
        any(s.version == n.version and s.subnet_of(n) for n in nets)  # type: ignore[arg-type]
        for s in set_nets
    )


def overlaps(
    ip: IPAddress | None, set_nets: tuple[IPNetwork, ...], nets: tuple[IPNetwork, ...]
) -> bool:
    """A rule's `notNets` exclude the peer: its address, or any address of its set, is in one."""
    if ip is not None:
        return any(ip in n for n in nets)
    return any(s.version == n.version and s.overlaps(n) for s in set_nets for n in nets)
