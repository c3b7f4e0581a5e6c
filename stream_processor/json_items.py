"""Find where one JSON value ends in raw text, without parsing or re-serialising the whole document.

A CloudTrail log file is one JSON document holding thousands of events. Parsing it whole and serialising
each event again costs twice the parse, fails as a whole on one odd event (a number out of range, a value
nested deeper than the serialiser allows) and holds every event in memory at once. Slicing gives each item
its own raw text, which is parsed alone: one bad item is one bad item.

Finding where an object ends needs no full parse. The fast way guesses: it ends at the first ``}`` followed
by ``,`` or ``]``, and the guess is checked by parsing the slice, which is needed anyway. A wrong guess
cannot parse (it cuts a nested object or a string), so a parsed slice is always exactly one item. When the
guess fails, `ValueScan` finds the true end over brackets and strings in linear time, resumable when the
text arrives in pieces.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

_STRUCTURE: Final = re.compile(rb'[\[\]{}"]')
_STRING_TAIL: Final = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SCALAR: Final = re.compile(rb"[^,\]}{\[\" \t\r\n]*")
_OPEN: Final = frozenset(b"[{")
_QUOTE: Final = ord('"')
WHITESPACE: Final = b" \t\r\n"

NOT_PARSED: Final[Any] = object()
"""What `guess_object` returns when the guess did not parse: scan with `ValueScan`."""


_FIRST_KEY: Final = re.compile(rb'\{[ \t\r\n]*"([^"\\]{1,64})"')
_LAST_END: Final = re.compile(rb"\}[ \t\r\n]*\]")
_separators: dict[bytes, tuple[bytes, re.Pattern[bytes]]] = {}


def _separator(key: bytes) -> tuple[bytes, re.Pattern[bytes]]:
    """How one item ends and the next begins, when the items open with the same key (``},{"eventVersion"``)."""
    found = _separators.get(key)
    if found is None:
        pattern = re.compile(rb'\}[ \t\r\n]*,[ \t\r\n]*\{[ \t\r\n]*"' + re.escape(key) + rb'"')
        found = (b'},{"' + key + b'"', pattern)
        if len(_separators) < 256:
            _separators[key] = found
    return found


def guess_object(text: bytes, start: int, limit: int, loads: Callable[[bytes], Any]) -> tuple[int, Any]:
    """(end, parsed value) of the object at ``text[start]`` when the cheap guess parses, else (-1, NOT_PARSED).

    The guess: items of a log file or event array open with the same key (CloudTrail's ``eventVersion``), so
    this one ends where ``},{"<that key>"`` begins the next, or, for the last, at a ``}`` before ``]``. Only
    the first ``limit`` bytes after ``start`` are searched, so a huge item costs one bounded search.
    """
    stop = start + limit
    end = -1
    first_key = _FIRST_KEY.match(text, start)
    if first_key is not None:
        literal, pattern = _separator(first_key.group(1))
        found = text.find(literal, start + 1, stop)
        if found >= 0:
            end = found + 1
        else:
            spaced = pattern.search(text, start + 1, stop)
            if spaced is not None:
                end = spaced.start() + 1
    if end < 0:
        last = _LAST_END.search(text, start, stop)
        if last is None:
            return -1, NOT_PARSED
        end = last.start() + 1
    try:
        return end, loads(text[start:end])
    except ValueError:
        return -1, NOT_PARSED


class ValueScan:
    """Finds the end of the value that starts at ``position``; resumable when the text arrives in pieces.

    Brackets are counted, not matched (the value is parsed afterwards, which checks it); strings are skipped
    whole, so brackets and quotes inside them do not count. Between calls, ``position`` is never inside a
    string, so the text before it may be dropped by shifting (`shift`).
    """

    __slots__ = ("depth", "position")

    def __init__(self, position: int) -> None:
        self.position = position
        self.depth = 0

    def shift(self, dropped: int) -> None:
        self.position -= dropped

    def run(self, text: bytes, final: bool) -> int | None:
        """The index just past the value, or None when ``text`` ends first (``final``: no more will come)."""
        position = self.position
        if self.depth == 0:
            first = text[position] if position < len(text) else -1
            if first == _QUOTE:
                tail = _STRING_TAIL.match(text, position + 1)
                return tail.end() if tail is not None else None
            if first not in _OPEN:
                scalar = _SCALAR.match(text, position)
                end = scalar.end() if scalar is not None else position
                if end < len(text) or final:
                    return max(end, position + 1) if position < len(text) else None
                return None
        depth = self.depth
        search = _STRUCTURE.search
        while True:
            found = search(text, position)
            if found is None:
                self.position, self.depth = len(text), depth
                return None
            char = text[found.start()]
            if char == _QUOTE:
                tail = _STRING_TAIL.match(text, found.end())
                if tail is None:
                    self.position, self.depth = found.start(), depth  # resume at the string's opening quote
                    return None
                position = tail.end()
                continue
            position = found.end()
            if char in _OPEN:
                depth += 1
            else:
                depth -= 1
                if depth <= 0:
                    return position


def skip_whitespace(text: bytes, position: int) -> int:
    length = len(text)
    while position < length and text[position] in WHITESPACE:
        position += 1
    return position
