"""Match: run every rule's jq program over a batch of events, with tattletail's semantics.

Only the first output of a program counts; no output, `null` or `false` is no match; a run-time error
is no match and is counted per rule.
"""

from __future__ import annotations

from stream_processor.matcher.base import Matcher, is_match
from stream_processor.matcher.libjq import LibjqMatcher

__all__ = ["LibjqMatcher", "Matcher", "is_match"]
