"""jq 1.8's pure builtins over values, each following jq's C code or its definition in builtin.jq.

Errors carry jq's messages; where a value falls in a corner this module does not model exactly
(literal-preserving numbers, NaN ordering, dates outside the plain ISO shape...), `NeedsLibjq` hands
the event to libjq rather than guessing.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Callable
from functools import cmp_to_key
from typing import Any

import orjson

from stream_processor.matcher import jqruntime as rt
from stream_processor.matcher.jqruntime import JqError, NeedsLibjq, error_text, type_name

MAX_SAFE_INT = rt.MAX_SAFE_INT


def _type_error(value: Any, message: str) -> JqError:
    return JqError(f"{type_name(value)} ({error_text(value)}) {message}")


def _type_error2(a: Any, b: Any, message: str) -> JqError:
    return JqError(f"{type_name(a)} ({error_text(a)}) and {type_name(b)} ({error_text(b)}) {message}")


# -- strings


def indices(value: Any, i: Any) -> Any:
    """def indices($i): arrays by sub-array, strings by substring (code point offsets), else `.[$i]`."""
    if type(value) is list:
        return _array_indexes(value, i if type(i) is list else [i])
    if type(value) is str and type(i) is str:
        return _string_indexes(value, i)
    return rt.index(value, i)


def _array_indexes(a: list[Any], b: list[Any]) -> list[int]:
    if not b:
        return []
    n = len(b)
    equal = rt.equal
    return [ai for ai in range(len(a)) if ai + n <= len(a) and all(equal(a[ai + bi], b[bi]) for bi in range(n))]


def _string_indexes(text: str, sub: str) -> list[int]:
    if sub == "":
        return []
    out = []
    at = text.find(sub)
    while at >= 0:
        out.append(at)
        at = text.find(sub, at + 1)
    return out


def index_of(value: Any, i: Any) -> Any:
    """def index($i): indices($i) | .[0]"""
    return rt.index(indices(value, i), 0)


def rindex_of(value: Any, i: Any) -> Any:
    """def rindex($i): indices($i) | .[-1:][0]"""
    found = indices(value, i)
    if found is None:
        return None
    if type(found) is list:
        return found[-1] if found else None
    raise NeedsLibjq("rindex of a non-array result")


def explode(value: Any) -> list[int]:
    if type(value) is not str:
        raise JqError("explode input must be a string")
    return [ord(c) for c in value]


def implode(value: Any) -> str:
    if type(value) is not list:
        raise JqError("implode input must be an array")
    out = []
    for n in value:
        if type(n) not in (int, float) or n != n:
            raise _type_error(n, "can't be imploded, unicode codepoint needs to be numeric")
        if not -(2**31) < n < 2**31:
            raise NeedsLibjq("codepoint beyond int range")
        code = int(n)
        if code < 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            code = 0xFFFD
        out.append(chr(code))
    return "".join(out)


_JQ_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501


def trim(value: Any) -> str:
    if type(value) is not str:
        raise JqError("trim input must be a string")
    return value.strip(_JQ_SPACE)


def ltrim(value: Any) -> str:
    if type(value) is not str:
        raise JqError("trim input must be a string")
    return value.lstrip(_JQ_SPACE)


def rtrim(value: Any) -> str:
    if type(value) is not str:
        raise JqError("trim input must be a string")
    return value.rstrip(_JQ_SPACE)


def trimstr(value: Any, s: Any) -> Any:
    return rt.rtrimstr(rt.ltrimstr(value, s), s)


# -- numbers and conversions

_DECNUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?i:inf|infinity|nan|snan)")
_JSON_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")


def tonumber(value: Any) -> Any:
    t = type(value)
    if t is int or t is float:
        return value
    if t is not str:
        raise _type_error(value, "cannot be parsed as a number")
    if not _DECNUMBER.fullmatch(value):
        raise _type_error(value, "cannot be parsed as a number")
    number = canonical_number(value)
    if number is None:
        raise NeedsLibjq("a number literal jq keeps as written")
    return number


def canonical_number(text: str) -> int | float | None:
    """The value of a number literal whose text is exactly how jq prints that value, else None."""
    if _JSON_INT.fullmatch(text):
        if text == "-0" or len(text) > 16:
            return None
        value = int(text)
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else None
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    try:
        return number if rt.format_float(number) == text else None
    except NeedsLibjq:
        return None


def toboolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    if value == "true" and type(value) is str:
        return True
    if value == "false" and type(value) is str:
        return False
    raise _type_error(value, "cannot be parsed as a boolean")


_JSON_NUMBER_OR_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)')


def fromjson(value: Any) -> Any:
    """orjson parses; every number literal must print back as written (jq keeps literals), else libjq."""
    if type(value) is not str:
        raise _type_error(value, "only strings can be parsed")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise NeedsLibjq("text orjson rejects: libjq decides") from error
    for m in _JSON_NUMBER_OR_STRING.finditer(value):
        literal = m.group(1)
        if literal is not None and canonical_number(literal) is None:
            raise NeedsLibjq("a number literal jq keeps as written")
    return parsed


def abs_value(value: Any) -> Any:
    """def abs: if . < 0 then - . else . end"""
    if rt.compare(value, 0) < 0:
        t = type(value)
        if t is int or t is float:
            return -value
        raise _type_error(value, "cannot be negated")
    return value


def _as_double(value: Any) -> float:
    if type(value) is int and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise NeedsLibjq("huge integer")
    return float(value)


def isinfinite(value: Any) -> bool:
    return type(value) in (int, float) and math.isinf(value)


def isnan(value: Any) -> bool:
    return type(value) is float and value != value


def isnormal(value: Any) -> bool:
    if type(value) not in (int, float):
        return False
    x = abs(_as_double(value)) if type(value) is int else abs(value)
    return math.isfinite(x) and x >= 2.2250738585072014e-308


def isfinite(value: Any) -> bool:
    """def isfinite: type == "number" and (isinfinite | not)"""
    return type(value) in (int, float) and not math.isinf(value)


def add_values(a: Any, b: Any) -> Any:
    """jq's `+`, with numbers only where the sum is an exact integer jq prints the same way."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        if ta is int and tb is int and all(-MAX_SAFE_INT <= n <= MAX_SAFE_INT for n in (a, b, a + b)):
            return a + b
        raise NeedsLibjq("arithmetic on numbers")
    return rt.plus(a, b)


def int_arithmetic(a: Any, b: Any, op: Callable[[int, int], int]) -> int:
    """`-` and `*` where both sides and the result are integers jq holds exactly; anything else asks libjq."""
    if type(a) is int and type(b) is int:
        result = op(a, b)
        if all(-MAX_SAFE_INT <= n <= MAX_SAFE_INT for n in (a, b, result)):
            return result
    raise NeedsLibjq("arithmetic outside exact integers")


# -- @formats


def _escape(text: str, table: dict[str, str]) -> str:
    return "".join(table.get(c, c) for c in text)


_CSV_ESCAPES = {'"': '""'}
_TSV_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\"}
_HTML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"}
_SH_ESCAPES = {"'": "'\\''"}
_URI_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _nul_escape(table: dict[str, str]) -> dict[str, str]:
    return {**table, "\x00": "\\0"}


def _row(value: Any, csv: bool) -> str:
    if type(value) is not list:
        raise _type_error(value, f"cannot be {'csv' if csv else 'tsv'}-formatted, only array")
    table = _nul_escape(_CSV_ESCAPES if csv else _TSV_ESCAPES)
    quote = '"' if csv else ""
    pieces = []
    for x in value:
        t = type(x)
        if x is None:
            pieces.append("")
        elif t is bool or t is int:
            pieces.append(rt.tojson(x))
        elif t is float:
            pieces.append("" if x != x else rt.tojson(x))
        elif t is str:
            pieces.append(quote + _escape(x, table) + quote)
        else:
            raise _type_error(x, "is not valid in a csv row")
    return ("," if csv else "\t").join(pieces)


def _sh(value: Any) -> str:
    items = value if type(value) is list else [value]
    pieces = []
    table = _nul_escape(_SH_ESCAPES)
    for x in items:
        t = type(x)
        if x is None or t in (bool, int, float):
            pieces.append(rt.tojson(x))
        elif t is str:
            pieces.append("'" + _escape(x, table) + "'")
        else:
            raise _type_error(x, "can not be escaped for shell")
    return " ".join(pieces)


def _uri(value: Any) -> str:
    data = rt.tostring(value).encode()
    return "".join(chr(b) if b in _URI_UNRESERVED else f"%{b:02X}" for b in data)


def _urid(value: Any) -> str:
    text = rt.tostring(value)
    data = text.encode()
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b != 0x25:
            out.append(b)
            i += 1
            continue
        pair = data[i + 1 : i + 3]
        if len(pair) < 2 or not all(c in b"0123456789abcdefABCDEF" for c in pair):
            raise _type_error(text, "is not a valid uri encoding")
        out.append(int(pair, 16))
        i += 3
    try:
        return out.decode()
    except UnicodeDecodeError as error:
        raise _type_error(text, "is not a valid uri encoding") from error


def _base64(value: Any) -> str:
    return base64.b64encode(rt.tostring(value).encode()).decode()


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _base64d(value: Any) -> str:
    text = rt.tostring(value)
    data = text.encode()
    end = data.find(b"=")
    body = data if end < 0 else data[:end]  # jq stops at the first '='
    if not _B64_ALPHABET.issuperset(body):
        raise _type_error(text, "is not valid base64 data")
    if len(body) % 4 == 1:
        raise _type_error(text, "trailing base64 byte found")
    padded = body + b"=" * (-len(body) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True)
    except binascii.Error as error:  # pragma: no cover - the checks above make the input valid
        raise NeedsLibjq("base64 corner") from error
    try:
        return decoded.decode()
    except UnicodeDecodeError as error:
        raise NeedsLibjq("base64 data that is not UTF-8 (jq replaces bytes its own way)") from error


FORMATS: dict[str, Callable[[Any], str]] = {
    "text": rt.tostring,
    "json": rt.tojson,
    "csv": lambda v: _row(v, True),
    "tsv": lambda v: _row(v, False),
    "html": lambda v: _escape(rt.tostring(v), _HTML_ESCAPES),
    "uri": _uri,
    "urid": _urid,
    "sh": _sh,
    "base64": _base64,
    "base64d": _base64d,
}


# -- arrays: sorting, grouping, extremes

_KEY = cmp_to_key(rt.compare)


def sort(value: Any) -> list[Any]:
    if type(value) is not list:
        raise _type_error(value, "cannot be sorted, as it is not an array")
    return sorted(value, key=_KEY)


def _sorted_pairs(values: Any, keys: list[Any]) -> list[tuple[Any, Any]]:
    if type(values) is not list:
        raise _type_error2(values, keys, "cannot be sorted, as they are not both arrays")
    return sorted(zip(keys, values, strict=True), key=lambda pair: _KEY(pair[0]))


def sort_by_keys(values: Any, keys: list[Any]) -> list[Any]:
    return [v for _, v in _sorted_pairs(values, keys)]


def group_by_keys(values: Any, keys: list[Any]) -> list[Any]:
    groups: list[list[Any]] = []
    current: Any = None
    for k, v in _sorted_pairs(values, keys):
        if groups and rt.equal(current, k):
            groups[-1].append(v)
        else:
            current = k
            groups.append([v])
    return groups


def unique_by_keys(values: Any, keys: list[Any]) -> list[Any]:
    out: list[Any] = []
    current: Any = None
    for k, v in _sorted_pairs(values, keys):
        if out and rt.equal(current, k):
            continue
        current = k
        out.append(v)
    return out


def unique(value: Any) -> list[Any]:
    if type(value) is not list:
        raise _type_error(value, "cannot be sorted, as it is not an array")
    return unique_by_keys(value, value)


def minmax_by(values: Any, keys: Any, is_min: bool) -> Any:
    if type(values) is not list or type(keys) is not list:
        raise _type_error2(values, keys, "cannot be iterated over")
    if not values:
        return None
    best, best_key = values[0], keys[0]
    for item, key in zip(values[1:], keys[1:], strict=True):
        if (rt.compare(key, best_key) < 0) == is_min:
            best, best_key = item, key
    return best


def iter_values(value: Any) -> list[Any]:
    t = type(value)
    if t is list:
        return value  # type: ignore[no-any-return]
    if t is dict:
        return list(value.values())
    raise rt.iterate_error(value)


def flatten(value: Any, depth: Any) -> list[Any]:
    """def flatten($x): if $x < 0 then error(...) else _flatten($x) end"""
    if type(depth) not in (int, float):
        raise NeedsLibjq("flatten with a non-numeric depth")
    if depth < 0:
        raise JqError("flatten depth must not be negative")
    return flatten_all(value, depth)


def flatten_all(value: Any, depth: Any) -> list[Any]:
    """def _flatten($x): reduce .[] as $i ([]; if ($i is an array) and $x != 0 then . + ($i | _flatten($x - 1))..."""
    out: list[Any] = []
    stack: list[tuple[Any, Any, int]] = [(iter_values(value), depth, 0)]
    while stack:
        items, d, i = stack.pop()
        if i >= len(items):
            continue
        item = items[i]
        stack.append((items, d, i + 1))
        if type(item) is list and d != 0:
            stack.append((item, d - 1, 0))
        else:
            out.append(item)
    return out


def reverse(value: Any) -> Any:
    """def reverse: [.[length - 1 - range(0;length)]]"""
    t = type(value)
    if t is list:
        return value[::-1]
    if value is None:
        return []
    n = rt.length(value)
    if n == 0:
        return []
    if t is str:
        raise JqError(f"Cannot index string with number ({len(value) - 1})")
    raise NeedsLibjq("reverse of a non-array")


def from_entries(value: Any) -> Any:
    """map({(.key // .Key // .name // .Name): if has("value") then .value else .Value end}) | add // {}"""
    merged: Any = None
    for entry in iter_values(value):
        key: Any = None
        for name in ("key", "Key", "name", "Name"):
            key = rt.index(entry, name)
            if rt.truthy(key):
                break
        if type(key) is not str:
            raise rt.object_key_error(key)
        item = rt.index(entry, "value") if rt.has(entry, "value") else rt.index(entry, "Value")
        merged = rt.plus(merged, {key: item})
    return merged if rt.truthy(merged) else {}


def getpath(value: Any, path: Any) -> Any:
    if type(path) is not list:
        raise JqError("Path must be specified as an array")
    if len(path) > 10000:
        raise JqError("Path too deep")
    for key in path:
        value = rt.index(value, key)
    return value


_PATHS_BUDGET = 2_000_000  # path elements built for one `paths` (quadratic in the nesting depth)


def paths(value: Any) -> list[tuple[list[Any], Any]]:
    """(path, value) of `..` in jq's order (pre-order), without Python recursion."""
    out: list[tuple[list[Any], Any]] = []
    stack: list[tuple[list[Any], Any]] = [([], value)]
    budget = _PATHS_BUDGET
    while stack:
        path, v = stack.pop()
        budget -= len(path) + 1
        if budget < 0:
            raise NeedsLibjq("paths of a value this deep take more memory than the compiled path allows")
        out.append((path, v))
        t = type(v)
        if t is list:
            stack.extend(([*path, i], v[i]) for i in range(len(v) - 1, -1, -1))
        elif t is dict:
            stack.extend(([*path, k], item) for k, item in reversed(v.items()))
    return out


# -- dates (UTC only: localtime, strflocaltime and now stay on libjq)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (month 1..12)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _tm_fields(value: Any, who: str) -> list[int]:
    """jv2tm: up to 8 numbers, truncated to int (year given in full; a missing one is tm's 0, so 1900)."""
    fields = [1900] + [0] * 7
    for i, n in enumerate(value[:8]):
        if type(n) not in (int, float) or n != n:
            raise JqError(f"{who} requires parsed datetime inputs")
        if not -1e9 < n < 1e9:
            raise NeedsLibjq("date field out of range")
        fields[i] = int(n)
    return fields


def _timegm(fields: list[int]) -> int:
    year, mon, mday, hour, minute, sec = fields[:6]
    year += mon // 12
    mon %= 12
    days = _days_from_civil(year, mon + 1, 1) + mday - 1
    return days * 86400 + hour * 3600 + minute * 60 + sec


def mktime(value: Any) -> int:
    if type(value) is not list:
        raise JqError("mktime requires array inputs")
    t = _timegm(_tm_fields(value, "mktime"))
    if t == -1:
        raise JqError("invalid gmtime representation")
    return t


def gmtime(value: Any) -> list[Any]:
    if type(value) not in (int, float):
        raise JqError("gmtime() requires numeric inputs")
    if not -6e10 < value < 2.5e11:
        raise NeedsLibjq("time beyond the years Python's gmtime handles")
    seconds = int(value)  # C's conversion truncates toward zero
    tm = time.gmtime(seconds)
    fraction = value - math.floor(value)
    sec: Any = tm.tm_sec + fraction if type(value) is float and fraction else tm.tm_sec
    return [tm.tm_year, tm.tm_mon - 1, tm.tm_mday, tm.tm_hour, tm.tm_min, sec, (tm.tm_wday + 1) % 7, tm.tm_yday - 1]


_STRFTIME_REFUSED = re.compile(r"%[EO0_^#+-]|%[0-9]|%[zZsP+]|%$")


def strftime(value: Any, fmt: Any) -> str:
    if type(value) in (int, float):
        value = gmtime(value)
    elif type(value) is not list:
        raise JqError("strftime/1 requires parsed datetime inputs")
    if type(fmt) is not str:
        raise JqError("strftime/1 requires a string format")
    if not fmt.isascii() or _STRFTIME_REFUSED.search(fmt.replace("%%", "")):
        raise NeedsLibjq("a strftime directive not mirrored")
    t = _timegm(_tm_fields(value, "strftime/1"))
    if not -6e10 < t < 2.5e11:
        raise NeedsLibjq("time beyond the years Python's gmtime handles")
    out = time.strftime(fmt, time.gmtime(t))
    if out == "" and fmt != "":
        raise JqError("strftime/1: unknown system failure")
    return out


_STRPTIME_FIELDS = {"Y": r"(?P<Y>[0-9]{4})", "m": r"(?P<m>[0-9]{2})", "d": r"(?P<d>[0-9]{2})", "H": r"(?P<H>[0-9]{2})",
                    "M": r"(?P<M>[0-9]{2})", "S": r"(?P<S>[0-9]{2})"}  # fmt: skip


def _strptime_regex(fmt: str) -> re.Pattern[str] | None:
    fmt = fmt.replace("%T", "%H:%M:%S").replace("%F", "%Y-%m-%d")
    out, seen, i = [], set(), 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%":
            d = fmt[i + 1 : i + 2]
            if d == "%":
                out.append("%")
            elif d in _STRPTIME_FIELDS and d not in seen:
                seen.add(d)
                out.append(_STRPTIME_FIELDS[d])
            else:
                return None
            i += 2
            continue
        if not c.isascii() or c.isspace():
            return None  # glibc reads whitespace in a format as any run of spaces
        out.append(re.escape(c))
        i += 1
    if not {"Y", "m", "d"} <= seen:
        return None
    return re.compile("".join(out))


def strptime(value: Any, fmt: Any) -> list[int]:
    """Only the plain numeric shapes (`%Y-%m-%dT%H:%M:%SZ` and the like); anything else asks libjq."""
    if type(value) is not str or type(fmt) is not str:
        raise JqError("strptime/1 requires string inputs and arguments")
    regex = _strptime_regex(fmt)
    m = regex.fullmatch(value) if regex is not None else None
    if m is None:
        raise NeedsLibjq("a date or format outside the plain numeric shape")
    year, month, day = int(m["Y"]), int(m["m"]), int(m["d"])
    hour, minute, sec = (int(m[k]) if m.groupdict().get(k) is not None else 0 for k in "HMS")
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days_in_month = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not (1 <= month <= 12 and 1 <= day <= days_in_month[month - 1] and hour <= 23 and minute <= 59 and sec <= 59):
        raise NeedsLibjq("a date glibc may read its own way")
    days = _days_from_civil(year, month, day)
    wday = (days + 4) % 7
    yday = days - _days_from_civil(year, 1, 1)
    return [year, month - 1, day, hour, minute, sec, wday, yday]
