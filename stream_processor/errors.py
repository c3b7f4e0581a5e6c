"""The project's error tree: one root, wrapped once, named for what the caller must do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Exit codes of every command (README, "Exit codes"); `consume` adds the daemon's own.
EXIT_OK = 0
EXIT_FINDINGS = 1
"""The command ran and found a problem: an invalid rule file, a failed rule test, input it could not read,
an alert it could not deliver."""
EXIT_USAGE = 2
"""Usage or configuration: a bad flag, no rule file, no AWS region, an unknown profile, a bad endpoint URL."""
EXIT_AWS_ACCESS = 3
"""AWS refused who we are: no credentials, expired or invalid ones, access denied."""
EXIT_AWS_UNAVAILABLE = 4
"""AWS could not be reached or pushed back: endpoint unreachable, timeouts, throttling. Try again later."""


class StreamProcessorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(StreamProcessorError, ValueError):
    """The rule file or the settings are unusable; the message names the file, the rule and what to change.

    `exit_code` is what a command exits with when this ends it: 2 (configuration), or 3/4 when the cause is
    AWS access or reachability (reading the rule file from S3, resolving a secret).
    """

    def __init__(self, problems: list[str] | str, exit_code: int = EXIT_USAGE) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.exit_code = exit_code
        super().__init__("\n".join(self.problems))


class AwsError(ConfigError):
    """AWS cannot be used as set up (no region, unknown profile, no credentials, access denied, unreachable):
    one line saying what to do, and the exit code of its kind (`aws_errors.describe_failure`)."""


class DedupeStoreError(StreamProcessorError):
    """The ledger's backend failed; wraps the backend's own error."""


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
