"""The floor: plain data types every stage shares, from the rule file to the batch outcome a source commits.

source → decode → match → dedupe → route → deliver → commit: every stage takes and returns these
dataclasses, never bare dicts, so a stage can be swapped (a faster matcher, another source) without the
others noticing. This module imports nothing of the project; a type belongs here when more than one stage
(or a stage and the config that feeds it) reads it. Types that are one component's own vocabulary stay with
it: a dedupe claim (`dedupe.ClaimOutcome`), a parked entry (`dead_letters.DeadLetter`), a rule test's result
(`rule_tests.RuleTestResult`), the storm policy (`alerts.storm.StormPolicy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, dataclass_transform

_Class = TypeVar("_Class", bound=type)


@dataclass_transform(frozen_default=True)
def per_event(cls: _Class) -> _Class:
    """A frozen dataclass to mypy; at run time a slotted, hashable one with a plain __init__.

    Built once per event (hundreds of thousands a second): a frozen dataclass's __init__ sets each field
    through object.__setattr__, 0.4 µs an event for Position and CloudTrailEvent together (measured), a
    tenth of decoding. mypy --strict still checks them as frozen, so no code of ours assigns to a field.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)  # type: ignore[return-value]


# --------------------------------------------------------------------------- the rule file


@dataclass(frozen=True, slots=True)
class RuleTest:
    """One `[[rule.test]]`: example events and what the rule must make of them.

    `event` is the inline event as JSON text (TOML tables become JSON; hashable, unlike a dict);
    `event_file` is a path as written, relative to `source` (the file the test came from).
    `expect`: match (every event), no_match (none), match_any (at least one event of the file).
    `event_ids`: only these events of the file are held to `expect` (match or no_match); the rest are free.
    `output` and `title` are the expected rendered jq output and title (None: not checked).
    """

    index: int
    expect: str
    event: str | None = None
    event_file: str | None = None
    output: str | None = None
    title: str | None = None
    source: str = "<memory>"
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One `[[rule]]`: `index` is its 1-based position in the file, for error messages.

    Here, not in `config/`: the matcher compiles it, the renderer titles alerts with it, the pipeline routes
    by it; `config/` only builds it. The fields after `index` are our extensions; their defaults are what a
    tattletail rule means. `storm_window` is in seconds. `title` and `group_by` are jq programs (validated
    at load).
    """

    name: str
    jq_match: str
    description: str = ""
    destinations: tuple[str, ...] = ()
    index: int = 0
    severity: str | None = None
    title: str | None = None
    runbook: str | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    storm_window: float | None = None
    group_by: str | None = None
    tests: tuple[RuleTest, ...] = ()
    references: tuple[str, ...] = ()
    false_positives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    """One `[[destination]]`: `options` holds the type's own keys (webhook_url, sns_arn, to_emails, ...).

    Here, not in `config/`: each destination is constructed from it, and `config/` validates it against the
    destination classes; keeping it on the floor is what lets `config/` sit above the destinations. Values
    are strings, except list options such as `to_emails`, which are tuples of strings. `options` is left out
    of the repr because it holds secrets (webhook URLs).
    """

    id: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    references: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Option name -> the secret reference it was resolved from (`ssm:/...`); names, never values."""


@dataclass(frozen=True, slots=True)
class Config:
    """A validated rule file: what the pipeline is built from and what a reload swaps in.

    Whether it may go live (every enabled rule has a destination, each destination can send) is asked of
    the destinations, so it is `stream_processor.config.sending_problems`, not a method here.
    """

    rules: tuple[Rule, ...]
    destinations: tuple[DestinationConfig, ...]
    source: str = "<memory>"
    notes: tuple[str, ...] = ()
    """What loading changed, not a problem (Go regex syntax of a tattletail rule read as Oniguruma's)."""
    warnings: tuple[str, ...] = ()
    """What the file should change although it loads: a deprecated key, with what to write instead."""

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        """The rules to match: a rule with `enabled = false` is loaded and validated, never matched."""
        return tuple(rule for rule in self.rules if rule.enabled)

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def destination(self, destination_id: str) -> DestinationConfig:
        for destination in self.destinations:
            if destination.id == destination_id:
                return destination
        raise KeyError(destination_id)


# --------------------------------------------------------------------------- records and events


@per_event
class Position:
    """Where a record came from: a shard and sequence number, or a file and line/offset."""

    origin: str
    sequence: str | None = None
    sub_sequence: int | None = None

    def __str__(self) -> str:
        if self.sequence is None:
            return self.origin
        if self.sub_sequence is not None:
            return f"{self.origin}@{self.sequence}/{self.sub_sequence}"
        return f"{self.origin}@{self.sequence}"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as a source read it: opaque bytes plus the position to checkpoint or park."""

    data: bytes
    position: Position
    partition_key: str | None = None
    arrival_time: datetime | None = None


@per_event
class CloudTrailEvent:
    """One CloudTrail event: the raw JSON bytes as received and the parsed object the rules see."""

    raw: bytes
    data: dict[str, Any]
    position: Position

    @property
    def event_id(self) -> str:
        value = self.data.get("eventID")
        return value if isinstance(value, str) else ""

    @property
    def event_name(self) -> str:
        value = self.data.get("eventName")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class MalformedInput:
    """Input that is not CloudTrail: counted, reported and parked, never raised."""

    position: Position
    kind: str
    reason: str
    data: bytes = b""


@dataclass(slots=True)
class DecodeResult:
    """What decode made of a batch of records.

    `events_released` counts events already matched and let go (the pipeline streams record by record:
    holding every parsed event of a large batch costs it half its speed); `event_count` is the total.
    """

    events: list[CloudTrailEvent] = field(default_factory=list)
    malformed: list[MalformedInput] = field(default_factory=list)
    control_messages: int = 0
    digest_files: int = 0
    events_released: int = 0

    @property
    def event_count(self) -> int:
        return len(self.events) + self.events_released

    def extend(self, other: DecodeResult) -> None:
        self.events.extend(other.events)
        self.malformed.extend(other.malformed)
        self.control_messages += other.control_messages
        self.digest_files += other.digest_files
        self.events_released += other.events_released


# --------------------------------------------------------------------------- matches


@dataclass(frozen=True, slots=True)
class Match:
    """A rule matched an event; `output` is the rule's first jq output (never None or False)."""

    rule_name: str
    event: CloudTrailEvent
    output: Any


@dataclass(frozen=True, slots=True)
class RuleRuntimeError:
    """A rule's program raised on an event: no match, but counted and reported."""

    rule_name: str
    position: Position
    message: str


@dataclass(frozen=True, slots=True)
class QuarantinedRule:
    """A rule disabled in this process: it kept running over its time budget (`breaches` times lately).

    `event` is the event of the last breach; `reason` says what happened, for the operator's alert.
    """

    rule_name: str
    event: CloudTrailEvent
    breaches: int
    reason: str


@dataclass(slots=True)
class MatchResult:
    """Matches of a batch, in event order, the run-time errors counted per rule, and the rules quarantined
    while matching it (each reported once, in the batch where it happened)."""

    matches: list[Match] = field(default_factory=list)
    errors: list[RuleRuntimeError] = field(default_factory=list)
    quarantined: list[QuarantinedRule] = field(default_factory=list)


# --------------------------------------------------------------------------- alerts and outcomes


@dataclass(frozen=True, slots=True)
class Alert:
    """What a destination renders: the rule's name and description, the jq output and the event.

    The one alert type: a storm digest is sent as one too (`Digest.alert`), and dead letters hold one.
    """

    rule_name: str
    description: str
    output: Any
    event: CloudTrailEvent
    title: str | None = None
    """The rule's rendered `title` program for this event; None: show the rule name."""
    severity: str | None = None
    """info, low, medium, high or critical; None: the rule does not say."""
    runbook: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The dedupe key: rule + eventID."""
        return f"{self.rule_name}\x1f{self.event.event_id}"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of sending one alert to one destination, after all retries."""

    alert: Alert
    destination_id: str
    delivered: bool
    attempts: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Digest:
    """What a closed storm window folded: sent as one alert whose output is the digest text.

    Here, not in `alerts/storm.py`: a batch outcome carries the digests still being sent (`BatchOutcome`),
    and the source that reads the outcome must not need the storm store to read its type.
    """

    rule_name: str
    description: str
    group: str
    destination_id: str
    window_start: float
    window_seconds: float
    count: int
    first_time: str
    last_time: str
    top_event_names: tuple[tuple[str, int], ...]
    sample: CloudTrailEvent

    @property
    def text(self) -> str:
        names = ", ".join(f"{name} ({count:,})" for name, count in self.top_event_names)
        by = f" by {self.group}" if self.group else ""
        start = datetime.fromtimestamp(self.window_start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{self.count:,} more {self.rule_name} alerts{by} in the {self.window_seconds:.0f} s window from "
            f"{start}; first event {self.first_time}, last {self.last_time}; top eventNames: {names}"
        )

    def alert(self) -> Alert:
        return Alert(self.rule_name, f"Digest: {self.description}".strip(), self.text, self.sample)


@dataclass(slots=True)
class BatchOutcome:
    """Everything a source needs to decide whether it may commit the batch.

    Here, not in `pipeline.py`: the pipeline writes it, and the sources (checkpoint or not) and the metrics
    (counters) read it; on the floor, they read it typed without importing the pipeline.
    """

    decoded: DecodeResult
    matched: MatchResult
    alerts: list[Alert] = field(default_factory=list)
    deliveries: list[DeliveryResult] = field(default_factory=list)
    duplicates: int = 0
    folded: int = 0
    digests: list[Alert] = field(default_factory=list)
    parked: list[DeliveryResult] = field(default_factory=list)
    parked_inputs: int = 0
    parking_errors: list[str] = field(default_factory=list)
    pending_digests: list[tuple[Digest, DeliveryResult]] = field(default_factory=list)

    @property
    def failed(self) -> list[DeliveryResult]:
        return [result for result in self.deliveries if not result.delivered]

    @property
    def unfinished(self) -> list[DeliveryResult]:
        """Failed deliveries that are not parked either: these forbid a checkpoint."""
        parked = {id(result) for result in self.parked}
        return [result for result in self.failed if id(result) not in parked]

    @property
    def complete(self) -> bool:
        """True when every alert reached every one of its destinations or is parked as a dead letter,
        and all malformed input is parked (or there is no dead-letter store to park it in)."""
        return not self.unfinished and not self.parking_errors
