"""Refuse rules that can run or allocate without bound on one event ("Rules that always end", docs/rules.md).

A rule runs once per event, hundreds of thousands of times a second, in the worker that holds a shard. A
program that loops forever (`def f: f; f`, `repeat(.)`), counts to a billion (`range(1e9)`) or builds a
gigabyte from one number (`"x" * 1e9`, `.[1e9] = 1`) would stop the shard; libjq cannot even be interrupted.
The check reads jq's tokens (matcher/jqlex.py), nested by brackets, so it sees every program jq accepts,
`def` and all, and tells calls of builtins from user definitions of the same name by jq's own scoping.

What is refused and why is listed in docs/rules.md; the run-time budget (matcher/watchdog.py and the libjq
worker) stops what a static check cannot see, such as a regex that backtracks on a long userAgent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from stream_processor.matcher.jqlex import JqSyntaxError, Token, tokenize

RANGE_CAP = 100_000
"""`range` may count at most this many numbers, and only from numbers written in the rule."""
REPEAT_CAP = 1_000
"""`*` may repeat a string at most this many times, by a number written in the rule."""
INDEX_CAP = 100_000
"""An array index written through a path (`.[n] = v`, `setpath`, `pick`) is a literal up to this."""

_LOOPS = {
    ("repeat", 1): "`repeat(f)` runs until `f` fails, which may be never",
    ("while", 2): "`while(cond; update)` runs until `cond` is false, which may be never",
    ("until", 2): "`until(cond; next)` runs until `cond` is true, which may be never",
}
_COMBINATIONS = "its outputs multiply with every array it combines (millions from a few small arrays)"
_FROMSTREAM = "it builds arrays as long as the indexes in the stream, which come from the event"
# Operators that bind looser than `*` and end its operands, or end an assignment's left side.
_LOWER_OPS = frozenset(
    {"|", ",", ";", ":", "//", "?//", "==", "!=", "<", "<=", ">", ">=", "=", "|=", "+=", "-=", "*=", "/=", "%=", "//="}
)
_ASSIGN_OPS = frozenset({"=", "|=", "+=", "-=", "*=", "/=", "%=", "//="})
_PATH_ENDS = frozenset({"|", ",", ";", "//", "?//", *_ASSIGN_OPS})
_KEYWORD_BREAKS = frozenset(
    {"and", "or", "as", "if", "then", "elif", "else", "end", "reduce", "foreach", "try", "catch", "label", "def"}
)
_PATH_KEYWORD_BREAKS = _KEYWORD_BREAKS - {"and", "or"}


class _Unreadable(Exception):
    """The token structure is not one this check understands: the rule is refused, not guessed at."""


@dataclass(frozen=True, slots=True)
class _Group:
    """A bracketed part of the program: `(...)`, `[...]`, `{...}`, or an `if ... end` block (`open` = "if")."""

    open: str
    items: tuple[_Item, ...]
    pos: int


_Item = Token | _Group


@dataclass(eq=False, slots=True)
class _Def:
    """One `def` in the program: a node of the call graph."""

    name: str
    arity: int
    pos: int
    calls: list[_Def] = field(default_factory=list)


_PARAM = object()  # a parameter of an enclosing def: calls of it run the caller's text, not a new body


class _Scope:
    def __init__(self, parent: _Scope | None) -> None:
        self.parent = parent
        self.names: dict[tuple[str, int], object] = {}

    def resolve(self, key: tuple[str, int]) -> object | None:
        """The def or parameter `key` names here; None: jq's builtin of that name."""
        scope: _Scope | None = self
        while scope is not None:
            if key in scope.names:
                return scope.names[key]
            scope = scope.parent
        return None


def bounds_violations(program: str) -> list[str]:
    """What in `program` can run or allocate without bound on one event; empty when it always ends.

    One message per finding, naming the construct. A program this check cannot read is refused too.
    """
    try:
        lexed = tokenize(program)
        items = _nest(lexed.tokens)
        checker = _Checker(program)
        checker.region(items, 0, _Scope(None), None, frozenset())
        found = checker.found + checker.recursion()
    except (JqSyntaxError, _Unreadable) as error:
        return [f"cannot be checked for bounds: {error}"]
    except RecursionError:
        return ["is nested too deeply to be checked for bounds"]
    unique: list[str] = []
    for message in found:
        if message not in unique:
            unique.append(message)
    return unique


# -- structure


def _nest(tokens: Sequence[Token]) -> tuple[_Item, ...]:
    """Tokens into a tree by brackets; the EOF token is dropped."""
    stack: list[tuple[str, int, list[_Item]]] = [("", 0, [])]
    closing = {")": "(", "]": "[", "}": "{"}
    for token in tokens:
        if token.kind == "EOF":
            break
        if token.kind == "OP" and token.text in ("(", "[", "{"):
            stack.append((token.text, token.pos, []))
        elif token.kind == "OP" and token.text in closing:
            opened, pos, items = stack.pop() if len(stack) > 1 else ("", 0, [])
            if opened != closing[token.text]:
                raise _Unreadable(f"unbalanced `{token.text}` at {token.pos}")
            stack[-1][2].append(_Group(opened, tuple(items), pos))
        else:
            stack[-1][2].append(token)
    if len(stack) != 1:
        raise _Unreadable(f"`{stack[-1][0]}` at {stack[-1][1]} is not closed")
    return tuple(stack[0][2])


def _is(item: _Item | None, kind: str, *texts: str) -> bool:
    return isinstance(item, Token) and item.kind == kind and (not texts or item.text in texts)


def _op(item: _Item | None, *texts: str) -> bool:
    return _is(item, "OP", *texts)


def _split(items: Sequence[_Item], separator: str) -> list[tuple[_Item, ...]]:
    """`items` cut at top-level `separator` operators.

    A `def` inside a part keeps its own `;`, and an `if ... end` block its own commas (`{a: if c then 1, 2
    else 3 end}`); a keyword written as an object key (`{if: 1}`) opens nothing.
    """
    parts: list[tuple[_Item, ...]] = []
    current: list[_Item] = []
    open_defs = 0
    open_ifs = 0
    for k, item in enumerate(items):
        following = items[k + 1] if k + 1 < len(items) else None
        is_key = _op(following, ":", ",") or following is None
        if _is(item, "KEYWORD", "def"):
            open_defs += 1
        elif _is(item, "KEYWORD", "if") and not is_key:
            open_ifs += 1
        elif _is(item, "KEYWORD", "end") and open_ifs and not (is_key and not current):
            open_ifs -= 1
        if _op(item, ";") and open_defs:
            open_defs -= 1  # the end of a def's body, not a separator
        elif _op(item, separator) and not open_ifs and not open_defs:
            parts.append(tuple(current))
            current = []
            continue
        current.append(item)
    parts.append(tuple(current))
    return parts


# -- the walk


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[str] = []
        self.defs: list[_Def] = []

    def where(self, pos: int) -> str:
        """A position as people count it: `column 12`, or `line 3, column 5` in a program of several lines."""
        line = self.source.count("\n", 0, pos) + 1
        column = pos - (self.source.rfind("\n", 0, pos) + 1) + 1
        return f"column {column}" if "\n" not in self.source else f"line {line}, column {column}"

    def region(self, items: Sequence[_Item], i: int, scope: _Scope, context: _Def | None, stops: frozenset[str]) -> int:
        """Walk one expression from `items[i]` to a stop token at this level; returns the stop's index.

        A `def` met here is visible from its own body to the end of this expression, as in jq.
        """
        scope = _Scope(scope)
        level: list[_Item] = []  # this level's items, defs left out: for the operator checks
        while i < len(items):
            item = items[i]
            if isinstance(item, _Group):
                if item.open == "{":
                    self.object(item, scope, context)
                else:
                    for part in _split(item.items, ";"):
                        self.region(part, 0, scope, context, frozenset())
                level.append(item)
                i += 1
                continue
            if item.kind in ("OP", "KEYWORD") and item.text in stops:
                break
            if item.kind == "KEYWORD" and item.text == "def":
                i = self.definition(items, i, scope)
                continue
            if item.kind == "KEYWORD" and item.text == "if":
                i = self.if_block(items, i, scope, context, level)
                continue
            if item.kind == "IDENT":
                after = self.call(items, i, scope, context)
                level.extend(items[i:after])
                i = after
                continue
            if item.kind == "STR":
                self.string(item, scope, context)
            level.append(item)
            i += 1
        self.operators(level)
        return i

    def definition(self, items: Sequence[_Item], i: int, scope: _Scope) -> int:
        """`def name(params): body;` at items[i]; returns the index after its `;`."""
        name_token = items[i + 1] if i + 1 < len(items) else None
        if not isinstance(name_token, Token) or name_token.kind not in ("IDENT", "KEYWORD"):
            raise _Unreadable(f"a `def` without a name at {items[i].pos}")
        j = i + 2
        params: list[tuple[str, int]] = []
        if j < len(items) and isinstance(items[j], _Group):
            group = items[j]
            assert isinstance(group, _Group)
            for part in _split(group.items, ";"):
                if len(part) != 1 or not (_is(part[0], "IDENT") or _is(part[0], "VAR")):
                    raise _Unreadable(f"parameters of `def {name_token.text}` at {name_token.pos}")
                token = part[0]
                assert isinstance(token, Token)
                params.append((token.text.removeprefix("$"), 0))
            j += 1
        if not _op(items[j] if j < len(items) else None, ":"):
            raise _Unreadable(f"`def {name_token.text}` at {name_token.pos} has no `:`")
        definition = _Def(name_token.text, len(params), name_token.pos)
        self.defs.append(definition)
        scope.names[(definition.name, definition.arity)] = definition  # visible in its own body: recursion
        body_scope = _Scope(scope)
        for param in params:
            body_scope.names[param] = _PARAM
        end = self.region(items, j + 1, body_scope, definition, frozenset({";"}))
        if not _op(items[end] if end < len(items) else None, ";"):
            raise _Unreadable(f"`def {name_token.text}` at {name_token.pos} does not end with `;`")
        return end + 1

    def if_block(self, items: Sequence[_Item], i: int, scope: _Scope, context: _Def | None, level: list[_Item]) -> int:
        """`if c then a (elif c then a)* (else b)? end` at items[i]; returns the index after `end`."""
        start = items[i].pos
        j = i + 1
        while True:
            j = self.region(items, j, scope, context, frozenset({"then"}))
            if not _is(items[j] if j < len(items) else None, "KEYWORD", "then"):
                raise _Unreadable(f"`if` at {start} has no `then`")
            j = self.region(items, j + 1, scope, context, frozenset({"elif", "else", "end"}))
            following = items[j] if j < len(items) else None
            if _is(following, "KEYWORD", "elif"):
                j += 1
                continue
            if _is(following, "KEYWORD", "else"):
                j = self.region(items, j + 1, scope, context, frozenset({"end"}))
                following = items[j] if j < len(items) else None
            if not _is(following, "KEYWORD", "end"):
                raise _Unreadable(f"`if` at {start} has no `end`")
            level.append(_Group("if", (), start))
            return j + 1

    def call(self, items: Sequence[_Item], i: int, scope: _Scope, context: _Def | None) -> int:
        """A name at items[i]: a builtin, a def or a parameter, with its arguments; returns the next index."""
        token = items[i]
        assert isinstance(token, Token)
        name = token.text
        following = items[i + 1] if i + 1 < len(items) else None
        if name == "break" or "::" in name:  # `break $label`; module calls are the sandbox's to refuse
            return i + 1
        args: list[tuple[_Item, ...]] = []
        after = i + 1
        if isinstance(following, _Group) and following.open == "(":
            args = _split(following.items, ";")
            after = i + 2
        target = scope.resolve((name, len(args)))
        if isinstance(target, _Def):
            if context is not None:
                context.calls.append(target)
        elif target is None:
            self.builtin(name, args, token.pos)
        for arg in args:
            self.region(arg, 0, scope, context, frozenset())
        return after

    def object(self, group: _Group, scope: _Scope, context: _Def | None) -> None:
        """`{key: value, ...}` (or a destructuring pattern): bare words before `:` or alone are keys."""
        for entry in _split(group.items, ","):
            if not entry:
                continue
            colon = next((k for k, item in enumerate(entry) if _op(item, ":")), None)
            key = entry if colon is None else entry[:colon]
            if len(key) == 1 and (_is(key[0], "IDENT") or _is(key[0], "KEYWORD") or _is(key[0], "VAR")):
                pass  # a key (`{a: 1}`), the shorthand `{a}` for `{a: .a}`, or `{$x}`
            elif len(key) == 1 and isinstance(key[0], _Group):
                self.region(key[0].items, 0, scope, context, frozenset())
            else:
                for item in key:
                    if _is(item, "STR"):
                        assert isinstance(item, Token)
                        self.string(item, scope, context)
            if colon is not None:
                self.region(entry[colon + 1 :], 0, scope, context, frozenset())

    def string(self, token: Token, scope: _Scope, context: _Def | None) -> None:
        for part in token.parts:
            if isinstance(part, tuple):
                self.region(_nest(part), 0, scope, context, frozenset())

    # -- what builtins may do

    def builtin(self, name: str, args: Sequence[tuple[_Item, ...]], pos: int) -> None:
        arity = len(args)
        if (name, arity) in _LOOPS:
            self.found.append(f"uses `{name}` ({self.where(pos)}): {_LOOPS[(name, arity)]}")
        elif name == "recurse" and arity in (1, 2):
            if not _descends(args[0]):
                self.found.append(
                    f"uses `recurse(f)` ({self.where(pos)}) with an `f` that is not a descent into the input such as "
                    "`.[]?` or `.children[]`: it may never end (plain `recurse` and `..` are fine)"
                )
        elif name == "range" and 1 <= arity <= 3:
            problem = _range_problem(args)
            if problem is not None:
                self.found.append(f"uses `range` ({self.where(pos)}): {problem}")
        elif name == "combinations" and arity in (0, 1):
            self.found.append(f"uses `combinations` ({self.where(pos)}): {_COMBINATIONS}")
        elif name == "fromstream" and arity == 1 and not (len(args[0]) == 1 and _is(args[0][0], "IDENT", "tostream")):
            self.found.append(f"uses `fromstream` ({self.where(pos)}) over anything but `tostream`: {_FROMSTREAM}")
        elif name == "setpath" and arity == 2:
            if not _literal_path(args[0]):
                self.found.append(
                    f"uses `setpath` ({self.where(pos)}) with a path computed at run time: an index from the event "
                    f"could make it build an array of that length (write the path as a literal array)"
                )
        elif name == "pick" and arity == 1:
            self._path_expression(args[0], pos, "`pick`")

    # -- operators

    def operators(self, level: Sequence[_Item]) -> None:
        """`*` that may repeat a string by a number from the event, and paths written through such indexes."""
        for k, item in enumerate(level):
            if _op(item, "*"):
                left, right = _operands(level, k)
                if not (_small(right, REPEAT_CAP) or _small(left, REPEAT_CAP)):
                    assert isinstance(item, Token)
                    self.found.append(
                        f"uses `*` ({self.where(item.pos)}) without a number up to {REPEAT_CAP:,} written in the rule "
                        "on one side: `string * n` repeats the string n times, and n could come from the event"
                    )
            elif isinstance(item, Token) and item.kind == "OP" and item.text in _ASSIGN_OPS:
                start = k
                while start > 0 and not _path_end(level[start - 1]):
                    start -= 1
                self._path_expression(tuple(level[start:k]), item.pos, f"`{item.text}`")
                if item.text == "*=":
                    end = k + 1
                    while end < len(level) and not _path_end(level[end]):
                        end += 1
                    if not _small(tuple(level[k + 1 : end]), REPEAT_CAP):
                        self.found.append(
                            f"uses `*=` ({self.where(item.pos)}) without a number up to {REPEAT_CAP:,} written in the "
                            "rule: it repeats a string that many times"
                        )

    def _path_expression(self, items: tuple[_Item, ...], pos: int, what: str) -> None:
        problem = _index_problem(items)
        if problem is not None:
            self.found.append(
                f"uses {what} ({self.where(pos)}) on a path with {problem}: writing through a large index builds an "
                f"array of that length (indexes written into a path must be numbers up to {INDEX_CAP:,} in the rule)"
            )

    # -- recursion

    def recursion(self) -> list[str]:
        """Each cycle of the call graph of user definitions, once (direct, mutual, through arguments)."""
        messages: list[str] = []
        reported: set[int] = set()
        for start in self.defs:
            cycle = _cycle_from(start)
            if cycle is None or any(id(d) in reported for d in cycle):
                continue
            reported.update(id(d) for d in cycle)
            names = " → ".join(f"`{d.name}`" for d in [*cycle, cycle[0]])
            how = "calls itself" if len(cycle) == 1 else f"is recursive ({names})"
            messages.append(
                f"defines `{start.name}` ({self.where(start.pos)}), which {how}: a recursive definition may never end "
                "(use `recurse`, `..`, `walk` or `paths` to go through the event)"
            )
        return messages


def _cycle_from(start: _Def) -> list[_Def] | None:
    """A call path from `start` back to itself, or None."""
    path: list[_Def] = []
    seen: set[int] = set()

    def visit(node: _Def) -> bool:
        path.append(node)
        for callee in node.calls:
            if callee is start:
                return True
            if id(callee) not in seen:
                seen.add(id(callee))
                if visit(callee):
                    return True
        path.pop()
        return False

    return path if visit(start) else None


# -- helpers on item sequences


def _constant(items: Sequence[_Item]) -> float | None:
    """The value of a number written in the rule (`3`, `-3`, `(3)`, `60 * 60`), else None."""
    if any(_op(item, "*", "/", "%") for item in items):
        value: float | None = None
        operator = ""
        for part in _split_operators(items):
            if isinstance(part, str):
                operator = part
                continue
            number = _constant(part)
            if number is None:
                return None
            if value is None:
                value = number
            elif operator == "*":
                value = value * number
            elif number == 0:
                return None
            else:
                value = value / number if operator == "/" else math.fmod(value, number)
        return value
    if len(items) == 1 and _is(items[0], "NUM"):
        token = items[0]
        assert isinstance(token, Token)
        return float(token.text)
    if len(items) == 2 and _op(items[0], "-") and _is(items[1], "NUM"):
        token = items[1]
        assert isinstance(token, Token)
        return -float(token.text)
    if len(items) == 1 and isinstance(items[0], _Group) and items[0].open == "(":
        return _constant(items[0].items)
    return None


def _split_operators(items: Sequence[_Item]) -> list[tuple[_Item, ...] | str]:
    parts: list[tuple[_Item, ...] | str] = []
    current: list[_Item] = []
    for item in items:
        if isinstance(item, Token) and item.kind == "OP" and item.text in ("*", "/", "%"):
            parts.extend((tuple(current), item.text))
            current = []
        else:
            current.append(item)
    parts.append(tuple(current))
    return parts


def _small(items: Sequence[_Item], cap: int) -> bool:
    value = _constant(items)
    return value is not None and math.isfinite(value) and abs(value) <= cap


def _operand_end(item: _Item) -> bool:
    """Whether `item` can end an operand (so a following `-` is binary)."""
    if isinstance(item, _Group):
        return True
    return item.kind in ("NUM", "STR", "FIELD", "VAR", "IDENT", "FORMAT") or (
        item.kind == "OP" and item.text in (".", "..", "?")
    )


def _operands(level: Sequence[_Item], k: int) -> tuple[tuple[_Item, ...], tuple[_Item, ...]]:
    """The left and right operands of the `*` at level[k]; `a * b * c` is `(a * b) * c`."""
    start = k
    while start > 0:
        before = level[start - 1]
        if isinstance(before, Token) and (
            (before.kind == "OP" and before.text in _LOWER_OPS)
            or (before.kind == "KEYWORD" and before.text in _KEYWORD_BREAKS)
            or (before.kind == "OP" and before.text in ("+", "-") and start - 2 >= 0 and _operand_end(level[start - 2]))
        ):
            break
        start -= 1
    end = k + 1
    if end < len(level) and _op(level[end], "-"):
        end += 1  # a unary minus
    while end < len(level):
        after = level[end]
        if isinstance(after, Token) and (
            (after.kind == "OP" and after.text in (*_LOWER_OPS, "*", "/", "%", "+", "-"))
            or (after.kind == "KEYWORD" and after.text in _KEYWORD_BREAKS)
        ):
            break
        end += 1
    return tuple(level[start:k]), tuple(level[k + 1 : end])


def _path_end(item: _Item) -> bool:
    return isinstance(item, Token) and (
        (item.kind == "OP" and item.text in _PATH_ENDS)
        or (item.kind == "KEYWORD" and item.text in _PATH_KEYWORD_BREAKS)
    )


def _index_problem(items: Sequence[_Item]) -> str | None:
    """Why a path expression could write through an index computed at run time; None when it cannot.

    Looks into parentheses and into the arguments of path builtins (`first(.[$i])` is a path too), not into
    `select` conditions, which only read.
    """
    previous: _Item | None = None
    for item in items:
        if isinstance(item, _Group):
            if item.open == "[":
                problem = _index_content_problem(item.items)
                if problem is not None:
                    return problem
            elif item.open == "(" and not _is(previous, "IDENT", "select"):
                if _is(previous, "IDENT", "getpath") and not _literal_path(item.items):
                    return "`getpath` of a path computed at run time"
                for part in _split(item.items, ";"):
                    problem = _index_problem(part)
                    if problem is not None:
                        return problem
        previous = item
    return None


def _plain_string(item: _Item) -> bool:
    """A string literal without interpolation."""
    return isinstance(item, Token) and item.kind == "STR" and all(isinstance(part, str) for part in item.parts)


def _index_content_problem(items: Sequence[_Item]) -> str | None:
    if not items or (len(items) == 1 and _plain_string(items[0])):
        return None  # `.[]`, `.["key"]`
    for side in _split(items, ":"):
        if not side:
            continue  # `.[:2]`
        value = _constant(side)
        if value is None:
            return "an index computed at run time"
        if not math.isfinite(value) or abs(value) > INDEX_CAP:
            return f"the index {value:g}"
    return None


def _literal_path(items: Sequence[_Item]) -> bool:
    """A literal array of string keys and small numbers: `["a", 0, "b"]`."""
    if len(items) != 1 or not isinstance(items[0], _Group) or items[0].open != "[":
        return False
    return all(
        not element or (len(element) == 1 and _plain_string(element[0])) or _small(element, INDEX_CAP)
        for element in _split(items[0].items, ",")
    )


def _descends(items: Sequence[_Item]) -> bool:
    """Whether `f` in `recurse(f)` only goes down into its input: a path with at least one `[]`.

    `.a` alone would not do: `null | .a` is null again, forever; `[]` on null is an error (or, with `?`,
    nothing), so a path that iterates somewhere always ends on a finite value. `select(...)` steps only filter.
    """
    iterates = False
    for k, item in enumerate(items):
        previous = items[k - 1] if k else None
        if isinstance(item, _Group):
            if item.open == "[" and not item.items:
                iterates = True
            elif (
                item.open == "["
                and len(item.items) == 1
                and (_plain_string(item.items[0]) or _is(item.items[0], "NUM"))
            ):
                pass
            elif not (item.open == "(" and _is(previous, "IDENT", "select")):
                return False
        elif not (
            _is(item, "FIELD")
            or _op(item, ".", "?", "|")
            or _is(item, "IDENT", "select")
            or (_plain_string(item) and _op(previous, "."))
        ):
            return False
    return iterates


def _range_problem(args: Sequence[tuple[_Item, ...]]) -> str | None:
    values = [_constant(arg) for arg in args]
    if any(value is None for value in values):
        return (
            "its bounds must be numbers written in the rule: a bound from the event (`range(.n)`) could count "
            "to a billion"
        )
    numbers = [value for value in values if value is not None]
    if not all(math.isfinite(value) for value in numbers):
        return "it counts without end"
    if len(numbers) == 1:
        count = math.ceil(numbers[0])
    elif len(numbers) == 2:
        count = math.ceil(numbers[1] - numbers[0])
    else:
        start, stop, step = numbers
        count = 0 if step == 0 or (stop - start) / step <= 0 else math.ceil((stop - start) / step)
    if count > RANGE_CAP:
        return f"it counts {count:,} numbers, more than the {RANGE_CAP:,} a rule may"
    return None
