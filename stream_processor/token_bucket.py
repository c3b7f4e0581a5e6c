"""The one rate limiter: a token bucket that blocks (`acquire`) or says how long to wait (`take`)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up (`initial` at the start, else a full bucket).

    `clock` and `sleep` are injectable so tests pace with a fake clock and never wait.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        initial: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = max(float(burst), 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst if initial is None else min(initial, self.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until `amount` tokens (at most a full bucket) are available; 0 when they are now."""
        self._refill()
        missing = min(amount, self.burst) - self._tokens
        return max(missing / self.rate, 0.0)

    def take(self, amount: float = 1.0) -> float:
        """Spend `amount` tokens now; the seconds the caller should wait before acting on them (0 when none).

        The debt is paid back by the next refill, so the average rate holds however long the wait really was.
        """
        delay = self.wait_time(amount)
        self._tokens -= amount
        return delay

    def acquire(self, amount: float = 1.0) -> None:
        """Block until `amount` tokens are available, then spend them (a debt beyond `burst` is carried)."""
        delay = self.wait_time(amount)
        if delay > 0:
            self._sleep(delay)
            self._refill()
        self._tokens -= amount


__all__ = ["TokenBucket"]
