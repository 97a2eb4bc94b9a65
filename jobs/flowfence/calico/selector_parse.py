"""Tokenizer and recursive-descent parser for Calico selectors.

A port of libcalico-go `lib/selector/tokenizer/tokenizer.go` and `lib/selector/parser/parser.go`:
it accepts exactly the texts Calico accepts and builds the same tree, with these Calico facts
kept on purpose:

- whitespace is only space and tab (a newline is an unexpected character);
- strings are `'...'` or `"..."` with no escapes, so a value never holds its own quote;
- after a label the operators are matched as words: `contains`, `starts with`, `ends with`,
  `in`, `not in` (`startswith`, `endswith` and `notin` are accepted too);
- `has(`, `all(` and `global(` must be written without a space before the parenthesis;
- a run of `!` folds to one negation or none;
- `in {}` and a trailing comma `in {'a',}` are legal;
- `!` binds tighter than `&&`, which binds tighter than `||`; groups are not flattened.

One limit Calico lacks: parentheses nest at most MAX_NESTING deep, so hostile input cannot
exhaust the Python stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from flowfence.calico.selector_ast import (
    KEY_CHARS,
    MAX_KEY_LENGTH,
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
from flowfence.core.errors import PolicyError

MAX_NESTING = 64
_WHITESPACE = " \t"
_WINDOW = 40  # characters shown either side of the caret in an error message
_OPERATORS = "an operator (==, !=, in, not in, contains, starts with, ends with)"
_OPERAND = "a label key, '!', '(', has(key), all() or global()"


class SelectorError(PolicyError):
    """A selector that Calico would reject; `position` is a 0-based index into `selector`."""

    def __init__(self, selector: str, position: int, reason: str) -> None:
        self.selector = selector
        self.position = position
        self.reason = reason
        super().__init__(_format(selector, position, reason))

    def __reduce__(self) -> tuple[type[SelectorError], tuple[str, int, str]]:
        return (type(self), (self.selector, self.position, self.reason))


def _format(selector: str, position: int, reason: str) -> str:
    start = max(0, position - _WINDOW)
    end = min(len(selector), position + _WINDOW)
    lead = "..." if start else ""
    tail = "..." if end < len(selector) else ""
    # Control characters would break the caret line; each shown character keeps width one.
    shown = "".join(
        " " if c == "\t" else c if c.isprintable() else "?" for c in selector[start:end]
    )
    caret = " " * (len(lead) + position - start) + "^"
    return f"invalid selector at position {position}: {reason}\n  {lead}{shown}{tail}\n  {caret}"


class Tok(Enum):
    LABEL = auto()
    STRING = auto()
    LBRACE = auto()
    RBRACE = auto()
    COMMA = auto()
    OP = auto()  # a ValueOp; the token's text is the operator
    IN = auto()
    NOT_IN = auto()
    NOT = auto()
    HAS = auto()
    ALL = auto()
    GLOBAL = auto()
    LPAREN = auto()
    RPAREN = auto()
    AND = auto()
    OR = auto()
    EOF = auto()


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str  # label key, string value, or operator text
    pos: int


_PUNCT = {
    "(": Tok.LPAREN,
    ")": Tok.RPAREN,
    "{": Tok.LBRACE,
    "}": Tok.RBRACE,
    ",": Tok.COMMA,
}
_DOUBLE = {"=": ("==", Tok.OP), "&": ("&&", Tok.AND), "|": ("||", Tok.OR)}
# Tried in this order after a label, as Calico does; each entry is the words of the operator.
_WORD_OPERATORS: tuple[tuple[tuple[str, ...], Tok, str], ...] = (
    (("contains",), Tok.OP, ValueOp.CONTAINS.value),
    (("starts", "with"), Tok.OP, ValueOp.STARTS_WITH.value),
    (("ends", "with"), Tok.OP, ValueOp.ENDS_WITH.value),
    (("not", "in"), Tok.NOT_IN, "not in"),
    (("in",), Tok.IN, "in"),
)


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def _key_end(text: str, i: int) -> int:
    while i < len(text) and text[i] in KEY_CHARS:
        i += 1
    return i


def _cut_words(text: str, i: int, words: tuple[str, ...]) -> int | None:
    """Index after `words` (whitespace allowed between them) at a word boundary, else None.

    Calico also skips whitespace after the last word before testing the boundary, so it
    rejects `a starts with b` in the tokenizer; we reject it in the parser instead ("expected
    a quoted string"), which accepts the same texts and points at the real mistake.
    """
    for n, word in enumerate(words):
        if n:
            i = _skip_ws(text, i)
        if not text.startswith(word, i):
            return None
        i += len(word)
    if i < len(text) and text[i] in KEY_CHARS:
        return None
    return i


def _cut_key(text: str, i: int, what: str) -> tuple[str, int]:
    end = _key_end(text, i)
    if end == i:
        raise SelectorError(text, i, f"expected {what}")
    if end - i > MAX_KEY_LENGTH:
        raise SelectorError(text, i, f"label key longer than {MAX_KEY_LENGTH} characters")
    return text[i:end], end


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while True:
        i = _skip_ws(text, i)
        if i >= len(text):
            tokens.append(Token(Tok.EOF, "", len(text)))
            return tokens
        c = text[i]
        if c in _PUNCT:
            tokens.append(Token(_PUNCT[c], c, i))
            i += 1
        elif c in "'\"":
            close = text.find(c, i + 1)
            if close < 0:
                raise SelectorError(text, i, f"unterminated string: expected a closing {c}")
            tokens.append(Token(Tok.STRING, text[i + 1 : close], i))
            i = close + 1
        elif c in _DOUBLE:
            pair, kind = _DOUBLE[c]
            if not text.startswith(pair, i):
                raise SelectorError(text, i, f"expected '{pair}'")
            tokens.append(Token(kind, pair, i))
            i += 2
        elif c == "!":
            if text.startswith("!=", i):
                tokens.append(Token(Tok.OP, "!=", i))
                i += 2
            else:
                tokens.append(Token(Tok.NOT, "!", i))
                i += 1
        elif tokens and tokens[-1].kind is Tok.LABEL:
            i = _word_operator(text, i, tokens)
        elif text.startswith("has(", i):
            key, end = _cut_key(text, _skip_ws(text, i + 4), "a label key inside has(...)")
            end = _skip_ws(text, end)
            if not text.startswith(")", end):
                raise SelectorError(text, end, "expected ')' to close has(")
            tokens.append(Token(Tok.HAS, key, i))
            i = end + 1
        elif text.startswith(("all(", "global("), i):
            name = "all" if text.startswith("all(", i) else "global"
            end = _skip_ws(text, i + len(name) + 1)
            if not text.startswith(")", end):
                raise SelectorError(text, end, f"expected ')' after '{name}('")
            tokens.append(Token(Tok.ALL if name == "all" else Tok.GLOBAL, name, i))
            i = end + 1
        else:
            if text[i] not in KEY_CHARS:
                raise SelectorError(text, i, f"unexpected character {c!r}: expected {_OPERAND}")
            key, i_end = _cut_key(text, i, _OPERAND)
            tokens.append(Token(Tok.LABEL, key, i))
            i = i_end


def _word_operator(text: str, i: int, tokens: list[Token]) -> int:
    for words, kind, op_text in _WORD_OPERATORS:
        end = _cut_words(text, i, words)
        if end is not None:
            tokens.append(Token(kind, op_text, i))
            return end
    raise SelectorError(text, i, f"expected {_OPERATORS} after label '{tokens[-1].text}'")


def _describe(tok: Token) -> str:
    if tok.kind is Tok.EOF:
        return "the end of the selector"
    if tok.kind is Tok.STRING:
        return f"the string {tok.text!r}"
    if tok.kind is Tok.LABEL:
        return f"the label {tok.text!r}"
    if tok.kind in (Tok.HAS, Tok.ALL, Tok.GLOBAL):
        return f"'{tok.text}(...)'"
    return f"'{tok.text}'"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind is not Tok.EOF:
            self.i += 1
        return tok

    def fail(self, tok: Token, expected: str) -> SelectorError:
        return SelectorError(self.text, tok.pos, f"expected {expected}, found {_describe(tok)}")

    def parse(self) -> Node:
        if self.peek().kind is Tok.EOF:
            return All()
        node = self.parse_or(0)
        tok = self.peek()
        if tok.kind is not Tok.EOF:
            raise self.fail(tok, "'&&', '||' or the end of the selector")
        return node

    def parse_or(self, depth: int) -> Node:
        nodes = [self.parse_and(depth)]
        while self.peek().kind is Tok.OR:
            self.take()
            nodes.append(self.parse_and(depth))
        return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))

    def parse_and(self, depth: int) -> Node:
        nodes = [self.parse_operation(depth)]
        while self.peek().kind is Tok.AND:
            self.take()
            nodes.append(self.parse_operation(depth))
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def parse_operation(self, depth: int) -> Node:
        negated = False
        while self.peek().kind is Tok.NOT:
            self.take()
            negated = not negated
        tok = self.take()
        node: Node
        if tok.kind is Tok.HAS:
            node = Has(tok.text)
        elif tok.kind is Tok.ALL:
            node = All()
        elif tok.kind is Tok.GLOBAL:
            node = Global()
        elif tok.kind is Tok.LABEL:
            node = self.parse_label_operation(tok)
        elif tok.kind is Tok.LPAREN:
            if depth >= MAX_NESTING:
                raise SelectorError(
                    self.text, tok.pos, f"parentheses nested deeper than {MAX_NESTING}"
                )
            node = self.parse_or(depth + 1)
            close = self.take()
            if close.kind is not Tok.RPAREN:
                raise self.fail(close, f"'&&', '||' or ')' closing the '(' at position {tok.pos}")
        else:
            raise self.fail(tok, _OPERAND)
        return Not(node) if negated else node

    def parse_label_operation(self, label: Token) -> Node:
        op = self.take()
        if op.kind is Tok.OP:
            value = self.take()
            if value.kind is not Tok.STRING:
                raise self.fail(value, f"a quoted string after '{op.text}'")
            return Compare(label.text, ValueOp(op.text), value.text)
        if op.kind in (Tok.IN, Tok.NOT_IN):
            brace = self.take()
            if brace.kind is not Tok.LBRACE:
                raise self.fail(brace, f"a set literal {{...}} after '{op.text}'")
            return InSet(label.text, self.parse_set_members(brace), op.kind is Tok.NOT_IN)
        raise self.fail(op, f"{_OPERATORS} after label '{label.text}'")

    def parse_set_members(self, brace: Token) -> tuple[str, ...]:
        values: list[str] = []
        expected = "a quoted string or '}'"
        while self.peek().kind is Tok.STRING:
            values.append(self.take().text)
            if self.peek().kind is not Tok.COMMA:
                expected = "',' or '}'"
                break
            self.take()
        close = self.take()
        if close.kind is not Tok.RBRACE:
            raise self.fail(close, f"{expected} in the set opened at position {brace.pos}")
        return tuple(values)


def parse_node(text: str) -> Node:
    """Parse `text` into a tree; raises SelectorError and nothing else for bad input."""
    return _Parser(text).parse()
