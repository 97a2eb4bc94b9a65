"""CIDR arithmetic for rule peers: lossless collapsing and capped, minimal-widening aggregation.

`aggregate` turns observed addresses into at most `cap` prefixes per IP family. It starts from
the lossless collapse of the addresses and then repeatedly merges the pair of neighbouring
blocks whose smallest common supernet adds the fewest addresses that were not already covered.
Ties go to the lower network address, then the longer prefix, so the result depends only on
the set of inputs, never on their order. With `within`, a merge is allowed only when the
supernet stays inside one of the given containers (RFC 1918 for private peers): private
addresses in 10/8 and 192.168/16 must never be widened to a prefix that also covers public space.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Family = Literal[4, 6]

RFC1918: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
PRIVATE_V6: tuple[str, ...] = ("fc00::/7",)
# What "any public address" must exclude so that a fallback never admits the cluster itself,
# the node's loopback or link-local services (metadata endpoints live at 169.254.169.254).
NON_PUBLIC_V4: tuple[str, ...] = (
    *RFC1918,
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
)
NON_PUBLIC_V6: tuple[str, ...] = ("::1/128", "fc00::/7", "fe80::/10")
# The non-public ranges above that Felix still labels `pub` (its `pvt` is RFC 1918 alone): a
# flow to 169.254.169.254 (cloud metadata) or into 100.64.0.0/10 is logged as a public peer.
LABELLED_PUB: dict[Family, tuple[str, ...]] = {
    4: ("100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16"),
    6: ("::1/128", "fc00::/7", "fe80::/10"),  # Felix's `pvt` has no IPv6 range at all
}
ANY: dict[Family, str] = {4: "0.0.0.0/0", 6: "::/0"}
# Felix in Calico Enterprise 2.x (CNX) labelled one more network: `aws`, the EC2 instance
# metadata address and nothing else (collector/flowlog_util.go, `getSubnetType`:
# `AWSMetaServerNet FlowLogSubnetType = "aws"`, 169.254.169.254/32; Tigera's Felix as kept in
# the public repository dimitri-nicolo/calico, commit 17447372d9d9194efad0fa6fbc6be1fba82c9ed0).
# Its 2019 flow logs (tests/calico_records) name it without an address: the label is the address.
AWS_METADATA = "169.254.169.254"


def network(value: str) -> Network:
    """Parse an address or CIDR (host bits allowed) into a network; ValueError if invalid."""
    return ipaddress.ip_network(value.strip(), strict=False)


def family(value: str) -> Family:
    return 6 if network(value).version == 6 else 4


def sort_key(net: Network) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def collapse(values: Iterable[str]) -> tuple[str, ...]:
    """Lossless: the fewest prefixes covering exactly the given addresses/CIDRs, v4 first."""
    ranges: list[tuple[int, int]] = []
    v6: list[Network] = []
    for value in values:
        span = _v4_span(value)
        if span is not None:
            ranges.append(span)
            continue
        _add(network(value), ranges, v6)
    return _collapsed(ranges, v6)


def _add(net: Network, ranges: list[tuple[int, int]], v6: list[Network]) -> None:
    if net.version == 4:
        ranges.append((int(net.network_address), int(net.broadcast_address)))
    else:
        v6.append(net)


def _collapsed(ranges: list[tuple[int, int]], v6: list[Network]) -> tuple[str, ...]:
    out = [f"{_dotted(base)}/{plen}" for base, plen in _v4_prefixes(ranges)]
    out.extend(str(n) for n in _collapse(v6))
    return tuple(out)


def _v4_span(value: str) -> tuple[int, int] | None:
    """(first, last) of a plain dotted-quad address or `address/length` (host bits allowed),
    or None for anything else (v6, leading zeros or spaces, garbage): those take ipaddress's
    path. Tens of thousands of public addresses are collapsed per run; this is ipaddress's
    result for them, a dozen times faster."""
    text, slash, length = value.partition("/")
    bits = 32
    if slash:
        if not length.isdigit() or not length.isascii() or (len(length) > 1 and length[0] == "0"):
            return None
        bits = int(length)
        if bits > 32:
            return None
    parts = text.split(".")
    if len(parts) != 4:
        return None
    out = 0
    for part in parts:
        if not part.isdigit() or not part.isascii() or (len(part) > 1 and part[0] == "0"):
            return None
        octet = int(part)
        if octet > 255:
            return None
        out = out << 8 | octet
    size = 1 << (32 - bits)
    first = out & ~(size - 1)
    return first, first + size - 1


def _dotted(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _v4_prefixes(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The fewest (base, prefix length) blocks covering exactly the union of `ranges`, in
    address order: merge overlapping or adjacent ranges, then cut each into aligned blocks."""
    out: list[tuple[int, int]] = []
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    for lo, hi in merged:
        while lo <= hi:
            # The largest aligned block starting at `lo` that stays within `hi`.
            size = (lo & -lo) if lo else 1 << 32
            while size > hi - lo + 1:
                size >>= 1
            out.append((lo, 32 - size.bit_length() + 1))
            lo += size
    return out


def _collapse(nets: list[Network]) -> list[Network]:
    """Lossless collapse of one family's networks, sorted."""
    collapsed: Iterable[Network] = ipaddress.collapse_addresses(nets)  # type: ignore[type-var]
    return sorted(collapsed, key=sort_key)


def covers(nets: Iterable[str], address: str) -> bool:
    target = network(address)
    return any(
        target.version == n.version and target.subnet_of(n)  # type: ignore[arg-type]
        for n in map(network, nets)
    )


def inside(nets: Iterable[str], containers: Sequence[str]) -> tuple[str, ...]:
    """The parts of `nets` that lie inside any of `containers`, collapsed."""
    boxes = [network(c) for c in containers]
    v4_boxes = [(int(b.network_address), int(b.broadcast_address)) for b in boxes if b.version == 4]
    ranges: list[tuple[int, int]] = []
    v6: list[Network] = []
    for text in nets:
        span = _v4_span(text)
        if span is not None:  # aligned blocks: one holds the other, or they are apart
            first, last = span
            for lo, hi in v4_boxes:
                if first <= hi and lo <= last:
                    ranges.append((max(first, lo), min(last, hi)))
            continue
        net = network(text)
        for box in boxes:
            if net.version != box.version or not net.overlaps(box):
                continue
            _add(net if net.subnet_of(box) else box, ranges, v6)  # type: ignore[arg-type]
    return _collapsed(ranges, v6)


def exclusions(fam: Family, cluster_cidrs: Sequence[str]) -> tuple[str, ...]:
    """notNets for an "any public address" rule of one family: non-public space + the cluster."""
    base = NON_PUBLIC_V4 if fam == 4 else NON_PUBLIC_V6
    extra = [c for c in cluster_cidrs if family(c) == fam]
    return collapse([*base, *extra])


def _supernet(a: Network, b: Network) -> Network:
    """The smallest prefix containing both blocks."""
    bits = a.max_prefixlen
    diff = int(a.network_address) ^ int(b.broadcast_address)
    plen = min(bits - diff.bit_length(), a.prefixlen, b.prefixlen)
    base = (int(a.network_address) >> (bits - plen)) << (bits - plen)
    return type(a)((base, plen))


def _aggregate_family(nets: list[Network], cap: int, within: Sequence[Network]) -> list[Network]:
    """Greedy merging on the binary trie of the blocks.

    Merging two neighbouring blocks yields their smallest common supernet; every such supernet is
    a branching node of the (compressed) trie over the blocks, and each branching node is the
    supernet of exactly one neighbouring pair (the pair straddling its midpoint). The cost of a
    node is the number of addresses under it that no block covers yet; it never exceeds the cost
    of an ancestor, and merging a node only lowers its ancestors' costs (by its own), so a heap
    with lazy invalidation finds the cheapest merge each round in O(log n) after O(n) setup.
    """
    blocks = _collapse(nets)
    n = len(blocks)
    if n <= cap:
        return blocks
    sup = [_supernet(blocks[i], blocks[i + 1]) for i in range(n - 1)]
    m = len(sup)
    # Cartesian tree over the branching nodes, shorter prefixes nearer the root; node i sits
    # between leaf i and leaf i + 1.
    parent, left, right = [-1] * m, [-1] * m, [-1] * m
    stack: list[int] = []
    for i in range(m):
        last = -1
        while stack and sup[stack[-1]].prefixlen > sup[i].prefixlen:
            last = stack.pop()
        if last != -1:
            left[i], parent[last] = last, i
        if stack:
            right[stack[-1]], parent[i] = i, stack[-1]
        stack.append(i)
    lo, hi = list(range(m)), [i + 1 for i in range(m)]
    for i in sorted(range(m), key=lambda k: -sup[k].prefixlen):
        if left[i] != -1:
            lo[i] = lo[left[i]]
        if right[i] != -1:
            hi[i] = hi[right[i]]
    prefix = [0]
    for block in blocks:
        prefix.append(prefix[-1] + block.num_addresses)
    uncovered = [sup[i].num_addresses - (prefix[hi[i] + 1] - prefix[lo[i]]) for i in range(m)]
    under = [hi[i] - lo[i] + 1 for i in range(m)]
    eligible = [not within or any(sup[i].subnet_of(c) for c in within) for i in range(m)]  # type: ignore[arg-type]
    dead, merged = [False] * m, [False] * m
    heap = [(uncovered[i], sup[i].prefixlen, int(sup[i].network_address), i) for i in range(m)]
    heap = [entry for entry in heap if eligible[entry[3]]]
    heapq.heapify(heap)
    count = n
    while count > cap and heap:
        cost, _, _, i = heapq.heappop(heap)
        if dead[i] or merged[i] or cost != uncovered[i]:
            continue
        merged[i] = True
        reduction = under[i] - 1
        count -= reduction
        todo = [c for c in (left[i], right[i]) if c != -1]
        while todo:
            c = todo.pop()
            if not dead[c]:
                dead[c] = True
                todo.extend(k for k in (left[c], right[c]) if k != -1)
        a = parent[i]
        while a != -1:
            uncovered[a] -= cost
            under[a] -= reduction
            if eligible[a]:
                entry = (uncovered[a], sup[a].prefixlen, int(sup[a].network_address), a)
                heapq.heappush(heap, entry)
            a = parent[a]
    out: list[Network] = []
    root = next(i for i in range(m) if parent[i] == -1)
    walk: list[tuple[int, bool]] = [(root, True)]
    while walk:
        k, is_node = walk.pop()
        if not is_node:
            out.append(blocks[k])
        elif merged[k]:
            out.append(sup[k])
        else:
            # Push right first so the left side comes out first.
            walk.append((right[k], True) if right[k] != -1 else (k + 1, False))
            walk.append((left[k], True) if left[k] != -1 else (k, False))
    return out


def aggregate(values: Iterable[str], cap: int, *, within: Sequence[str] = ()) -> tuple[str, ...]:
    """At most `cap` prefixes per family covering every value, widening as little as possible.

    The cap can only be exceeded when `within` forbids the merges that would reach it (the
    addresses span more containers than `cap`); the caller can detect that by the length.
    """
    if cap < 1:
        raise ValueError("cap must be at least 1")
    nets = [network(v) for v in values]
    containers = [network(c) for c in within]
    out: list[Network] = []
    for version in (4, 6):
        same = [n for n in nets if n.version == version]
        if same:
            inside = [c for c in containers if c.version == version]
            out.extend(_aggregate_family(same, cap, inside))
    return tuple(str(n) for n in sorted(out, key=sort_key))
