"""The one place that wires the stages for a batch: decode → match → (dedupe) → route → deliver.

Sources call `Pipeline.process_records` and commit only when the outcome is complete. Nothing here
raises for bad input or a failed delivery: both are in the outcome, so a source can decide explicitly.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from stream_processor.alerts.delivery import AlertDeliverer
from stream_processor.alerts.destinations import create_destination
from stream_processor.alerts.render import build_alert
from stream_processor.alerts.storm import StormStore
from stream_processor.aws import AwsSettings
from stream_processor.dead_letters import DeadLetterStore
from stream_processor.decode import DEFAULT_BUDGET, DecodeBudget, decode_record, event_identity
from stream_processor.dedupe import ClaimOutcome, DedupeStore, dedupe_key
from stream_processor.errors import DeadLetterStoreError
from stream_processor.json_out import dumps_text
from stream_processor.matcher import Matcher, build_matcher
from stream_processor.matcher.budget import RuleBudget
from stream_processor.matcher.libjq import event_output
from stream_processor.model import (
    Alert,
    BatchOutcome,
    Config,
    DecodeResult,
    DeliveryResult,
    MalformedInput,
    MatchResult,
    QuarantinedRule,
    RawRecord,
    Rule,
    RuleRuntimeError,
)
from stream_processor.safe_text import one_line

log = logging.getLogger(__name__)

AlertSink = Callable[[Alert], None]


MALFORMED_SAMPLE_BYTES_PER_BATCH = 32 * 1024 * 1024
"""Bytes of malformed input a batch keeps for parking; past it, items keep their position and reason only
(the record can be read again from the stream by its position)."""


def decode_and_match(
    records: Sequence[RawRecord], matcher: Matcher, budget: DecodeBudget = DEFAULT_BUDGET
) -> tuple[DecodeResult, MatchResult]:
    """Decode and match record by record, keeping only what matched.

    A batch of 10,000 records holds hundreds of thousands of events; holding them all until the batch is
    matched costs about half the throughput (measured), so each record's events are let go once matched.
    """
    decoded = DecodeResult()
    matched = MatchResult()
    match_batch = matcher.match_batch
    sample_room = MALFORMED_SAMPLE_BYTES_PER_BATCH
    for record in records:
        part = decode_record(record, budget)
        if part.events:
            found = match_batch(part.events)
            matched.matches.extend(found.matches)
            matched.errors.extend(found.errors)
            matched.quarantined.extend(found.quarantined)
            part.events_released = len(part.events)
            part.events = []
        if part.malformed:
            part.malformed, sample_room = _bounded_samples(part.malformed, sample_room)
        decoded.extend(part)
    return decoded, matched


def _bounded_samples(items: list[MalformedInput], room: int) -> tuple[list[MalformedInput], int]:
    kept: list[MalformedInput] = []
    for item in items:
        if len(item.data) > room:
            item = replace(item, data=b"", reason=f"{item.reason} (sample dropped: batch budget for samples spent)")
        room -= len(item.data)
        kept.append(item)
    return kept, room


class Pipeline:
    """Matches batches against one config and delivers the alerts; built once per process."""

    HELD_CLAIM_WAIT_SECONDS = 30.0
    HELD_CLAIM_POLL_SECONDS = 0.5

    def __init__(
        self,
        config: Config,
        matcher: Matcher,
        deliverer: AlertDeliverer | None,
        alert_sink: AlertSink | None = None,
        ledger: DedupeStore | None = None,
        dead_letters: DeadLetterStore | None = None,
        storm: StormStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: DecodeBudget = DEFAULT_BUDGET,
    ) -> None:
        self.config = config
        self.matcher = matcher
        self.deliverer = deliverer
        self.alert_sink = alert_sink
        self.ledger = ledger
        self.dead_letters = dead_letters
        self.storm = storm
        self.budget = budget
        self._batch_arrived: float | None = None
        self._sleep = sleep
        self._rules: dict[str, Rule] = {rule.name: rule for rule in config.rules}
        self.aws: AwsSettings | None = None  # what `build` made the destinations with; `reconfigure` reuses it
        self.matcher_kind = "fast"
        self.rule_budget: RuleBudget | None = None

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        aws: AwsSettings | None = None,
        send: bool = True,
        matcher_kind: str = "fast",
        alert_sink: AlertSink | None = None,
        ledger: DedupeStore | None = None,
        dead_letters: DeadLetterStore | None = None,
        storm: StormStore | None = None,
        rule_budget: RuleBudget | None = None,
        decode_budget: DecodeBudget = DEFAULT_BUDGET,
    ) -> Pipeline:
        """The usual wiring: the config's destinations when `send`, else a dry run into `alert_sink`."""
        deliverer = None
        if send:
            destinations = {d.id: create_destination(d, aws) for d in config.destinations}
            deliverer = AlertDeliverer(destinations)
        matcher = build_matcher(config.enabled_rules, kind=matcher_kind, budget=rule_budget)
        pipeline = cls(
            config, matcher, deliverer, alert_sink, ledger, dead_letters if send else None, storm, budget=decode_budget
        )
        pipeline.aws = aws
        pipeline.matcher_kind = matcher_kind
        pipeline.rule_budget = rule_budget
        return pipeline

    def reconfigure(self, config: Config) -> None:
        """Swap in a new config between batches: its matcher, rules and destinations (hot reload).

        The ledger, dead letters and storm windows stay: they outlive any one rule set. Everything new is
        built before anything is swapped, so a failure here leaves the running config untouched.
        """
        # A rule quarantined in this process stays quarantined while its program is unchanged.
        quarantined = self.matcher.quarantined_rules
        matcher = build_matcher(config.enabled_rules, self.matcher_kind, self.rule_budget, quarantined)
        deliverer = None
        if self.deliverer is not None:
            destinations = {d.id: create_destination(d, self.aws) for d in config.destinations}
            deliverer = AlertDeliverer(destinations, self.deliverer.policy)
        old = self.deliverer
        old_matcher = self.matcher
        self.config, self.matcher, self._rules = config, matcher, {rule.name: rule for rule in config.rules}
        old_matcher.close()
        if deliverer is not None:
            self.deliverer = deliverer
        if old is not None and old is not self.deliverer:
            old.close()

    def process_records(self, records: Sequence[RawRecord]) -> BatchOutcome:
        arrived = self._storm_clock()
        return self._handle(*decode_and_match(records, self.matcher, self.budget), arrived=arrived)

    def process_decoded(self, decoded: DecodeResult) -> BatchOutcome:
        return self._handle(decoded, self.matcher.match_batch(decoded.events), arrived=self._storm_clock())

    def _storm_clock(self) -> float | None:
        return self.storm.clock() if self.storm is not None else None

    def _handle(self, decoded: DecodeResult, matched: MatchResult, arrived: float | None = None) -> BatchOutcome:
        """`arrived`: when the batch came in; storm windows count its alerts there, however long sending takes."""
        self._batch_arrived = arrived
        _log_rule_errors(matched.errors)
        outcome = BatchOutcome(decoded, matched)
        for match in matched.matches:
            rule = self._rules[match.rule_name]
            alert = build_alert(rule, match)
            outcome.alerts.append(alert)
            if self.alert_sink is not None:
                self.alert_sink(alert)
            if self.deliverer is not None:
                for destination_id in rule.destinations:
                    self._deliver_once(alert, destination_id, self.deliverer, outcome)
        for quarantined in matched.quarantined:
            self._alert_quarantine(quarantined, outcome)
        if self.storm is not None:
            self._send_digests(outcome, force=False)
        if self.dead_letters is not None:
            self._park(outcome, self.dead_letters)
        self._settle_digests(outcome)
        return outcome

    def _alert_quarantine(self, quarantined: QuarantinedRule, outcome: BatchOutcome) -> None:
        """One operator alert per quarantined rule, to the rule's own destinations (keyed apart from its matches)."""
        rule = self._rules.get(quarantined.rule_name)
        if rule is None:
            return
        alert = Alert(
            rule_name=f"{rule.name} [quarantined]",
            description="A rule kept running over its time budget and is disabled in this worker.",
            output=quarantined.reason,
            event=quarantined.event,
            title=f"Rule quarantined: {rule.name}",
            severity="high",
            runbook=rule.runbook,
            tags=rule.tags,
        )
        outcome.alerts.append(alert)
        if self.alert_sink is not None:
            self.alert_sink(alert)
        if self.deliverer is not None:
            for destination_id in rule.destinations:
                self._deliver_once(alert, destination_id, self.deliverer, outcome)

    def flush(self) -> BatchOutcome:
        """Send every pending digest now (end of a file run, shutdown of a shard)."""
        outcome = BatchOutcome(DecodeResult(), MatchResult())
        if self.storm is not None:
            self._send_digests(outcome, force=True)
        if self.dead_letters is not None:
            self._park(outcome, self.dead_letters)
        self._settle_digests(outcome)
        return outcome

    def _settle_digests(self, outcome: BatchOutcome) -> None:
        """A digest that failed is done only once parked; otherwise it stays pending and is sent again later
        (its folded alerts are complete in the ledger: the digest is the only copy of them)."""
        if self.storm is None:
            return
        parked = {id(result) for result in outcome.parked}
        for digest, result in outcome.pending_digests:
            if id(result) in parked:
                self.storm.done(digest)
            else:
                self.storm.release(digest)
        outcome.pending_digests.clear()

    def _send_digests(self, outcome: BatchOutcome, force: bool) -> None:
        assert self.storm is not None
        for digest in self.storm.due(force=force):
            alert = digest.alert()
            outcome.digests.append(alert)
            if self.deliverer is None:  # dry runs fold nothing; a digest left by an earlier run is shown
                if self.alert_sink is not None:
                    self.alert_sink(alert)
                self.storm.done(digest)
                continue
            result = self.deliverer.deliver(alert, [digest.destination_id])[0]
            outcome.deliveries.append(result)
            if result.delivered:
                self.storm.done(digest)
            else:
                outcome.pending_digests.append((digest, result))  # done once parked, else released: `_settle`

    def _park(self, outcome: BatchOutcome, store: DeadLetterStore) -> None:
        """Park what failed for good and what is not CloudTrail, so the shard can move on: one write per batch."""
        inputs = outcome.decoded.malformed
        failed = outcome.failed
        if not inputs and not failed:
            return
        try:
            store.park(inputs=inputs, alerts=failed)
        except DeadLetterStoreError as error:
            outcome.parking_errors.append(str(error))
            log.error(
                "could not park %d dead letter(s), the batch stays uncommitted: %s", len(inputs) + len(failed), error
            )
            return
        outcome.parked_inputs += len(inputs)
        outcome.parked.extend(failed)

    def _deliver_once(
        self, alert: Alert, destination_id: str, deliverer: AlertDeliverer, outcome: BatchOutcome
    ) -> None:
        result = self.send(alert, destination_id, deliverer, outcome)
        if result is not None:
            outcome.deliveries.append(result)

    def send(
        self,
        alert: Alert,
        destination_id: str,
        deliverer: AlertDeliverer | None = None,
        outcome: BatchOutcome | None = None,
    ) -> DeliveryResult | None:
        """Claim, fold or send, confirm: an alert reaches a destination at most once per rule + eventID.

        Returns None when the ledger says it was already sent, or when it was folded into a digest (only
        when `outcome` is given: redrive never folds).
        """
        deliverer = deliverer or self.deliverer
        if deliverer is None:
            raise ValueError("this pipeline is a dry run: it has no destinations to send to")
        # An event without eventID is known by a digest of its content, so a replay never sends it again.
        identity = event_identity(alert.event)
        key = dedupe_key(alert.rule_name, identity, destination_id)
        owner = alert.event.position.origin
        if self.ledger is not None:
            claim = self._claim(key, owner)
            if claim is ClaimOutcome.ALREADY_DONE:
                if outcome is not None:
                    outcome.duplicates += 1
                return None
            if claim is ClaimOutcome.HELD_ELSEWHERE:
                reason = "another worker is sending this alert and has not confirmed it yet"
                return DeliveryResult(alert, destination_id, delivered=False, attempts=0, reason=reason)
        if (
            outcome is not None
            and self.storm is not None
            and not self.storm.admit(
                alert,
                destination_id,
                self._storm_group(alert),
                now=self._batch_arrived,
                window_seconds=self._storm_window(alert),
            )
        ):
            outcome.folded += 1
            if self.ledger is not None:
                self.ledger.complete(key, owner)  # accounted for in the digest: a replay must not fold it again
            return None
        result = deliverer.deliver(alert, [destination_id])[0]
        if self.ledger is None:
            return result
        if result.delivered:
            self.ledger.complete(key, owner)
        else:
            self.ledger.release(key)
        return result

    def _storm_window(self, alert: Alert) -> float | None:
        """The rule's `storm_window`; None: the storm policy's."""
        rule = self._rules.get(alert.rule_name)
        return rule.storm_window if rule is not None else None

    def _storm_group(self, alert: Alert) -> str:
        """The rule's `group_by` value for this event (e.g. the principal ARN), folded per group."""
        rule = self._rules.get(alert.rule_name)
        if rule is None or not rule.group_by:
            return ""
        try:
            value = event_output(rule.group_by, alert.event)
        except ValueError:
            return ""
        return value if isinstance(value, str) else dumps_text(value)

    def _claim(self, key: str, owner: str) -> ClaimOutcome:
        """A claim held by another worker is usually confirmed within seconds: wait for it, bounded."""
        assert self.ledger is not None
        deadline = time.monotonic() + self.HELD_CLAIM_WAIT_SECONDS
        while True:
            claim = self.ledger.claim(key, owner)
            if claim is not ClaimOutcome.HELD_ELSEWHERE or time.monotonic() >= deadline:
                return claim
            self._sleep(self.HELD_CLAIM_POLL_SECONDS)

    def close(self) -> None:
        self.matcher.close()
        if self.deliverer is not None:
            self.deliverer.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.dead_letters is not None:
            self.dead_letters.close()
        if self.storm is not None:
            self.storm.close()


def _log_rule_errors(errors: Sequence[RuleRuntimeError]) -> None:
    """One line per rule per batch (a rule failing on every event must not flood the log), with the first
    failure's position and jq's message, made one bounded line (it may quote event text)."""
    if not errors:
        return
    counts = Counter(error.rule_name for error in errors)
    first: dict[str, RuleRuntimeError] = {}
    for error in errors:
        first.setdefault(error.rule_name, error)
    for rule_name, count in counts.items():
        sample = first[rule_name]
        log.warning(
            "rule %r failed on %d event(s) of this batch, first at %s: %s",
            rule_name,
            count,
            sample.position,
            one_line(sample.message, 300),
        )
