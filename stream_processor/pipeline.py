"""The one place that wires the stages for a batch: decode → match → (dedupe) → route → deliver.

Sources call `Pipeline.process_records` and commit only when the outcome is complete. Nothing here
raises for bad input or a failed delivery: both are in the outcome, so a source can decide explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stream_processor.alerts.delivery import AlertDeliverer
from stream_processor.alerts.destinations import create_destination
from stream_processor.aws import AwsSettings
from stream_processor.config import Config, Rule
from stream_processor.decode import decode_records
from stream_processor.matcher import Matcher, build_matcher
from stream_processor.model import Alert, DecodeResult, DeliveryResult, MatchResult, RawRecord

log = logging.getLogger(__name__)

AlertSink = Callable[[Alert], None]


@dataclass(slots=True)
class BatchOutcome:
    """Everything a source needs to decide whether it may commit the batch."""

    decoded: DecodeResult
    matched: MatchResult
    alerts: list[Alert] = field(default_factory=list)
    deliveries: list[DeliveryResult] = field(default_factory=list)

    @property
    def failed(self) -> list[DeliveryResult]:
        return [result for result in self.deliveries if not result.delivered]

    @property
    def complete(self) -> bool:
        """True when every alert reached every one of its destinations."""
        return all(result.delivered for result in self.deliveries)


class Pipeline:
    """Matches batches against one config and delivers the alerts; built once per process."""

    def __init__(
        self,
        config: Config,
        matcher: Matcher,
        deliverer: AlertDeliverer | None,
        alert_sink: AlertSink | None = None,
    ) -> None:
        self.config = config
        self.matcher = matcher
        self.deliverer = deliverer
        self.alert_sink = alert_sink
        self._rules: dict[str, Rule] = {rule.name: rule for rule in config.rules}

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        aws: AwsSettings | None = None,
        send: bool = True,
        matcher_kind: str = "libjq",
        alert_sink: AlertSink | None = None,
    ) -> Pipeline:
        """The usual wiring: the config's destinations when `send`, else a dry run into `alert_sink`."""
        deliverer = None
        if send:
            destinations = {d.id: create_destination(d, aws) for d in config.destinations}
            deliverer = AlertDeliverer(destinations)
        return cls(config, build_matcher(config.rules, kind=matcher_kind), deliverer, alert_sink)

    def process_records(self, records: Sequence[RawRecord]) -> BatchOutcome:
        return self.process_decoded(decode_records(records))

    def process_decoded(self, decoded: DecodeResult) -> BatchOutcome:
        matched = self.matcher.match_batch(decoded.events)
        for error in matched.errors:
            log.warning("rule %r failed on event at %s: %s", error.rule_name, error.position, error.message)
        outcome = BatchOutcome(decoded, matched)
        for match in matched.matches:
            rule = self._rules[match.rule_name]
            alert = Alert(rule.name, rule.description, match.output, match.event)
            outcome.alerts.append(alert)
            if self.alert_sink is not None:
                self.alert_sink(alert)
            if self.deliverer is not None:
                outcome.deliveries.extend(self.deliverer.deliver(alert, rule.destinations))
        return outcome

    def close(self) -> None:
        if self.deliverer is not None:
            self.deliverer.close()
