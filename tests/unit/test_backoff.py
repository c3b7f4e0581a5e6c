"""The shared backoff: exponential, jittered, capped; no wait at all when switched off."""

from __future__ import annotations

from tenacity import RetryCallState, Retrying

from stream_processor.backoff import exponential_backoff


def after_attempt(number: int) -> RetryCallState:
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = number
    return state


def test_waits_double_from_the_initial_one_up_to_the_cap_with_jitter_on_top() -> None:
    wait = exponential_backoff(1.0, 5.0, jitter=0.5)
    for attempt in range(1, 8):
        base = min(2.0 ** (attempt - 1), 5.0)
        for _ in range(20):
            assert base <= wait(after_attempt(attempt)) <= min(base + 0.5, 5.0)


def test_proportional_jitter_waits_between_half_and_all_of_the_exponential_wait() -> None:
    wait = exponential_backoff(0.2, 10.0, proportional_jitter=True)
    for attempt in range(1, 10):
        full = min(0.2 * 2 ** (attempt - 1), 10.0)
        seen = [wait(after_attempt(attempt)) for _ in range(50)]
        assert all(full / 2 - 1e-9 <= seconds <= full + 1e-9 for seconds in seen)
        assert len(set(seen)) > 1  # jittered


def test_no_initial_wait_and_no_jitter_is_no_wait() -> None:
    wait = exponential_backoff(0.0, 30.0)
    assert [wait(after_attempt(attempt)) for attempt in range(1, 5)] == [0.0, 0.0, 0.0, 0.0]
