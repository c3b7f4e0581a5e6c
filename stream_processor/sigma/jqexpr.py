"""The jq a converted Sigma rule is made of: one boolean expression per field comparison, joined with
`and`, `or` and `not`, under one `select(...)`.

Every expression here yields exactly one boolean on any event object and never raises: a missing
field, a field under something that is not an object, a number where text was expected are all just
"no match" (or "null" for `field: null`). A rule that raised on an event would count as no match, which
is wrong under `not`. `docs/sigma.md` lists the shapes for each modifier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from stream_processor.sigma.patterns import STAR, Wildcard, ascii_lower

# jq precedence, lowest first: `or`, `and`, comparisons, atoms (a call, a path, a parenthesized pipe).
OR, AND, CMP, ATOM = 1, 2, 3, 4

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = frozenset(
    {
        *("__loc__", "and", "as", "catch", "def", "elif", "else", "end", "foreach", "if", "import", "include"),
        *("label", "not", "or", "reduce", "then", "try"),
    }
)
_STRING_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


@dataclass(frozen=True, slots=True)
class Jq:
    """A jq expression and how tightly it binds (so joining adds only the parentheses it needs)."""

    text: str
    precedence: int

    def at(self, precedence: int) -> str:
        return self.text if self.precedence >= precedence else f"({self.text})"


TRUE = Jq("true", ATOM)
FALSE = Jq("false", ATOM)


def string(text: str) -> str:
    """A jq string literal; anything not printable is written as `\\uXXXX` (the rule file stays plain text)."""
    out = ['"']
    for char in text:
        if char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) > 0xFFFF:
            code = ord(char) - 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{ord(char):04x}")
    out.append('"')
    return "".join(out)


def all_of(items: Sequence[Jq]) -> Jq:
    if not items:
        return TRUE
    if len(items) == 1:
        return items[0]
    return Jq(" and ".join(item.at(AND) for item in items), AND)


def any_of(items: Sequence[Jq]) -> Jq:
    if not items:
        return FALSE
    if len(items) == 1:
        return items[0]
    # an `and` inside an `or` is parenthesized for the reader, though jq would not need it
    return Jq(" or ".join(item.text if item.precedence == OR else item.at(CMP) for item in items), OR)


def negate(item: Jq) -> Jq:
    return Jq(f"({item.text} | not)", ATOM)


def select(condition: Jq) -> str:
    return f"select({condition.text})"


# --------------------------------------------------------------------------- fields


@dataclass(frozen=True, slots=True)
class Field:
    """A Sigma field name; dots walk into nested objects (`requestParameters.userName`)."""

    keys: tuple[str, ...]

    @classmethod
    def parse(cls, name: str) -> Field:
        keys = tuple(name.split("."))
        if not name or any(not key for key in keys):
            raise ValueError(f"field name {name!r} has an empty part")
        return cls(keys)

    @property
    def name(self) -> str:
        return ".".join(self.keys)

    @property
    def value(self) -> str:
        """One value, on any event: the field's, or null when it is missing or under a non-object."""
        if len(self.keys) == 1:
            return _path(self.keys)
        # `?` after every step but the first (the event is an object): `.a.b.c?` would guard `.c` only
        return f"first({_path(self.keys)}, null)"

    def pipe(self, *steps: str) -> str:
        """`value | step | ...`"""
        return " | ".join((self.value, *steps))


def _path(keys: Sequence[str]) -> str:
    """`.a.b?.c?`: a step into a string, number or array is no value rather than an error."""
    out = []
    for position, key in enumerate(keys):
        if _IDENTIFIER.fullmatch(key) and key not in _KEYWORDS:
            step = "." + key
        else:
            step = ("." if position == 0 else "") + f"[{string(key)}]"
        out.append(step + ("?" if position else ""))
    return "".join(out)


# --------------------------------------------------------------------------- comparisons


def _text(field: Field, cased: bool, *steps: str) -> str:
    """The field as text (numbers, booleans, objects as JSON text), lowered unless `cased`."""
    return field.pipe("tostring", *(() if cased else ("ascii_downcase",)), *steps)


def is_null(field: Field) -> Jq:
    return Jq(f"{field.value} == null", CMP)


def not_null(field: Field) -> Jq:
    return Jq(f"{field.value} != null", CMP)


def _guard(field: Field, matches_null: bool, test: Jq) -> Jq:
    """`test`, false on a missing or null field (whose text, "null", might otherwise match)."""
    return all_of([not_null(field), test]) if matches_null else test


def equals(field: Field, values: Sequence[str], cased: bool) -> Jq:
    """The field's text is one of `values` (already lowered unless `cased`)."""
    shown = list(dict.fromkeys(values))
    if len(shown) == 1:
        test = Jq(f"({_text(field, cased)}) == {string(shown[0])}", CMP)
    else:
        test = Jq(f"({_text(field, cased, 'IN(' + ', '.join(string(v) for v in shown) + ')')})", ATOM)
    return _guard(field, "null" in shown, test)


def wildcard(field: Field, pattern: Wildcard, cased: bool) -> Jq:
    """One Sigma string value (wildcards included) against the field's text."""
    if not cased:
        pattern = pattern.lowered()
    pattern = pattern.simplified()
    plain = pattern.plain
    if plain is not None:
        return equals(field, [plain], cased)
    parts = pattern.parts
    null = pattern.matches("null")
    if parts == (STAR,):
        return not_null(field)
    middle = parts[1] if len(parts) == 3 else None
    if isinstance(middle, str) and parts[0] is STAR and parts[2] is STAR:
        return _guard(field, null, Jq(f"({_text(field, cased, f'contains({string(middle)})')})", ATOM))
    if len(parts) == 2 and parts[1] is STAR and isinstance(parts[0], str):
        return _guard(field, null, Jq(f"({_text(field, cased, f'startswith({string(parts[0])})')})", ATOM))
    if len(parts) == 2 and parts[0] is STAR and isinstance(parts[1], str):
        return _guard(field, null, Jq(f"({_text(field, cased, f'endswith({string(parts[1])})')})", ATOM))
    return _guard(field, null, _full_match(field, pattern, cased))


def _full_match(field: Field, pattern: Wildcard, cased: bool) -> Jq:
    """A general wildcard pattern as an anchored regex.

    jq's `$` also matches before a final newline, so `^...$` alone would accept one extra trailing
    newline. That cannot change the answer when the pattern ends with `*` (which absorbs it); when it
    ends with a character other than a newline, refusing texts that end with a newline makes it exact;
    otherwise (it ends with `?` or a newline) the text gets an end marker the pattern must reach.
    """
    regex = pattern.regex()
    last = pattern.parts[-1]
    if last is STAR:  # a final `(?:.|\n)*` reaches the end by itself: no `$`, whose newline rule costs a check
        return Jq(f"({_text(field, cased, f'test({string(regex[:-1])})')})", ATOM)
    if isinstance(last, str) and not last.endswith("\n"):
        # the cheap check first: a text ending in a newline never reaches the regex
        test = f'(endswith("\\n") | not) and test({string(regex)})'
        return Jq(f"({_text(field, cased, test)})", ATOM)
    marked = regex[:-1] + "\x00$"
    return Jq(f'(({_text(field, cased)}) + "\\u0000" | test({string(marked)}))', ATOM)


def regex(field: Field, pattern: str, fold: bool, matches_null: bool) -> Jq:
    """A translated `re` value (search semantics); `fold` lowers the text first (ASCII `i`)."""
    return _guard(field, matches_null, Jq(f"({_text(field, not fold, f'test({string(pattern)})')})", ATOM))


def network(field: Field, anchored_regex: str) -> Jq:
    """`cidr`: the text is an address of the network (the regex cannot match a text ending in a newline)."""
    test = f'(endswith("\\n") | not) and test({string(anchored_regex)})'
    return Jq(f"({_text(field, True, test)})", ATOM)


def exists(field: Field) -> Jq:
    """The key is present (its value may be null), in an object reached through objects."""
    if len(field.keys) == 1:
        return Jq(f"has({string(field.keys[0])})", ATOM)
    parent = Field(field.keys[:-1])
    test = f'type == "object" and has({string(field.keys[-1])})'
    return Jq(f"({parent.pipe(test)})", ATOM)


COMPARISONS = {"LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}


def compare(field: Field, operator: str, number: int | float) -> Jq:
    """`lt`, `gt`, ...: only a number field compares; text that looks like a number does not."""
    test = f'type == "number" and . {COMPARISONS[operator]} {number!r}'
    return Jq(f"({field.pipe(test)})", ATOM)


def field_reference(field: Field, other: Field, cased: bool, starts: bool, ends: bool) -> Jq:
    """`fieldref`: both fields have a value and the first's text equals (starts with, ends with,
    contains) the second's."""
    both = [not_null(field), not_null(other)]
    if not starts and not ends:
        return all_of([*both, Jq(f"({_text(field, cased)}) == ({_text(other, cased)})", CMP)])
    test = "contains" if starts and ends else ("startswith" if starts else "endswith")
    bound = f"(({_text(other, cased)}) as $other | {_text(field, cased, f'{test}($other)')})"
    return all_of([*both, Jq(bound, ATOM)])


def lowered(values: Sequence[str], cased: bool) -> list[str]:
    return list(values) if cased else [ascii_lower(v) for v in values]
