"""The one backoff every retry loop waits with: exponential, jittered, capped, built on tenacity.

Each caller keeps its own give-up rule (`stop`) and its own idea of what is worth another try (`retry`);
only the shape of the wait lives here, so a retry loop is a tenacity `Retrying` with this as its `wait`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenacity import wait_exponential, wait_none, wait_random, wait_random_exponential
from tenacity.wait import wait_base

if TYPE_CHECKING:
    from tenacity import RetryCallState


def exponential_backoff(
    initial: float, maximum: float, *, jitter: float = 0.0, proportional_jitter: bool = False
) -> wait_base:
    """The wait after failed attempt n: `initial * 2**(n-1)` seconds plus up to `jitter` more, never over `maximum`.

    With `proportional_jitter` the wait is instead drawn between half and all of `initial * 2**(n-1)` (capped
    at `maximum`): AWS's "equal jitter", which spreads many clients throttled at once by the same share at
    every step. No wait at all when `initial` and `jitter` are both zero (tests, dry runs).
    """
    if initial == 0 and jitter == 0:
        return wait_none()
    if proportional_jitter:
        half = wait_exponential(multiplier=initial / 2, max=maximum / 2)
        return half + wait_random_exponential(multiplier=initial / 2, max=maximum / 2)
    return _AtMost(wait_exponential(multiplier=initial, max=maximum) + wait_random(0, jitter), maximum)


class _AtMost(wait_base):
    """A wait strategy's answer, never over `maximum` seconds (jitter included)."""

    def __init__(self, wait: wait_base, maximum: float) -> None:
        self.wait = wait
        self.maximum = maximum

    def __call__(self, retry_state: RetryCallState) -> float:
        return min(float(self.wait(retry_state)), self.maximum)


__all__ = ["exponential_backoff"]
