"""A parser for jq programs (jq 1.8 grammar) into a small AST for the compiler.

It follows jq's parser.y: `Query` (`|`, `,`, `def`, `as`, `label`) over `Expr` (binary operators by
precedence) over `Term` (postfix chains). What the compiler does not handle (assignment, slices,
destructuring, modules, `$ENV`...) raises `Unsupported` with the construct's name, so such a rule runs on
libjq whole; the parser never guesses at a construct it does not model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from stream_processor.matcher.jqlex import JqSyntaxError, Token, tokenize


class Unsupported(Exception):
    """The program uses something outside the compiled subset; `reason` names it for `--explain`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Node:
    """Base of the AST nodes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Identity(Node):
    pass


@dataclass(frozen=True, slots=True)
class Recurse(Node):
    pass


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class Index(Node):
    """`target[key]` where key is evaluated against the input of the whole term (jq's semantics)."""

    target: Node
    key: Node
    optional: bool = False  # `.a?`: jq's INDEX_OPT suppresses the indexing error only


@dataclass(frozen=True, slots=True)
class Iterate(Node):
    target: Node
    optional: bool = False  # `.[]?`: EACH_OPT suppresses the iteration error only


@dataclass(frozen=True, slots=True)
class Try(Node):
    body: Node
    catch: Node | None


@dataclass(frozen=True, slots=True)
class Pipe(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Comma(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Comparisons, `and`, `or`, `//` and arithmetic (the compiler refuses arithmetic)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True, slots=True)
class If(Node):
    cond: Node
    then: Node
    otherwise: Node  # `if c then a end` is `else .`


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class StringInterp(Node):
    """A string with interpolations: literal text pieces and expressions."""

    parts: tuple[str | Node, ...]


@dataclass(frozen=True, slots=True)
class Bind(Node):
    """`source as $name | body`: body runs once per output of source, with `.` unchanged."""

    source: Node
    name: str
    body: Node


@dataclass(frozen=True, slots=True)
class Reduce(Node):
    """`reduce source as $name (init; update)`; with `extract` set (or `foreach`), a foreach."""

    source: Node
    name: str
    init: Node
    update: Node
    foreach: bool = False
    extract: Node | None = None


@dataclass(frozen=True, slots=True)
class Var(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Label(Node):
    """`label $name | body`: `break $name` inside body ends body's outputs."""

    name: str
    body: Node


@dataclass(frozen=True, slots=True)
class Break(Node):
    name: str


@dataclass(frozen=True, slots=True)
class FuncDef(Node):
    """`def name(params): body; rest`: params are filter names, or `$name` for value parameters."""

    name: str
    params: tuple[str, ...]
    body: Node
    rest: Node


@dataclass(frozen=True, slots=True)
class ArrayCons(Node):
    body: Node | None


@dataclass(frozen=True, slots=True)
class ObjectCons(Node):
    entries: tuple[tuple[Node, Node], ...]


# `@json "x\(.a)"` inserts `.a | tojson`; other formats are `format("name")`, as jq compiles them.
_FORMATS = {"@text": "tostring", "@json": "tojson"}


def _format_call(name: str) -> Node:
    if name in _FORMATS:
        return Call(_FORMATS[name], ())
    return Call("format", (Literal(name[1:]),))


_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_ASSIGNMENTS = ("=", "|=", "+=", "-=", "*=", "/=", "%=", "//=")
# Binding power of Expr operators, from jq's precedence declarations (higher binds tighter).
_BINARY: dict[str, tuple[int, str]] = {
    "//": (1, "right"),
    **{op: (2, "nonassoc") for op in _ASSIGNMENTS},
    "or": (3, "left"),
    "and": (4, "left"),
    **{op: (5, "nonassoc") for op in _COMPARISONS},
    "+": (6, "left"),
    "-": (6, "left"),
    "*": (7, "left"),
    "/": (7, "left"),
    "%": (7, "left"),
}


@functools.lru_cache(maxsize=1024)
def parse(source: str) -> Node:
    """Parse a whole program. Raises Unsupported for constructs outside the subset or unreadable text.

    Cached: validation, the matcher and the index each read the same rules (the tree is immutable).
    """
    try:
        lexed = tokenize(source)
    except JqSyntaxError as error:
        raise Unsupported(f"cannot be read by the compiler: {error}") from error
    if lexed.ambiguous_comment:
        raise Unsupported("a comment ends in a backslash")
    parser = _Parser(lexed.tokens, source)
    node = parser.query()
    parser.expect_eof()
    return node


class _Parser:
    def __init__(self, tokens: tuple[Token, ...], source: str) -> None:
        self.tokens = tokens
        self.source = source
        self.i = 0

    # -- token helpers
    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "EOF":
            self.i += 1
        return token

    def at_op(self, *ops: str) -> bool:
        token = self.tokens[self.i]
        return token.kind == "OP" and token.text in ops

    def at_keyword(self, *words: str) -> bool:
        token = self.tokens[self.i]
        return token.kind == "KEYWORD" and token.text in words

    def expect_op(self, op: str) -> None:
        token = self.next()
        if token.kind != "OP" or token.text != op:
            raise Unsupported(f"syntax: expected `{op}` at {token.pos}, found {token.text or 'end'!r}")

    def expect_keyword(self, word: str) -> None:
        token = self.next()
        if token.kind != "KEYWORD" or token.text != word:
            raise Unsupported(f"syntax: expected `{word}` at {token.pos}, found {token.text or 'end'!r}")

    def expect_eof(self) -> None:
        token = self.peek()
        if token.kind != "EOF":
            raise Unsupported(f"syntax: unexpected {token.text!r} at {token.pos}")

    # -- grammar
    def query(self) -> Node:
        """Query: `|` (right assoc, lowest) over `,` (left assoc) over Expr."""
        if self.at_keyword("def"):
            return self.func_def()
        if self.at_keyword("label"):
            self.next()
            token = self.next()
            if token.kind != "VAR":
                raise Unsupported("syntax: `label` without a `$name`")
            self.expect_op("|")
            return Label(token.text, self.query())
        left = self.comma()
        if self.at_keyword("as"):
            raise Unsupported("uses variables (`as`)")
        if self.at_op("|"):
            self.next()
            return Pipe(left, self.query())
        return left

    def func_def(self) -> Node:
        self.expect_keyword("def")
        token = self.next()
        if token.kind not in ("IDENT", "KEYWORD") or "::" in token.text:
            raise Unsupported("syntax: a `def` without a plain name")
        params: list[str] = []
        if self.at_op("("):
            self.next()
            while True:
                param = self.next()
                if param.kind not in ("IDENT", "VAR", "KEYWORD") or param.text in ("$__loc__", "$ENV"):
                    raise Unsupported("syntax: a `def` parameter")
                params.append(param.text)
                if self.at_op(";"):
                    self.next()
                    continue
                self.expect_op(")")
                break
        self.expect_op(":")
        body = self.query()
        self.expect_op(";")
        return FuncDef(token.text, tuple(params), body, self.query())

    def comma(self) -> Node:
        left = self.comma_operand()
        while self.at_op(","):
            self.next()
            left = Comma(left, self.comma_operand())
        return left

    def comma_operand(self) -> Node:
        """Expr, or `Expr as $name | Query` (the body runs to the end of the enclosing query)."""
        operand = self.expr(0)
        if not self.at_keyword("as"):
            return operand
        self.next()
        token = self.next()
        if token.kind != "VAR":
            raise Unsupported("uses destructuring (`as [...]` / `as {...}`)")
        if token.text in ("$__loc__", "$ENV"):
            raise Unsupported(f"binds `{token.text}`")
        if self.at_op("?//"):
            raise Unsupported("uses destructuring alternatives (`?//`)")
        self.expect_op("|")
        return Bind(operand, token.text, self.query())

    def expr(self, min_power: int) -> Node:
        left = self.term()
        while True:
            token = self.peek()
            op = token.text if token.kind in ("OP", "KEYWORD") else ""
            if op not in _BINARY:
                return left
            power, assoc = _BINARY[op]
            if power < min_power:
                return left
            if op in _ASSIGNMENTS:
                raise Unsupported(f"uses assignment `{op}`")
            self.next()
            right = self.expr(power if assoc == "right" else power + 1)
            left = Binary(op, left, right)
            if assoc == "nonassoc":
                following = self.peek()
                if following.kind == "OP" and _BINARY.get(following.text, (0, ""))[0] == power:
                    raise Unsupported(f"syntax: `{op}` is non-associative")

    def term(self) -> Node:
        node = self.primary()
        return self.postfix(node)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.kind == "FIELD":
                self.next()
                node = Index(node, Literal(token.text), self._question())
            elif token.kind == "OP" and token.text == "." and self.tokens[self.i + 1].kind == "STR":
                self.next()
                key = self.string_node(self.next())
                node = Index(node, key, self._question())
            elif token.kind == "OP" and token.text == "." and self.tokens[self.i + 1].text == "[":
                self.next()
                node = self.bracket_suffix(node)
            elif token.kind == "OP" and token.text == "[":
                node = self.bracket_suffix(node)
            elif token.kind == "OP" and token.text == "?":
                self.next()
                node = Try(node, None)
            else:
                return node

    def _question(self) -> bool:
        if self.at_op("?"):
            self.next()
            return True
        return False

    def bracket_suffix(self, target: Node) -> Node:
        self.expect_op("[")
        if self.at_op("]"):
            self.next()
            return Iterate(target, self._question())
        if self.at_op(":"):
            raise Unsupported("uses slices (`.[a:b]`)")
        key = self.query()
        if self.at_op(":"):
            raise Unsupported("uses slices (`.[a:b]`)")
        self.expect_op("]")
        return Index(target, key, self._question())

    def primary(self) -> Node:
        token = self.next()
        kind, text = token.kind, token.text
        if kind == "NUM":
            return Literal(_number(text))
        if kind == "STR":
            return self.string_node(token)
        if kind == "FORMAT":
            if self.peek().kind == "STR":
                return self.string_node(self.next(), text)
            return _format_call(text)
        if kind == "VAR":
            if text == "$__loc__":
                line = self.source.count("\n", 0, token.pos) + 1
                return ObjectCons(((Literal("file"), Literal("<top-level>")), (Literal("line"), Literal(line))))
            if text == "$ENV":
                raise Unsupported(f"uses `{text}`")
            return Var(text)
        if kind == "FIELD":
            self.i -= 1
            return Identity()
        if kind == "OP":
            if text == ".":
                if self.peek().kind == "STR":
                    self.i -= 1
                    return Identity()
                if self.at_op("["):
                    self.i -= 1
                    return Identity()
                return Identity()
            if text == "..":
                return Recurse()
            if text == "-":
                operand = self.term()
                return Negate(operand)
            if text == "(":
                inner = self.query()
                self.expect_op(")")
                return inner
            if text == "[":
                if self.at_op("]"):
                    self.next()
                    return ArrayCons(None)
                body = self.query()
                self.expect_op("]")
                return ArrayCons(body)
            if text == "{":
                return self.object_body()
            raise Unsupported(f"syntax: unexpected `{text}` at {token.pos}")
        if kind == "KEYWORD":
            if text == "if":
                return self.if_body()
            if text == "try":
                body = self.term()
                catch = None
                if self.at_keyword("catch"):
                    self.next()
                    catch = self.term()
                return Try(body, catch)
            if text in ("reduce", "foreach"):
                return self.reduce_body(text == "foreach")
            if text in ("def", "label"):
                self.i -= 1
                return self.query_in_term()
            if text == "__loc__":
                raise Unsupported("uses `$__loc__`")
            raise Unsupported(f"syntax: unexpected `{text}` at {token.pos}")
        if kind == "IDENT":
            if text == "break":
                label = self.next()
                if label.kind != "VAR":
                    raise Unsupported("syntax: `break` without a `$name`")
                return Break(label.text)
            if "::" in text:
                raise Unsupported("uses modules")
            args: list[Node] = []
            if self.at_op("("):
                self.next()
                args.append(self.query())
                while self.at_op(";"):
                    self.next()
                    args.append(self.query())
                self.expect_op(")")
            return Call(text, tuple(args))
        raise Unsupported(f"syntax: unexpected end at {token.pos}")

    def query_in_term(self) -> Node:
        """jq reads `def f: ...; body` and `label $x | body` where a term starts: the body runs to the end."""
        return self.query()

    def reduce_body(self, foreach: bool) -> Node:
        source = self.expr(0)
        self.expect_keyword("as")
        token = self.next()
        if token.kind != "VAR" or token.text in ("$__loc__", "$ENV"):
            raise Unsupported("uses destructuring in `reduce`/`foreach`")
        if self.at_op("?//"):
            raise Unsupported("uses destructuring alternatives (`?//`)")
        self.expect_op("(")
        init = self.query()
        self.expect_op(";")
        update = self.query()
        extract = None
        if foreach and self.at_op(";"):
            self.next()
            extract = self.query()
        self.expect_op(")")
        return Reduce(source, token.text, init, update, foreach, extract)

    def if_body(self) -> Node:
        cond = self.query()
        self.expect_keyword("then")
        then = self.query()
        if self.at_keyword("elif"):
            self.next()
            return If(cond, then, self.if_body())
        if self.at_keyword("else"):
            self.next()
            otherwise = self.query()
            self.expect_keyword("end")
            return If(cond, then, otherwise)
        self.expect_keyword("end")
        return If(cond, then, Identity())

    def object_body(self) -> Node:
        entries: list[tuple[Node, Node]] = []
        if self.at_op("}"):
            self.next()
            return ObjectCons(())
        while True:
            token = self.next()
            key: Node
            if token.kind in ("IDENT", "KEYWORD"):
                if "::" in token.text:
                    raise Unsupported("uses modules")
                key = Literal(token.text)
            elif token.kind == "STR":
                key = self.string_node(token)
            elif token.kind == "VAR":
                if token.text in ("$__loc__", "$ENV"):
                    raise Unsupported(f"uses `{token.text}`")
                if not self.at_op(":"):
                    # `{$x}` is `{x: $x}`; `{$x: v}` uses the variable's value as the key.
                    entries.append((Literal(token.text[1:]), Var(token.text)))
                    if self.at_op(","):
                        self.next()
                        continue
                    self.expect_op("}")
                    return ObjectCons(tuple(entries))
                key = Var(token.text)
            elif token.kind == "FORMAT":
                raise Unsupported(f"uses the format `{token.text}`")
            elif token.kind == "OP" and token.text == "(":
                key = self.query()
                self.expect_op(")")
                if not self.at_op(":"):
                    raise Unsupported("syntax: `(key)` without a value in an object")
            else:
                raise Unsupported(f"syntax: unexpected {token.text!r} in an object at {token.pos}")
            if self.at_op(":"):
                self.next()
                value = self.dict_expr()
            else:
                value = Index(Identity(), key)
            entries.append((key, value))
            if self.at_op(","):
                self.next()
                continue
            self.expect_op("}")
            return ObjectCons(tuple(entries))

    def dict_expr(self) -> Node:
        """DictExpr: Expr ('|' DictExpr)* -- no bare commas inside an object value."""
        left = self.expr(0)
        if self.at_keyword("as"):
            raise Unsupported("uses variables (`as`)")
        if self.at_op("|"):
            self.next()
            return Pipe(left, self.dict_expr())
        return left

    def string_node(self, token: Token, format_name: str = "@text") -> Node:
        parts: list[str | Node] = []
        for part in token.parts:
            if isinstance(part, str):
                parts.append(part)
            else:
                inner = _Parser(part, self.source)
                node = inner.query()
                inner.expect_eof()
                if format_name != "@text":
                    node = Pipe(node, _format_call(format_name))
                parts.append(node)
        if all(isinstance(part, str) for part in parts):
            return Literal("".join(part for part in parts if isinstance(part, str)))
        return StringInterp(tuple(parts))


def _number(text: str) -> int | float:
    """A number literal, only where jq's literal-preserving printing equals what Python prints."""
    if text.isdigit() and (text == "0" or not text.startswith("0")):
        return int(text)
    try:
        value = float(text)
    except ValueError as error:  # pragma: no cover - the lexer only makes valid numbers
        raise Unsupported(f"the number literal {text}") from error
    if repr(value) != text:
        raise Unsupported(f"the number literal {text} (jq keeps its exact text)")
    return value
