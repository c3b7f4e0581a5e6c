"""Attacker text made safe to show: one line, bounded, with nothing invisible.

Every field of a CloudTrail event is written by whoever called AWS, and jq's error messages quote the
values they failed on. Shown raw, such text forges log lines (a newline and a fake timestamp), floods them
(20,000 characters per line) or reads differently from what it is (a right-to-left override turns
``exe.txt`` into ``txt.exe``; zero-width characters make two names look equal). Log lines go through
`OneLineLogFilter`; alert text through `show_invisible`.
"""

from __future__ import annotations

import logging
import re
from typing import Final

MAX_LOG_CHARS: Final = 2000
"""A log line's message is cut past this (the rest is counted, not shown)."""

# Bidirectional controls and zero-width or invisible formatting characters (Unicode category Cf, and the
# line/paragraph separators, which break lines in many viewers).
_INVISIBLE: Final = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\u206a-\u206f\ufeff\ufff9-\ufffb]"
)
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


def _code_point(found: re.Match[str]) -> str:
    return f"[U+{ord(found.group()):04X}]"


def show_invisible(text: str) -> str:
    """Invisible and direction-changing characters written as ``[U+202E]``, so a reader sees them."""
    return _INVISIBLE.sub(_code_point, text)


def _escaped_control(found: re.Match[str]) -> str:
    char = found.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\x{ord(char):02x}"


def one_line(text: str, limit: int = MAX_LOG_CHARS) -> str:
    """``text`` on one line (control characters escaped), invisible characters shown, cut past ``limit``."""
    if len(text) > limit:
        text = f"{text[:limit]}…[{len(text) - limit} more characters]"
    return show_invisible(_CONTROL.sub(_escaped_control, text))


class OneLineLogFilter(logging.Filter):
    """Makes every record's message one bounded line; tracebacks (exc_info) are left to the formatter."""

    def __init__(self, limit: int = MAX_LOG_CHARS) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        safe = one_line(message, self.limit)
        if safe != message:
            record.msg = safe
            record.args = None
        return True


def install_log_filter(handler: logging.Handler) -> None:
    """Put the one-line filter on a handler (once)."""
    if not any(isinstance(existing, OneLineLogFilter) for existing in handler.filters):
        handler.addFilter(OneLineLogFilter())
