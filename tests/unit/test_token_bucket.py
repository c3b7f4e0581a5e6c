"""The shared token bucket: a burst passes, then the rate holds; `take` returns the wait, `acquire` sleeps it."""

from __future__ import annotations

import pytest

from stream_processor.token_bucket import TokenBucket
from tests.support.fakes import FakeClock


def test_take_lets_a_burst_through_then_asks_for_one_token_time_per_take() -> None:
    fake = FakeClock(0.0)
    bucket = TokenBucket(2.0, 3, clock=fake.clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(1.0)  # the debt carries until time passes


def test_acquire_sleeps_until_the_tokens_are_there() -> None:
    fake = FakeClock(0.0)
    bucket = TokenBucket(10.0, 5, clock=fake.clock, sleep=fake.sleep, initial=0)
    bucket.acquire(5)
    bucket.acquire(5)
    assert fake.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]
    assert fake.now == pytest.approx(1.0)


def test_a_rate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(0.0, 1)
