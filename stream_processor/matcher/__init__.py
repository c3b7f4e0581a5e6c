"""Match: run every rule's jq program over a batch of events, with tattletail's semantics.

Only the first output of a program counts; no output, `null` or `false` is no match; a run-time error
is no match and is counted per rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream_processor.config import Rule
from stream_processor.matcher.base import Matcher, is_match
from stream_processor.matcher.libjq import LibjqMatcher

MATCHER_KINDS = ("libjq",)


def build_matcher(rules: Sequence[Rule], kind: str = "libjq") -> Matcher:
    """The matcher of the given kind over `rules`.

    Raises:
        ValueError: unknown kind.
    """
    if kind == "libjq":
        return LibjqMatcher(rules)
    raise ValueError(f"unknown matcher kind {kind!r}; choose one of {', '.join(MATCHER_KINDS)}")


__all__ = ["MATCHER_KINDS", "LibjqMatcher", "Matcher", "build_matcher", "is_match"]
