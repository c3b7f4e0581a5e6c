"""jq's value semantics over orjson-parsed values (dict, list, str, int, float, bool, None).

Mirrors jq 1.8 as the `jq` Python package exposes it: jq's total order across types, equality where
`1 == 1.0` but `true != 1`, literal-preserving number printing in `tojson`, and the package's
conversion of output numbers (integral doubles come back as `int`). Where a value falls in a corner
this module does not model exactly (huge integers mixed with floats, slices, odd index types), it
raises `NeedsLibjq` and the caller runs that rule on libjq for that event instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_SAFE_INT = 2**53
# jq's own limits on nesting (printing, comparing, containment) are 10000 levels; past Python's recursion
# limit the compiled path either works without recursion or hands the event to libjq.
MAX_JQ_DEPTH = 10000
TOO_DEEP = "a value nested too deeply for the compiled path"
_END: Any = object()
_CONTAINERS_AND_NUMBERS = (list, dict, int, float)
_INF = float("inf")
_DBL_MAX = 1.7976931348623157e308


class JqError(Exception):
    """A jq run-time error (what `try` catches); the message approximates jq's.

    `from_error` marks a value the program raised itself with `error`: a `catch` handler may read it.
    A built-in error's message only approximates jq's, so a handler that reads one asks libjq.
    """

    def __init__(self, value: Any = None, from_error: bool = False) -> None:
        super().__init__(value)
        self.from_error = from_error

    def __str__(self) -> str:
        value = self.args[0] if self.args else None
        if type(value) is str:
            return value
        try:
            return f"{tojson(value)} (not a string)"
        except NeedsLibjq:
            return "error (not a string)"


class NeedsLibjq(Exception):
    """This value is outside what the compiled path models exactly: ask libjq. Never caught by `try`."""


def type_name(value: Any) -> str:
    t = type(value)
    if t is str:
        return "string"
    if value is None:
        return "null"
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    raise NeedsLibjq(f"unexpected Python type {t.__name__}")


def truthy(value: Any) -> bool:
    return value is not None and value is not False


_DELIMS = {'"': '"', "[": "]", "{": "}"}


def error_text(value: Any) -> str:
    """A value as jq 1.8 shows it in an error message (jv_dump_string_trunc into 30 bytes)."""
    if type(value) is str and len(value) > 30:
        value = value[:30]
    try:
        data = tojson(value).encode()
    except NeedsLibjq:
        return "..."
    if len(data) <= 29:
        return data.decode()
    delim = _DELIMS.get(chr(data[0]), "")
    cut = 30 - (5 if delim else 4)
    while cut > 0 and data[cut] & 0xC0 == 0x80:  # back to the start of the character at the cut
        cut -= 1
    return data[:cut].decode() + "..." + delim


# -- indexing and iteration


def index(value: Any, key: Any) -> Any:
    """`value[key]` with jq's rules (jv_get)."""
    tk = type(key)
    tv = type(value)
    if tk is str:
        if tv is dict:
            return value.get(key)
        if value is None:
            return None
        raise _index_error(value, key)
    if tk is int or tk is float:
        if tv is list:
            if tk is float:
                if key != key:
                    return None
                if not key.is_integer():
                    raise NeedsLibjq("fractional array index")
                key = int(key)
            if not -(2**31) < key < 2**31:
                raise NeedsLibjq("huge array index")
            if key < 0:
                key += len(value)
            return value[key] if 0 <= key < len(value) else None
        if value is None:
            return None
        raise _index_error(value, key)
    if tv in (dict, list) or value is None:
        raise NeedsLibjq("index by a non-string, non-number key")
    raise _index_error(value, key)


def _index_error(value: Any, key: Any) -> JqError:
    return JqError(f"Cannot index {type_name(value)} with {type_name(key)} ({error_text(key)})")


def object_key_error(key: Any) -> JqError:
    return JqError(f"Cannot use {type_name(key)} ({error_text(key)}) as object key")


def iterate_error(value: Any) -> JqError:
    return JqError(f"Cannot iterate over {type_name(value)} ({error_text(value)})")


# -- ordering and equality

_RANK_BY_TYPE = {type(None): 0, int: 3, float: 3, str: 4, list: 5, dict: 6}


def _rank(value: Any) -> int:
    t = type(value)
    if t is bool:
        return 2 if value else 1
    rank = _RANK_BY_TYPE.get(t)
    if rank is None:
        raise NeedsLibjq(f"unexpected Python type {t.__name__}")
    return rank


def _check_numbers(a: Any, b: Any) -> None:
    """Python compares int and float exactly, jq compares them as decimals: they differ past 2**53."""
    if type(a) is not type(b):
        big = a if type(a) is int else b
        if not -MAX_SAFE_INT <= big <= MAX_SAFE_INT:
            raise NeedsLibjq("comparison of a huge integer with a float")


def compare(a: Any, b: Any) -> int:
    """jq's total order: null < false < true < numbers < strings < arrays < objects."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 3:
        if a != a or b != b:
            raise NeedsLibjq("NaN in an ordering (jq orders it below every number)")
        _check_numbers(a, b)
        return -1 if a < b else (1 if a > b else 0)
    if ra == 4:
        return -1 if a < b else (1 if a > b else 0)
    try:
        if ra == 5:
            for x, y in zip(a, b, strict=False):
                r = compare(x, y)
                if r:
                    return r
            return -1 if len(a) < len(b) else (1 if len(a) > len(b) else 0)
        if ra == 6:
            ka, kb = sorted(a), sorted(b)
            if ka != kb:
                return -1 if ka < kb else 1
            for k in ka:
                r = compare(a[k], b[k])
                if r:
                    return r
            return 0
    except RecursionError as error:
        raise NeedsLibjq(TOO_DEEP) from error
    return 0


def equal(a: Any, b: Any) -> bool:
    """jq's `==`: numbers by value (1 == 1.0), booleans never equal numbers, objects by key set."""
    ta, tb = type(a), type(b)
    if ta is str or tb is str:
        return ta is tb and a == b
    if a is None or b is None:
        return a is b
    if ta is bool or tb is bool:
        return a is b
    if ta in (int, float):
        if tb not in (int, float):
            return False
        _check_numbers(a, b)
        return bool(a == b)
    if ta is not tb:
        if ta not in _CONTAINERS_AND_NUMBERS or tb not in _CONTAINERS_AND_NUMBERS:
            raise NeedsLibjq(f"unexpected Python types {ta.__name__}, {tb.__name__}")
        return False
    try:
        if ta is list:
            return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
        if ta is dict:
            return a.keys() == b.keys() and all(equal(v, b[k]) for k, v in a.items())
    except RecursionError as error:
        raise NeedsLibjq(TOO_DEEP) from error
    raise NeedsLibjq(f"unexpected Python type {ta.__name__}")


# -- printing

_ESCAPE = re.compile(r'[\x00-\x1f"\\\x7f]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _escape_char(match: re.Match[str]) -> str:
    c = match.group()
    return _ESCAPES.get(c) or f"\\u{ord(c):04x}"


def dump_string(text: str) -> str:
    return '"' + _ESCAPE.sub(_escape_char, text) + '"'


def format_float(value: float) -> str:
    """How jq 1.8 prints a number literal that reached it as Python's repr (decNumber's to-sci-string)."""
    text = repr(value)
    if "e" not in text:
        if "n" in text:  # inf, nan
            raise NeedsLibjq("non-finite number")
        return text
    mantissa, _, exp_text = text.partition("e")
    sign = ""
    if mantissa.startswith("-"):
        sign, mantissa = "-", mantissa[1:]
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0") or "0"
    exponent = int(exp_text) - len(frac)
    adjusted = exponent + len(digits) - 1
    if exponent <= 0 and adjusted >= -6:
        places = -exponent
        if places == 0:
            return sign + digits
        if places >= len(digits):
            return sign + "0." + "0" * (places - len(digits)) + digits
        return sign + digits[: len(digits) - places] + "." + digits[len(digits) - places :]
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}E{'+' if adjusted >= 0 else '-'}{abs(adjusted)}"


def tojson(value: Any) -> str:
    """jq's compact dump; values nested past Python's recursion limit are written without recursion."""
    try:
        return _tojson(value)
    except RecursionError:
        return _tojson_flat(value)


def _tojson_flat(value: Any) -> str:
    out: list[str] = []
    # Each frame: (iterator over the container's items, is_object, closing bracket, depth).
    stack: list[tuple[Iterator[Any], bool, str, int]] = []
    first = True
    pending: Any = value
    have_pending = True
    while True:
        if have_pending:
            t = type(pending)
            if t is list or t is dict:
                if len(stack) >= MAX_JQ_DEPTH:
                    raise NeedsLibjq(TOO_DEEP)
                is_object = t is dict
                out.append("{" if is_object else "[")
                stack.append((iter(pending.items() if is_object else pending), is_object, "}" if is_object else "]", 0))
                first = True
            else:
                out.append(_tojson(pending))
            have_pending = False
        if not stack:
            return "".join(out)
        items, is_object, closing, _ = stack[-1]
        item = next(items, _END)
        if item is _END:
            out.append(closing)
            stack.pop()
            first = False
            continue
        if not first:
            out.append(",")
        first = False
        if is_object:
            key, pending = item
            out.append(dump_string(key) + ":")
        else:
            pending = item
        have_pending = True


def _tojson(value: Any) -> str:
    t = type(value)
    if t is str:
        return dump_string(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        return format_float(value)
    if t is list:
        return "[" + ",".join([_tojson(item) for item in value]) + "]"
    if t is dict:
        return "{" + ",".join([dump_string(k) + ":" + _tojson(v) for k, v in value.items()]) + "}"
    raise NeedsLibjq(f"unexpected Python type {t.__name__}")


def tostring(value: Any) -> str:
    return value if type(value) is str else tojson(value)


def to_output(value: Any) -> Any:
    """Convert a result the way the `jq` package hands jq's numbers back (integral doubles as int)."""
    try:
        return _to_output(value)
    except RecursionError:
        return _to_output_flat(value)


def _to_output_flat(value: Any) -> Any:
    """A deep value is handed back unchanged when no number in it needs converting (else libjq)."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is list:
            stack.extend(v)
        elif t is dict:
            stack.extend(v.values())
        elif (t is float or t is int) and _to_output(v) is not v:
            raise NeedsLibjq(TOO_DEEP)
    return value


def _to_output(value: Any) -> Any:
    t = type(value)
    if t is float:
        if value.is_integer():
            return int(value)
        if value != value:
            return None  # jq prints NaN as null
        if value in (_INF, -_INF):
            return _DBL_MAX if value > 0 else -_DBL_MAX  # and infinities as the largest double
        return value
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return value
        try:
            return int(float(value))
        except OverflowError as error:
            raise NeedsLibjq("integer beyond double range") from error
    if t is list:
        converted = [_to_output(item) for item in value]
        if all(a is b for a, b in zip(converted, value, strict=True)):
            return value
        return converted
    if t is dict:
        changed = False
        out = {}
        for k, v in value.items():
            c = _to_output(v)
            changed = changed or c is not v
            out[k] = c
        return out if changed else value
    return value


# -- builtins with jq's edge cases


def length(value: Any) -> Any:
    t = type(value)
    if t is str or t is list or t is dict:
        return len(value)
    if value is None:
        return 0
    if t is int or t is float:
        return abs(value)
    raise JqError(f"{type_name(value)} ({error_text(value)}) has no length")


def utf8bytelength(value: Any) -> int:
    if type(value) is not str:
        raise JqError(f"{type_name(value)} ({error_text(value)}) only strings have UTF-8 byte length")
    return len(value.encode())


def keys(value: Any, sort: bool) -> list[Any]:
    t = type(value)
    if t is dict:
        return sorted(value) if sort else list(value)
    if t is list:
        return list(range(len(value)))
    raise JqError(f"{type_name(value)} ({error_text(value)}) has no keys")


def to_entries(value: Any) -> list[Any]:
    t = type(value)
    if t is dict:
        return [{"key": k, "value": v} for k, v in value.items()]
    if t is list:
        return [{"key": i, "value": v} for i, v in enumerate(value)]
    raise JqError(f"{type_name(value)} ({error_text(value)}) has no keys")


def has(value: Any, key: Any) -> bool:
    tv, tk = type(value), type(key)
    if value is None:
        return False
    if tv is dict and tk is str:
        return key in value
    if tv is list and (tk is int or tk is float):
        if key != key:
            return False
        if not -(2**31) < key < 2**31:
            raise NeedsLibjq("huge key")
        return 0 <= int(key) < len(value)
    raise JqError(f"Cannot check whether {type_name(value)} has a {type_name(key)} key")


def _kind(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return type_name(value)


def contains(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        shown = f"{type_name(a)} ({error_text(a)}) and {type_name(b)} ({error_text(b)})"
        raise JqError(f"{shown} cannot have their containment checked")
    try:
        return _contains(a, b)
    except RecursionError as error:
        raise NeedsLibjq(TOO_DEEP) from error


def _contains(a: Any, b: Any) -> bool:
    ka = _kind(a)
    if ka != _kind(b):
        return False
    if ka == "object":
        return all(k in a and _contains(a[k], v) for k, v in b.items())
    if ka == "array":
        return all(any(_contains(x, y) for x in a) for y in b)
    if ka == "string":
        return b in a
    return equal(a, b)


def startswith(value: Any, prefix: Any) -> bool:
    if type(value) is not str or type(prefix) is not str:
        raise JqError("startswith() requires string inputs")
    return value.startswith(prefix)


def endswith(value: Any, suffix: Any) -> bool:
    if type(value) is not str or type(suffix) is not str:
        raise JqError("endswith() requires string inputs")
    return value.endswith(suffix)


def ltrimstr(value: Any, prefix: Any) -> Any:
    if startswith(value, prefix):
        return value[len(prefix) :]
    return value


def rtrimstr(value: Any, suffix: Any) -> Any:
    if endswith(value, suffix):
        return value[: len(value) - len(suffix)]
    return value


def split(value: Any, sep: Any) -> list[str]:
    if type(value) is not str or type(sep) is not str:
        raise JqError("split input and separator must be strings")
    if value == "":
        return []
    if sep == "":
        return list(value)
    return value.split(sep)


_ASCII_DOWN = {c: c + 32 for c in range(65, 91)}
_ASCII_UP = {c: c - 32 for c in range(97, 123)}


def ascii_downcase(value: Any) -> str:
    if type(value) is not str:
        raise JqError("explode input must be a string")  # jq 1.8 defines it with explode
    return value.translate(_ASCII_DOWN)


def ascii_upcase(value: Any) -> str:
    if type(value) is not str:
        raise JqError("explode input must be a string")  # jq 1.8 defines it with explode
    return value.translate(_ASCII_UP)


_SIMPLE_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")


def tonumber(value: Any) -> Any:
    t = type(value)
    if t is int or t is float:
        return value
    if t is str:
        if _SIMPLE_NUMBER.fullmatch(value):
            return int(value)
        raise NeedsLibjq("tonumber of a non-trivial string")
    raise JqError(f"{type_name(value)} ({error_text(value)}) cannot be parsed as a number")


def join(value: Any, sep: Any) -> str:
    t = type(value)
    if t is dict:
        items = list(value.values())
    elif t is list:
        items = value
    else:
        raise iterate_error(value)
    if not items:
        return ""
    if type(sep) is not str:
        raise NeedsLibjq("join with a non-string separator")
    pieces = []
    for item in items:
        ti = type(item)
        if ti is str:
            pieces.append(item)
        elif item is None:
            pieces.append("")
        elif ti is bool or ti is int or ti is float:
            pieces.append(tojson(item))
        else:
            raise JqError(f"string and {type_name(item)} cannot be added")
    return sep.join(pieces)


def add(value: Any) -> Any:
    t = type(value)
    if t is dict:
        items = list(value.values())
    elif t is list:
        items = value
    else:
        raise iterate_error(value)
    acc: Any = None
    for item in items:
        if item is None:
            continue
        if acc is None:
            acc = item.copy() if type(item) in (list, dict) else item
            continue
        ta, ti = type(acc), type(item)
        if ta is str and ti is str:
            acc = acc + item
        elif ta is list and ti is list:
            acc.extend(item)
        elif ta is dict and ti is dict:
            acc.update(item)
        elif ta in (int, float) and ti in (int, float):
            raise NeedsLibjq("arithmetic on numbers")
        else:
            raise JqError(f"{type_name(acc)} and {type_name(item)} cannot be added")
    if type(acc) in (int, float):
        raise NeedsLibjq("arithmetic on numbers")
    return acc


def plus(a: Any, b: Any) -> Any:
    """jq's `+`: null is the identity; strings, arrays concatenate; objects merge (right wins)."""
    if a is None:
        return b
    if b is None:
        return a
    ta, tb = type(a), type(b)
    if ta is str and tb is str:
        return a + b
    if ta is list and tb is list:
        return a + b
    if ta is dict and tb is dict:
        return {**a, **b}
    if ta in (int, float) and tb in (int, float):
        raise NeedsLibjq("arithmetic on numbers")
    raise JqError(f"{type_name(a)} ({error_text(a)}) and {type_name(b)} ({error_text(b)}) cannot be added")
