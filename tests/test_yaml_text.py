"""The fast YAML emitter writes PyYAML's bytes (kubectl's layout) on random documents."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flowfence.render import yaml_text

# Strings that exercise quoting: indicators, YAML 1.1 words, numbers, port ranges, spaces,
# quotes, colons, comments, non-ASCII and control characters, long ones.
TRICKY = st.sampled_from(
    ["", " ", "a b", " lead", "trail ", "-", "- x", "-x", "?", ": x", "a: b", "a #b", "#c",
     "'q'", '"d"', "it's", "yes", "No", "on", "null", "~", "443", "0x1f", "1e3", "5000:6000",
     "1:59", ".inf", "true", "@x", "`x", "%x", "!x", "&x", "*x", "|", ">", "[a]", "{a}", "a,b",
     "é", "\t", "a\nb", "x" * 130, "projectcalico.org/name in {'a', 'b'}", "k8s-app == 'x'",
     "2026-11-01T00:00:00Z", "2026-11-01", "=", "a=b"]
)  # fmt: skip
TEXT = st.one_of(TRICKY, st.text(max_size=12), st.from_regex(r"[a-z0-9./_-]{1,20}", fullmatch=True))
SCALARS = st.one_of(TEXT, st.integers(-5, 70000), st.booleans(), st.none())


def documents() -> st.SearchStrategy[dict[str, Any]]:
    values = st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
        ),
        max_leaves=25,
    )
    return st.dictionaries(TEXT, values, min_size=1, max_size=5)


@settings(max_examples=1500, deadline=None)
@given(documents())
def test_dump_writes_the_bytes_pyyaml_writes(doc: dict[str, Any]) -> None:
    assert yaml_text.dump(doc) == yaml_text.pyyaml_dump(doc)


def test_a_policy_takes_the_fast_path() -> None:
    """A policy-shaped document is written without PyYAML (else the speed-up is lost)."""
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "StagedNetworkPolicy",
        "metadata": {"name": "namespace-isolation.shop", "namespace": "shop", "labels": {}},
        "spec": {
            "types": ["Ingress", "Egress"],
            "egress": [{"action": "Allow", "protocol": "TCP",
                        "destination": {"ports": [443, "5000:6000"],
                                        "namespaceSelector": "projectcalico.org/name == 'db'"}}],
            "ingress": [],
        },
    }  # fmt: skip
    assert yaml_text.fast_dump(doc) == yaml_text.pyyaml_dump(doc)


ASCII = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)
ASCII_SCALARS = st.one_of(ASCII, TRICKY.filter(str.isprintable), st.integers(0, 70000))


@settings(max_examples=800, deadline=None)
@given(
    st.dictionaries(
        ASCII,
        st.recursive(
            ASCII_SCALARS,
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(ASCII, inner, max_size=3)
            ),
            max_leaves=15,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_fast_path_itself_matches_pyyaml(doc: dict[str, Any]) -> None:
    """Printable ASCII documents: the fast emitter writes them itself (assume() would make
    Hypothesis fail its health check if it handed most of them back) and byte for byte."""
    try:
        fast = yaml_text.fast_dump(doc)
    except yaml_text.Unsupported:
        assume(False)
        return
    assert fast == yaml_text.pyyaml_dump(doc)
