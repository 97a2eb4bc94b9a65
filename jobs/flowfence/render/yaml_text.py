"""YAML as kubectl writes it, deterministic to the byte: block style, mappings in the order
given (apiVersion, kind, metadata, spec), sequences indented under their key, no line folding,
and every string a YAML 1.1 or 1.2 reader could take for something else single-quoted.

PyYAML's pure-Python emitter defines the bytes, but walks an event per node: a large cluster's
policies took seconds. libyaml's C emitter cannot indent sequences under their key, so `dump`
writes the documents it fully understands itself (dicts, lists, strings, ints, booleans, None;
every scalar plain or single-quoted by PyYAML's own analysis of it) and hands anything else to
PyYAML; tests/test_yaml_text.py holds the two to the same bytes on random documents.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Mapping
from typing import Any

import yaml
from yaml.emitter import Emitter
from yaml.resolver import Resolver

# Strings a YAML 1.1 or 1.2 reader could take for something else: numbers (incl. octal, hex,
# exponent and sexagesimal forms such as port ranges `1:59`), booleans, null.
_AMBIGUOUS = re.compile(
    r"""[-+]?(\d[\d_]*|0o[0-7_]+|0x[\da-f_]+|0b[01_]+|(\.\d+|\d[\d_]*(\.\d*)?)(e[-+]?\d+)?
        |\.inf|\.nan)
      |\d+(:\d+)+
      |true|false|yes|no|on|off|y|n|null|~|""",
    re.IGNORECASE | re.VERBOSE,
)


class _Dumper(yaml.SafeDumper):
    """Block style, sequences indented under their key (kubectl's style)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    resolved = dumper.resolve(yaml.ScalarNode, data, (True, False))  # type: ignore[no-untyped-call]
    if resolved != tag or _AMBIGUOUS.fullmatch(data):
        return dumper.represent_scalar(tag, data, style="'")
    return dumper.represent_scalar(tag, data)


_Dumper.add_representer(str, _represent_str)


def dump(doc: Mapping[str, Any]) -> bytes:
    try:
        return fast_dump(doc)
    except Unsupported:
        return pyyaml_dump(doc)


def pyyaml_dump(doc: Mapping[str, Any]) -> bytes:
    """The reference: PyYAML's emitter with kubectl's layout."""
    text = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1 << 20,
        allow_unicode=False,
    )
    return text.encode("utf-8")


class Unsupported(Exception):
    """A document (or scalar) the fast emitter leaves to PyYAML."""


_STR = "tag:yaml.org,2002:str"
_RESOLVER = Resolver()
_ANALYSER = Emitter(io.StringIO())
_SIMPLE_KEY = 128  # PyYAML writes longer keys in the explicit `? key` form


def _scalar(value: object, key: bool = False) -> str:
    """`value` as PyYAML writes it in block context (`key`: a simple mapping key)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        raise Unsupported
    return _string(value, key)


# A policy tree repeats its strings (ports, CIDRs, selectors, keys) thousands of times, and
# PyYAML's analysis of a scalar is the emitter's main cost: each string is analysed once.
@functools.lru_cache(maxsize=1 << 16)
def _string(value: str, key: bool) -> str:
    analysis = _ANALYSER.analyze_scalar(value)
    if analysis.multiline or (key and (analysis.empty or len(value) >= _SIMPLE_KEY)):
        raise Unsupported
    resolved = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    quoted = resolved != _STR or _AMBIGUOUS.fullmatch(value)
    if not quoted and analysis.allow_block_plain:
        return value
    if analysis.allow_single_quoted:
        return "'" + value.replace("'", "''") + "'"
    raise Unsupported  # double quotes: PyYAML's escaping rules


def _value(value: object) -> str:
    if type(value) is dict and not value:
        return "{}"
    if type(value) is list and not value:
        return "[]"
    return _scalar(value)


def _mapping(node: dict[Any, Any], indent: int, lead: str, out: list[str]) -> None:
    pad = lead
    for key, value in node.items():
        name = _scalar(key, key=True)
        if type(value) is dict and value:
            out.append(f"{pad}{name}:")
            _mapping(value, indent + 2, " " * (indent + 2), out)
        elif type(value) is list and value:
            out.append(f"{pad}{name}:")
            _sequence(value, indent + 2, out)
        else:
            out.append(f"{pad}{name}: {_value(value)}")
        pad = " " * indent


def _sequence(node: list[Any], indent: int, out: list[str]) -> None:
    lead = " " * indent + "- "
    for item in node:
        if type(item) is dict and item:
            _mapping(item, indent + 2, lead, out)
        elif type(item) is list and item:
            raise Unsupported
        else:
            out.append(lead + _value(item))


def fast_dump(doc: Mapping[str, Any]) -> bytes:
    """The bytes of `pyyaml_dump(doc)` for a non-empty dict of the supported kinds."""
    if type(doc) is not dict or not doc:
        raise Unsupported
    out: list[str] = []
    _mapping(doc, 0, "", out)
    out.append("")
    return "\n".join(out).encode("utf-8")
