from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfence.calico import cidr


def _addresses(nets: tuple[str, ...]) -> int:
    return sum(ipaddress.ip_network(n).num_addresses for n in nets)


def _covered(nets: tuple[str, ...], address: str) -> bool:
    return cidr.covers(nets, address)


# Addresses drawn from a few /16s so that merges are interesting (neighbours exist).
v4 = st.builds(
    lambda hi, lo: str(ipaddress.IPv4Address((hi << 16) | lo)),
    st.sampled_from([0x0A00, 0x0A01, 0xC0A8, 0x0808]),
    st.integers(0, 0xFFFF),
)
v6 = st.builds(
    lambda lo: str(ipaddress.IPv6Address((0x20010DB8 << 96) | lo)),
    st.integers(0, 0xFFFF),
)


def test_collapse_is_lossless_and_sorted() -> None:
    out = cidr.collapse(["10.0.0.1", "10.0.0.0", "2001:db8::1", "10.0.0.3/32", "10.0.0.2"])
    assert out == ("10.0.0.0/30", "2001:db8::1/128")


def test_aggregate_merges_the_cheapest_pair() -> None:
    # .1 and .5/.6 : merging .5 and .6 costs 2 extra addresses (/30), anything with .1 more.
    assert cidr.aggregate(["10.0.0.1", "10.0.0.6", "10.0.0.5"], 2) == (
        "10.0.0.1/32",
        "10.0.0.4/30",
    )


def test_aggregate_never_widens_to_rfc1918_unless_the_addresses_span_it() -> None:
    addresses = [f"10.20.{i}.{j}" for i in range(4) for j in (1, 77, 200)]
    out = cidr.aggregate(addresses, 1, within=cidr.RFC1918)
    assert out == ("10.20.0.0/22",)
    spanning = ["10.0.0.1", "10.255.255.254"]
    assert cidr.aggregate(spanning, 1, within=cidr.RFC1918) == ("10.0.0.0/8",)


def test_within_forbids_merging_across_private_ranges() -> None:
    out = cidr.aggregate(["10.0.0.1", "192.168.1.1", "172.16.0.1"], 1, within=cidr.RFC1918)
    assert out == ("10.0.0.1/32", "172.16.0.1/32", "192.168.1.1/32")
    # Without the constraint the only single prefix is the whole address space.
    assert cidr.aggregate(["10.0.0.1", "192.168.1.1"], 1) == ("0.0.0.0/0",)


def test_cap_applies_per_family() -> None:
    out = cidr.aggregate(["10.0.0.1", "10.0.0.9", "2001:db8::1", "2001:db8::9"], 1)
    assert out == ("10.0.0.0/28", "2001:db8::/124")


def test_exclusions_cover_non_public_and_cluster_ranges() -> None:
    v4_out = cidr.exclusions(4, ("100.96.0.0/12", "203.0.113.0/24", "fd00::/48"))
    assert "203.0.113.0/24" in v4_out and "100.64.0.0/10" in v4_out
    for net in (*cidr.RFC1918, "127.0.0.0/8", "169.254.0.0/16"):
        assert net in v4_out
    assert all(ipaddress.ip_network(n).version == 4 for n in v4_out)
    v6_out = cidr.exclusions(6, ("2001:db8:1::/48",))
    assert set(v6_out) == {"::1/128", "fc00::/7", "fe80::/10", "2001:db8:1::/48"}


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError):
        cidr.aggregate(["10.0.0.300"], 2)
    with pytest.raises(ValueError):
        cidr.aggregate(["10.0.0.1"], 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(v4, v6), min_size=1, max_size=60), st.integers(1, 12))
def test_aggregate_covers_within_cap_and_is_order_independent(
    addresses: list[str], cap: int
) -> None:
    out = cidr.aggregate(addresses, cap)
    assert all(_covered(out, a) for a in addresses)
    for version in (4, 6):
        assert sum(1 for n in out if ipaddress.ip_network(n).version == version) <= cap
    shuffled = addresses[:]
    random.Random(len(addresses)).shuffle(shuffled)
    assert cidr.aggregate(shuffled, cap) == out


@settings(max_examples=150, deadline=None)
@given(st.lists(v4, min_size=1, max_size=40))
def test_aggregate_is_exact_when_the_cap_allows(addresses: list[str]) -> None:
    out = cidr.aggregate(addresses, len(addresses))
    assert _addresses(out) == len(set(addresses))


@settings(max_examples=150, deadline=None)
@given(st.lists(v4, min_size=2, max_size=30, unique=True))
def test_one_merge_is_the_cheapest_possible(addresses: list[str]) -> None:
    blocks = cidr.collapse(addresses)
    if len(blocks) < 2:
        return
    # Brute force: every pair of blocks, its smallest common supernet, the addresses it adds.
    nets = [ipaddress.ip_network(b) for b in blocks]
    best = None
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            sup = a
            while not b.subnet_of(sup):  # type: ignore[arg-type]
                sup = sup.supernet()
            covered = sum(n.num_addresses for n in nets if n.subnet_of(sup))  # type: ignore[arg-type]
            extra = sup.num_addresses - covered
            best = extra if best is None else min(best, extra)
    out = cidr.aggregate(blocks, len(blocks) - 1)
    assert len(out) <= len(blocks) - 1
    assert _addresses(out) - len(set(addresses)) == best


@settings(max_examples=100, deadline=None)
@given(st.lists(v4, min_size=1, max_size=40), st.integers(1, 5))
def test_within_keeps_every_prefix_inside_a_container(addresses: list[str], cap: int) -> None:
    private = [a for a in addresses if cidr.covers(cidr.RFC1918, a)]
    if not private:
        return
    out = cidr.aggregate(private, cap, within=cidr.RFC1918)
    assert all(_covered(out, a) for a in private)
    for net in out:
        assert cidr.covers(cidr.RFC1918, net)
    containers = {c for c in cidr.RFC1918 for a in private if cidr.covers((c,), a)}
    assert len(out) <= max(cap, len(containers))


def test_large_input_is_fast() -> None:
    rng = random.Random(7)
    addresses = [
        str(ipaddress.IPv4Address(0x0A000000 + rng.randrange(1 << 20))) for _ in range(20000)
    ]
    out = cidr.aggregate(addresses, 8, within=cidr.RFC1918)
    assert len(out) <= 8
    assert all(_covered(out, a) for a in addresses[:500])


def _inside_by_ipaddress(nets: list[str], containers: list[str]) -> tuple[str, ...]:
    """`cidr.inside` as ipaddress alone computes it: each part clipped to the boxes it
    overlaps, then collapsed (the oracle for its fast path over plain IPv4 addresses)."""
    boxes = [ipaddress.ip_network(c) for c in containers]
    parts: list[str] = []
    for text in nets:
        net = ipaddress.ip_network(text, strict=False)
        for box in boxes:
            if net.version == box.version and net.overlaps(box):
                parts.append(str(net if net.subnet_of(box) else box))  # type: ignore[arg-type]
    return cidr.collapse(parts)


# Addresses, prefixes (host bits set or not) around and across the containers, and IPv6, so
# that both of `inside`'s paths are taken.
inside_parts = st.one_of(
    v4,
    v6,
    st.builds(lambda a, n: f"{a}/{n}", v4, st.integers(4, 32)),
    st.sampled_from(["10.0.0.0/7", "0.0.0.0/0", "192.168.0.0/15", "fc00::/6"]),
)
inside_boxes = st.lists(
    st.sampled_from([*cidr.RFC1918, *cidr.LABELLED_PUB[4], *cidr.PRIVATE_V6, "8.8.0.0/16"]),
    min_size=1,
    max_size=4,
)


@given(st.lists(inside_parts, max_size=40), inside_boxes)
@settings(max_examples=300, deadline=None)
def test_inside_equals_the_ipaddress_computation(nets: list[str], boxes: list[str]) -> None:
    assert cidr.inside(nets, boxes) == _inside_by_ipaddress(nets, boxes)


def test_inside_keeps_what_lies_in_a_box_and_clips_what_spans_one() -> None:
    nets = ["10.1.2.3", "8.8.8.8", "10.0.0.0/6", "192.168.1.7", "2001:db8::1", "fd00::1"]
    assert cidr.inside(nets, cidr.RFC1918) == ("10.0.0.0/8", "192.168.1.7/32")
    assert cidr.inside(nets, cidr.PRIVATE_V6) == ("fd00::1/128",)


@given(st.lists(inside_parts, max_size=40))
@settings(max_examples=300, deadline=None)
def test_collapse_equals_ipaddress_on_addresses_and_prefixes(nets: list[str]) -> None:
    parsed = [ipaddress.ip_network(n, strict=False) for n in nets]
    expected = [
        str(n)
        for version in (4, 6)
        for n in sorted(ipaddress.collapse_addresses([p for p in parsed if p.version == version]))
    ]
    assert cidr.collapse(nets) == tuple(expected)
