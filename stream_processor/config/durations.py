"""Durations in the rule file: seconds (`600`) or text such as `"90s"`, `"10m"`, `"1h30m"`, `"1d"`."""

from __future__ import annotations

import math
import re
from typing import Any

from stream_processor.config.messages import kind, quote


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a duration such as `"90s"`, `"10m"`, `"1h30m"`, `"1d"`.

    Raises:
        ValueError: not a positive, finite duration (the message says what is accepted).
    """
    if isinstance(value, bool):
        raise ValueError('must be a number of seconds or a duration such as "10m", got a boolean')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if not text or not _DURATION.fullmatch(text):
            raise ValueError(
                f'{quote(value)} is not a duration: write seconds (600) or a duration such as "90s", '
                '"10m", "1h30m", "1d"'
            )
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    else:
        raise ValueError(f'must be a number of seconds or a duration such as "10m", got {kind(value)}')
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be more than zero seconds")
    return seconds


_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
