"""Sigma's string patterns as regexes that mean the same in PCRE (Sigma's flavour), Oniguruma (jq) and Python.

Three sources: wildcard values (`*`, `?`), `re` values (the PCRE subset Sigma's specification allows) and
`cidr` networks. Each is parsed into a small tree and written back in one canonical form built only from
constructs the three engines read alike: literal characters (escaped when they are metacharacters),
`.`, `^`, `$`, groups, alternation, greedy or lazy quantifiers and bracket classes written as explicit
ranges. `\\d`, `\\w`, `\\s` become their ASCII classes (PCRE's meaning without UCP: Oniguruma's would also
match other scripts' digits). What cannot be written that way raises `PatternError` with the reason.

Case-insensitive matching is ASCII case folding everywhere (Sigma's default for strings, `re|i`): the
subject is lowered with jq's `ascii_downcase` and the pattern is folded here, rather than using
Oniguruma's `i` flag, which also folds `ß` with `ss` and `K` (Kelvin) with `k`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_CODE_POINT = 0x10FFFF
MAX_REPEAT = 1000
# Metacharacters written with a backslash outside classes; inside classes, those that could change a class.
_META = frozenset("\\^$.|?*+()[]{}")
_CLASS_SPECIAL = frozenset("\\^]-[")
# The compiled matcher reads `&` in a class as an intersection (Oniguruma's `&&`): keep it out of classes.
_AMPERSAND = ord("&")

Ranges = tuple[tuple[int, int], ...]


class PatternError(ValueError):
    """A value that cannot be turned into a regex with the same meaning in every engine."""


def ascii_lower(text: str) -> str:
    """jq's `ascii_downcase`: A-Z only."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Lit:
    char: str


@dataclass(frozen=True, slots=True)
class AnyChar:
    """`.`: any character but a newline, or any at all with `dotall`."""

    dotall: bool = False


@dataclass(frozen=True, slots=True)
class Class:
    ranges: Ranges  # sorted, merged, inclusive code point ranges
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Anchor:
    kind: str  # "^" or "$"
    multiline: bool = False


@dataclass(frozen=True, slots=True)
class Group:
    alternatives: tuple[tuple[Node, ...], ...]
    capturing: bool = False


@dataclass(frozen=True, slots=True)
class Repeat:
    node: Node
    low: int
    high: int | None
    lazy: bool = False


Node = Lit | AnyChar | Class | Anchor | Group | Repeat

_DIGIT: Ranges = ((0x30, 0x39),)
_WORD: Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE: Ranges = ((0x09, 0x0D), (0x20, 0x20))
_SHORTHANDS: dict[str, tuple[Ranges, bool]] = {
    "d": (_DIGIT, False),
    "D": (_DIGIT, True),
    "w": (_WORD, False),
    "W": (_WORD, True),
    "s": (_SPACE, False),
    "S": (_SPACE, True),
}
_CONTROL_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def merge(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return tuple(out)


def fold_ranges(ranges: Ranges) -> Ranges:
    """The lower-cased members of a class (what it matches once the subject is `ascii_downcase`d)."""
    out: list[tuple[int, int]] = []
    for low, high in ranges:
        upper_low, upper_high = max(low, 0x41), min(high, 0x5A)
        if upper_low <= upper_high:
            out.append((upper_low + 32, upper_high + 32))
            if low < upper_low:
                out.append((low, upper_low - 1))
            if high > upper_high:
                out.append((upper_high + 1, high))
        else:
            out.append((low, high))
    return merge(out)


# --------------------------------------------------------------------------- Sigma's regex subset


@dataclass(frozen=True, slots=True)
class RegexOptions:
    ignore_case: bool = False
    multiline: bool = False
    dotall: bool = False


def translate_regex(pattern: str, options: RegexOptions) -> str:
    """A Sigma `re` value as the canonical regex, for a subject lowered with `ascii_downcase` when
    `options.ignore_case` (search semantics, as PCRE's: the regex may match anywhere).

    Raises:
        PatternError: the value uses something outside the subset, or that the engines read differently.
    """
    if any(0xD800 <= ord(c) <= 0xDFFF for c in pattern):
        raise PatternError("the regex holds a lone surrogate character")
    tree = _RegexParser(pattern).parse()
    if options.multiline:
        tree = _multiline(tree)
    return render(tree, options.ignore_case, options.dotall)


class _RegexParser:
    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.i = 0

    def parse(self) -> Group:
        alternatives = self.alternatives()
        if self.i < len(self.text):  # only a `)` stops the top level early
            raise PatternError(f"unbalanced ')' at position {self.i}")
        return Group(alternatives)

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.text[j] if j < len(self.text) else ""

    def alternatives(self) -> tuple[tuple[Node, ...], ...]:
        alternatives = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            alternatives.append(self.sequence())
        return tuple(alternatives)

    def sequence(self) -> tuple[Node, ...]:
        items: list[Node] = []
        while self.i < len(self.text) and self.peek() not in "|)":
            atom = self.atom()
            items.append(self.quantified(atom))
        return tuple(items)

    def atom(self) -> Node:
        c = self.peek()
        start = self.i
        self.i += 1
        if c == "(":
            capturing = True
            if self.peek() == "?":
                if self.peek(1) != ":":
                    raise PatternError(
                        f"group extension '(?{self.peek(1)}' at position {start} (lookarounds, "
                        "inline flags and named groups are outside Sigma's regex subset)"
                    )
                self.i += 2
                capturing = False
            alternatives = self.alternatives()
            if self.peek() != ")":
                raise PatternError(f"unclosed '(' at position {start}")
            self.i += 1
            return Group(alternatives, capturing)
        if c == "[":
            return self.bracket(start)
        if c == ".":
            return AnyChar()
        if c in "^$":
            return Anchor(c)
        if c == "\\":
            return self.escape(start)
        if c in "*+?":
            raise PatternError(f"quantifier '{c}' without anything to repeat at position {start}")
        if c == "{" and _BRACE_QUANTIFIER.match(self.text, start):
            raise PatternError(f"quantifier '{{' without anything to repeat at position {start}")
        if c == "{" and self.text.startswith("{,", start):
            raise PatternError(f"'{{,' at position {start}: PCRE versions read it differently, escape the brace")
        return Lit(c)

    def escape(self, start: int) -> Node:
        e = self.peek()
        if not e:
            raise PatternError("the regex ends with a lone backslash")
        self.i += 1
        if e in _SHORTHANDS:
            ranges, negated = _SHORTHANDS[e]
            return Class(complement(ranges) if negated else ranges)
        if e in _CONTROL_ESCAPES:
            return Lit(_CONTROL_ESCAPES[e])
        if e == "x":
            return Lit(self.hex_escape(start))
        if e.isascii() and e.isalnum():
            raise PatternError(f"escape '\\{e}' at position {start} is outside Sigma's regex subset")
        return Lit(e)

    def hex_escape(self, start: int) -> str:
        digits = self.text[self.i : self.i + 2]
        if len(digits) != 2 or not all(d in "0123456789abcdefABCDEF" for d in digits):
            raise PatternError(f"escape '\\x' at position {start} must have two hex digits")
        self.i += 2
        return chr(int(digits, 16))

    def quantified(self, atom: Node) -> Node:
        c = self.peek()
        if c in ("*", "+", "?"):
            low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            self.i += 1
        elif c == "{" and (m := _BRACE_QUANTIFIER.match(self.text, self.i)):
            low = int(m.group(1))
            high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
                raise PatternError(f"repeat count above {MAX_REPEAT} at position {self.i}")
            if high is not None and high < low:
                raise PatternError(f"quantifier {m.group()} at position {self.i} has its bounds reversed")
            self.i = m.end()
        else:
            return atom
        if _has_anchor(atom):  # Oniguruma refuses some of these ("target of repeat operator is invalid")
            raise PatternError("a quantifier on ^ or $ (or on a group holding one)")
        lazy = False
        if self.peek() == "?":
            lazy = True
            self.i += 1
        elif self.peek() == "+":
            raise PatternError(f"possessive quantifier at position {self.i} is outside Sigma's regex subset")
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and _BRACE_QUANTIFIER.match(self.text, self.i)):
            raise PatternError(f"a quantifier directly after another at position {self.i}")
        return Repeat(atom, low, high, lazy)

    def bracket(self, start: int) -> Class:
        negated = False
        if self.peek() == "^":
            negated = True
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.peek()
            if not c:
                raise PatternError(f"unclosed '[' at position {start}")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[":
                raise PatternError(
                    f"'[' inside a class at position {self.i} (POSIX classes are outside Sigma's "
                    "regex subset): escape it as '\\['"
                )
            low = self.class_member(ranges)
            if low is None:
                continue
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                high = self.class_member(ranges)
                if high is None:
                    raise PatternError(f"a range ending in a class shorthand at position {self.i}")
                if high < low:
                    raise PatternError(f"range out of order in a class at position {self.i}")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        members = merge(ranges)
        if not members:
            raise PatternError(f"empty class at position {start}")
        return Class(members, negated)

    def class_member(self, ranges: list[tuple[int, int]]) -> int | None:
        """One class member's code point; a shorthand (`\\d`) adds its ranges and returns None."""
        c = self.peek()
        position = self.i
        self.i += 1
        if c != "\\":
            return ord(c)
        e = self.peek()
        if not e:
            raise PatternError("the regex ends with a lone backslash")
        self.i += 1
        if e in _SHORTHANDS:
            shorthand, negated = _SHORTHANDS[e]
            ranges.extend(complement(shorthand) if negated else shorthand)
            return None
        if e in _CONTROL_ESCAPES:
            return ord(_CONTROL_ESCAPES[e])
        if e == "x":
            return ord(self.hex_escape(position))
        if e.isascii() and e.isalnum():
            raise PatternError(f"escape '\\{e}' in a class at position {position} is outside Sigma's regex subset")
        return ord(e)


_BRACE_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")


def _multiline(tree: Group) -> Group:
    """`re|m`: `^` first and `$` last in a top-level branch become `(?:^|\\n)` and `(?:$|\\n)`.

    For a search these consume the newline instead of looking at it, which changes nothing at the edge of
    the pattern; anywhere else it would, so anchors elsewhere are refused.
    """
    alternatives: list[tuple[Node, ...]] = []
    for branch in tree.alternatives:
        items = list(branch)
        for position, node in enumerate(items):
            if isinstance(node, Anchor):
                if node.kind == "^" and all(isinstance(n, Anchor) and n.kind == "^" for n in items[:position]):
                    items[position] = Anchor("^", multiline=True)
                elif node.kind == "$" and all(isinstance(n, Anchor) and n.kind == "$" for n in items[position + 1 :]):
                    items[position] = Anchor("$", multiline=True)
                else:
                    raise PatternError(
                        "with the m modifier, '^' and '$' are supported only at the start and end "
                        "of the pattern or of a top-level alternative"
                    )
        for node in items:
            if isinstance(node, Group | Repeat) and _has_anchor(node):
                raise PatternError("with the m modifier, '^' and '$' inside a group are not supported")
        alternatives.append(tuple(items))
    return Group(tuple(alternatives))


def _has_anchor(node: Node) -> bool:
    if isinstance(node, Anchor):
        return True
    if isinstance(node, Group):
        return any(_has_anchor(n) for branch in node.alternatives for n in branch)
    if isinstance(node, Repeat):
        return _has_anchor(node.node)
    return False


# --------------------------------------------------------------------------- writing a tree back


def render(tree: Group, fold: bool = False, dotall: bool = False) -> str:
    """The top-level group's alternatives, without an enclosing group."""
    return "|".join("".join(_render(node, fold, dotall) for node in branch) for branch in tree.alternatives)


def _render(node: Node, fold: bool, dotall: bool) -> str:
    if isinstance(node, Lit):
        return literal(ascii_lower(node.char) if fold else node.char)
    if isinstance(node, AnyChar):
        return "(?:.|\n)" if dotall or node.dotall else "."
    if isinstance(node, Class):
        return render_class(fold_ranges(node.ranges) if fold else node.ranges, node.negated)
    if isinstance(node, Anchor):
        if node.multiline:
            return "(?:^|\n)" if node.kind == "^" else "(?:$|\n)"
        return node.kind
    if isinstance(node, Group):
        inner = "|".join("".join(_render(n, fold, dotall) for n in branch) for branch in node.alternatives)
        # Rules only test for a match: groups never capture, which keeps every translation on RE2's fast path
        # (the compiled path refuses a capture inside a repeated group that can match empty).
        return f"(?:{inner})"
    body = _render(node.node, fold, dotall)
    if node.high is None:
        count = {0: "*", 1: "+"}.get(node.low, f"{{{node.low},}}")
    elif node.low == 0 and node.high == 1:
        count = "?"
    elif node.low == node.high:
        count = f"{{{node.low}}}"
    else:
        count = f"{{{node.low},{node.high}}}"
    return body + count + ("?" if node.lazy else "")


def literal(char: str) -> str:
    return "\\" + char if char in _META else char


def render_class(ranges: Ranges, negated: bool) -> str:
    """A class as explicit members; one atom (a group when `&` must stay outside the brackets)."""
    if negated:
        ranges = complement(ranges)
    if not ranges:
        raise PatternError("a class that matches no character")
    members: list[str] = []
    ampersand = False
    for low, high in ranges:
        if low <= _AMPERSAND <= high:
            ampersand = True
            for part in ((low, _AMPERSAND - 1), (_AMPERSAND + 1, high)):
                if part[0] <= part[1]:
                    members.append(_class_range(*part))
        else:
            members.append(_class_range(low, high))
    if not members:
        return "&"
    text = "[" + "".join(members) + "]"
    return f"(?:{text}|&)" if ampersand else text


def _class_range(low: int, high: int) -> str:
    """`a-z`; an end that must be escaped (`]`, `-`, ...) is written as a member of its own."""
    out: list[str] = []
    while low <= high and chr(low) in _CLASS_SPECIAL:
        out.append("\\" + chr(low))
        low += 1
    tail: list[str] = []
    while high >= low and chr(high) in _CLASS_SPECIAL:
        tail.insert(0, "\\" + chr(high))
        high -= 1
    if low < high:
        out.append(f"{chr(low)}-{chr(high)}" if high > low + 1 else chr(low) + chr(high))
    elif low == high:
        out.append(chr(low))
    return "".join(out + tail)


# --------------------------------------------------------------------------- wildcard values


@dataclass(frozen=True, slots=True)
class Wildcard:
    """A Sigma string value: literal text, `*` (any run of characters, newlines included) and `?` (one)."""

    parts: tuple[str | WildcardChar, ...]

    @property
    def plain(self) -> str | None:
        """The text when there is no wildcard."""
        if all(isinstance(p, str) for p in self.parts):
            return "".join(p for p in self.parts if isinstance(p, str))
        return None

    def lowered(self) -> Wildcard:
        return Wildcard(tuple(ascii_lower(p) if isinstance(p, str) else p for p in self.parts))

    def simplified(self) -> Wildcard:
        """Adjacent texts joined, runs of `*` collapsed to one (they match the same)."""
        out: list[str | WildcardChar] = []
        for part in self.parts:
            if isinstance(part, str):
                if not part:
                    continue
                if out and isinstance(out[-1], str):
                    out[-1] += part
                    continue
            elif part is STAR and out and out[-1] is STAR:
                continue
            out.append(part)
        return Wildcard(tuple(out))

    def regex(self) -> str:
        out = ["^"]
        for part in self.parts:
            if isinstance(part, str):
                out.extend(literal(c) for c in part)
            elif part is STAR:
                out.append("(?:.|\n)*")
            else:
                out.append("(?:.|\n)")
        out.append("$")
        return "".join(out)

    def matches(self, text: str) -> bool:
        """Whether this pattern matches `text` (a full match: used to ask whether it matches "null")."""
        return re.fullmatch(self.regex()[1:-1], text) is not None


class WildcardChar:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


STAR = WildcardChar("*")
QUESTION = WildcardChar("?")


# --------------------------------------------------------------------------- cidr


def ipv4_network_regex(cidr: str) -> str:
    """An anchored regex matching the dotted-quad text (decimal, no leading zeros) of every IPv4 address
    in `cidr`, and nothing else.

    Raises:
        PatternError: an IPv6 network (its addresses have several text forms) or not a network.
    """
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError as error:
        raise PatternError(f"{cidr!r} is not a network: {error}") from error
    if not isinstance(network, ipaddress.IPv4Network):
        raise PatternError(f"IPv6 network {cidr}: its addresses have several text forms, not supported")
    first = int(network.network_address)
    octets: list[str] = []
    for index in range(4):
        shift = 8 * (3 - index)
        bits = max(0, min(8, network.prefixlen - 8 * index))
        base = (first >> shift) & 0xFF
        span = 1 << (8 - bits)
        octets.append(octet_regex(base, base + span - 1))
    return "^" + "\\.".join(octets) + "$"


def octet_regex(low: int, high: int) -> str:
    """A regex (one atom) for the decimal numbers low..high (0..255) written without leading zeros."""
    alternatives: list[str] = []
    for length in (1, 2, 3):
        lo = max(low, 0 if length == 1 else 10 ** (length - 1))
        hi = min(high, 10**length - 1)
        if lo <= hi:
            alternatives.extend(_same_length(str(lo), str(hi)))
    if len(alternatives) == 1:
        return alternatives[0]
    return "(?:" + "|".join(alternatives) + ")"


def _same_length(lo: str, hi: str) -> list[str]:
    if lo == hi:
        return [lo]
    if len(lo) == 1:
        return [_digit_range(lo, hi)]
    if lo[0] == hi[0]:
        return [lo[0] + rest for rest in _same_length(lo[1:], hi[1:])]
    width = len(lo) - 1
    out: list[str] = []
    start = int(lo[0])
    if lo[1:] != "0" * width:
        out.extend(lo[0] + rest for rest in _same_length(lo[1:], "9" * width))
        start += 1
    end = int(hi[0])
    tail: list[str] = []
    if hi[1:] != "9" * width:
        tail = [hi[0] + rest for rest in _same_length("0" * width, hi[1:])]
        end -= 1
    if start <= end:
        out.append(_digit_range(str(start), str(end)) + "[0-9]" * width)
    return out + tail


def _digit_range(lo: str, hi: str) -> str:
    return lo if lo == hi else f"[{lo}-{hi}]"
