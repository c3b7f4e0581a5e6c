"""The project's error tree: one root, wrapped once, named for what the caller must do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class StreamProcessorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(StreamProcessorError, ValueError):
    """The rule file is unusable; the message names the file, the rule and what to change."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DecodeError(StreamProcessorError):
    """Poison input: never retried, parked with its position."""


class DedupeStoreError(StreamProcessorError):
    """A dedupe backend failed; wraps the backend's own error."""


class DeliveryError(StreamProcessorError):
    """A destination did not take an alert."""


class RetryableDeliveryError(DeliveryError):
    """Worth another attempt (timeouts, resets, 429, 5xx, throttling)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """No retry will help (4xx other than 429, bad configuration, rejected payload)."""


class DeadLetterStoreError(StreamProcessorError):
    """The dead-letter store failed; nothing was parked, so the batch must not be committed."""


def call_backend(error_type: type[StreamProcessorError], what: str, function: Callable[..., T], *args: Any) -> T:
    """Run a storage backend's call; wrap anything it raises once, chained, in `error_type`."""
    try:
        return function(*args)
    except StreamProcessorError:
        raise
    except Exception as error:
        raise error_type(f"{what} failed: {type(error).__name__}: {error}") from error
