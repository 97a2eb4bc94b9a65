"""Calico selector parsing and matching, checked against libcalico-go's own behaviour."""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfence.calico.selector import Selector, SelectorError, parse, quote
from flowfence.calico.selector_ast import (
    All,
    And,
    Compare,
    Global,
    Has,
    InSet,
    Node,
    Not,
    Or,
    ValueOp,
)
from flowfence.calico.selector_parse import MAX_NESTING
from flowfence.core.errors import ExitCode, PolicyError

NS = "projectcalico.org/namespace"

# (selector, labels, expected). Many rows mirror libcalico-go parser_test.go.
MATCH_CASES: list[tuple[str, dict[str, str], bool]] = [
    # ==
    ("a == 'b'", {"a": "b"}, True),
    ('a == "b"', {"a": "b", "c": "d"}, True),
    ("a == 'b'", {"a": "c"}, False),
    ("a == 'b'", {}, False),
    ("a == ''", {"a": ""}, True),
    ("a == ''", {}, False),
    # !=
    ("a != 'b'", {"a": "c"}, True),
    ("a != 'b'", {"a": "b"}, False),
    ("a != 'b'", {}, True),  # absent label is "not equal"
    # in / not in
    ("a in {'x', 'y'}", {"a": "y"}, True),
    ("a in {'x', 'y'}", {"a": "z"}, False),
    ("a in {'x', 'y'}", {}, False),
    ("a in {}", {"a": ""}, False),
    ("a not in {'x', 'y'}", {"a": "z"}, True),
    ("a not in {'x', 'y'}", {"a": "x"}, False),
    ("a not in {'x', 'y'}", {}, True),  # absent label is "not in" any set
    ("a not in {}", {}, True),
    ('a in {"\'", \'"\', "c"}', {"a": "'"}, True),
    ('a in {"\'", \'"\', "c"}', {"a": '"'}, True),
    ('a not in {"\'", \'"\', "c"}', {"a": '"'}, False),
    ("a in {'x',}", {"a": "x"}, True),  # trailing comma is legal
    ("a notin {'x'}", {"a": "y"}, True),
    # has / !has
    ("has(a)", {"a": ""}, True),
    ("has(a)", {"b": "a"}, False),
    ("!has(a)", {"b": "x"}, True),
    ("!has(a)", {"a": "x"}, False),
    ("! has( a )", {"a": "x"}, False),
    # contains / starts with / ends with, false on a missing key
    ("a contains 'an'", {"a": "banana"}, True),
    ("a contains 'x'", {"a": "banana"}, False),
    ("a contains ''", {"a": ""}, True),
    ("a contains 'a'", {"b": "aaa"}, False),
    ("a starts with 'ba'", {"a": "banana"}, True),
    ("a starts with 'na'", {"a": "banana"}, False),
    ("a starts with 'a'", {}, False),
    ("a startswith 'b'", {"a": "b"}, True),
    ("a ends with 'na'", {"a": "banana"}, True),
    ("a ends with 'ba'", {"a": "banana"}, False),
    ("a ends with 'a'", {}, False),
    ("a endswith 'a'", {"a": "ba"}, True),
    ("!a contains 'x'", {}, True),
    # all(), empty selector, whitespace variants
    ("all()", {}, True),
    ("all( )", {"a": "b"}, True),
    ("", {}, True),
    (" \t ", {"a": "b"}, True),
    ("\ta=='b'\t&&\tc  ==  'd' ", {"a": "b", "c": "d"}, True),
    ("a=='b'||c=='d'", {"c": "d"}, True),
    ("(all())", {}, True),
    # global(): true exactly when the entity has no namespace label
    ("global()", {}, True),
    ("global()", {"projectcalico.org/name": "default"}, True),
    ("global()", {NS: "default"}, False),
    ("!global()", {NS: "default"}, True),
    ("global() || has(x)", {NS: "n", "x": ""}, True),
    # negation runs fold: odd count negates, even count does not
    ("!!has(b)", {"a": "b"}, False),
    ("!!!has(a)", {"a": "b"}, False),
    ("!! ! has(a)", {"a": "b"}, False),
    ("! !!has(a)", {}, True),
    ("!(!has(a))", {"a": "b"}, True),
    # precedence: ! over && over ||
    ("a == '1' || b == '2' && c == '3'", {"a": "1"}, True),
    ("a == '1' || b == '2' && c == '3'", {"b": "2"}, False),
    ("a == '1' || b == '2' && c == '3'", {"b": "2", "c": "3"}, True),
    ("(a == '1' || b == '2') && c == '3'", {"a": "1"}, False),
    ("b == '2' && c == '3' || a == '1'", {"a": "1"}, True),
    ("!a == '1' && b == '2'", {"a": "2", "b": "2"}, True),
    ("!a == '1' && b == '2'", {"a": "1", "b": "2"}, False),
    ("! a == 'a1' || ! b == 'b1'", {"a": "a1", "b": "b1"}, False),
    ("a != 'a1' && !b == 'b1'", {"a": "a1", "b": "b1"}, False),
    # negation of groups
    ("!(has(a) && has(b))", {"a": "1"}, True),
    ("!(has(a) && has(b))", {"a": "1", "b": "2"}, False),
    ("!(!has(a) || has(b))", {"a": "a"}, True),
    ("!(has(b) || !has(a))", {"a": "a", "b": "b"}, False),
    # quoting: both kinds, spaces, the other quote inside
    ('a == "it\'s"', {"a": "it's"}, True),
    ("a == 'say \"hi\"'", {"a": 'say "hi"'}, True),
    ("a == 'two words'", {"a": "two words"}, True),
    ("a == 'two words'", {"a": "two"}, False),
    ("a == '&& || ( ) { } , !'", {"a": "&& || ( ) { } , !"}, True),
    ("a == 'line\nbreak'", {"a": "line\nbreak"}, True),
    # keys with dots, slashes, dashes, underscores and keyword-like names
    ("projectcalico.org/name == 'kube-system'", {"projectcalico.org/name": "kube-system"}, True),
    ("app.kubernetes.io/name in {'web'}", {"app.kubernetes.io/name": "web"}, True),
    ("has(k8s-app) && my_key.x/y-z == 'v'", {"k8s-app": "", "my_key.x/y-z": "v"}, True),
    ("in == 'x' && has == 'y' && all == 'z'", {"in": "x", "has": "y", "all": "z"}, True),
    ("has(contains) && not != 'q'", {"contains": "1"}, True),
    # the recommendation engine's default namespace selector
    (
        "!(projectcalico.org/name starts with 'tigera-') && "
        "!(projectcalico.org/name starts with 'calico-') && "
        "!(projectcalico.org/name starts with 'kube-')",
        {"projectcalico.org/name": "kube-system"},
        False,
    ),
    (
        "!(projectcalico.org/name starts with 'tigera-') && "
        "!(projectcalico.org/name starts with 'kube-')",
        {"projectcalico.org/name": "shop"},
        True,
    ),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCH_CASES)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    selector = parse(text)
    assert selector.matches(labels) is expected
    # The canonical text must mean the same thing.
    assert parse(str(selector)).matches(labels) is expected


# (input, canonical text). Rows mirror libcalico-go's canonicalisation tests.
CANONICAL_CASES: list[tuple[str, str]] = [
    ("", "all()"),
    (" all() ", "all()"),
    (" (all() )", "all()"),
    ("global( )", "global()"),
    ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
    ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")'),
    ('a == "\'"', 'a == "\'"'),
    ("a == '\"'", "a == '\"'"),
    ("a == 'plain'", 'a == "plain"'),
    ("a contains '\"'", "a contains '\"'"),
    ("a startswith '\"'", "a starts with '\"'"),
    ('a endswith "\'"', 'a ends with "\'"'),
    ("a   starts   with 'x'", 'a starts with "x"'),
    ("a!='\"'", "a != '\"'"),
    ("a not   in {'x'}", 'a not in {"x"}'),
    ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}'),
    ("a in {'b', \"'\"}", 'a in {"\'", "b"}'),
    ("a in {}", "a in {}"),
    ("!(k == 'v')", '!k == "v"'),
    ("!!has(a)", "has(a)"),
    ("!(!has(a))", "!(!has(a))"),
    ("a == '1' || b == '2' && c == '3'", '(a == "1" || (b == "2" && c == "3"))'),
    ("(a == '1' && b == '2') && c == '3'", '((a == "1" && b == "2") && c == "3")'),
    ("a == '1' && b == '2' && c == '3'", '(a == "1" && b == "2" && c == "3")'),
    (
        "!(!(k == 'v' && has(t) || all()) && (a in {'c', 'b'}))",
        '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
    ),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL_CASES)
def test_canonical_text(text: str, canonical: str) -> None:
    selector = parse(text)
    assert str(selector) == canonical
    again = parse(canonical)
    assert again == selector
    assert str(again) == canonical
    assert hash(again) == hash(selector)


def test_empty_selector_equals_all() -> None:
    assert parse("") == parse("all()") == parse("  ( all() ) ")
    assert parse("!!has(a)") == parse("has(a)")
    assert parse("!(!has(a))") != parse("has(a)")  # kept as written; same meaning
    assert parse("a in {'y', 'x', 'x'}") == parse('a in {"x", "y"}')


# (text, error position, a phrase the reason must contain)
INVALID_CASES: list[tuple[str, int, str]] = [
    ("a == 'x", 5, "unterminated string"),
    ('"FOO', 0, "unterminated string"),
    ("\"FOO'", 0, 'closing "'),
    ("a in {'x', \"y}", 11, "unterminated string"),
    ('(a == "foo"', 11, "')' closing the '(' at position 0"),
    ("((has(a) || has(b)) && has(c)", 29, "')'"),
    ("(", 1, "expected a label key"),
    (")", 0, "expected a label key"),
    ("()", 1, "found ')'"),
    ("a ==", 4, "a quoted string after '=='"),
    ("a == ", 5, "a quoted string after '=='"),
    ("a == b", 5, "a quoted string after '=='"),
    ("a != ||", 5, "a quoted string after '!='"),
    ("b contains b", 11, "a quoted string after 'contains'"),
    ("b starts with b", 14, "a quoted string after 'starts with'"),
    ("'b1' == b", 0, "found the string 'b1'"),
    ("&& a == 'x'", 0, "found '&&'"),
    ("a == 'x' &&", 11, "found the end of the selector"),
    ("a == 'x' && && b == 'y'", 12, "found '&&'"),
    ("a == 'x' || || b == 'y'", 12, "found '||'"),
    ("a == 'x' & b == 'y'", 9, "expected '&&'"),
    ("a == 'x' | b == 'y'", 9, "expected '||'"),
    ("a = 'x'", 2, "expected '=='"),
    ("!", 1, "found the end of the selector"),
    ("a$b == 'x'", 1, "after label 'a'"),
    ("$a == 'x'", 0, "unexpected character '$'"),
    ("ä == 'x'", 0, "unexpected character"),
    ("a:b == 'x'", 1, "after label 'a'"),
    ("has(a b)", 6, "expected ')' to close has("),
    ("has(a", 5, "expected ')' to close has("),
    ("has()", 4, "a label key inside has"),
    ("has('a')", 4, "a label key inside has"),
    ("has (a)", 4, "found '('"),
    ("all(x)", 4, "expected ')' after 'all('"),
    ("global(", 7, "expected ')' after 'global('"),
    ("all ()", 4, "found '('"),
    ("a", 1, "after label 'a', found the end"),
    ("a b", 2, "after label 'a'"),
    ("a not 'x'", 2, "after label 'a'"),
    ("a containsx 'y'", 2, "after label 'a'"),
    ("a in_x {'y'}", 2, "after label 'a'"),
    ("a in {'x'", 9, "',' or '}' in the set opened at position 5"),
    ("a in {'x' 'y'}", 10, "',' or '}'"),
    ("a in {'x',, 'y'}", 10, "a quoted string or '}'"),
    ("a in {,}", 6, "a quoted string or '}'"),
    ("a not in {", 10, "a quoted string or '}'"),
    ("a in 'x'", 5, "a set literal {...} after 'in'"),
    ('foo in {"", ||', 12, "a quoted string or '}'"),
    ("a not in b", 9, "a set literal {...} after 'not in'"),
    ("a ends with b", 12, "a quoted string after 'ends with'"),
    ("a == 'x' b == 'y'", 9, "'&&', '||' or the end of the selector"),
    ("a == 'x')", 8, "'&&', '||' or the end of the selector"),
    ("has(a) all()", 7, "'&&', '||' or the end"),
    ("a == 'x'\n", 8, "unexpected character '\\n'"),
    ("a ==\t'x' \r", 9, "unexpected character '\\r'"),
    ("x" * 513 + " == 'v'", 0, "longer than 512"),
    ("has(" + "x" * 513 + ")", 4, "longer than 512"),
]


@pytest.mark.parametrize(("text", "position", "reason"), INVALID_CASES)
def test_invalid_selector(text: str, position: int, reason: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert err.position == position
    assert reason in err.reason
    message = str(err)
    first, shown, caret = message.split("\n")
    assert first.startswith(f"invalid selector at position {position}: ")
    # The caret sits under the offending character of the echoed text.
    assert shown.startswith("  " + text[:10].replace("\n", "?").replace("\t", " ")[:5])
    assert caret == " " * (position + 2) + "^"


def test_error_message_shows_text_and_caret() -> None:
    with pytest.raises(SelectorError) as info:
        parse("app == 'web' && tier = 'db'")
    assert str(info.value) == (
        "invalid selector at position 21: expected '=='\n"
        "  app == 'web' && tier = 'db'\n"
        "                       ^"
    )


def test_error_message_window_on_long_selector() -> None:
    text = " && ".join(f"k{i} == 'v'" for i in range(30)) + " && k == v"
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert err.position == len(text) - 1
    _, shown, caret = str(err).split("\n")
    assert shown.startswith("  ...")
    assert shown[caret.index("^")] == "v"
    assert len(shown) < 100


def test_error_message_keeps_caret_aligned_over_control_characters() -> None:
    with pytest.raises(SelectorError) as info:
        parse("a == '\x1b[31m' &&\t!")
    _, shown, caret = str(info.value).split("\n")
    assert "\x1b" not in shown
    assert len(caret) == len(shown) + 1  # caret one past the end: found end of selector


def test_selector_error_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as info:
        parse("a ==")
    assert info.value.exit_code == ExitCode.BAD_INPUT
    restored = pickle.loads(pickle.dumps(info.value))
    assert isinstance(restored, SelectorError)
    assert (restored.position, restored.selector, str(restored)) == (
        4,
        "a ==",
        str(info.value),
    )


def test_nesting_limit() -> None:
    deep_ok = "(" * MAX_NESTING + "has(a)" + ")" * MAX_NESTING
    assert parse(deep_ok).matches({"a": ""})
    too_deep = "(" * (MAX_NESTING + 1) + "has(a)" + ")" * (MAX_NESTING + 1)
    with pytest.raises(SelectorError) as info:
        parse(too_deep)
    assert info.value.position == MAX_NESTING
    with pytest.raises(SelectorError):
        parse("(" * 5000)
    assert parse("!" * 5001 + "has(a)").matches({})  # a run of ! is a loop, not recursion


def test_label_key_of_512_characters_is_accepted() -> None:
    key = "k" * 512
    assert parse(f"{key} == 'v'").matches({key: "v"})
    assert parse(f"has({key})").matches({key: "v"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("web", "'web'"),
        ("", "''"),
        ("it's", '"it\'s"'),
        ('say "hi"', "'say \"hi\"'"),
        ("two words", "'two words'"),
    ],
)
def test_quote(value: str, expected: str) -> None:
    assert quote(value) == expected
    assert parse(f"k == {quote(value)}").matches({"k": value})


def test_quote_rejects_both_quote_characters() -> None:
    with pytest.raises(ValueError, match="both"):
        quote('it\'s "x"')


def test_uses_global() -> None:
    assert parse("global()").uses_global
    assert parse("has(a) || !(global() && has(b))").uses_global
    assert not parse("all()").uses_global
    assert not parse("a == 'global()'").uses_global


def test_selector_is_immutable_hashable_and_cached() -> None:
    selector = parse("a == 'b'")
    assert parse("a == 'b'") is selector
    with pytest.raises(dataclasses.FrozenInstanceError):
        selector.root = All()  # type: ignore[misc]
    assert {selector, parse('a == "b"'), parse("a=='b'")} == {selector}
    assert repr(selector) == "Selector('a == \"b\"')"
    assert Selector(Compare("a", ValueOp.EQ, "b")) == selector
    restored = pickle.loads(pickle.dumps(parse("has(a) || global()")))
    assert restored == parse("has(a) || global()")
    assert restored.matches({}) and not restored.matches({NS: "x"})


def test_matches_accepts_any_mapping() -> None:
    class Lazy(Mapping[str, str]):
        def __getitem__(self, key: str) -> str:
            if key == "a":
                return "b"
            raise KeyError(key)

        def __iter__(self) -> Iterator[str]:
            return iter(["a"])

        def __len__(self) -> int:
            return 1

    assert parse("a == 'b' && has(a) && c not in {'x'}").matches(Lazy())


def test_nodes_refuse_what_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        Compare("a", ValueOp.EQ, "both ' and \"")
    with pytest.raises(ValueError):
        Has("bad key")
    with pytest.raises(ValueError):
        Has("")
    with pytest.raises(ValueError):
        And((Has("a"),))


def test_parse_is_fast_on_large_input() -> None:
    text = " || ".join(f"(app{i} == 'v{i}' && tier not in {{'a', 'b'}})" for i in range(150))
    start = time.perf_counter()
    selector = parse(text)
    assert selector.matches({"app149": "v149"})
    labels = {"app3": "x", "tier": "a"}
    for _ in range(200):
        selector.matches(labels)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------------
# Property tests.

KEYS = [
    "a",
    "b",
    "app.kubernetes.io/name",
    NS,
    "k8s-app",
    "in",
    "has",
    "all",
    "not",
    "contains",
]
VALUE_TEXT = st.text(alphabet="ab '\"{}(),&|!= ", max_size=4).filter(
    lambda v: not ("'" in v and '"' in v)
)
LABEL_VALUE = st.sampled_from(["", "a", "b", "ab", "ba", "a b", "'", '"', "x"])
LABELS = st.dictionaries(st.sampled_from(KEYS), LABEL_VALUE | VALUE_TEXT, max_size=6)
KEY = st.sampled_from(KEYS)

LEAF: st.SearchStrategy[Node] = st.one_of(
    st.just(All()),
    st.just(Global()),
    st.builds(Has, KEY),
    st.builds(Compare, KEY, st.sampled_from(list(ValueOp)), VALUE_TEXT | LABEL_VALUE),
    st.builds(
        InSet,
        KEY,
        st.lists(VALUE_TEXT | LABEL_VALUE, max_size=3).map(tuple),
        st.booleans(),
    ),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    groups = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(st.builds(Not, children), groups.map(And), groups.map(Or))


TREES: st.SearchStrategy[Node] = st.recursive(LEAF, _extend, max_leaves=12)


def reference(node: Node, labels: Mapping[str, str]) -> bool:
    """A direct reading of Calico's ast.go Evaluate, kept apart from the compiled matcher."""
    if isinstance(node, All):
        return True
    if isinstance(node, Global):
        return NS not in labels
    if isinstance(node, Has):
        return node.key in labels
    if isinstance(node, Compare):
        if node.key not in labels:
            return node.op is ValueOp.NE
        actual = labels[node.key]
        return {
            ValueOp.EQ: actual == node.value,
            ValueOp.NE: actual != node.value,
            ValueOp.CONTAINS: node.value in actual,
            ValueOp.STARTS_WITH: actual[: len(node.value)] == node.value,
            ValueOp.ENDS_WITH: len(actual) >= len(node.value)
            and actual[len(actual) - len(node.value) :] == node.value,
        }[node.op]
    if isinstance(node, InSet):
        if node.key not in labels:
            return node.negated
        return (labels[node.key] in node.values) != node.negated
    if isinstance(node, Not):
        return not reference(node.operand, labels)
    if isinstance(node, And):
        return all(reference(o, labels) for o in node.operands)
    return any(reference(o, labels) for o in node.operands)


@given(TREES)
def test_round_trip(tree: Node) -> None:
    text = str(Selector(tree))
    parsed = parse(text)
    assert parsed.root == tree
    assert str(parsed) == text
    assert str(parse(str(parsed))) == text


@given(TREES, st.lists(LABELS, min_size=1, max_size=4))
def test_semantics_match_reference(tree: Node, label_maps: list[dict[str, str]]) -> None:
    selector = parse(str(Selector(tree)))
    for labels in label_maps:
        assert selector.matches(labels) is reference(tree, labels)


@given(TREES, TREES, LABELS)
def test_de_morgan_and_negation_invariants(a: Node, b: Node, labels: dict[str, str]) -> None:
    sa, sb = str(Selector(a)), str(Selector(b))
    truth_a, truth_b = parse(sa).matches(labels), parse(sb).matches(labels)
    assert parse(f"!({sa} && {sb})").matches(labels) == parse(f"!{sa} || !{sb}").matches(labels)
    assert parse(f"!({sa} || {sb})").matches(labels) == parse(f"!{sa} && !{sb}").matches(labels)
    assert parse(f"!({sa} && {sb})").matches(labels) is not (truth_a and truth_b)
    assert parse(f"!!{sa}").matches(labels) is truth_a
    assert parse(f"!(!{sa})").matches(labels) is truth_a
    # Precedence without parentheses: ! then && then ||.
    assert parse(f"{sa} || {sb} && !{sa}").matches(labels) is (truth_a or (truth_b and not truth_a))


@given(KEY, LABEL_VALUE, st.lists(LABEL_VALUE, max_size=3), LABELS)
def test_negative_operators_are_negations(
    key: str, value: str, values: list[str], labels: dict[str, str]
) -> None:
    members = ", ".join(quote(v) for v in values)
    assert parse(f"{key} != {quote(value)}").matches(labels) is not parse(
        f"{key} == {quote(value)}"
    ).matches(labels)
    assert parse(f"{key} not in {{{members}}}").matches(labels) is not parse(
        f"{key} in {{{members}}}"
    ).matches(labels)
    assert parse(f"!has({key})").matches(labels) is (key not in labels)


SELECTOR_ALPHABET = " \t()!&|=,{}'\"abc.-/_inotshwglea$\n"
FRAGMENTS = st.sampled_from(
    [
        "has(",
        "all()",
        "global()",
        " in ",
        " not in ",
        " contains ",
        " starts with ",
        " ends with ",
        "==",
        "!=",
        "&&",
        "||",
        "{",
        "}",
        "(",
        ")",
        "'v'",
        '"w"',
        ",",
        "!",
        "a",
        "b/c",
    ]
)


def _check_total(text: str) -> None:
    try:
        selector = parse(text)
    except SelectorError as err:
        assert 0 <= err.position <= len(text)
        assert str(err).startswith(f"invalid selector at position {err.position}: ")
    else:
        assert parse(str(selector)) == selector


@settings(deadline=1000)
@given(st.text(max_size=200))
def test_parser_only_raises_selector_error_on_any_text(text: str) -> None:
    _check_total(text)


@settings(deadline=1000)
@given(st.text(alphabet=SELECTOR_ALPHABET, max_size=80))
def test_parser_only_raises_selector_error_on_selector_like_text(text: str) -> None:
    _check_total(text)


@settings(deadline=1000)
@given(st.lists(FRAGMENTS, max_size=25).map("".join))
def test_parser_only_raises_selector_error_on_token_soup(text: str) -> None:
    _check_total(text)
