"""Translate the regexes whose meaning is the same in Oniguruma (jq) and Python's `re`; refuse the rest.

Accepted: literal characters, escaped metacharacters, `.`, anchors `^`/`$`, groups `(...)`/`(?:...)`,
alternation, greedy and lazy quantifiers, simple bracket classes, and `\\d\\w\\s\\b` (and negations)
only together with a guard that the subject is ASCII, where both engines agree. Flags: `g` (no effect
on `test`) and `i` (with the same ASCII guard). Anything else raises `Unsupported`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stream_processor.matcher.jqparse import Unsupported

_META = set("\\^$.|?*+()[]{}")
_ESCAPABLE = set("\\^$.|?*+()[]{}/-")
_CLASS_SHORTHANDS = set("dwsDWS")
_BRACES = re.compile(r"\{(\d{1,4})(?:,(\d{1,4})?)?\}")


@dataclass(frozen=True, slots=True)
class Regex:
    """A translated pattern; `ascii_only` means a non-ASCII subject must go to libjq."""

    pattern: re.Pattern[str]
    ascii_only: bool


def translate(pattern: str, flags: str | None) -> Regex:
    ascii_only = False
    re_flags = 0
    for flag in flags or "":
        if flag == "g":
            continue
        if flag == "i":
            if not pattern.isascii():
                raise Unsupported("case-insensitive regex with non-ASCII characters")
            ascii_only = True
            re_flags |= re.IGNORECASE
            continue
        raise Unsupported(f"regex flag {flag!r}")
    out: list[str] = []
    i = 0
    n = len(pattern)
    depth = 0
    previous_quantifiable = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise Unsupported("regex ending in a backslash")
            e = pattern[i + 1]
            if e in _ESCAPABLE:
                out.append(re.escape(e))
            elif e in _CLASS_SHORTHANDS or e in "bB":
                ascii_only = True
                out.append("\\" + e)
            else:
                raise Unsupported(f"regex escape \\{e}")
            i += 2
            previous_quantifiable = e not in "bB"
            continue
        if c == "[":
            i, text, uses_shorthand = _bracket(pattern, i)
            ascii_only = ascii_only or uses_shorthand
            out.append(text)
            previous_quantifiable = True
            continue
        if c == "(":
            if pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
            elif pattern.startswith("(?", i):
                raise Unsupported("regex group extension (?...)")
            else:
                out.append("(")
                i += 1
            depth += 1
            previous_quantifiable = False
            continue
        if c == ")":
            if depth == 0:
                raise Unsupported("unbalanced regex parenthesis")
            depth -= 1
            out.append(")")
            i += 1
            previous_quantifiable = True
            continue
        if c in "*+?":
            if not previous_quantifiable:
                raise Unsupported("regex quantifier without operand")
            out.append(c)
            i += 1
            if i < n and pattern[i] == "?":
                out.append("?")
                i += 1
            if i < n and pattern[i] in "*+?{":
                raise Unsupported("stacked regex quantifiers")
            previous_quantifiable = False
            continue
        if c == "{":
            m = _BRACES.match(pattern, i)
            if m is None or not previous_quantifiable:
                raise Unsupported("regex brace that is not a simple {n}, {n,} or {n,m} quantifier")
            if m.group(2) is not None and int(m.group(2)) < int(m.group(1)):
                raise Unsupported("regex quantifier {n,m} with m < n")
            out.append(m.group())
            i = m.end()
            if i < n and pattern[i] == "?":
                out.append("?")
                i += 1
            if i < n and pattern[i] in "*+?{":
                raise Unsupported("stacked regex quantifiers")
            previous_quantifiable = False
            continue
        if c in "^$|.":
            out.append(c)
            i += 1
            previous_quantifiable = c == "."
            continue
        if c == "]" or c == "}":
            raise Unsupported(f"bare {c!r} in a regex")
        if c in " #" or c.isspace():
            out.append(re.escape(c))
        else:
            out.append(re.escape(c) if c in _META else c)
        i += 1
        previous_quantifiable = True
    if depth:
        raise Unsupported("unbalanced regex parenthesis")
    text = "".join(out)
    if ascii_only:
        re_flags |= re.ASCII
    try:
        compiled = re.compile(text, re_flags)
    except re.error as error:
        raise Unsupported(f"regex Python cannot compile: {error}") from error
    return Regex(compiled, ascii_only)


def _bracket(pattern: str, start: int) -> tuple[int, str, bool]:
    """A simple bracket class: optional ^, literal characters, ranges of literals, \\d\\w\\s, escapes."""
    i = start + 1
    n = len(pattern)
    out = ["["]
    uses_shorthand = False
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    if i < n and pattern[i] == "]":
        raise Unsupported("regex class starting with ]")
    members = 0
    while True:
        if i >= n:
            raise Unsupported("unterminated regex class")
        c = pattern[i]
        if c == "]":
            if members == 0:
                raise Unsupported("empty regex class")
            out.append("]")
            return i + 1, "".join(out), uses_shorthand
        if c in "[&":
            raise Unsupported("nested or intersected regex class")
        if c == "\\":
            if i + 1 >= n:
                raise Unsupported("regex ending in a backslash")
            e = pattern[i + 1]
            if e in _CLASS_SHORTHANDS:
                uses_shorthand = True
                out.append("\\" + e)
            elif e in _ESCAPABLE:
                out.append("\\" + e)
            else:
                raise Unsupported(f"regex escape \\{e} in a class")
            i += 2
            members += 1
            continue
        if c == "-":
            # Only a literal hyphen at the end, or a range between two plain characters.
            if pattern[i + 1 : i + 2] == "]" and members:
                out.append("\\-")
                i += 1
                members += 1
                continue
            raise Unsupported("regex class with a hyphen that is not a simple range")
        if pattern[i + 1 : i + 2] == "-" and pattern[i + 2 : i + 3] not in ("]", "", "\\", "[", "&"):
            low, high = c, pattern[i + 2]
            if ord(low) > ord(high):
                raise Unsupported("reversed regex range")
            out.append(re.escape(low) + "-" + re.escape(high))
            i += 3
            members += 1
            continue
        out.append(re.escape(c) if c in "\\^]-[" else c)
        i += 1
        members += 1
