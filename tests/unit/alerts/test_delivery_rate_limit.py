"""Per-destination rate limit: Slack webhooks take about one message a second."""

from __future__ import annotations

from typing import ClassVar

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations.base import Destination
from stream_processor.config import DestinationConfig
from stream_processor.model import Alert, CloudTrailEvent, Position
from tests.support.fakes import FakeClock


class LimitedDestination(Destination):
    TYPE: ClassVar[str] = "limited"
    RATE_LIMIT = (1.0, 5)

    def _send(self, alert: Alert) -> None:
        return None


def test_a_burst_passes_then_sends_are_spaced_by_the_rate() -> None:
    fake = FakeClock(0.0)
    destination = LimitedDestination(DestinationConfig("slack", "limited"))
    deliverer = AlertDeliverer({"slack": destination}, DeliveryPolicy.immediate(), sleep=fake.sleep, clock=fake.clock)
    event = CloudTrailEvent(b"{}", {}, Position("s"))
    for _ in range(5):
        deliverer.deliver(Alert("r", "", True, event), ["slack"])
    assert fake.slept == 0.0
    for _ in range(10):
        deliverer.deliver(Alert("r", "", True, event), ["slack"])
    assert abs(fake.slept - 10.0) < 1e-6


def test_slack_is_rate_limited_by_default() -> None:
    from stream_processor.alerts.destinations import destination_class

    assert destination_class("slack_webhook").RATE_LIMIT == (1.0, 5)
