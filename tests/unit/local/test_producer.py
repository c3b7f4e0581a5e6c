"""SubscriptionProducer's PutRecords retries: only failed entries again, a bounded number of attempts."""

from __future__ import annotations

from typing import Any

import pytest

from stream_processor.local.producer import ProduceError, SubscriptionProducer


class Throttled(Exception):
    pass


class ScriptedKinesis:
    """Fails the first entry of each call `failing_calls` times, or the whole call when `whole_call`."""

    class exceptions:  # boto3's spelling
        ProvisionedThroughputExceededException = Throttled

    def __init__(self, failing_calls: int, whole_call: bool = False) -> None:
        self.failing_calls = failing_calls
        self.whole_call = whole_call
        self.sizes: list[int] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.sizes.append(len(Records))
        if len(self.sizes) > self.failing_calls:
            return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}
        if self.whole_call:
            raise Throttled()
        results: list[dict[str, Any]] = [{"ErrorCode": "ProvisionedThroughputExceededException"}]
        return {"FailedRecordCount": 1, "Records": results + [{} for _ in Records[1:]]}


def entries(count: int) -> list[dict[str, Any]]:
    return [{"Data": b"x", "PartitionKey": str(index), "_events": 1} for index in range(count)]


def test_only_the_failed_entries_are_sent_again_and_counted() -> None:
    sleeps: list[float] = []
    kinesis = ScriptedKinesis(failing_calls=2)
    producer = SubscriptionProducer(kinesis, "s", sleep=sleeps.append)

    producer._put(entries(4))

    assert kinesis.sizes == [4, 1, 1]
    assert producer._retried == 2 and producer._calls == 3
    assert len(sleeps) == 2
    for attempt, seconds in enumerate(sleeps, start=1):
        full = min(SubscriptionProducer.BACKOFF_BASE * 2 ** (attempt - 1), SubscriptionProducer.BACKOFF_CAP)
        assert full / 2 - 1e-9 <= seconds <= full + 1e-9


def test_a_stream_that_keeps_throttling_is_given_up_on_after_the_last_attempt() -> None:
    kinesis = ScriptedKinesis(failing_calls=100, whole_call=True)
    producer = SubscriptionProducer(kinesis, "s", sleep=lambda _: None)

    with pytest.raises(ProduceError, match=f"3 records still failed after {SubscriptionProducer.MAX_ATTEMPTS}"):
        producer._put(entries(3))
    assert len(kinesis.sizes) == SubscriptionProducer.MAX_ATTEMPTS
