"""Fakes several test files share: a clock that moves only when a test moves it, a destination that records."""

from __future__ import annotations

from typing import ClassVar

from stream_processor.alerts.destinations.base import Destination
from stream_processor.errors import PermanentDeliveryError
from stream_processor.model import Alert, DestinationConfig


class FakeClock:
    """Stands in for time.time/monotonic (call it, or pass `.clock`) and time.sleep (`.sleep` advances it)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def slept(self) -> float:
        """Seconds slept in all."""
        return sum(self.sleeps)

class RecordingDestination(Destination):
    """Keeps what it was sent; with `fail`, refuses every alert for good."""

    TYPE: ClassVar[str] = "recording"

    def __init__(self, config: DestinationConfig, fail: bool = False) -> None:
        super().__init__(config)
        self.sent: list[Alert] = []
        self.fail = fail

    def _send(self, alert: Alert) -> None:
        if self.fail:
            raise PermanentDeliveryError("rejected")
        self.sent.append(alert)
