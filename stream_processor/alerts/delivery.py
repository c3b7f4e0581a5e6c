"""The one retry policy: every alert to every destination, with backoff, jitter and a bounded number of attempts.

Destinations raise `RetryableDeliveryError` or `PermanentDeliveryError`; this module decides whether to try
again and how long to wait, and returns the outcome as a `DeliveryResult`. A failed delivery is a result the
caller must act on (dead-letter it, keep the checkpoint), never an exception and never a silent drop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base

from stream_processor.alerts.destinations.base import Destination
from stream_processor.backoff import exponential_backoff
from stream_processor.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from stream_processor.model import Alert, DeliveryResult
from stream_processor.token_bucket import TokenBucket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try one alert on one destination.

    The wait before attempt n+1 is `initial_backoff * 2**(n-1)` plus up to `jitter` seconds, at most
    `max_backoff`; a `Retry-After` from the destination raises it to that many seconds, at most
    `max_retry_after`. `timeout` is handed to each destination for each call (None keeps its own).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0
    jitter: float = 0.5
    timeout: float | None = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        for name in ("initial_backoff", "max_backoff", "max_retry_after", "jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")

    @classmethod
    def immediate(cls, max_attempts: int = 3, timeout: float | None = None) -> DeliveryPolicy:
        """No backoff, no jitter (a Retry-After is still honoured up to 60 s): for tests and dry runs."""
        return cls(max_attempts=max_attempts, initial_backoff=0.0, max_backoff=0.0, jitter=0.0, timeout=timeout)

    def backoff_strategy(self) -> wait_base:
        """The shared exponential backoff with this policy's jitter and cap (no wait when both are zero)."""
        return exponential_backoff(self.initial_backoff, self.max_backoff, jitter=self.jitter)

    def with_retry_after(self, backoff: float, retry_after: float | None) -> float:
        """The wait once the destination said `Retry-After`: the larger of both, capped at `max_retry_after`."""
        if retry_after is None:
            return backoff
        return max(backoff, min(max(retry_after, 0.0), self.max_retry_after))


class AlertDeliverer:
    """Delivers alerts to destinations by id under one `DeliveryPolicy`; returns one result per pair.

    `sleep` is injectable so tests run every retry path with zero real waiting.
    """

    def __init__(
        self,
        destinations: Mapping[str, Destination],
        policy: DeliveryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.destinations = dict(destinations)
        self.policy = policy or DeliveryPolicy()
        self._sleep = sleep
        self._buckets = {
            destination_id: TokenBucket(*destination.RATE_LIMIT, clock=clock)
            for destination_id, destination in self.destinations.items()
            if destination.RATE_LIMIT is not None
        }
        if self.policy.timeout is not None:
            for destination in self.destinations.values():
                destination.timeout = self.policy.timeout

    def deliver(self, alert: Alert, destination_ids: Sequence[str]) -> list[DeliveryResult]:
        """Send `alert` to each destination id in turn; a failure at one never stops the others."""
        return [self._deliver_one(alert, destination_id) for destination_id in destination_ids]

    def close(self) -> None:
        """Close every destination's connections; one failing to close does not keep the others open."""
        for destination_id, destination in self.destinations.items():
            try:
                destination.close()
            except Exception as error:
                log.warning("closing destination %r failed: %s", destination_id, type(error).__name__)

    def __enter__(self) -> AlertDeliverer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _deliver_one(self, alert: Alert, destination_id: str) -> DeliveryResult:
        destination = self.destinations.get(destination_id)
        if destination is None:
            known = ", ".join(repr(name) for name in sorted(self.destinations)) or "none"
            return DeliveryResult(
                alert,
                destination_id,
                delivered=False,
                attempts=0,
                reason=f"unknown destination id {destination_id!r} (configured: {known})",
            )
        policy = self.policy
        backoff = policy.backoff_strategy()

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            retry_after = error.retry_after if isinstance(error, RetryableDeliveryError) else None
            return policy.with_retry_after(float(backoff(state)), retry_after)

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "delivery of rule %r event %s to %r failed (attempt %d of %d), retrying in %.2f s: %s",
                alert.rule_name,
                alert.event.event_id or "?",
                destination_id,
                state.attempt_number,
                policy.max_attempts,
                state.upcoming_sleep,
                error,
            )

        retrying = Retrying(
            sleep=self._sleep,
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait,
            retry=retry_if_exception_type(RetryableDeliveryError),
            before_sleep=before_sleep,
            reraise=True,
        )
        attempts = 0

        bucket = self._buckets.get(destination_id)

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            pause = bucket.take() if bucket is not None else 0.0
            if pause > 0:
                self._sleep(pause)
            destination.deliver(alert)

        try:
            retrying(attempt)
        except PermanentDeliveryError as error:
            reason = f"permanent failure on attempt {attempts}: {error}"
        except RetryableDeliveryError as error:
            reason = f"failed after {attempts} attempts: {error}"
        except DeliveryError as error:  # a DeliveryError of neither kind: treated as permanent
            reason = f"failed on attempt {attempts}: {error}"
        except Exception as error:  # not a destination's typed error: reported by type only (may hold secrets)
            reason = f"failed on attempt {attempts}: unexpected {type(error).__name__}"
        else:
            return DeliveryResult(alert, destination_id, delivered=True, attempts=attempts)
        log.error(
            "delivery of rule %r event %s to %r: %s",
            alert.rule_name,
            alert.event.event_id or "?",
            destination_id,
            reason,
        )
        return DeliveryResult(alert, destination_id, delivered=False, attempts=attempts, reason=reason)
