"""ShardReader's calls: throttling is waited out with the shared backoff and counted; other errors go up."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from stream_processor.sources.replay import THROTTLED, ShardReader, StartPosition, StopCondition


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}}, "GetShardIterator")


class ScriptedKinesis:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"ShardIterator": "it-1"}


def reader(kinesis: ScriptedKinesis, sleeps: list[float]) -> ShardReader:
    return ShardReader(kinesis, "s", "shard-0", StartPosition.trim_horizon(), StopCondition(), sleep=sleeps.append)


def test_throttling_is_waited_out_with_growing_jittered_waits_and_counted() -> None:
    sleeps: list[float] = []
    kinesis = ScriptedKinesis([client_error(THROTTLED)] * 4)
    shard = reader(kinesis, sleeps)

    assert shard._get_iterator() == "it-1"

    assert kinesis.calls == 5 and shard.progress.throttled == 4
    for attempt, seconds in enumerate(sleeps, start=1):
        full = min(ShardReader.BACKOFF_INITIAL_SECONDS * 2 ** (attempt - 1), ShardReader.BACKOFF_MAX_SECONDS)
        assert full / 2 - 1e-9 <= seconds <= full + 1e-9


def test_another_error_is_raised_at_once() -> None:
    sleeps: list[float] = []
    kinesis = ScriptedKinesis([client_error("AccessDeniedException")])
    shard = reader(kinesis, sleeps)

    with pytest.raises(ClientError):
        shard._get_iterator()
    assert kinesis.calls == 1 and sleeps == [] and shard.progress.throttled == 0
