"""Untrusted text in the Markdown reports (report.md, replay's Markdown), which are pasted
into pull-request comments.

Decision authors and reasons, notes, warnings and flow-log samples come from people and
files flowfence does not control. Rendered as they are, `</details>` would close a section
early, `<img src=x onerror=...>` or `![](https://tracker)` would put markup or a remote image
into the comment, `[text](url)` a link, and `@everyone` or `@org/team` would notify people.
`text` makes such a string inert in prose and table cells; `code` keeps one inside inline
code, where Markdown and HTML are not interpreted but a pipe still ends a table cell.
"""

from __future__ import annotations

import re

# A mention is '@' followed by a user, org or team name; a zero-width joiner after the '@'
# keeps the text readable and the mention dead.
_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")
_NEWLINES = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")
_MARKDOWN = re.compile(r"([\\|\[\]])")  # emphasis (*, _) is harmless and left as written


def code(value: str) -> str:
    """Untrusted text inside inline code (`...`): no pipes, backticks or newlines."""
    return _NEWLINES.sub(" ", value.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'"))


def text(value: str) -> str:
    """Untrusted text in prose or a table cell: HTML-escaped, brackets (links, images)
    backslash-escaped, mentions broken, one line, no pipes that end a cell, no backticks
    that open code."""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _MARKDOWN.sub(r"\\\1", value.replace("`", "'"))
    return _MENTION.sub("@\u200d", _NEWLINES.sub(" ", value))
