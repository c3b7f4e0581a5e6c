"""A reference evaluator of Sigma detections, written from the Sigma specification and docs/sigma.md.

It interprets a rule's YAML `detection` directly over one event (a dict) and shares no code with the
converter (neither pySigma nor stream_processor.sigma): the differential tests hold the converted jq rules
to it. It is deliberately plain: clarity over speed.

The meaning it implements (docs/sigma.md, "How values match"):
- a field name walks objects by its dotted parts; through anything that is not an object it is missing;
- a missing or null field matches only `null` (and `exists: false` when missing);
- any other value is compared through its text: a string as is, a number, boolean, object or array as
  jq writes it (`tostring`); strings compare case-insensitively for ASCII letters unless `cased`;
- `*` matches any run of characters (newlines too), `?` one character, `\\` escapes `*`, `?` and itself;
- `re` searches (PCRE's meaning); `i` folds ASCII letters, `m` and `s` as in PCRE;
- `cidr` matches the dotted-quad text of an IPv4 address in the network;
- `lt`/`gt`/... compare number fields only; `exists` looks at the key; `fieldref` compares two texts.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

MISSING = object()
DASHES = ("-", "/", "\u2013", "\u2014", "\u2015")


class Unsupported(Exception):
    """Something this reference does not define (the converter must refuse it too)."""


# --------------------------------------------------------------------------- conditions


def evaluate(detection: dict[str, Any], event: dict[str, Any]) -> bool:
    condition = detection["condition"]
    searches = {name: value for name, value in detection.items() if name not in ("condition", "timeframe")}
    conditions = condition if isinstance(condition, list) else [condition]
    return any(_Condition(text, searches, event).parse() for text in conditions)


class _Condition:
    """Recursive descent over `or` < `and` < `not` < `1 of`/`all of` < parentheses."""

    def __init__(self, text: str, searches: dict[str, Any], event: dict[str, Any]) -> None:
        self.tokens = re.findall(r"\(|\)|[^\s()]+", text)
        self.i = 0
        self.searches = searches
        self.event = event

    def parse(self) -> bool:
        value = self.disjunction()
        if self.i != len(self.tokens):
            raise Unsupported(f"trailing tokens in condition: {self.tokens[self.i :]}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def disjunction(self) -> bool:
        values = [self.conjunction()]
        while self.peek() == "or":
            self.take()
            values.append(self.conjunction())
        return any(values)

    def conjunction(self) -> bool:
        values = [self.negation()]
        while self.peek() == "and":
            self.take()
            values.append(self.negation())
        return all(values)

    def negation(self) -> bool:
        if self.peek() == "not":
            self.take()
            return not self.negation()
        return self.primary()

    def primary(self) -> bool:
        token = self.take()
        if token == "(":
            value = self.disjunction()
            if self.take() != ")":
                raise Unsupported("unbalanced parentheses")
            return value
        if token in ("1", "all") and self.peek() == "of":
            self.take()
            pattern = self.take()
            if pattern == "them":
                names = [n for n in self.searches if not n.startswith("_")]
            else:
                regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
                names = [n for n in self.searches if re.fullmatch(regex, n)]
            if not names:
                raise Unsupported(f"{pattern} names no search identifier")
            results = [search(self.searches[n], self.event) for n in names]
            return any(results) if token == "1" else all(results)
        if token not in self.searches:
            raise Unsupported(f"unknown search identifier {token}")
        return search(self.searches[token], self.event)


def search(definition: Any, event: dict[str, Any]) -> bool:
    """A search identifier: a map (AND of its items) or a list of maps (OR)."""
    if isinstance(definition, dict):
        return all(item(key, value, event) for key, value in definition.items())
    if isinstance(definition, list) and definition and all(isinstance(d, dict) for d in definition):
        return any(search(d, event) for d in definition)
    raise Unsupported("keyword search")


# --------------------------------------------------------------------------- one field, its values


def item(key: str, values: Any, event: dict[str, Any]) -> bool:
    field, *modifiers = key.split("|")
    if not field:
        raise Unsupported("keyword search")
    values = values if isinstance(values, list) else [values]
    negated = "neq" in modifiers
    modifiers = [m for m in modifiers if m != "neq"]
    link_all = "all" in modifiers
    modifiers = [m for m in modifiers if m != "all"]
    value = lookup(event, field)
    if not values:
        result = value is MISSING or value is None  # an empty list means null, as pySigma reads it
    else:
        tests = [matcher(v, modifiers, event) for v in values]
        results = [test(value, field) for test in tests]
        result = all(results) if link_all else any(results)
    return not result if negated else result


def lookup(event: dict[str, Any], field: str) -> Any:
    value: Any = event
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def has_key(event: dict[str, Any], field: str) -> bool:
    *parents, last = field.split(".")
    value: Any = event
    for key in parents:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return isinstance(value, dict) and last in value


Test = Callable[[Any, str], bool]


def matcher(value: Any, modifiers: Sequence[str], event: dict[str, Any]) -> Test:
    """What one rule value (with the item's modifiers) requires of the field's value."""
    mods = list(modifiers)
    if "exists" in mods:
        expected = bool(value)
        return lambda _v, field: has_key(event, field) == expected
    if value is None:
        if mods:
            raise Unsupported("null with modifiers")
        return lambda v, _f: v is MISSING or v is None
    if "fieldref" in mods:
        other = str(value)
        how = _position(mods)
        return lambda v, _f: _field_reference(v, lookup(event, other), how)
    for op in ("lt", "lte", "gt", "gte"):
        if op in mods:
            number = value
            return lambda v, _f: _compare(v, op, number)
    if "re" in mods:
        if {"startswith", "endswith"} & set(mods):
            raise Unsupported("re with startswith/endswith")
        flags = re.ASCII
        flags |= re.IGNORECASE if "i" in mods or "ignorecase" in mods else 0
        flags |= re.MULTILINE if "m" in mods or "multiline" in mods else 0
        flags |= re.DOTALL if "s" in mods or "dotall" in mods else 0
        regex = re.compile(str(value), flags)
        return lambda v, _f: v is not MISSING and v is not None and regex.search(text(v)) is not None
    if "cidr" in mods:
        network = ipaddress.ip_network(str(value), strict=False)
        return lambda v, _f: _in_network(v, network)
    if isinstance(value, float):
        raise Unsupported("float value")
    cased = "cased" in mods
    patterns = _patterns(value, mods)
    return lambda v, _f: v is not MISSING and v is not None and any(_wild_match(p, text(v), cased) for p in patterns)


def _position(mods: Sequence[str]) -> str:
    if "contains" in mods or ("startswith" in mods and "endswith" in mods):
        return "contains"
    if "startswith" in mods:
        return "startswith"
    if "endswith" in mods:
        return "endswith"
    return "equals"


def _field_reference(left: Any, right: Any, how: str) -> bool:
    if left is MISSING or left is None or right is MISSING or right is None:
        return False
    a, b = ascii_lower(text(left)), ascii_lower(text(right))
    return {"equals": a == b, "contains": b in a, "startswith": a.startswith(b), "endswith": a.endswith(b)}[how]


def _compare(value: Any, op: str, number: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return {"lt": value < number, "lte": value <= number, "gt": value > number, "gte": value >= number}[op]


def _in_network(value: Any, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if value is MISSING or value is None:
        return False
    try:
        address = ipaddress.ip_address(text(value))
    except ValueError:
        return False
    return isinstance(address, ipaddress.IPv4Address) and address in network


# --------------------------------------------------------------------------- string values


Pattern = list[str | None]  # characters; None is `*`, "" is `?`: a list of one-character strings


def _patterns(value: Any, mods: Sequence[str]) -> list[Pattern]:
    """The value's patterns after the modifiers, applied in order (one value may become several)."""
    if isinstance(value, bool):
        patterns: list[Pattern] = [list("true" if value else "false")]
    elif isinstance(value, int):
        patterns = [list(str(value))]
    else:
        patterns = [parse_wildcards(str(value))]
    for mod in mods:
        if mod == "contains":
            patterns = [
                ([] if p[:1] == [None] else [None]) + p + ([] if p[-1:] == [None] else [None]) for p in patterns
            ]
        elif mod == "startswith":
            patterns = [p + ([] if p[-1:] == [None] else [None]) for p in patterns]
        elif mod == "endswith":
            patterns = [([] if p[:1] == [None] else [None]) + p for p in patterns]
        elif mod == "wide":  # UTF-16LE code units as characters (ASCII only, as pySigma allows)
            if any(c and not c.isascii() for p in patterns for c in p):
                raise Unsupported("wide on non-ASCII text")
            patterns = [[u for c in p for u in ([c, "\x00"] if c else [c])] for p in patterns]
        elif mod == "base64":
            patterns = [list(base64.b64encode(_plain(p).encode()).decode()) for p in patterns]
        elif mod == "base64offset":
            patterns = [list(variant) for p in patterns for variant in base64_offsets(_plain(p).encode())]
        elif mod == "windash":
            patterns = [variant for p in patterns for variant in windash(p)]
        elif mod == "cased":
            continue
        else:
            raise Unsupported(f"modifier {mod}")
    return patterns


def _plain(pattern: Pattern) -> str:
    if any(c is None or c == "" for c in pattern):
        raise Unsupported("wildcards under base64")
    return "".join(c for c in pattern if c)


def parse_wildcards(value: str) -> Pattern:
    """The specification's escaping: `\\*`, `\\?`, `\\\\` are the plain characters; a backslash before
    anything else is a plain backslash."""
    out: Pattern = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            out.append(value[i + 1])
            i += 2
            continue
        out.append(None if c == "*" else ("" if c == "?" else c))
        i += 1
    return out


def _wild_match(pattern: Pattern, subject: str, cased: bool) -> bool:
    if not cased:
        pattern = [ascii_lower(c) if c else c for c in pattern]
        subject = ascii_lower(subject)
    # dynamic programming over (pattern position, subject position): no regex engine involved
    reachable = {0}
    for element in pattern:
        if element is None:
            start = min(reachable) if reachable else None
            reachable = set(range(start, len(subject) + 1)) if start is not None else set()
        elif element == "":
            reachable = {j + 1 for j in reachable if j < len(subject)}
        else:
            reachable = {j + 1 for j in reachable if j < len(subject) and subject[j] == element}
        if not reachable:
            return False
    return len(subject) in reachable


def base64_offsets(data: bytes) -> list[str]:
    """The value base64-encoded at the three byte offsets it can sit at inside a longer encoded text,
    keeping only the characters that do not depend on the bytes around it."""
    out = []
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + data).decode()
        head = {0: 0, 1: 2, 2: 3}[shift]  # characters that still hold bits of the leading bytes
        tail = {0: 0, 1: 3, 2: 2}[(shift + len(data)) % 3]  # a partial last group (with its '=')
        out.append(encoded[head : len(encoded) - tail])
    return out


def windash(pattern: Pattern) -> list[Pattern]:
    """pySigma's windash: a `-` or `/` that starts a word after a non-word position, up to three of them,
    each written as any of the five dashes."""
    chars = "".join(c if c else "\x00" for c in pattern)
    positions = [m.start() for m in re.finditer(r"\B[-/]\b", chars)]
    if len(positions) > 3:
        raise Unsupported("windash with more than three dashes")
    variants = [pattern]
    for position in positions:
        variants = [[*v[:position], dash, *v[position + 1:]] for v in variants for dash in DASHES]
    return variants


# --------------------------------------------------------------------------- text of a value


def ascii_lower(value: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in value)


def text(value: Any) -> str:
    """The text a value is compared through: a string as is, anything else as jq writes it."""
    return value if isinstance(value, str) else tojson(value)


def tojson(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # jq keeps a number's literal and writes it in decimal's scientific notation (1E+100)
        return str(Decimal(repr(value)))
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(tojson(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{tojson(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_string(value: str) -> str:
    out = ['"']
    for c in value:
        if c in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)
