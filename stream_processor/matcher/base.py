"""The matcher interface every implementation (libjq, the compiled path) provides."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from stream_processor.model import CloudTrailEvent, MatchResult, Rule


def is_match(first_output: Any) -> bool:
    """tattletail's rule: anything but null or false is a match (`0`, `""`, `[]` included)."""
    return first_output is not None and first_output is not False


class Matcher(ABC):
    """Matches batches of events against a fixed set of rules compiled once."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)

    @abstractmethod
    def match_batch(self, events: Sequence[CloudTrailEvent]) -> MatchResult:
        """Return the matches in event order (rules in file order within an event) and the errors.

        Nothing a rule does on an event escapes: it is a rule error for that event.
        """

    def close(self) -> None:
        """Release what the matcher holds (a worker process); it must not be used afterwards."""
        return None

    @property
    def quarantined_rules(self) -> dict[str, str]:
        """Rules disabled for running over their time budget: name -> jq program (kept across a reload)."""
        return {}
