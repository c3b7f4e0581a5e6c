"""The retry policy: bounded attempts, backoff, Retry-After, permanent errors, results always returned."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations.base import Destination
from stream_processor.config import DestinationConfig
from stream_processor.errors import PermanentDeliveryError, RetryableDeliveryError
from stream_processor.model import Alert, CloudTrailEvent, Position


def make_alert(event_id: str = "e-1", rule: str = "Create AccessKey") -> Alert:
    event = {"eventID": event_id, "eventName": "CreateAccessKey"}
    return Alert(rule, "", True, CloudTrailEvent(json.dumps(event).encode(), event, Position("t")))


class ScriptedDestination(Destination):
    """Fails with the scripted errors in order, then succeeds; records every attempt."""

    TYPE = "scripted"

    def __init__(self, failures: Iterable[Exception] = (), name: str = "fake") -> None:
        super().__init__(DestinationConfig(id=name, type=self.TYPE))
        self.failures = list(failures)
        self.sent: list[Alert] = []
        self.attempts = 0
        self.closed = False

    def _send(self, alert: Alert) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(alert)

    def close(self) -> None:
        self.closed = True


class SleepRecorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_a_retryable_failure_is_retried_until_delivered() -> None:
    destination = ScriptedDestination([RetryableDeliveryError("500"), RetryableDeliveryError("timeout")])
    sleep = SleepRecorder()
    deliverer = AlertDeliverer({"slack": destination}, DeliveryPolicy.immediate(max_attempts=3), sleep=sleep)

    [result] = deliverer.deliver(make_alert(), ["slack"])

    assert result.delivered and result.attempts == 3 and result.reason == ""
    assert result.destination_id == "slack"
    assert len(destination.sent) == 1
    assert sleep.sleeps == [0.0, 0.0]


def test_attempts_are_bounded_and_the_last_reason_is_returned() -> None:
    destination = ScriptedDestination([RetryableDeliveryError(f"answer {n}") for n in range(10)])
    deliverer = AlertDeliverer({"slack": destination}, DeliveryPolicy.immediate(max_attempts=4), sleep=SleepRecorder())

    [result] = deliverer.deliver(make_alert(), ["slack"])

    assert not result.delivered
    assert result.attempts == 4 == destination.attempts
    assert "failed after 4 attempts" in result.reason and "answer 3" in result.reason


def test_a_permanent_failure_is_not_retried() -> None:
    destination = ScriptedDestination([PermanentDeliveryError("Slack answered 400: invalid_payload")])
    sleep = SleepRecorder()
    deliverer = AlertDeliverer({"slack": destination}, DeliveryPolicy.immediate(max_attempts=5), sleep=sleep)

    [result] = deliverer.deliver(make_alert(), ["slack"])

    assert not result.delivered and result.attempts == 1
    assert "invalid_payload" in result.reason
    assert sleep.sleeps == []


def test_retry_after_is_honoured_and_capped() -> None:
    destination = ScriptedDestination(
        [RetryableDeliveryError("429", retry_after=2.0), RetryableDeliveryError("429", retry_after=3600)]
    )
    sleep = SleepRecorder()
    policy = DeliveryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0, max_retry_after=30.0)
    deliverer = AlertDeliverer({"slack": destination}, policy, sleep=sleep)

    [result] = deliverer.deliver(make_alert(), ["slack"])

    assert result.delivered and result.attempts == 3
    assert sleep.sleeps == [2.0, 30.0]


def test_backoff_grows_exponentially_within_its_bounds() -> None:
    destination = ScriptedDestination([RetryableDeliveryError("503") for _ in range(5)])
    sleep = SleepRecorder()
    policy = DeliveryPolicy(max_attempts=6, initial_backoff=1.0, max_backoff=5.0, jitter=0.5)
    deliverer = AlertDeliverer({"slack": destination}, policy, sleep=sleep)

    [result] = deliverer.deliver(make_alert(), ["slack"])

    assert result.delivered
    assert len(sleep.sleeps) == 5
    for attempt, seconds in enumerate(sleep.sleeps, start=1):
        base = min(2 ** (attempt - 1), 5.0)
        assert base <= seconds <= min(base + 0.5, 5.0)


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    policy = DeliveryPolicy(initial_backoff=4.0, jitter=0.0)

    assert policy.with_retry_after(4.0, 1.0) == 4.0
    assert policy.with_retry_after(4.0, None) == 4.0
    assert policy.with_retry_after(4.0, 10.0) == 10.0


def test_an_unknown_destination_is_a_failed_result_not_an_exception() -> None:
    deliverer = AlertDeliverer({"slack": ScriptedDestination()}, DeliveryPolicy.immediate())

    results = deliverer.deliver(make_alert(), ["Slack Typo", "slack"])

    assert [(r.destination_id, r.delivered, r.attempts) for r in results] == [
        ("Slack Typo", False, 0),
        ("slack", True, 1),
    ]
    assert "unknown destination id 'Slack Typo'" in results[0].reason
    assert "'slack'" in results[0].reason


def test_one_failing_destination_does_not_stop_the_others_and_results_keep_their_order() -> None:
    broken = ScriptedDestination([PermanentDeliveryError("gone")] * 5, name="sns")
    working = ScriptedDestination(name="slack")
    deliverer = AlertDeliverer({"sns": broken, "slack": working}, DeliveryPolicy.immediate(), sleep=SleepRecorder())
    first, second = make_alert("e-1"), make_alert("e-2")

    results = deliverer.deliver(first, ["sns", "slack"]) + deliverer.deliver(second, ["slack", "sns"])

    assert [(r.alert.event.event_id, r.destination_id, r.delivered) for r in results] == [
        ("e-1", "sns", False),
        ("e-1", "slack", True),
        ("e-2", "slack", True),
        ("e-2", "sns", False),
    ]
    assert [a.event.event_id for a in working.sent] == ["e-1", "e-2"]


def test_an_unexpected_exception_from_a_destination_is_retried_then_reported() -> None:
    destination = ScriptedDestination([KeyError("boom"), ValueError("secret https://hooks.example/T/B/x")] * 3)
    deliverer = AlertDeliverer({"d": destination}, DeliveryPolicy.immediate(max_attempts=2), sleep=SleepRecorder())

    [result] = deliverer.deliver(make_alert(), ["d"])

    assert not result.delivered and result.attempts == 2
    assert "ValueError" in result.reason
    assert "hooks.example" not in result.reason


def test_retries_are_logged_at_warning_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    destination = ScriptedDestination([RetryableDeliveryError("Slack answered 500")])
    deliverer = AlertDeliverer({"slack": destination}, DeliveryPolicy.immediate(), sleep=SleepRecorder())

    with caplog.at_level(logging.WARNING, logger="stream_processor.alerts.delivery"):
        deliverer.deliver(make_alert("e-42"), ["slack"])

    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "e-42" in record.getMessage() and "attempt 1 of 3" in record.getMessage()
    assert "Slack answered 500" in record.getMessage()


def test_the_policy_timeout_is_handed_to_each_destination_and_close_closes_them() -> None:
    destination = ScriptedDestination()
    with AlertDeliverer({"d": destination}, DeliveryPolicy(timeout=2.5)) as deliverer:
        assert deliverer.destinations["d"].timeout == 2.5
    assert destination.closed


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        DeliveryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="timeout"):
        DeliveryPolicy(timeout=0)
