"""Write any value a rule can output as JSON: never raises, whatever jq produced.

A rule's first output goes into alerts, JSON lines, dead letters and queue messages. jq can produce what the
usual writers refuse: integers beyond 64 bits (``1e20`` in a program, ``pow(2; 70)``), values nested a
thousand levels deep (an event's own structure, passed through), NaN and infinities from arithmetic. orjson
refuses the first two, the standard library fails on depth and writes ``NaN``, which is not JSON. Both are
tried first for speed; anything they refuse is written by an iterative writer that follows jq's own output:
integers in full, NaN as ``null``, infinities as the largest double, any depth.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

import orjson

_DOUBLE_MAX: Final = "1.7976931348623157e+308"
_COMPACT: Final = (",", ":")
_SPACED: Final = (", ", ": ")


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (orjson's layout)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return _write(value, _COMPACT).encode("utf-8", "surrogatepass")


def dumps_text(value: Any, *, spaced: bool = False) -> str:
    """JSON text; ``spaced`` lays it out as ``json.dumps`` does by default (``", "`` and ``": "``)."""
    if not spaced:
        return dumps(value).decode("utf-8", "replace")
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return _write(value, _SPACED)


class _Token(str):
    """Text written as it is (brackets, separators, an encoded key), not encoded as a JSON string."""

    __slots__ = ()


def _write(value: Any, separators: tuple[str, str]) -> str:
    """The iterative writer: an explicit stack, so no depth can exhaust Python's recursion limit."""
    item_separator, key_separator = _Token(separators[0]), _Token(separators[1])
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Token:
            out.append(item)
        elif isinstance(item, Mapping):
            entries = list(item.items())
            out.append("{")
            stack.append(_Token("}"))
            for index in range(len(entries) - 1, -1, -1):
                key, entry = entries[index]
                stack.append(entry)
                stack.append(key_separator)
                stack.append(_Token(_string(key if isinstance(key, str) else _key_text(key))))
                if index:
                    stack.append(item_separator)
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append(_Token("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(item_separator)
        else:
            out.append(_scalar(item))
    return "".join(out)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "null"
        if math.isinf(value):
            return _DOUBLE_MAX if value > 0 else "-" + _DOUBLE_MAX
        return json.dumps(value)
    if isinstance(value, str):
        return _string(value)
    return _string(str(value))


def _string(text: str) -> str:
    try:
        return orjson.dumps(text).decode()
    except orjson.JSONEncodeError:  # a lone surrogate: escaped, as the standard library writes it
        return json.dumps(text)


def _key_text(key: Any) -> str:
    return _scalar(key) if not isinstance(key, str) else key
