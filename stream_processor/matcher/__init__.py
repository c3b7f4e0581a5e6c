"""Match: run every rule's jq program over a batch of events, with tattletail's semantics.

Only the first output of a program counts; no output, `null` or `false` is no match; a run-time error
is no match and is counted per rule. `build_matcher` picks the implementation: the compiled fast path
with its rule index (default) or libjq per event per rule (the reference).
"""

from __future__ import annotations

from stream_processor.matcher.base import Matcher, is_match
from stream_processor.matcher.fast import FastMatcher, build_matcher, explain, index_fields
from stream_processor.matcher.libjq import LibjqMatcher, compile_jq
from stream_processor.matcher.sandbox import sandbox_violations

__all__ = [
    "FastMatcher",
    "LibjqMatcher",
    "Matcher",
    "build_matcher",
    "compile_jq",
    "explain",
    "index_fields",
    "is_match",
    "sandbox_violations",
]
