from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfence.calico.names import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    LABEL_KEY,
    LABEL_VALUE,
    NAME_AGGR,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_hostname,
    is_label,
    is_label_key,
    is_label_value,
    is_name_aggr,
    parse_ip,
    sample,
    screen,
)
from flowfence.calico.selector import parse
from flowfence.flows.edges import EDGE_SCHEMA

BASE: dict[str, Any] = {
    "reporter": "src",
    "action": "allow",
    "source_type": "wep",
    "source_namespace": "shop",
    "source_name_aggr": "web-7d9f8c6b5-*",
    "source_ip": None,
    "source_labels": ["app=web", "app.kubernetes.io/part-of=shop"],
    "dest_type": "net",
    "dest_namespace": None,
    "dest_name_aggr": "pub",
    "dest_ip": "93.184.216.34",
    "dest_labels": [],
    "dest_port": 443,
    "proto": "tcp",
    "dest_service_namespace": None,
    "dest_service_name": None,
    "dest_service_port_num": None,
    "dest_domains": ["api.example.com"],
    "enforced_policies": ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"],
    "pending_policies": [],
    "first_seen": datetime(2026, 11, 1),
    "last_seen": datetime(2026, 11, 1, 1),
    "flows": 10,
    "bytes": 1000,
    "packets": 20,
    "days": 1,
    "rows": 2,
}


def edges(*changes: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([{**BASE, **c} for c in changes], schema=EDGE_SCHEMA)


def rejected_reason(change: dict[str, Any]) -> str | None:
    kept, rej = screen(edges(change))
    if kept.height:
        return None
    assert len(rej.items) == 1
    return rej.items[0].reason


HOSTILE = [
    ({"source_namespace": "x' || all() || '"}, "invalid namespace"),
    ({"dest_namespace": "Shop"}, "invalid namespace"),
    ({"source_namespace": "shop\n"}, "invalid namespace"),
    ({"source_namespace": "a" * 64}, "invalid namespace"),
    ({"source_namespace": "ѕhop"}, "invalid namespace"),  # Cyrillic dze
    ({"dest_service_namespace": "-bad"}, "invalid namespace"),
    ({"dest_domains": ["*"]}, "invalid domain"),
    ({"dest_domains": ["*.*.com"]}, "invalid domain"),
    ({"dest_domains": ["*.example.com"]}, "invalid domain"),
    ({"dest_domains": ["a..b"]}, "invalid domain"),
    ({"dest_domains": [".example.com"]}, "invalid domain"),
    ({"dest_domains": ["example.com."]}, "invalid domain"),
    ({"dest_domains": ["ex ample.com"]}, "invalid domain"),
    ({"dest_domains": ["-x.example.com"]}, "invalid domain"),
    ({"dest_domains": [("a" * 62 + ".") * 4 + "com"]}, "invalid domain"),  # 255 chars
    ({"dest_domains": ["b" * 64 + ".com"]}, "invalid domain"),
    ({"dest_domains": ["аpple.com"]}, "invalid domain"),  # Cyrillic a
    ({"dest_domains": ["exampl\u212a.com"]}, "invalid domain"),  # Kelvin sign lower-cases to k
    ({"dest_domains": ["api.example.com", "evil.com\nx"]}, "invalid domain"),
    ({"dest_domains": ["ok.com", None]}, "invalid domain"),
    ({"source_labels": ["app=we'b"]}, "invalid label"),
    ({"source_labels": ['app="x"']}, "invalid label"),
    ({"dest_labels": ["noequals"]}, "invalid label"),
    ({"dest_labels": ["=v"]}, "invalid label"),
    ({"dest_labels": ["k=" + "v" * 64]}, "invalid label"),
    ({"dest_labels": ["a/b/c=v"]}, "invalid label"),
    ({"dest_labels": ["x" * 254 + "/k=v"]}, "invalid label"),
    ({"dest_labels": ["k=v w"]}, "invalid label"),
    ({"dest_ip": "999.1.1.1"}, "invalid IP"),
    ({"dest_ip": "fe80::1%eth0"}, "invalid IP"),
    ({"source_ip": "10.0.0.1 "}, "invalid IP"),
    ({"source_ip": "010.0.0.1"}, "invalid IP"),
    ({"dest_port": 70000}, "invalid port"),
    ({"dest_service_port_num": -1}, "invalid port"),
    ({"proto": "256"}, "invalid protocol"),
    ({"proto": "TCP"}, "invalid protocol"),
    ({"proto": None}, "invalid protocol"),
    ({"reporter": "src'"}, "invalid reporter"),
    ({"action": "pass"}, "invalid action"),
    ({"dest_type": "pod"}, "invalid endpoint type"),
    ({"dest_name_aggr": "pvt_2"}, "invalid name"),  # any DNS label names a net; this is none
    ({"dest_name_aggr": "pub-*"}, "invalid name"),
    ({"source_name_aggr": "web'*"}, "invalid name"),
    ({"source_name_aggr": "we*b"}, "invalid name"),
    ({"dest_type": "ns", "dest_name_aggr": "set-*"}, "invalid name"),
    ({"dest_service_name": "svc.x"}, "invalid service name"),
]


@pytest.mark.parametrize(("change", "reason"), HOSTILE)
def test_hostile_values_reject_the_row(change: dict[str, Any], reason: str) -> None:
    assert rejected_reason(change) == reason


GOOD = [
    {},
    {"dest_type": "wep", "dest_namespace": "db", "dest_name_aggr": "pg-0", "dest_ip": None},
    {"dest_type": "ns", "dest_name_aggr": "public-ips.v2", "dest_namespace": None},
    {"dest_type": "net", "dest_name_aggr": "pvt", "dest_domains": []},
    {"dest_type": "hep", "dest_name_aggr": "node-1.example"},
    {"source_name_aggr": "*"},
    {"dest_service_namespace": "db", "dest_service_name": "pg", "dest_service_port_num": 5432},
    {"dest_labels": ["k=", "example.com/Key_1.x=Value-2", "k8s.io/x=y"]},
    {"proto": "icmp", "dest_port": None},
    {"proto": "47"},
    {"reporter": "fwd", "action": "deny"},
    {"dest_domains": ["API.Example.COM", "b.example.com", "api.example.com"]},
    {"dest_ip": "2001:DB8::1"},
]


@pytest.mark.parametrize("change", GOOD)
def test_valid_rows_are_kept(change: dict[str, Any]) -> None:
    kept, rej = screen(edges(change))
    assert rej.items == ()
    assert kept.height == 1
    assert kept.schema == pl.Schema(EDGE_SCHEMA)


def test_domains_and_ips_are_normalised() -> None:
    kept, _ = screen(
        edges({"dest_domains": ["B.example.com", "api.Example.com", "b.example.com"],
               "dest_ip": "2001:DB8:0::1"})
    )  # fmt: skip
    row = kept.row(0, named=True)
    assert row["dest_domains"] == ["api.example.com", "b.example.com"]
    assert row["dest_ip"] == "2001:db8::1"


def test_one_bad_domain_drops_the_whole_row_not_the_value() -> None:
    # Dropping only "*" would leave an empty list: a Domains rule would become a Public rule.
    kept, rej = screen(edges({"dest_domains": ["*"]}, {"dest_domains": ["ok.com", "*"]}, {}))
    assert kept.height == 1
    assert kept.get_column("dest_domains").to_list() == [["api.example.com"]]
    assert rej.by_reason()["invalid domain"].edges == 2


def test_counts_each_row_once_with_escaped_capped_samples() -> None:
    long_domain = "x" * 300 + ".com"
    frame = edges(
        {"source_namespace": "bad ns", "dest_domains": ["*"], "flows": 5},  # namespace wins
        {"dest_domains": [long_domain], "flows": 7},
        {"dest_domains": ["a\nb.com"], "flows": 1},
        {},
    )
    kept, rej = screen(frame)
    assert kept.height == 1
    by = rej.by_reason()
    assert (by["invalid namespace"].edges, by["invalid namespace"].flows) == (1, 5)
    assert (by["invalid domain"].edges, by["invalid domain"].flows) == (2, 8)
    assert (rej.edges, rej.flows) == (3, 13)
    samples = by["invalid domain"].samples
    assert "'a\\nb.com'" in samples
    assert all(len(s) <= 80 and "\n" not in s for s in samples)
    assert any(s.endswith("...") for s in samples)
    assert [r.reason for r in rej.items] == ["invalid namespace", "invalid domain"]


def test_screening_a_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "edges.parquet"
    edges({}, {"source_namespace": "x' || all() || '"}, {"dest_ip": "1.2.3.999"}).write_parquet(
        path
    )
    kept, rej = screen(pl.read_parquet(path))
    assert kept.height == 1
    assert {r.reason for r in rej.items} == {"invalid namespace", "invalid IP"}


def test_empty_frame_and_missing_columns() -> None:
    kept, rej = screen(pl.DataFrame(schema=EDGE_SCHEMA))
    assert kept.height == 0 and rej.items == ()
    with pytest.raises(ValueError, match="dest_domains"):
        screen(edges({}).drop("dest_domains"))


# ---- scalar validators ---------------------------------------------------------------------


def test_scalar_validators() -> None:
    assert is_dns1123_label("a") and is_dns1123_label("a-1") and is_dns1123_label("a" * 63)
    assert not any(map(is_dns1123_label, ["", "-a", "a-", "A", "a.b", "a" * 64, "a\n"]))
    assert is_dns1123_subdomain("a.b-c.d") and not is_dns1123_subdomain("a..b")
    assert not is_dns1123_subdomain(("a" * 63 + ".") * 4 + "a")  # 257 characters
    assert is_hostname("*.example.com") and not is_hostname("*.example.com", allow_wildcard=False)
    assert not any(map(is_hostname, ["*", "*.com", "*.*.com", "a.*.com", "**.a.com", "A.com"]))
    assert is_label_key("app") and is_label_key("example.com/App_1") and not is_label_key("/a")
    assert is_label_value("") and is_label_value("A.b-c_d") and not is_label_value("-a")
    assert is_label("a=b") and is_label("a=") and not is_label("a") and not is_label("a=b=c")
    assert is_name_aggr("nginx-86c57db685-*", "wep") and is_name_aggr("pub", "net")
    assert is_name_aggr("pub", "wep")  # a pod may be called pub; only net names are fixed
    assert not is_name_aggr("nginx-*", "ns") and not is_name_aggr("X", "net")
    # Older releases named other external networks (`aws`): any DNS label, never a pattern.
    assert is_name_aggr("aws", "net") and not is_name_aggr("aws-*", "net")
    assert str(parse_ip("::FFFF:1.2.3.4")) == "::ffff:102:304"
    assert parse_ip("1.2.3") is None and parse_ip("fe80::1%1") is None and parse_ip("") is None
    assert sample("a'\n\u0430" * 40).startswith("\"a'\\n\\u0430")
    assert len(sample("x" * 500)) == 80


# ---- properties --------------------------------------------------------------------------

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_/*=")
NEAR = st.text(alphabet="abcXYZ019-_.*/=' \n\t\"\\é\u212a", max_size=70)
# Strings drawn from (or just around) the accepted languages, so that the properties below are
# exercised on accepted values, not only on rejected noise.
LIKELY = st.one_of(
    NEAR,
    st.from_regex(DNS1123_LABEL, fullmatch=True),
    st.from_regex(DNS1123_SUBDOMAIN, fullmatch=True),
    st.from_regex(LABEL_KEY, fullmatch=True),
    st.from_regex(LABEL_VALUE, fullmatch=True),
    st.from_regex(NAME_AGGR, fullmatch=True),
    st.from_regex(rf"\*\.{DNS1123_SUBDOMAIN}\.[a-z]{{2,5}}", fullmatch=True),
    st.from_regex(rf"{LABEL_KEY}={LABEL_VALUE}", fullmatch=True),
)
VALIDATORS = [
    is_dns1123_label,
    is_dns1123_subdomain,
    is_hostname,
    is_label_key,
    is_label_value,
    is_label,
    lambda s: is_name_aggr(s, "wep"),
    lambda s: is_name_aggr(s, "ns"),
]


@given(st.sampled_from(range(len(VALIDATORS))), st.one_of(LIKELY, st.text(max_size=40)))
def test_accepted_strings_are_safe_in_selectors_and_yaml(which: int, text: str) -> None:
    if not VALIDATORS[which](text):
        return
    assert set(text) <= SAFE  # ASCII, no quotes, backslashes, whitespace or control chars
    assert yaml.safe_load(yaml.safe_dump(text)) == text
    assert "\\" not in yaml.safe_dump(text) and '"' not in yaml.safe_dump(text)
    sel = parse(f"projectcalico.org/name == '{text}'")
    assert sel.matches({"projectcalico.org/name": text})
    assert not sel.matches({"projectcalico.org/name": text + "x"})


def test_the_property_strategies_reach_accepted_values() -> None:
    # Guard against the property above passing vacuously.
    found = {i: False for i in range(len(VALIDATORS))}

    @settings(max_examples=300, database=None)
    @given(LIKELY)
    def probe(text: str) -> None:
        for i, check in enumerate(VALIDATORS):
            found[i] = found[i] or check(text)

    probe()
    assert all(found.values()), found


@settings(max_examples=60, deadline=None)
@given(st.lists(LIKELY, min_size=1, max_size=8))
def test_vectorised_screen_agrees_with_scalar_validators(values: list[str]) -> None:
    frame = edges(
        *(
            {"source_namespace": v, "dest_domains": [v.lower() if v.isascii() else v],
             "source_labels": [f"k={v}"]}
            for v in values
        )
    )  # fmt: skip
    kept, _ = screen(frame)
    expected = [
        v
        for v in values
        if is_dns1123_label(v)
        and is_hostname(v.lower() if v.isascii() else v, allow_wildcard=False)
        and is_label(f"k={v}")
    ]
    assert kept.get_column("source_namespace").to_list() == expected
