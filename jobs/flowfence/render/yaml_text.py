"""YAML as kubectl writes it, deterministic to the byte: block style, mappings in the order
given (apiVersion, kind, metadata, spec), sequences indented under their key, no line folding,
and every string a YAML 1.1 or 1.2 reader could take for something else single-quoted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

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
    text = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1 << 20,
        allow_unicode=False,
    )
    return text.encode("utf-8")
