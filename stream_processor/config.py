"""Loads and validates the rule file (tattletail's `tattletail.toml` schema plus our extensions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rule:
    """One `[[rule]]`: `index` is its 1-based position in the file, for error messages."""

    name: str
    jq_match: str
    description: str = ""
    destinations: tuple[str, ...] = ()
    index: int = 0


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    """One `[[destination]]`: `options` holds the type's own keys (webhook_url, sns_arn, ...)."""

    id: str
    type: str
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    """A validated rule file."""

    rules: tuple[Rule, ...]
    destinations: tuple[DestinationConfig, ...]
    source: str = "<memory>"

    def destination(self, destination_id: str) -> DestinationConfig:
        for destination in self.destinations:
            if destination.id == destination_id:
                return destination
        raise KeyError(destination_id)
