"""The rule index: which events can make a rule match, or fail, decided once per distinct field values.

Each rule's program is analysed (an abstract interpretation over jqparse's AST) into a *condition* on a
few fields of the event: a formula of atoms such as "eventName, ascii-downcased, is one of {...}",
"errorCode // "" starts with AccessDenied" or "userIdentity.type cannot be read". The condition holds on
every event on which the program can give a truthy output or raise an error (errors are counted per
rule, so a rule that would fail on an event must still run on it); on the other events the rule is
skipped. Anything the analysis does not model is "true" (the rule runs), with the reason kept for
`validate --explain`.

The index of a rule file is built over the fields its rules' conditions test (chosen greedily, so that
each field indexes some rule no other field could). Per event it reads those fields; the tuple of their
raw values is the key of a cache of candidate rules. On a miss, each field's value is classified once
(every normalisation some rule needs -- ascii_downcase, tostring, `// default`, ltrimstr, a regex's
case folding -- applied, then every atom on that field tested), and the candidates for that tuple of
classes are computed once.
"""

from __future__ import annotations

import contextvars
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from stream_processor.matcher import jqruntime as rt
from stream_processor.matcher.inline import CannotInline, has_definitions, inline_definitions
from stream_processor.matcher.jqparse import (
    ArrayCons,
    Binary,
    Bind,
    Call,
    Comma,
    Identity,
    If,
    Index,
    Iterate,
    Literal,
    Negate,
    Node,
    ObjectCons,
    Pipe,
    Recurse,
    Reduce,
    StringInterp,
    Try,
    Var,
)

Path = tuple[str | int, ...]
Entry = TypeVar("Entry")


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ERR: Any = _Sentinel("ERR")  # reading the path fails (`.a.b` where .a is a string, ...)
WILD: Any = _Sentinel("WILD")  # a normalised value the index does not model exactly: every test may hold
_UNEQUAL: Any = _Sentinel("UNEQUAL")  # an array or object: equal to no scalar key
NULL_KEY: Any = _Sentinel("null")
TRUE_KEY: Any = _Sentinel("true")
FALSE_KEY: Any = _Sentinel("false")

TAGS = frozenset({"null", "false", "true", "number", "string", "array", "object", "error"})
TRUTHY = frozenset({"true", "number", "string", "array", "object"})
FALSY = frozenset({"null", "false"})
ERROR = frozenset({"error"})
NOT_STRING = TAGS - {"string"}
_SAFE_INT = 2**53


# -- values as the index sees them


def tag(value: Any) -> str:
    """jq's type of a value, with booleans split (they differ in truthiness) and "error" for ERR."""
    t = type(value)
    if t is str:
        return "string"
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return "number"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    if value is ERR:
        return "error"
    raise TypeError(f"not a JSON value: {t.__name__}")


def canonical(value: Any) -> Any:
    """The key under which jq's `==` equates values: 1 and 1.0 share one, true and 1 do not."""
    t = type(value)
    if t is str:
        return value
    if value is None:
        return NULL_KEY
    if t is bool:
        return TRUE_KEY if value else FALSE_KEY
    if t is int:
        return ("n", float(value)) if -_SAFE_INT <= value <= _SAFE_INT else WILD
    if t is float:
        return ("n", value) if math.isfinite(value) else WILD
    return _UNEQUAL


def _uncanonical(key: Any) -> Any:
    if key is NULL_KEY:
        return None
    if key is TRUE_KEY:
        return True
    if key is FALSE_KEY:
        return False
    if type(key) is tuple:
        number = key[1]
        return int(number) if number.is_integer() else number
    return key


@dataclass(frozen=True, slots=True)
class Step:
    """One normalisation applied to a field's value before it is tested."""

    op: str  # unreadable | ascii_downcase | ascii_upcase | tostring | type | alt | ltrimstr | rtrimstr | regex
    arg: Any = None  # unreadable, alt: the value instead; ltrimstr/rtrimstr: the string; regex: ignore case (bool)


Chain = tuple[Step, ...]
_DOWN = {c: c + 32 for c in range(65, 91)}
_UP = {c: c - 32 for c in range(97, 123)}
_TYPE_NAMES = {"true": "boolean", "false": "boolean"}


def _downcase(text: str) -> str:
    """jq's ascii_downcase: str.lower() where it is the same (ASCII text), as it is much faster."""
    return text.lower() if text.isascii() else text.translate(_DOWN)


def apply_chain(value: Any, chain: Chain) -> Any:
    """A value through the normalisations, as jq computes them: a value, ERR (jq fails) or WILD."""
    for step in chain:
        if step.op == "unreadable":  # `first(.a.b?, v)`: v where the path cannot be read (always the first step)
            if value is ERR:
                value = step.arg
            continue
        if value is ERR or value is WILD:
            return value
        op = step.op
        is_str = type(value) is str
        if op == "ascii_downcase":
            value = _downcase(value) if is_str else ERR
        elif op == "ascii_upcase":
            value = (value.upper() if value.isascii() else value.translate(_UP)) if is_str else ERR
        elif op == "tostring":
            if value is None:
                value = "null"
            elif value is True or value is False:
                value = "true" if value else "false"
            elif not is_str:
                value = WILD  # jq prints numbers from their literal text: not modelled here
        elif op == "type":
            name = tag(value)
            value = _TYPE_NAMES.get(name, name)
        elif op == "alt":
            if value is None or value is False:
                value = step.arg
        elif op == "ltrimstr":
            if not is_str:
                value = ERR
            elif value.startswith(step.arg):
                value = value[len(step.arg) :]
        elif op == "rtrimstr":
            if not is_str:
                value = ERR
            elif value.endswith(step.arg):
                value = value[: len(value) - len(step.arg)]
        elif op == "regex":
            # Oniguruma's `$` also matches before a final newline, and "i" folds Unicode (long s, Kelvin sign,
            # sharp s...): such subjects are not modelled (every regex test may hold on them).
            if not is_str:
                value = ERR
            elif value.endswith("\n") or (step.arg and not value.isascii()):
                value = WILD
            elif step.arg:
                value = value.lower()  # ASCII here
        else:  # pragma: no cover - every Step is built here
            raise ValueError(op)
    return value


# -- conditions: formulas over atoms


@dataclass(frozen=True, slots=True)
class Atom:
    """A test of one field's normalised value: `kind` in / prefix / suffix / infix (strings) / type (tags)."""

    path: Path
    chain: Chain
    kind: str
    values: frozenset[Any]

    def test(self, value: Any) -> bool:
        """On a normalised value that is not WILD."""
        kind = self.kind
        if kind == "in":
            return canonical(value) in self.values if value is not ERR else False
        if kind == "type":
            return tag(value) in self.values
        if type(value) is not str:
            return False
        if kind == "prefix":
            return any(value.startswith(v) for v in self.values)
        if kind == "suffix":
            return any(value.endswith(v) for v in self.values)
        return any(v in value for v in self.values)


class Formula:
    __slots__ = ()


@dataclass(frozen=True, slots=True, eq=False)
class Top(Formula):
    """True: the analysis cannot rule the event out; `node` and `why` say where precision was lost."""

    node: Node | None = None
    why: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class Bottom(Formula):
    pass


@dataclass(frozen=True, slots=True)
class Lit(Formula):
    atom: Atom
    positive: bool


@dataclass(frozen=True, slots=True, eq=False)
class And(Formula):
    parts: tuple[Formula, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Or(Formula):
    parts: tuple[Formula, ...]


TRUE: Formula = Top()
FALSE: Formula = Bottom()
_MERGEABLE = ("in", "type", "prefix", "suffix", "infix")


def _pick_top(current: Top | None, candidate: Top) -> Top:
    """Keep the most informative reason."""
    if current is None or (not current.why and candidate.why):
        return candidate
    return current


def lit(path: Path, chain: Chain, kind: str, values: Iterable[Any], positive: bool = True) -> Formula:
    """An atom, folded where its value is known: the event itself is an object; a top-level key reads."""
    frozen = frozenset(values)
    if kind == "in" and chain and chain[-1].op == "type":
        # `x | type == "string"` is a test of x's type (jq says "boolean" for both true and false)
        names = {"boolean": ("true", "false")}
        tags = {t for name in frozen if type(name) is str for t in names.get(name, (name,)) if t in TAGS}
        return lit(path, chain[:-1], "type", tags - ERROR, positive)
    readable = len(path) == 1 and type(path[0]) is str and not chain  # reading a key of the event never fails
    if kind == "type" and readable:
        frozen = frozen - ERROR
    if not path:
        if chain:
            return Top(None, "tests the whole event through a normalisation")
        holds = kind == "type" and "object" in frozen
        return TRUE if holds == positive else FALSE
    if not frozen:
        return FALSE if positive else TRUE
    if kind == "type" and frozen >= (TAGS - ERROR if readable else TAGS):
        return TRUE if positive else FALSE
    return Lit(Atom(path, chain, kind, frozen), positive)


def conj(*formulas: Formula) -> Formula:
    parts: list[Formula] = []
    top: Top | None = None
    for formula in _flatten(formulas, And):
        if isinstance(formula, Bottom):
            return FALSE
        if isinstance(formula, Top):
            top = _pick_top(top, formula)
            continue
        parts.append(formula)
    merged = _merge(parts, conjunction=True)
    if any(isinstance(part, Bottom) for part in merged):
        return FALSE
    merged = _prune(merged)
    if any(isinstance(part, Bottom) for part in merged):
        return FALSE
    parts = [part for part in merged if not isinstance(part, Top)]
    if not parts:
        return top if top is not None else TRUE
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def disj(*formulas: Formula) -> Formula:
    parts: list[Formula] = []
    top: Top | None = None
    for formula in _flatten(formulas, Or):
        if isinstance(formula, Top):
            top = _pick_top(top, formula)
            continue
        if isinstance(formula, Bottom):
            continue
        parts.append(formula)
    if top is not None:
        return top
    merged = _merge(parts, conjunction=False)
    if any(isinstance(part, Top) for part in merged):
        return next(part for part in merged if isinstance(part, Top))
    parts = [part for part in merged if not isinstance(part, Bottom)]
    if not parts:
        return FALSE
    if len(parts) == 1:
        return parts[0]
    return _factor(parts)


def _factor(parts: list[Formula]) -> Formula:
    """(a and b) or (a and c) is a and (b or c): shorter to read, and a is tested once."""
    conjuncts = [list(part.parts) if isinstance(part, And) else [part] for part in parts]
    common = [c for c in conjuncts[0] if all(any(_same(c, d) for d in other) for other in conjuncts[1:])]
    if not common:
        return Or(tuple(parts))
    rests = [conj(*(c for c in group if not any(_same(c, k) for k in common))) for group in conjuncts]
    return conj(*common, disj(*rests))


def _same(a: Formula, b: Formula) -> bool:
    return a is b or (isinstance(a, Lit) and a == b)


def _prune(parts: list[Formula]) -> list[Formula]:
    """Under `x is T`, a disjunct `x is U` with U outside T cannot hold: `x | type == "string" and (... or x
    is not a string)` loses the last test."""
    known = {
        (p.atom.path, p.atom.chain): p.atom.values
        for p in parts
        if isinstance(p, Lit) and p.positive and p.atom.kind == "type"
    }
    if not known:
        return parts

    def impossible(d: Formula) -> bool:
        if not (isinstance(d, Lit) and d.positive and d.atom.kind == "type"):
            return False
        tags = known.get((d.atom.path, d.atom.chain))
        return tags is not None and not (tags & d.atom.values)

    pruned: list[Formula] = []
    for part in parts:
        if isinstance(part, Or) and any(impossible(d) for d in part.parts):
            part = disj(*(d for d in part.parts if not impossible(d)))
        pruned.append(part)
    return pruned


def _flatten(formulas: Iterable[Formula], kind: type) -> Iterable[Formula]:
    for formula in formulas:
        if isinstance(formula, kind):
            yield from formula.parts  # type: ignore[attr-defined]
        else:
            yield formula


def _merge(parts: list[Formula], conjunction: bool) -> list[Formula]:
    """Literals on the same normalised field combine: `x == "a" or x == "b"` is `x in {a, b}`."""
    groups: dict[tuple[Path, Chain, str, bool], frozenset[Any]] = {}
    others: list[Formula] = []
    seen: set[int] = set()
    seen_lits: set[Lit] = set()
    for part in parts:
        if isinstance(part, Lit) and part.atom.kind in _MERGEABLE:
            atom = part.atom
            positive = part.positive
            # Sets intersect under `and` (positive) or under `or` (negative: not a or not b = not (a and b)).
            intersect = conjunction == positive
            if atom.kind not in ("in", "type") and intersect:
                if part not in seen_lits:  # "starts with a and starts with b" is not one prefix set
                    seen_lits.add(part)
                    others.append(part)
                continue
            key = (atom.path, atom.chain, atom.kind, positive)
            previous = groups.get(key)
            if previous is None:
                groups[key] = atom.values
            else:
                groups[key] = previous & atom.values if intersect else previous | atom.values
            continue
        if id(part) not in seen:
            seen.add(id(part))
            others.append(part)
    for (path, chain, kind, positive), values in list(groups.items()):
        if kind not in ("in", "type") or not positive:
            continue
        opposite = groups.get((path, chain, kind, False))
        if opposite is None:
            continue
        # x in P and not in N = x in P - N;  x in P or not in N = not in N - P
        if conjunction:
            groups[(path, chain, kind, True)] = values - opposite
            del groups[(path, chain, kind, False)]
        else:
            groups[(path, chain, kind, False)] = opposite - values
            del groups[(path, chain, kind, True)]
    if conjunction:
        _narrow_by_type(groups, others)
        _drop_implied(groups, others)
    merged = [lit(path, chain, kind, values, positive) for (path, chain, kind, positive), values in groups.items()]
    return merged + others


def _key_tag(key: Any) -> str:
    if type(key) is str:
        return "string"
    if type(key) is tuple:
        return "number"
    return {NULL_KEY: "null", TRUE_KEY: "true", FALSE_KEY: "false"}[key]


def _narrow_by_type(groups: dict[tuple[Path, Chain, str, bool], frozenset[Any]], others: list[Formula]) -> None:
    """`x in K and x is T` is `x in (the keys of K of a type in T)`; a string test and `x is T` likewise."""
    for (path, chain, kind, positive), tags in list(groups.items()):
        if kind != "type" or not positive:
            continue
        keys = groups.get((path, chain, "in", True))
        if keys is not None:
            groups[(path, chain, "in", True)] = frozenset(k for k in keys if _key_tag(k) in tags)
            del groups[(path, chain, kind, positive)]
            continue
        strings = any(
            isinstance(p, Lit) and p.positive and (p.atom.path, p.atom.chain) == (path, chain) for p in others
        ) or any(key[:2] == (path, chain) and key[3] and key[2] in ("prefix", "suffix", "infix") for key in groups)
        if strings:
            if "string" in tags:
                del groups[(path, chain, kind, positive)]
            else:
                groups[(path, chain, kind, positive)] = frozenset()


def _drop_implied(groups: dict[tuple[Path, Chain, str, bool], frozenset[Any]], others: list[Formula]) -> None:
    """In a conjunction, "x does not fail" goes where another test of x (or of x normalised) implies it."""
    tested = [
        (path, chain, kind)
        for (path, chain, kind, positive), values in groups.items()
        if positive and (kind != "type" or "error" not in values)
    ]
    tested += [(p.atom.path, p.atom.chain, p.atom.kind) for p in others if isinstance(p, Lit) and p.positive]
    for key, values in list(groups.items()):
        path, chain, kind, positive = key
        if kind != "type" or not positive or "error" in values or not values >= TAGS - ERROR:
            continue
        if any(p == path and c[: len(chain)] == chain and (c, k) != (chain, "type") for p, c, k in tested):
            del groups[key]


def evaluate(formula: Formula, holds: Callable[[Atom], bool | None], memo: dict[int, bool] | None = None) -> bool:
    """Whether the formula may hold, given each atom's truth (None: unknown, so either)."""
    if memo is None:
        memo = {}
    known = memo.get(id(formula))
    if known is not None:
        return known
    if isinstance(formula, Lit):
        value = holds(formula.atom)
        result = True if value is None else value == formula.positive
    elif isinstance(formula, And):
        result = all(evaluate(part, holds, memo) for part in formula.parts)
    elif isinstance(formula, Or):
        result = any(evaluate(part, holds, memo) for part in formula.parts)
    else:
        result = isinstance(formula, Top)
    memo[id(formula)] = result
    return result


def project(formula: Formula, fields: frozenset[Path], memo: dict[int, Formula] | None = None) -> Formula:
    """The formula with atoms on other fields made true: what an index over `fields` can use."""
    if memo is None:
        memo = {}
    done = memo.get(id(formula))
    if done is not None:
        return done
    result = formula
    if isinstance(formula, Lit) and formula.atom.path not in fields:
        path = render_path(formula.atom.path)
        result = Top(None, f"it tests {path}, which the index of this file does not read (at most {MAX_FIELDS} fields)")
    elif isinstance(formula, And):
        result = conj(*(project(part, fields, memo) for part in formula.parts))
    elif isinstance(formula, Or):
        result = disj(*(project(part, fields, memo) for part in formula.parts))
    memo[id(formula)] = result
    return result




# -- regexes: the strings a literal regex can match


@dataclass(frozen=True, slots=True)
class RegexLanguage:
    """What `test(pattern)` can be true on: whole strings, prefixes, suffixes or substrings.

    `precise`: exactly these (so the test is false on every other string), else a superset.
    """

    exact: frozenset[str]
    prefixes: frozenset[str]
    suffixes: frozenset[str]
    infixes: frozenset[str]
    precise: bool


_MAX_STRINGS = 1024
_ESCAPED_CONTROLS = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "e": "\x1b"}


class _Unsupported(Exception):
    """A construct the regex reader does not model: the strings are cut before it."""


class _GiveUp(Exception):
    """The regex's structure (where its branches end) is not certain: nothing is learned from it."""


class _RegexReader:
    """Oniguruma (jq's Perl syntax) regexes made of literals, groups, alternatives, `?` and small classes."""

    def __init__(self, pattern: str, ignore_case: bool) -> None:
        self.p = pattern
        self.i = 0
        self.ignore_case = ignore_case

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.p[j] if j < len(self.p) else ""

    def language(self) -> RegexLanguage | str:
        exact: set[str] = set()
        prefixes: set[str] = set()
        suffixes: set[str] = set()
        infixes: set[str] = set()
        precise = True
        while True:
            start, strings, end, complete = self.branch()
            precise = precise and complete
            if start and end and complete:
                exact |= strings
            elif start:
                prefixes |= strings
            elif end and complete:
                suffixes |= strings
            else:
                infixes |= strings
            if not self.peek():
                break
            self.i += 1  # the top-level `|`
        if "" in prefixes or "" in suffixes or "" in infixes:
            return "may match any string, as far as the index can tell"
        return RegexLanguage(frozenset(exact), frozenset(prefixes), frozenset(suffixes), frozenset(infixes), precise)

    def branch(self) -> tuple[bool, set[str], bool, bool]:
        start = False
        if self.peek() == "^":
            start, self.i = True, self.i + 1
        elif self.p.startswith("\\A", self.i):
            start, self.i = True, self.i + 2
        strings = {""}
        while self.peek() not in ("", "|"):
            anchor = 2 if self.p.startswith(("\\z", "\\Z"), self.i) else 1 if self.peek() == "$" else 0
            if anchor and self.peek(anchor) in ("", "|"):
                self.i += anchor
                return start, strings, True, True
            mark = self.i
            try:
                strings = self.piece(strings)
            except _Unsupported:
                self.i = mark
                self.skip_branch()
                return start, strings, False, False
        return start, strings, False, True

    def piece(self, strings: set[str]) -> set[str]:
        """An atom and its quantifier, appended to each of `strings`."""
        atom = self.atom()
        c = self.peek()
        if c == "?" and self.peek(1) != "+":
            self.i += 1
            if self.peek() == "?":
                self.i += 1  # lazy: the same strings
            atom = atom | {""}
        elif c == "{":
            close = self.p.find("}", self.i)
            body = self.p[self.i + 1 : close] if close > 0 else ""
            low, _, high = body.partition(",")
            if not (low.isdigit() and (high.isdigit() or (not high and "," not in body))):
                raise _Unsupported
            n, m = int(low), int(high) if high else int(low)
            if m > 16 or n > m:
                raise _Unsupported
            self.i = close + 1
            if self.peek() == "+":
                raise _Unsupported
            if self.peek() == "?":
                self.i += 1
            repeated = {""}
            result: set[str] = set()
            for count in range(m + 1):
                if count >= n:
                    result |= repeated
                repeated = _product(repeated, atom)
            atom = result
        elif c in ("*", "+"):
            raise _Unsupported
        combined = _product(strings, atom)
        return combined

    def atom(self) -> set[str]:
        c = self.peek()
        if c == "(":
            named = _NAMED_GROUP.match(self.p, self.i)
            if self.p.startswith("(?:", self.i):
                self.i += 3
            elif named is not None:  # `(?<name>...)`, a capture group (not `(?<=`, `(?<!`: lookbehinds)
                self.i = named.end()
            elif self.peek(1) == "?":
                raise _Unsupported
            else:
                self.i += 1
            options: set[str] = set()
            while True:
                branch: set[str] = {""}
                while self.peek() not in ("|", ")"):
                    if not self.peek() or self.peek() in "^$":
                        raise _Unsupported
                    branch = self.piece(branch)
                options |= branch
                if self.peek() == ")":
                    self.i += 1
                    return options
                self.i += 1
        if c == "[":
            return self.char_class()
        if c == "\\":
            e = self.peek(1)
            self.i += 2
            if e in _ESCAPED_CONTROLS:
                return {_ESCAPED_CONTROLS[e]}
            if not e or e.isalnum() or not e.isascii():
                raise _Unsupported
            return {self.fold(e)}
        if c in ".^$)*+?{|" or not c:
            raise _Unsupported
        self.i += 1
        return {self.fold(c)}

    def char_class(self) -> set[str]:
        self.i += 1
        chars: set[str] = set()
        first = True
        while True:
            c = self.peek()
            if not c or c == "[" or (c == "^" and first) or (c == "]" and first) or c == "&":
                raise _Unsupported
            first = False
            if c == "]":
                self.i += 1
                return chars
            if c == "\\":
                e = self.peek(1)
                if not e or e.isalnum() or not e.isascii():
                    raise _Unsupported
                self.i += 2
                chars.add(self.fold(e))
                continue
            if self.peek(1) == "-" and self.peek(2) not in ("]", ""):
                high = self.peek(2)
                if high in "\\[&" or ord(high) < ord(c) or ord(high) - ord(c) > 64:
                    raise _Unsupported
                chars |= {self.fold(chr(code)) for code in range(ord(c), ord(high) + 1)}
                self.i += 3
                continue
            if c == "-" and self.peek(1) != "]":
                raise _Unsupported
            self.i += 1
            chars.add(self.fold(c))

    def fold(self, c: str) -> str:
        if not self.ignore_case:
            return c
        if not c.isascii():
            raise _Unsupported  # Unicode case folding (long s is s, Kelvin sign is k): not modelled
        return c.translate(_DOWN)

    def skip_branch(self) -> None:
        """To the end of the current top-level branch, or give up where the structure is unclear."""
        depth = 0
        while True:
            c = self.peek()
            if not c:
                if depth:
                    raise _GiveUp
                return
            if c == "|" and depth == 0:
                return
            if c == "\\":
                if self.peek(1) in ("Q", ""):
                    raise _GiveUp  # \Q...\E quotes metacharacters
                self.i += 2
                continue
            if c == "[":
                self.skip_class()
                continue
            if c == "(":
                if self.p.startswith("(?#", self.i):
                    raise _GiveUp  # a comment may hold `|` and `)`
                depth += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise _GiveUp
            self.i += 1

    def skip_class(self) -> None:
        self.i += 1
        if self.peek() == "^":
            self.i += 1
        if self.peek() == "]":
            self.i += 1
        while True:
            c = self.peek()
            if not c or c == "[":
                raise _GiveUp  # nested classes and [:alpha:]
            self.i += 1
            if c == "\\":
                self.i += 1
            elif c == "]":
                return


def _product(left: set[str], right: set[str]) -> set[str]:
    if len(left) * len(right) > _MAX_STRINGS:
        raise _Unsupported
    return {a + b for a in left for b in right}


_NAMED_GROUP = re.compile(r"\(\?<[A-Za-z_][A-Za-z0-9_]*>")


def regex_language(pattern: str, ignore_case: bool) -> RegexLanguage | str:
    """The strings `test(pattern)` can be true on (case-folded with `ignore_case`), or why unknown."""
    reader = _RegexReader(pattern, ignore_case)
    try:
        return reader.language()
    except _GiveUp:
        return "its structure is beyond the index's regex reader"
    except RecursionError:
        return "it is nested too deeply"


# -- the analysis: what of the event a program's truthy output or error depends on


@dataclass(frozen=True, slots=True)
class FieldVal:
    """Every output is this field of the event, normalised by `chain` (path () is the event itself)."""

    path: Path
    chain: Chain = ()


@dataclass(frozen=True, slots=True)
class ConstVal:
    """The outputs are these JSON values, whatever the event."""

    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ArrayVal:
    """One array whose elements are these single-output expressions, in order."""

    items: tuple[Result, ...]


@dataclass(frozen=True, slots=True)
class TruthVal:
    """A boolean, or (`nullable`) a value that is null exactly when it is falsy (index's position or null)."""

    nullable: bool


BOOL = TruthVal(False)
NULLABLE = TruthVal(True)


@dataclass(frozen=True, slots=True)
class Result:
    """An expression on some input: what its outputs are, and when it may give a truthy or falsy output or fail.

    `one`: exactly one output whenever it does not fail.
    """

    val: FieldVal | ConstVal | ArrayVal | TruthVal | None
    t: Formula
    f: Formula
    e: Formula
    one: bool = False

    @property
    def out(self) -> Formula:
        return disj(self.t, self.f)


ROOT = Result(FieldVal(()), TRUE, FALSE, FALSE, True)
_ANY_INPUT = Result(None, Top(None, "a caught error's message"), Top(None, "a caught error's message"), FALSE, True)
Env = dict[str, Result]
_MATCHING = frozenset({"match", "capture", "scan"})
_SELECT_TYPES = {
    "values": TAGS - {"null", "error"},
    "nulls": frozenset({"null"}),
    "booleans": frozenset({"true", "false"}),
    "numbers": frozenset({"number"}),
    "strings": frozenset({"string"}),
    "arrays": frozenset({"array"}),
    "objects": frozenset({"object"}),
    "iterables": frozenset({"array", "object"}),
    "scalars": frozenset({"null", "true", "false", "number", "string"}),
}
# Builtins without arguments that fail only on some input types, and whose outputs are always truthy.
_TOTAL_TRUTHY = {
    "length": frozenset({"true", "false"}),
    "utf8bytelength": NOT_STRING,
    "keys": TAGS - {"array", "object"},
    "keys_unsorted": TAGS - {"array", "object"},
    "to_entries": TAGS - {"array", "object"},
    "tojson": frozenset(),
    "explode": NOT_STRING,
}
_CHAIN_STEPS = {"ascii_downcase": NOT_STRING, "ascii_upcase": NOT_STRING, "tostring": frozenset(), "type": frozenset()}


def condition(program: Node) -> Formula:
    """What an event must satisfy for `program` to give it a truthy output or an error."""
    lost: list[Top] = []
    token = _LOST.set(lost)
    try:
        if has_definitions(program):
            try:
                program = inline_definitions(program)
            except CannotInline as why:
                return Top(None, why.reason)
        result = _Analyser().ev(program, ROOT, {})
        formula = disj(result.t, result.e)
    except RecursionError:
        return Top(None, "it is nested too deeply for the analysis")
    except Exception as error:  # an analysis bug must cost speed, never correctness
        return Top(None, f"the analysis failed ({type(error).__name__})")
    finally:
        _LOST.reset(token)
    if isinstance(formula, Top) and not formula.why:
        # Tests that cover every value between them (`x matches r` or `x is not a string`): name the
        # first sub-expression the analysis could not read.
        return lost[0] if lost else Top(None, "it can match or fail on any event")
    if dag_size(formula) > 4000:
        return Top(None, "its condition is too large to index")
    return formula


def _distinct_nodes(formula: Formula) -> list[Formula]:
    """Each node of the formula once: shared subformulas (a DAG) are not walked again."""
    seen: set[int] = set()
    nodes: list[Formula] = []
    stack = [formula]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        if isinstance(node, (And, Or)):
            stack.extend(node.parts)
    return nodes


def dag_size(formula: Formula) -> int:
    return len(_distinct_nodes(formula))


def _plain_path(node: Node) -> bool:
    """`.a`, `.a.b?`, `.a[0]`: reads of the input and nothing else."""
    while isinstance(node, Index):
        if not isinstance(node.key, Literal):
            return False
        node = node.target
    return isinstance(node, Identity)


def _field(path: Path, chain: Chain, e: Formula) -> Result:
    return Result(FieldVal(path, chain), lit(path, chain, "type", TRUTHY), lit(path, chain, "type", FALSY), e, True)


def _const(values: tuple[Any, ...]) -> Result:
    truthy = any(v is not None and v is not False for v in values)
    falsy = any(v is None or v is False for v in values)
    return Result(ConstVal(values), TRUE if truthy else FALSE, TRUE if falsy else FALSE, FALSE, len(values) == 1)


_LOST: contextvars.ContextVar[list[Top]] = contextvars.ContextVar("lost")


def _lost(node: Node, why: str) -> Top:
    """Where the analysis loses precision: true, with the reason kept for `validate --explain`."""
    top = Top(node, why)
    found = _LOST.get(None)
    if found is not None:
        found.append(top)
    return top


def _unknown(node: Node, why: str, e: Formula | None = None, needs: Formula = TRUE) -> Result:
    """Outputs the analysis does not model: truthy or falsy whenever `needs` holds; fails where `e` says."""
    top = _lost(node, why)
    return Result(None, conj(needs, top), conj(needs, top), top if e is None else e)


def _single(result: Result, *types: type) -> Any:
    """The one constant `result` outputs, if it is of one of `types` (bool excluded from int)."""
    val = result.val
    if isinstance(val, ConstVal) and len(val.values) == 1:
        value = val.values[0]
        if type(value) in types:
            return value
    return None


def _keys(values: tuple[Any, ...]) -> frozenset[Any] | None:
    keys = frozenset(canonical(v) for v in values)
    if WILD in keys or _UNEQUAL in keys:
        return None
    return keys


def _substrings(texts: Iterable[str], empty: bool = True) -> frozenset[str] | None:
    texts = list(texts)
    if sum(len(t) * (len(t) + 1) // 2 + 1 for t in texts) > 20_000:
        return None
    found = {t[i:j] for t in texts for i in range(len(t)) for j in range(i + 1, len(t) + 1)}
    if empty:
        found.add("")
    return frozenset(found)


def _comma_items(node: Node) -> list[Node]:
    if isinstance(node, Comma):
        return [*_comma_items(node.left), *_comma_items(node.right)]
    return [node]


class _Analyser:
    def ev(self, node: Node, x: Result, env: Env) -> Result:
        handler = getattr(self, "_" + type(node).__name__.lower(), None)
        if handler is None:
            return _unknown(node, "is not modelled by the index")
        result: Result = handler(node, x, env)
        return result

    # -- structure

    def _identity(self, node: Identity, x: Result, env: Env) -> Result:
        return Result(x.val, x.t, x.f, FALSE, True)

    def _recurse(self, node: Recurse, x: Result, env: Env) -> Result:
        return _unknown(node, "reads every value of the event", e=FALSE)

    def _literal(self, node: Literal, x: Result, env: Env) -> Result:
        return _const((node.value,))

    def _var(self, node: Var, x: Result, env: Env) -> Result:
        bound = env.get(node.name)
        if bound is None:
            return _unknown(node, "is a variable the index does not know")
        return Result(bound.val, bound.t, bound.f, FALSE, True)

    def _bind(self, node: Bind, x: Result, env: Env) -> Result:
        source = self.ev(node.source, x, env)
        body = self.ev(node.body, x, {**env, node.name: Result(source.val, source.t, source.f, FALSE, True)})
        out = source.out
        return Result(body.val, conj(out, body.t), conj(out, body.f), disj(source.e, conj(out, body.e)))

    def _reduce(self, node: Reduce, x: Result, env: Env) -> Result:
        return _unknown(node, "is a reduction")

    def _pipe(self, node: Pipe, x: Result, env: Env) -> Result:
        left = self.ev(node.left, x, env)
        right = self.ev(node.right, Result(left.val, left.t, left.f, FALSE, True), env)
        out = left.out
        return Result(
            right.val, conj(out, right.t), conj(out, right.f), disj(left.e, conj(out, right.e)), left.one and right.one
        )

    def _comma(self, node: Comma, x: Result, env: Env) -> Result:
        a, b = self.ev(node.left, x, env), self.ev(node.right, x, env)
        val: FieldVal | ConstVal | None = None
        if isinstance(a.val, ConstVal) and isinstance(b.val, ConstVal):
            val = ConstVal(a.val.values + b.val.values)
        elif isinstance(a.val, FieldVal) and a.val == b.val:
            val = a.val
        return Result(val, disj(a.t, b.t), disj(a.f, b.f), disj(a.e, b.e))

    def _try(self, node: Try, x: Result, env: Env) -> Result:
        body = self.ev(node.body, x, env)
        if node.catch is None:
            return Result(body.val, body.t, body.f, FALSE)
        handler = self.ev(node.catch, _ANY_INPUT, env)
        return Result(
            None,
            disj(body.t, conj(body.e, handler.t)),
            disj(body.f, conj(body.e, handler.f)),
            conj(body.e, handler.e),
        )

    def _if(self, node: If, x: Result, env: Env) -> Result:
        c = self.ev(node.cond, x, env)
        a = self.ev(node.then, x, env)
        b = self.ev(node.otherwise, x, env)
        val = a.val if a.val == b.val else None
        if isinstance(b.t, Bottom) and isinstance(b.f, Bottom):
            val = a.val
        elif isinstance(a.t, Bottom) and isinstance(a.f, Bottom):
            val = b.val
        return Result(
            val,
            disj(conj(c.t, a.t), conj(c.f, b.t)),
            disj(conj(c.t, a.f), conj(c.f, b.f)),
            disj(c.e, conj(c.t, a.e), conj(c.f, b.e)),
        )

    # -- paths

    def _index(self, node: Index, x: Result, env: Env) -> Result:
        target = self.ev(node.target, x, env)
        key_result = self.ev(node.key, x, env)
        base = disj(target.e, key_result.e)
        key = _single(key_result, str, int)
        val = target.val
        if isinstance(val, FieldVal) and not val.chain and key is not None:
            path = (*val.path, key)
            e = base if node.optional else disj(base, lit(path, (), "type", ERROR))
            result = _field(path, (), e)
            if not isinstance(node.target, (Identity, Index)):
                needs = target.out
                result = Result(result.val, conj(needs, result.t), conj(needs, result.f), e)
            one = target.one and key_result.one and not node.optional
            return Result(result.val, result.t, result.f, result.e, one)
        table = _single(target, dict)
        if table is not None and isinstance(key_result.val, FieldVal):  # a lookup table: `{"A": true}[.x]`
            keys = _keys(tuple(table))
            truthy = _keys(tuple(k for k, v in table.items() if v is not None and v is not False))
            if keys is not None and truthy is not None:
                k = key_result.val
                fails = FALSE if node.optional else lit(k.path, k.chain, "type", NOT_STRING)
                t = lit(k.path, k.chain, "in", truthy) if truthy else FALSE
                strings = lit(k.path, k.chain, "type", frozenset({"string"}))
                f = lit(k.path, k.chain, "in", truthy, False) if truthy else strings
                return Result(None, t, f, disj(base, fails), key_result.one and not node.optional)
        needs = conj(target.out, key_result.out)
        failure = FALSE if node.optional else conj(needs, _lost(node, "indexes a computed value"))
        return _unknown(node, "indexes a computed value", e=disj(base, failure), needs=needs)

    def _iterate(self, node: Iterate, x: Result, env: Env) -> Result:
        target = self.ev(node.target, x, env)
        return self._each(node, target, node.optional, target.e)

    def _each(self, node: Node, target: Result, optional: bool, base: Formula) -> Result:
        """`.[]` over a value: literal arrays give their elements; a field fails where it is not iterable."""
        val = target.val
        if isinstance(val, ConstVal):
            elements: list[Any] = []
            fails = False
            for value in val.values:
                if type(value) is list:
                    elements.extend(value)
                elif type(value) is dict:
                    elements.extend(value.values())
                else:
                    fails = True
            result = _const(tuple(elements))
            e = disj(base, TRUE if fails and not optional else FALSE)
            return Result(result.val, result.t, result.f, e)
        if isinstance(val, ArrayVal):
            return Result(None, disj(*(i.t for i in val.items)), disj(*(i.f for i in val.items)), base)
        e = base
        if not optional:
            if isinstance(val, FieldVal):
                e = disj(base, lit(val.path, val.chain, "type", TAGS - {"array", "object"}))
            else:
                e = disj(base, conj(target.out, _lost(node, "iterates over a computed value")))
        return _unknown(node, "iterates over the event's values", e=e, needs=target.out)

    # -- operators

    def _binary(self, node: Binary, x: Result, env: Env) -> Result:
        a, b = self.ev(node.left, x, env), self.ev(node.right, x, env)
        op = node.op
        if op == "and":
            return Result(BOOL, conj(a.t, b.t), disj(a.f, conj(a.t, b.f)), disj(a.e, conj(a.t, b.e)), a.one and b.one)
        if op == "or":
            return Result(BOOL, disj(a.t, b.t), conj(a.f, b.f), disj(a.e, conj(a.f, b.e)), a.one and b.one)
        if op == "//":
            if not a.one and _plain_path(node.left):  # `.a.b? // v`: the field, v where it cannot be read
                read = self._first_readable(node.left, node.right, x, env)
                if read is not None:
                    return self._alternative(read, b)
            return self._alternative(a, b)
        if op in ("==", "!="):
            return self._equals(node, a, b, op == "!=")
        needs = conj(a.out, b.out)
        if op in ("<", "<=", ">", ">=") and isinstance(a.val, ConstVal) and isinstance(b.val, ConstVal):
            outcomes = _static(lambda p, q: _ORDER[op](rt.compare(p, q)), a.val.values, b.val.values)
            if outcomes is not None:
                return Result(BOOL, TRUE if True in outcomes else FALSE, TRUE if False in outcomes else FALSE, FALSE)
        if op in ("<", "<=", ">", ">="):
            unknown = _unknown(node, "orders computed values", e=disj(a.e, b.e), needs=needs)
            return Result(BOOL, unknown.t, unknown.f, unknown.e)
        failure = conj(needs, _lost(node, "is arithmetic, which may fail"))
        return _unknown(node, "is arithmetic", e=disj(a.e, b.e, failure), needs=needs)

    def _alternative(self, a: Result, b: Result) -> Result:
        """`a // b` (jq 1.8): a's truthy outputs, else b's; an error in a is not caught."""
        e = disj(a.e, b.e)
        default = _single(b, str, int, float, bool, type(None))
        single_default = isinstance(b.val, ConstVal) and len(b.val.values) == 1
        usable = default is not None or (isinstance(b.val, ConstVal) and b.val.values == (None,))
        if isinstance(a.val, FieldVal) and a.val.path and a.one and single_default and usable:
            chain = (*a.val.chain, Step("alt", default))
            field = _field(a.val.path, chain, e)
            return Result(field.val, field.t, field.f, e, True)
        return Result(None, disj(a.t, b.t), b.f, e)

    def _equals(self, node: Binary, a: Result, b: Result, negated: bool) -> Result:
        e = disj(a.e, b.e)
        equality = _equality(a, b)
        if equality is None:
            needs = conj(a.out, b.out)
            unknown = _unknown(node, "compares two values the index does not know", e=e, needs=needs)
            return Result(BOOL, unknown.t, unknown.f, unknown.e, a.one and b.one)
        some_equal, some_unequal, _ = equality
        if negated:
            some_equal, some_unequal = some_unequal, some_equal
        return Result(BOOL, some_equal, some_unequal, e, a.one and b.one)

    def _negate(self, node: Negate, x: Result, env: Env) -> Result:
        operand = self.ev(node.operand, x, env)
        number = _single(operand, int, float)
        if number is not None:
            return _const((-number,))
        return _unknown(node, "is arithmetic", e=disj(operand.e, _lost(node, "negation may fail")))

    # -- construction

    def _stringinterp(self, node: StringInterp, x: Result, env: Env) -> Result:
        parts = [self.ev(part, x, env) for part in node.parts if not isinstance(part, str)]
        return Result(None, conj(*(p.out for p in parts)), FALSE, disj(*(p.e for p in parts)))

    def _arraycons(self, node: ArrayCons, x: Result, env: Env) -> Result:
        if node.body is None:
            return _const(([],))
        items = [self.ev(item, x, env) for item in _comma_items(node.body)]
        e = disj(*(item.e for item in items))
        val: ConstVal | ArrayVal | None = None
        if all(isinstance(i.val, ConstVal) and len(i.val.values) == 1 for i in items):
            val = ConstVal(([i.val.values[0] for i in items if isinstance(i.val, ConstVal)],))
        elif all(i.one for i in items):
            val = ArrayVal(tuple(items))
        return Result(val, TRUE, FALSE, e, True)

    def _objectcons(self, node: ObjectCons, x: Result, env: Env) -> Result:
        parts: list[Result] = []
        key_failure: Formula = FALSE
        for key_node, value_node in node.entries:
            key, value = self.ev(key_node, x, env), self.ev(value_node, x, env)
            parts += [key, value]
            if not (isinstance(key.val, ConstVal) and all(type(k) is str for k in key.val.values)):
                key_failure = _lost(node, "builds an object with a computed key")
        e = disj(key_failure, *(p.e for p in parts))
        pairs = [(_single(key, str), part) for key, part in zip(parts[::2], parts[1::2], strict=True)]
        if all(k is not None and isinstance(v.val, ConstVal) and len(v.val.values) == 1 for k, v in pairs):
            table = {k: v.val.values[0] for k, v in pairs if isinstance(v.val, ConstVal)}  # a literal object
            return Result(ConstVal((table,)), TRUE, FALSE, e, True)
        return Result(None, conj(*(p.out for p in parts)), FALSE, e)

    # -- builtins

    def _call(self, node: Call, x: Result, env: Env) -> Result:
        name, args = node.name, node.args
        arity = len(args)
        if arity == 0:
            if name in ("true", "false", "null"):
                return _const(({"true": True, "false": False, "null": None}[name],))
            if name == "empty":
                return Result(None, FALSE, FALSE, FALSE)
            if name == "not":
                return Result(BOOL, x.f, x.t, FALSE, True)
            if name == "error":
                return Result(None, FALSE, FALSE, TRUE)
            if name in _CHAIN_STEPS:
                return self._step(node, x, Step(name), _CHAIN_STEPS[name])
            if name in _SELECT_TYPES:
                return _select_types(node, x, _SELECT_TYPES[name])
            if name in _TOTAL_TRUTHY:
                return _total(node, x, _TOTAL_TRUTHY[name])
            if name in ("any", "all"):
                if isinstance(x.val, ArrayVal):  # [a, b] | any
                    items = x.val.items
                    if name == "any":
                        return Result(BOOL, disj(*(i.t for i in items)), conj(*(i.f for i in items)), FALSE, True)
                    return Result(BOOL, conj(*(i.t for i in items)), disj(*(i.f for i in items)), FALSE, True)
                return self._quantifier(node, name == "any", self._each(node, x, False, FALSE), None, env)
        if arity == 1:
            arg = args[0]
            if name == "select":
                c = self.ev(arg, x, env)
                return Result(x.val, conj(c.t, x.t), conj(c.t, x.f), c.e)
            if name == "first" and isinstance(arg, Comma) and _plain_path(arg.left):
                read = self._first_readable(arg.left, arg.right, x, env)
                if read is not None:
                    return read
            if name in ("first", "last"):
                r = self.ev(arg, x, env)
                return Result(r.val, r.t, r.f, r.e)
            if name == "isempty":
                r = self.ev(arg, x, env)
                return Result(BOOL, _lost(node, "is true when its argument has no output"), r.out, r.e, True)
            if name == "error":
                message = self.ev(arg, x, env)
                return Result(None, FALSE, FALSE, disj(message.e, message.out))
            if name in ("any", "all"):
                return self._quantifier(node, name == "any", self._each(node, x, False, FALSE), arg, env)
            if name == "IN":
                return self._membership(node, x, self.ev(arg, x, env), FALSE)
            if name in ("startswith", "endswith"):
                return self._affix(node, x, self.ev(arg, x, env), "prefix" if name == "startswith" else "suffix")
            if name in ("ltrimstr", "rtrimstr"):
                a = self.ev(arg, x, env)
                text = _single(a, str)
                if text is None:
                    return _unknown(node, f"calls {name} with a computed argument")
                result = self._step(node, x, Step(name, text), NOT_STRING)
                return Result(result.val, result.t, result.f, disj(a.e, result.e), result.one)
            if name == "test" or name in _MATCHING:
                return self._matching(node, x, env)
            if name == "inside":
                hay = self.ev(arg, x, env)
                return self._contains(node, hay, x, hay.e)
            if name == "contains":
                needle = self.ev(arg, x, env)
                return self._contains(node, x, needle, needle.e)
            if name in ("index", "rindex"):
                return self._index_of(node, x, self.ev(arg, x, env))
            if name == "has":
                return self._has(node, x, self.ev(arg, x, env))
            if name == "in":  # `in(o)` is `. as $k | o | has($k)`
                return self._has(node, self.ev(arg, x, env), x)
        if arity == 2:
            if name == "test" or name in _MATCHING:
                return self._matching(node, x, env)
            if name in ("any", "all"):
                generator = self.ev(args[0], x, env)
                return self._quantifier(node, name == "any", generator, args[1], env)
            if name == "IN":
                source = self.ev(args[0], x, env)
                return self._membership(node, source, self.ev(args[1], x, env), source.e)
            if name == "limit":
                return self._limit(node, x, env)
        return _unknown(node, f"uses `{name}/{arity}`, which the index does not model")

    def _first_readable(self, path_node: Node, fallback: Node, x: Result, env: Env) -> Result | None:
        """`first(.a.b?, v)` (how Sigma's converter reads a dotted field): the field, or v where it cannot be read.

        A plain path that cannot fail (`?` on each read that could) has exactly one output, the field, unless a
        read fails, where it has none and `first` takes v: the field normalised by an `unreadable` step.
        """
        read = self.ev(path_node, x, env)
        default = self.ev(fallback, x, env)
        value = _single(default, str, int, float, bool, type(None))
        if not isinstance(default.val, ConstVal) or default.val.values != (value,) or not isinstance(default.e, Bottom):
            return None
        if not isinstance(read.val, FieldVal) or read.val.chain or not read.val.path or not isinstance(read.e, Bottom):
            return None
        return _field(read.val.path, (Step("unreadable", value),), FALSE)

    def _step(self, node: Node, x: Result, step: Step, fails_on: frozenset[str]) -> Result:
        """A normalisation of the input: a field stays a field (normalised), a constant is computed."""
        val = x.val
        if isinstance(val, FieldVal):
            chain = (*val.chain, step)
            field = _field(val.path, chain, lit(val.path, val.chain, "type", fails_on))
            return Result(field.val, field.t, field.f, field.e, x.one)
        if isinstance(val, ConstVal):
            outputs: list[Any] = []
            for value in val.values:
                normalised = apply_chain(value, (step,))
                if normalised is WILD:
                    return _unknown(node, "normalises a number")
                if normalised is ERR:  # jq fails here, after the outputs before it
                    before = _const(tuple(outputs))
                    return Result(None, before.t, before.f, TRUE)
                outputs.append(normalised)
            return _const(tuple(outputs))
        return _unknown(node, "normalises a computed value", e=FALSE if not fails_on else None)

    def _quantifier(self, node: Node, is_any: bool, generator: Result, cond: Node | None, env: Env) -> Result:
        """any/all(generator; condition), jq 1.8: one boolean; errors of the generator and the condition."""
        each = Result(generator.val, generator.t, generator.f, FALSE, True)
        c = self.ev(cond, each, env) if cond is not None else each
        out = generator.out
        e = disj(generator.e, conj(out, c.e))
        if is_any:
            return Result(BOOL, conj(out, c.t), _lost(node, "is false unless some value passes"), e, True)
        t: Formula = _lost(node, "is true when there is nothing to test")
        if isinstance(generator.val, ConstVal) and 0 < len(generator.val.values) <= 64 and cond is not None:
            t = conj(*(self.ev(cond, _const((value,)), env).t for value in generator.val.values))
        return Result(BOOL, t, conj(out, c.f), e, True)

    def _membership(self, node: Node, value: Result, candidates: Result, e: Formula) -> Result:
        """IN: true when some candidate equals the value."""
        e = disj(e, candidates.e)
        equality = _equality(value, candidates)
        if equality is None:
            unknown = _unknown(node, "tests membership among values the index does not know", e=e)
            return Result(BOOL, unknown.t, unknown.f, unknown.e, True)
        some_equal, _, none_equal = equality
        return Result(BOOL, some_equal, none_equal, e, True)

    def _affix(self, node: Node, x: Result, arg: Result, kind: str) -> Result:
        val = x.val
        texts = arg.val.values if isinstance(arg.val, ConstVal) else None
        if not isinstance(val, FieldVal) or not texts or not all(type(t) is str for t in texts):
            return _unknown(node, f"tests a {kind} of a value the index does not know", e=None)
        holds = lit(val.path, val.chain, kind, texts)
        fails = disj(arg.e, lit(val.path, val.chain, "type", NOT_STRING))
        misses = lit(val.path, val.chain, kind, texts, False) if len(texts) == 1 else TRUE
        return Result(BOOL, holds, misses, fails, True)

    def _matching(self, node: Call, x: Result, env: Env) -> Result:
        """`test`, and `match`, `capture`, `scan`: these give a truthy output (an object, a string or an array)
        for each match and none without one, and fail where `test` fails: `test`'s truth, never a falsy output."""
        found = self._test(node, x, env)
        return found if node.name == "test" else Result(None, found.t, FALSE, found.e)

    def _test(self, node: Call, x: Result, env: Env) -> Result:
        regex = _regex_arguments(node, x, self, env)
        val = x.val
        if isinstance(regex, str) or not isinstance(val, FieldVal):
            why = regex if isinstance(regex, str) else "tests a regex on a value the index does not know"
            return _unknown(node, why)
        pattern, flags = regex
        if not _regex_compiles(pattern, flags):
            return Result(None, FALSE, FALSE, TRUE)
        fails = lit(val.path, val.chain, "type", NOT_STRING)
        ignore_case = "i" in flags
        language = regex_language(pattern, ignore_case)
        if isinstance(language, str):
            return _unknown(node, f"its regex {pattern!r} {language}", e=fails)
        chain = (*val.chain, Step("regex", ignore_case))
        pieces = [
            (kind, values)
            for kind, values in (
                ("in", language.exact),
                ("prefix", language.prefixes),
                ("suffix", language.suffixes),
                ("infix", language.infixes),
            )
            if values
        ]
        holds = disj(*(lit(val.path, chain, kind, values) for kind, values in pieces))
        if language.precise and "n" not in flags:
            fails_to_match = conj(*(lit(val.path, chain, kind, values, False) for kind, values in pieces))
        else:
            fails_to_match = _lost(node, "its regex is read approximately")
        return Result(BOOL, holds, fails_to_match, fails, True)

    def _contains(self, node: Node, hay: Result, needle: Result, e: Formula) -> Result:
        """contains (hay | contains(needle)) and inside: substring sets where one side is a literal."""
        text = _single(hay, str)
        if text is not None and isinstance(needle.val, FieldVal):
            field = needle.val
            found = _substrings((text,))
            if found is not None:
                holds = lit(field.path, field.chain, "in", found)
                fails = lit(field.path, field.chain, "type", NOT_STRING)
                return Result(BOOL, holds, lit(field.path, field.chain, "in", found, False), disj(e, fails), True)
        texts = _single(hay, list)
        if texts is not None and all(type(t) is str for t in texts) and isinstance(needle.val, ArrayVal):
            items = needle.val.items
            found = _substrings(texts)
            if found is not None and all(isinstance(item.val, FieldVal) for item in items):
                tests = [(item.val.path, item.val.chain) for item in items if isinstance(item.val, FieldVal)]
                holds = conj(*(lit(path, chain, "in", found) for path, chain in tests))
                misses = disj(*(lit(path, chain, "in", found, False) for path, chain in tests))
                return Result(BOOL, holds, misses, e, True)
        word = _single(needle, str)
        if word is not None and isinstance(hay.val, FieldVal):
            field = hay.val
            holds = lit(field.path, field.chain, "infix", (word,))
            fails = lit(field.path, field.chain, "type", NOT_STRING)
            return Result(BOOL, holds, lit(field.path, field.chain, "infix", (word,), False), disj(e, fails), True)
        return _unknown(node, "tests containment between values the index does not know", e=None)

    def _index_of(self, node: Node, x: Result, needle: Result) -> Result:
        """index/rindex: a position (truthy, even 0) or null."""
        e = needle.e
        if isinstance(needle.val, FieldVal):
            field = needle.val
            listed = _single(x, list)
            keys = _keys(tuple(listed)) if listed is not None else None
            if keys is not None:
                # a scalar is found where an element equals it; an array is searched as a sub-array
                holds = disj(lit(field.path, field.chain, "in", keys), lit(field.path, field.chain, "type", {"array"}))
                return Result(NULLABLE, holds, _lost(node, "is null when nothing is found"), e, True)
            text = _single(x, str)
            found = _substrings((text,), empty=False) if text is not None else None
            if found is not None:
                holds = lit(field.path, field.chain, "in", found)
                fails = lit(field.path, field.chain, "type", NOT_STRING)
                return Result(NULLABLE, holds, _lost(node, "is null when nothing is found"), disj(e, fails), True)
        word = _single(needle, str)
        if word is not None and isinstance(x.val, FieldVal):
            field = x.val
            holds = disj(
                lit(field.path, field.chain, "infix", (word,)) if word else FALSE,
                lit(field.path, field.chain, "type", {"array", "object"}),
            )
            fails = lit(field.path, field.chain, "type", TAGS - {"string", "array", "null"})
            return Result(NULLABLE, holds, _lost(node, "is null when nothing is found"), disj(e, fails), True)
        return _unknown(node, "searches values the index does not know", e=None)

    def _has(self, node: Node, x: Result, key: Result) -> Result:
        table = _single(x, dict)
        if table is not None and isinstance(key.val, FieldVal):  # `{"A": 1} | has($name)`, `in({...})`
            keys = _keys(tuple(table))
            if keys is not None:
                val = key.val
                fails = lit(val.path, val.chain, "type", NOT_STRING)
                t, f = lit(val.path, val.chain, "in", keys), lit(val.path, val.chain, "in", keys, False)
                return Result(BOOL, t, f, disj(x.e, key.e, fails), key.one)
        name = _single(key, str)
        if name is not None and isinstance(x.val, FieldVal):
            fails = lit(x.val.path, x.val.chain, "type", TAGS - {"object", "null"})
            return _unknown(node, "tests whether a key is present", e=disj(key.e, fails))
        return _unknown(node, "tests whether a key is present", e=None)

    def _limit(self, node: Call, x: Result, env: Env) -> Result:
        count = self.ev(node.args[0], x, env)
        body = self.ev(node.args[1], x, env)
        n = _single(count, int)
        if n is not None and n >= 1:
            return Result(body.val, body.t, body.f, disj(count.e, body.e))
        if n == 0:
            return Result(None, FALSE, FALSE, count.e)
        return Result(None, body.t, body.f, disj(count.e, body.e, _lost(node, "limit with a computed count may fail")))


_ORDER: dict[str, Callable[[int], bool]] = {
    "<": lambda r: r < 0,
    "<=": lambda r: r <= 0,
    ">": lambda r: r > 0,
    ">=": lambda r: r >= 0,
}


def _static(fn: Callable[[Any, Any], bool], left: tuple[Any, ...], right: tuple[Any, ...]) -> set[bool] | None:
    try:
        return {fn(a, b) for b in right for a in left}
    except (rt.NeedsLibjq, rt.JqError):
        return None


def _equality(a: Result, b: Result) -> tuple[Formula, Formula, Formula] | None:
    """(some output pair is equal, some pair is unequal, no pair is equal), or None if not modelled."""
    for field_side, const_side in ((a, b), (b, a)):
        field, const = field_side.val, const_side.val
        if isinstance(field, FieldVal) and isinstance(const, ConstVal) and const.values:
            keys = _keys(const.values)
            if keys is None:
                return None
            equal = lit(field.path, field.chain, "in", keys)
            unequal = lit(field.path, field.chain, "in", keys, False)
            return equal, unequal if len(keys) == 1 else TRUE, unequal
    for truth, const_side in ((a, b), (b, a)):
        flag, const = truth.val, const_side.val
        if isinstance(flag, TruthVal) and isinstance(const, ConstVal) and len(const.values) == 1:
            value = const.values[0]
            if (value is True and not flag.nullable) or (value is None and flag.nullable):
                truthy = value is True  # a boolean equals true when truthy; a position-or-null is null when not
                return (truth.t, truth.f, truth.f) if truthy else (truth.f, truth.t, truth.t)
            if value is False and not flag.nullable:
                return truth.f, truth.t, truth.t
            if not flag.nullable and (value is None or type(value) in (int, float, str, list, dict)):
                return FALSE, truth.out, truth.out  # a boolean equals no other value
            return None
    for array_side, const_side in ((a, b), (b, a)):
        array, const = array_side.val, const_side.val
        if isinstance(array, ArrayVal) and isinstance(const, ConstVal) and len(const.values) == 1:
            return _array_equality(array, const.values[0])
    if isinstance(a.val, ConstVal) and isinstance(b.val, ConstVal):
        outcomes = _static(rt.equal, a.val.values, b.val.values)
        if outcomes is None:
            return None
        some = TRUE if True in outcomes else FALSE
        return some, TRUE if False in outcomes else FALSE, FALSE if True in outcomes else TRUE
    return None


def _array_equality(array: ArrayVal, value: Any) -> tuple[Formula, Formula, Formula] | None:
    """`[.a, .b] == ["x", "y"]`: equal where every element is, unequal where one is not (one output each)."""
    if type(value) is not list:
        return FALSE, TRUE, TRUE  # an array equals no other value
    if len(value) != len(array.items):
        return FALSE, TRUE, TRUE
    equal: list[Formula] = []
    unequal: list[Formula] = []
    for item, element in zip(array.items, value, strict=True):
        found = _equality(item, _const((element,)))
        if found is None:
            return None
        equal.append(found[0])
        unequal.append(found[1])
    return conj(*equal), disj(*unequal), disj(*unequal)


def _select_types(node: Node, x: Result, tags: frozenset[str]) -> Result:
    val = x.val
    if isinstance(val, FieldVal):
        truthy, falsy = lit(val.path, val.chain, "type", tags & TRUTHY), lit(val.path, val.chain, "type", tags & FALSY)
        return Result(val, truthy, falsy, FALSE)
    if isinstance(val, ConstVal):
        return _const(tuple(v for v in val.values if tag(v) in tags))
    return _unknown(node, "selects by type a value the index does not know", e=FALSE)


def _total(node: Node, x: Result, fails_on: frozenset[str]) -> Result:
    val = x.val
    if isinstance(val, FieldVal):
        fails = lit(val.path, val.chain, "type", fails_on)
        return Result(None, lit(val.path, val.chain, "type", TAGS - fails_on - ERROR), FALSE, fails, True)
    if isinstance(val, ConstVal):
        tags = {tag(v) for v in val.values}
        ok = TRUE if tags - fails_on else FALSE
        return Result(None, ok, FALSE, TRUE if tags & fails_on else FALSE)
    fails = FALSE if not fails_on else _lost(node, "may fail on a value the index does not know")
    return Result(None, TRUE, FALSE, fails)


def _regex_arguments(node: Call, x: Result, analyser: _Analyser, env: Env) -> tuple[str, str] | str:
    """test's pattern and flags when they are literals (test(re), test(re; flags), test([re, flags]))."""
    args = [analyser.ev(arg, x, env) for arg in node.args]
    if len(args) == 1:
        pair = _single(args[0], list)
        if pair is not None:
            if len(pair) != 2:
                return "calls test with an array that is not [regex, flags]"
            args = [_const((pair[0],)), _const((pair[1],))]
    pattern = _single(args[0], str)
    flags = _single(args[1], str) if len(args) == 2 else ""
    if len(args) == 2 and flags is None and isinstance(args[1].val, ConstVal) and args[1].val.values == (None,):
        flags = ""
    if pattern is None or flags is None:
        return "calls test with a computed regex or flags"
    if not set(flags) <= set("gnslpi"):
        return f"its regex flags {flags!r} are not modelled"
    if any(not isinstance(arg.e, Bottom) for arg in args):
        return "calls test with arguments that may fail"
    return pattern, flags


_REGEX_CHECKS: dict[tuple[str, str], bool] = {}


def _regex_compiles(pattern: str, flags: str) -> bool:
    """Whether Oniguruma accepts the regex (else test fails on every input): asked of libjq itself, once."""
    key = (pattern, flags)
    if key not in _REGEX_CHECKS:
        import json

        import jq

        program = jq.compile(f"test({json.dumps(pattern)}; {json.dumps(flags)})")
        try:
            program.input_value("").first()
            _REGEX_CHECKS[key] = True
        except ValueError:
            _REGEX_CHECKS[key] = False
    return _REGEX_CHECKS[key]


# -- words for `validate --explain`


def render_path(path: Path) -> str:
    text = ""
    for key in path:
        if type(key) is int:
            text += f"[{key}]"
        elif isinstance(key, str) and key.isidentifier():
            text += ("." if text else "") + key
        else:
            text += f"[{_json(key)}]"
    return text or "the event"


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _render_step(step: Step) -> str:
    if step.op == "unreadable":
        return f" (or {_json(step.arg)} where it cannot be read)"
    if step.op == "alt":
        return f" // {_json(step.arg)}"
    if step.op in ("ltrimstr", "rtrimstr"):
        return f" | {step.op}({_json(step.arg)})"
    if step.op == "regex":  # the subject of a regex test: case-folded with "i"
        return " (ignoring case)" if step.arg else ""
    return f" | {step.op}"


def _render_values(values: Iterable[Any], limit: int = 8) -> str:
    shown = sorted((_uncanonical(v) for v in values), key=lambda v: (type(v) is not str, str(v)))
    texts = [_json(v) for v in shown]
    if len(texts) > limit:
        return "{" + ", ".join(texts[:limit]) + f", ... ({len(texts)} values)}}"
    return "{" + ", ".join(texts) + "}"


_KIND_WORDS = {
    "in": ("in", "not in"),
    "prefix": ("starts with", "does not start with"),
    "suffix": ("ends with", "does not end with"),
    "infix": ("contains", "does not contain"),
}


def render_atom(atom: Atom, positive: bool = True) -> str:
    subject = render_path(atom.path) + "".join(_render_step(step) for step in atom.chain)
    if atom.kind == "type":
        if atom.values == ERROR or atom.values == TAGS - ERROR:
            fails = (atom.values == ERROR) == positive
            return f"{subject} {'fails' if fails else 'does not fail'}"
        shown = sorted(atom.values - ERROR)
        others = sorted(TAGS - ERROR - atom.values)
        text = " or ".join(shown) if len(shown) <= len(others) else "not " + " or ".join(others)
        text = f"fails or is {text}" if "error" in atom.values else f"is {text}"
        return f"{subject} {text}" if positive else f"not ({subject} {text})"
    words = _KIND_WORDS[atom.kind][0 if positive else 1]
    return f"{subject} {words} {_render_values(atom.values)}"


def render_formula(formula: Formula) -> str:
    if isinstance(formula, Lit):
        return render_atom(formula.atom, formula.positive)
    if isinstance(formula, (And, Or)):
        word = " and " if isinstance(formula, And) else " or "
        return word.join(
            f"({render_formula(part)})" if isinstance(part, (And, Or)) else render_formula(part)
            for part in formula.parts
        )
    if isinstance(formula, Top):
        return "any event"
    return "no event"


def render_reason(top: Top) -> str:
    if top.node is None:
        return top.why or "it can match any event"
    text = render(top.node)
    if len(text) > 70:
        text = text[:67] + "..."
    return f"`{text}` {top.why}"


def render(node: Node) -> str:
    """jq source for a node (for messages: parenthesised generously, not necessarily the original text)."""
    if isinstance(node, Identity):
        return "."
    if isinstance(node, Recurse):
        return ".."
    if isinstance(node, Literal):
        return _json(node.value)
    if isinstance(node, Index):
        target = "" if isinstance(node.target, Identity) else render(node.target)
        key = node.key
        question = "?" if node.optional else ""
        if isinstance(key, Literal) and isinstance(key.value, str) and key.value.isidentifier():
            return f"{target}.{key.value}{question}"
        return f"{target or '.'}[{render(key)}]{question}"
    if isinstance(node, Iterate):
        target = "." if isinstance(node.target, Identity) else render(node.target)
        return f"{target}[]{'?' if node.optional else ''}"
    if isinstance(node, Try):
        if node.catch is None:
            return f"({render(node.body)})?"
        return f"try ({render(node.body)}) catch ({render(node.catch)})"
    if isinstance(node, Pipe):
        return f"{render(node.left)} | {render(node.right)}"
    if isinstance(node, Comma):
        return f"{render(node.left)}, {render(node.right)}"
    if isinstance(node, Binary):
        return f"({render(node.left)} {node.op} {render(node.right)})"
    if isinstance(node, Negate):
        return f"-{render(node.operand)}"
    if isinstance(node, If):
        return f"if {render(node.cond)} then {render(node.then)} else {render(node.otherwise)} end"
    if isinstance(node, Call):
        if not node.args:
            return node.name
        return f"{node.name}({'; '.join(render(arg) for arg in node.args)})"
    if isinstance(node, StringInterp):
        return '"' + "".join(p if isinstance(p, str) else f"\\({render(p)})" for p in node.parts) + '"'
    if isinstance(node, Bind):
        return f"{render(node.source)} as {node.name} | {render(node.body)}"
    if isinstance(node, Var):
        return node.name
    if isinstance(node, ArrayCons):
        return "[]" if node.body is None else f"[{render(node.body)}]"
    if isinstance(node, ObjectCons):
        return "{" + ", ".join(f"({render(k)}): {render(v)}" for k, v in node.entries) + "}"
    if isinstance(node, Reduce):
        return f"{'foreach' if node.foreach else 'reduce'} {render(node.source)} as {node.name} (...)"
    return type(node).__name__


# -- the index of a rule file

MAX_FIELDS = 6  # each costs a lookup on every event
_CACHE_LIMIT = 50_000  # combinations of values (or of classes) cached
_FIELD_VALUES_LIMIT = 20_000  # distinct values of one field before the index stops reading it


def choose_fields(
    conditions: Sequence[Formula], limit: int = MAX_FIELDS, exclude: frozenset[Path] = frozenset()
) -> tuple[Path, ...]:
    """Fields for the index: greedily, the one that lets the most rules not yet indexed be indexed."""
    mentions: dict[Path, int] = {}  # rules testing the field
    keyed: dict[Path, int] = {}  # rules listing values of it: the sharpest tests
    paths_of: list[set[Path]] = []
    for formula in conditions:
        found = {atom for atom in _unique_atoms(formula) if atom.path not in exclude}
        paths = {atom.path for atom in found}
        paths_of.append(paths)
        for path in paths:
            mentions[path] = mentions.get(path, 0) + 1
        for path in {atom.path for atom in found if atom.kind == "in"}:
            keyed[path] = keyed.get(path, 0) + 1
    uncovered = [i for i, formula in enumerate(conditions) if not isinstance(formula, Top)]
    chosen: list[Path] = []
    while uncovered and len(chosen) < limit:
        best: tuple[tuple[int, int, int, int], Path, list[int]] | None = None
        for path in sorted({p for i in uncovered for p in paths_of[i]} - set(chosen), key=render_path):
            fields = frozenset((*chosen, path))
            gained = [i for i in uncovered if path in paths_of[i] and not _top(project(conditions[i], fields))]
            score = (len(gained), keyed.get(path, 0), mentions[path], -len(path))
            if gained and (best is None or score > best[0]):
                best = (score, path, gained)
        if best is None:
            # No single field helps: a rule that needs several at once (`a == 1 or b == 2`), fewest first.
            needs = sorted((paths_of[i] - set(chosen) for i in uncovered), key=len)
            extra = next((p for p in needs if p and len(chosen) + len(p) <= limit), None)
            if extra is None:
                break
            chosen.extend(sorted(extra, key=render_path))
        else:
            chosen.append(best[1])
        fields = frozenset(chosen)
        uncovered = [i for i in uncovered if _top(project(conditions[i], fields))]
    # Then sharpen: a field many rules name values of (eventName where rules test eventSource first) splits
    # their events further, for one more lookup per event.
    selective: dict[Path, int] = {}
    for formula in conditions:
        for path in {atom.path for atom in _unique_atoms(formula) if atom.kind != "type"} - exclude:
            selective[path] = selective.get(path, 0) + 1
    threshold = max(2, len(conditions) // 10)
    for path in sorted(selective, key=lambda p: (-selective[p], render_path(p))):
        if len(chosen) >= limit or selective[path] < threshold:
            break
        if path not in chosen:
            chosen.append(path)
    return tuple(chosen)


def _top(formula: Formula) -> bool:
    return isinstance(formula, Top)


def _unique_atoms(formula: Formula) -> set[Atom]:
    return {node.atom for node in _distinct_nodes(formula) if isinstance(node, Lit)}


def read_path(data: Any, path: Path) -> Any:
    """A field of the event as jq reads it: null where absent, ERR where reading fails."""
    value = data
    for key in path:
        if value is None:
            return None
        if type(key) is str:
            if type(value) is not dict:
                return ERR
            value = value.get(key)
        else:
            if type(value) is not list:
                return ERR
            assert isinstance(key, int)
            position = key + len(value) if key < 0 else key
            value = value[position] if 0 <= position < len(value) else None
    return value


class _Field:
    """One index field: its atoms (a bit each), grouped by normalisation, and a memo of values seen.

    The memo holds strings, null and ERR only: Python equates True, 1 and 1.0, jq does not.
    """

    def __init__(self, path: Path, atoms: Sequence[Atom]) -> None:
        self.path = path
        self.bits = {atom: i for i, atom in enumerate(atoms)}
        self.width = len(atoms)
        chains: dict[Chain, list[tuple[int, Atom]]] = {}
        for atom, bit in self.bits.items():
            chains.setdefault(atom.chain, []).append((bit, atom))
        self.chains = [(chain, members, sum(1 << bit for bit, _ in members)) for chain, members in chains.items()]
        self.memo: dict[Any, int] = {}
        self.overflowed = False

    def classify(self, value: Any) -> int:
        """Which atoms hold (low bits) and which cannot be decided (high bits) for this value."""
        storable = type(value) is str or value is None or value is ERR
        if storable:
            known = self.memo.get(value)
            if known is not None:
                return known
        holds = unknown = 0
        for chain, members, mask in self.chains:
            normalised = apply_chain(value, chain)
            if normalised is WILD:
                unknown |= mask
                continue
            for bit, atom in members:
                if atom.test(normalised):
                    holds |= 1 << bit
        result = holds | (unknown << self.width)
        if storable:
            if len(self.memo) >= _FIELD_VALUES_LIMIT:
                self.memo.clear()
                self.overflowed = True
            self.memo[value] = result
        return result


class RuleIndex(Generic[Entry]):
    """Candidate rules per event: `dispatch(event data)` gives, in rule order, the entries to run.

    `conditions[i]` is rule i's analysed condition (a Top with a reason when it could not be analysed).
    A field whose values prove too varied to classify once each (more than 20,000 distinct) is dropped
    and the index rebuilt without it.
    """

    def __init__(self, conditions: Sequence[Formula], entries: Sequence[Entry]) -> None:
        self.entries = tuple(entries)
        self._analysed = tuple(conditions)
        self.dropped: list[Path] = []  # fields whose values proved too varied to index on
        self._layout = _Layout(self, frozenset())

    @property
    def fields(self) -> tuple[Path, ...]:
        return self._layout.fields

    @property
    def conditions(self) -> tuple[Formula, ...]:
        """Per rule, its condition on the fields this index reads (Top: the rule runs on every event)."""
        return self._layout.conditions

    @property
    def indexed(self) -> tuple[bool, ...]:
        return self._layout.indexed

    @property
    def keyed_by(self) -> str:
        return self._layout.keyed_by

    @property
    def dispatch(self) -> Callable[[Any], tuple[Entry, ...]]:
        return self._layout.dispatch

    def key_by_classes(self) -> None:
        """Key the cache by each field's class rather than raw values (done by itself when values vary)."""
        self._layout.key_by_classes()

    def describe(self, i: int) -> str:
        formula = self.conditions[i]
        if isinstance(formula, Top):
            return f"not indexed: {render_reason(formula)}"
        return f"indexed on {render_formula(formula)}"

    def candidates(self, data: Any) -> tuple[Entry, ...]:
        """The entries for one event, without the caches (for tests and explanations)."""
        layout = self._layout
        if type(data) is not dict:
            return self.entries
        return layout.select(tuple(f.classify(read_path(data, f.path)) for f in layout.readers))

    def after_miss(self, layout: _Layout[Entry]) -> None:
        """A field with too many distinct values costs more to classify than its rules save: drop it."""
        varied = [field.path for field in layout.readers if field.overflowed]
        if varied and layout is self._layout:
            self.dropped.extend(varied)
            self._layout = _Layout(self, frozenset(self.dropped))


class _Layout(Generic[Entry]):
    """One arrangement of an index: the fields it reads, the conditions on them, the caches, `dispatch`.

    A dispatch function keeps using the layout it was made for, so replacing the layout mid-batch is safe.
    """

    def __init__(self, owner: RuleIndex[Entry], exclude: frozenset[Path]) -> None:
        self.owner = owner
        self.entries = owner.entries
        analysed = owner._analysed
        self.fields = choose_fields(analysed, exclude=exclude)
        fieldset = frozenset(self.fields)
        self.conditions = tuple(project(formula, fieldset) for formula in analysed)
        self.indexed = tuple(not _top(formula) for formula in self.conditions)
        atoms_by_path: dict[Path, set[Atom]] = {path: set() for path in self.fields}
        for formula in self.conditions:
            for atom in _unique_atoms(formula):
                atoms_by_path[atom.path].add(atom)
        self.readers = [_Field(path, sorted(atoms_by_path[path], key=repr)) for path in self.fields]
        self.position = {path: i for i, path in enumerate(self.fields)}
        self.cache: dict[tuple[Any, ...], tuple[Entry, ...]] = {}
        self.by_class: dict[tuple[int, ...], tuple[Entry, ...]] = {}
        self.keyed_by = "values"  # or "classes", once the combinations of values prove too many to cache
        self.dispatch: Callable[[Any], tuple[Entry, ...]] = self.dispatcher()

    def key_by_classes(self) -> None:
        self.cache.clear()
        self.keyed_by = "classes"
        self.dispatch = self.dispatcher()

    def miss(self, key: tuple[Any, ...]) -> tuple[Entry, ...]:
        classes = tuple(field.classify(value) for field, value in zip(self.readers, key, strict=True))
        entries = self.by_class.get(classes)
        if entries is None:
            entries = self.select(classes)
            if len(self.by_class) >= _CACHE_LIMIT:
                self.by_class.clear()
            self.by_class[classes] = entries
        # Only strings, null and ERR key the cache: True == 1 == 1.0 would share an entry.
        if all(type(v) is str or v is None or v is ERR for v in key):
            if len(self.cache) >= _CACHE_LIMIT:
                # Too many combinations of values to cache: one memo lookup more per field and event.
                self.key_by_classes()
            else:
                self.cache[key] = entries
        self.owner.after_miss(self)
        return entries

    def slow(self, data: Any) -> tuple[Entry, ...]:
        """Keyed by classes: an event with a value not yet seen (or not storable), or not an object."""
        if type(data) is not dict:
            return self.entries
        classes = tuple(field.classify(read_path(data, field.path)) for field in self.readers)
        entries = self.by_class.get(classes)
        if entries is None:
            entries = self.select(classes)
            if len(self.by_class) >= _CACHE_LIMIT:
                self.by_class.clear()
            self.by_class[classes] = entries
        self.owner.after_miss(self)
        return entries

    def select(self, classes: tuple[int, ...]) -> tuple[Entry, ...]:
        readers, position = self.readers, self.position

        def holds(atom: Atom) -> bool | None:
            i = position[atom.path]
            field = readers[i]
            bit = field.bits[atom]
            if (classes[i] >> (field.width + bit)) & 1:
                return None
            return bool((classes[i] >> bit) & 1)

        return tuple(
            entry
            for entry, formula, indexed in zip(self.entries, self.conditions, self.indexed, strict=True)
            if not indexed or evaluate(formula, holds)
        )

    def dispatcher(self) -> Callable[[Any], tuple[Entry, ...]]:
        """One function per layout: read the fields, look their tuple up, classify on a miss.

        Generated (as dataclasses and namedtuple generate theirs) so that the common case costs a few
        dict lookups and no Python-level loop; field names enter the source only through repr().
        """
        every = self.entries
        if not self.fields:
            constant = self.select(())  # rules that can never match or fail are left out even so

            def dispatch_constant(data: Any) -> tuple[Entry, ...]:
                return constant if type(data) is dict else every

            return dispatch_constant
        if self.keyed_by == "values":
            reads = ", ".join(_read_code(path, i) for i, path in enumerate(self.fields))
            source = (
                "def dispatch(d):\n"
                "    if type(d) is not dict:\n"
                "        return every\n"
                f"    key = ({reads},)\n"
                "    try:\n"
                "        return cache[key]\n"
                "    except (KeyError, TypeError):\n"
                "        return miss(key)\n"
            )
        else:
            classes = ", ".join(f"memo{i}[{_read_code(path, i)}]" for i, path in enumerate(self.fields))
            source = (
                "def dispatch(d):\n"
                "    try:\n"
                f"        return by_class[({classes},)]\n"
                "    except (KeyError, TypeError, AttributeError):\n"
                "        return slow(d)\n"
            )
        namespace: dict[str, Any] = {
            "every": every,
            "cache": self.cache,
            "by_class": self.by_class,
            "miss": self.miss,
            "slow": self.slow,
            "ERR": ERR,
            "read_path": read_path,
            "dict": dict,
            "type": type,
            **{f"memo{i}": field.memo for i, field in enumerate(self.readers)},
        }
        exec(compile(source, f"<rule index over {len(self.fields)} fields>", "exec"), namespace)
        dispatch: Callable[[Any], tuple[Entry, ...]] = namespace["dispatch"]
        return dispatch


def _read_code(path: Path, i: int) -> str:
    """Source reading one path from `d`, like read_path (which it calls for array positions)."""
    if not all(type(key) is str for key in path):
        return f"read_path(d, {path!r})"
    code = f"d.get({path[0]!r})"
    for depth, key in enumerate(path[1:]):
        name = f"_v{i}_{depth}"
        code = f"({name}.get({key!r}) if type({name} := {code}) is dict else (None if {name} is None else ERR))"
    return code
