"""Hypothesis strategies for the index's soundness tests: rules in the styles users write, and odd events.

Rules test a few fields through the normalisations and idioms of issue 13 (ascii_downcase, tostring,
`// ""` (after `?` too), ltrimstr, IN, inside, index, any over literals, anchored and unanchored regexes with
flags, startswith, match/capture/scan, array equality, helper `def`s, lookup tables, if/empty, first, limit,
try, `| true`, bindings, and/or/not). Events give those fields every JSON type, leave them out, nest them
under non-objects, and use values chosen to hit the corners: case, Unicode case folding (long s, Kelvin
sign), a trailing newline before `$`, numbers that print like strings.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

# Paths the rules read: top-level, dotted, quoted, under an array, and one that reading can fail on.
FIELDS = (".eventName", ".eventSource", ".userIdentity.type", ".errorCode", '."x y"', ".r.s", ".arr[0]", ".a")
WORDS = (
    "CreateUser", "createuser", "CREATEUSER", "Create", "StopLogging", "stoplogging", "\u017ftoplogging", "\u212a", "k",
    "iam.amazonaws.com", "iam", "", "é", "É", "a.b", "a", "ab", "CreateUser\n", "a\nb", "1", "null", "true",
)  # fmt: skip


def _string(value: str) -> str:
    return json.dumps(value)


def _regex_literal(value: str) -> str:
    return re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", value)


words = st.sampled_from(WORDS)


@st.composite
def subjects(draw: st.DrawFn) -> str:
    """A field, perhaps normalised."""
    field = draw(st.sampled_from(FIELDS))
    shape = draw(st.integers(min_value=0, max_value=15))
    return [
        field,
        f"({field} | ascii_downcase)",
        f"({field} | ascii_upcase)",
        f"({field} | tostring)",
        f'({field} // "")',
        f"({field} // {_string(draw(words))})",
        f'({field} | ltrimstr("Create"))',
        f'({field} | rtrimstr(".amazonaws.com"))',
        f"({field} | tostring | ascii_downcase)",
        f'(({field} // "") | ascii_downcase)',
        f"first({field}?, null)",  # how the Sigma converter reads a dotted field
        f"(first({field}?, null) | tostring | ascii_downcase)",
        f"first({field}?, {_string(draw(words))})",
        f'({field}? // "")',  # a default where the field cannot be read, too
        f"({field}? // {draw(st.sampled_from(['null', 'false', _string(draw(words))]))})",
        f'(({field}? // "") | ascii_downcase)',
    ][shape]


@st.composite
def tests(draw: st.DrawFn, depth: int = 0) -> str:
    """A condition on the event, in one of the idioms users write."""
    if depth < 2 and draw(st.integers(min_value=0, max_value=4)) == 0:
        op = draw(st.sampled_from(["and", "or"]))
        return f"({draw(tests(depth + 1))} {op} {draw(tests(depth + 1))})"
    s = draw(subjects())
    a, b = draw(words), draw(words)
    shape = draw(st.integers(min_value=0, max_value=32))
    if shape == 0:
        return f"({s} == {_string(a)})"
    if shape == 1:
        return f"({s} != {_string(a)})"
    if shape == 2:
        return f"({_string(a)} == {s})"
    if shape == 3:
        return f"({s} | IN({_string(a)}, {_string(b)}))"
    if shape == 4:
        return f"IN({s}; {_string(a)}, {_string(b)})"
    if shape == 5:
        return f"([{s}] | inside([{_string(a)}, {_string(b)}]))"
    if shape == 6:
        return f"({s} | inside({_string(a + b)}))"
    if shape == 7:
        return f"({s} as $v | any([{_string(a)}, {_string(b)}][]; . == $v))"
    if shape == 8:
        return f"({s} as $v | [{_string(a)}, {_string(b)}] | index($v))"
    if shape == 9:
        return f"(({s} as $v | [{_string(a)}, {_string(b)}] | index($v)) != null)"
    if shape == 10:
        flags = draw(st.sampled_from(["", '; "i"', '; "gi"', "; null", '; "x"', '; "n"']))
        return f"({s} | test({_string('^' + _regex_literal(a) + '$')}{flags}))"
    if shape == 11:
        return f"({s} | test({_string('^(' + _regex_literal(a) + '|' + _regex_literal(b) + ')')}))"
    if shape == 12:
        anchored = draw(st.sampled_from(["{}", "^{}", "{}$", "^(?:{})?x", "^{}[0-9]", "^{}.*$", "^{}\\d", "^[Cc]{}"]))
        pattern = anchored.replace("{}", _regex_literal(a))
        flags = draw(st.sampled_from(["", '; "i"']))
        return f"({s} | test({_string(pattern)}{flags}))"
    if shape == 13:
        return f"({s} | startswith({_string(a)}))"
    if shape == 14:
        return f"({s} | endswith({_string(a)}))"
    if shape == 15:
        return f"({s} | contains({_string(a)}))"
    if shape == 16:
        return f"({s} | not)"
    if shape == 17:
        return f"(({s} | type) == {_string(draw(st.sampled_from(['string', 'null', 'boolean', 'number'])))})"
    if shape == 18:
        return f"({draw(tests(depth + 1))} | not)"
    if shape == 19:
        return f"(if {draw(tests(depth + 1))} then true else false end)"
    if shape == 20:
        return f"({s} | strings | length > 1)"
    if shape == 21:
        return f"({s} == {draw(st.sampled_from(['null', 'true', 'false', '1', '1.0']))})"
    if shape == 23:
        other = draw(subjects())
        right = draw(st.sampled_from([f"[{_string(a)}, {_string(b)}]", f"[{_string(a)}]", "[]", _string(a), "null"]))
        return f"([{s}, {other}] {draw(st.sampled_from(['==', '!=']))} {right})"
    if shape == 24:
        return f"([{s}] == [{_string(a)}])"
    if shape == 25:
        call = draw(st.sampled_from(["match", "capture", "scan"]))
        anchored = draw(st.sampled_from(["{}", "^{}", "{}$", "^{}$", "^(?<g>{})"]))
        flags = draw(st.sampled_from(["", '; "i"', '; "g"']))
        return f"({s} | {call}({_string(anchored.replace('{}', _regex_literal(a)))}{flags}))"
    if shape == 26:  # helper functions, inlined for the analysis
        return f"(def t: {draw(tests(depth + 1))}; t)"
    if shape == 27:
        return f"(def t(f): f | not | not; t({draw(tests(depth + 1))}))"
    if shape == 28:
        return f"(def t($v): {s} == $v; t({_string(a)}) or t({_string(b)}))"
    if shape == 29:  # a variable of the caller's with the name of one inside the function
        return f"({s} as $v | def t($w): $v == $w; . as $v | t({_string(a)}))"
    if shape == 30:  # lookup tables
        table = {a: True, b: draw(st.sampled_from([True, False, None, 0, "x"]))}
        return f"({json.dumps(table)}[{s}]{draw(st.sampled_from(['', '?']))})"
    if shape == 31:
        return f"({s} | in({json.dumps({a: 1, b: None})}))"
    if shape == 32:
        return f"({s} as $k | {json.dumps({a: 0, b: False})} | has($k))"
    return f"({s} | IN({_string(a)}))"


@st.composite
def rules(draw: st.DrawFn) -> str:
    """A whole rule: the condition inside one of the wrappers people use."""
    c = draw(tests())
    shape = draw(st.integers(min_value=0, max_value=11))
    return [
        f"select({c})",
        f"select({c}) | true",
        f'select({c}) | "seen \\(.eventName)"',
        c,
        f"if {c} then . else empty end",
        f"first(select({c}))",
        f"limit(1; select({c}))",
        f"try (select({c})) catch false",
        f"(select({c}))?",
        f".eventName as $n | select({c})",
        f"select({c}) | select({draw(tests())})",
        f"select({c}) | .userIdentity.arn",
    ][shape]


_SCALARS = st.one_of(
    words,
    st.sampled_from([None, True, False, 0, 1, 1.0, -1, 1.5, 2**60, 12345678901234567890]),
    st.text(max_size=3),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=2),
    st.dictionaries(st.sampled_from(["type", "s", "a"]), _SCALARS, max_size=2),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An event object: each field of FIELDS present with any type, absent, or under a non-object."""
    event: dict[str, Any] = {}
    for key in ("eventName", "eventSource", "errorCode", "x y", "a"):
        if draw(st.booleans()):
            event[key] = draw(_VALUES)
    if draw(st.booleans()):
        event["userIdentity"] = draw(st.one_of(st.fixed_dictionaries({"type": _VALUES}), _VALUES))
    if draw(st.booleans()):
        event["r"] = draw(st.one_of(st.fixed_dictionaries({"s": _VALUES}), _VALUES))
    if draw(st.booleans()):
        event["arr"] = draw(st.one_of(st.lists(_VALUES, max_size=2), _VALUES))
    return event
