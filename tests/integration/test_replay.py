"""`stream-processor replay` on the local stack: from a checkpoint, from a time, across a merge, throttled, --send."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream_processor.cli import main
from stream_processor.config import load_config
from stream_processor.decode import decode_bytes
from stream_processor.kcl.leases import SHARD_END, read_leases
from stream_processor.local.receiver import SlackReceiver
from stream_processor.local.stack import LocalStack
from stream_processor.local.traffic import TrafficGenerator, pack_subscription_records, seed_triggers
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import CloudTrailEvent
from stream_processor.pipeline import Pipeline
from stream_processor.sources.replay import (
    StartPosition,
    StopCondition,
    StreamReplay,
    fixed_start,
    list_shards,
    run_replay,
)
from tests.conftest import REPO_ROOT
from tests.integration.test_status import create_lease_table, lease, merge, put_to_shard, unique_application

pytestmark = pytest.mark.integration

SEED = REPO_ROOT / "examples" / "seed.toml"
EVENTS_PER_RECORD = 5


def subscription_records(count: int, seed: int) -> list[bytes]:
    """`count` CloudWatch Logs subscription records of realistic traffic with seed-rule triggers mixed in."""
    generator = TrafficGenerator(seed=seed, match_rate=0.02)
    triggers = seed_triggers(count, seed=seed)
    events: list[dict[str, Any]] = []
    for index in range(count):
        events.extend(generator.generate(EVENTS_PER_RECORD - 1))
        events.append(triggers[index])
    return pack_subscription_records(events, per_record=EVENTS_PER_RECORD, seed=seed)


def matching_ids(records: Sequence[bytes], config: Path = SEED) -> list[str]:
    """The eventIDs libjq matches in these records, in record order (what a replay must print)."""
    events: list[CloudTrailEvent] = []
    for index, data in enumerate(records):
        events.extend(decode_bytes(data, f"record {index}").events)
    matcher = LibjqMatcher(load_config(str(config)).rules)
    return [match.event.event_id for match in matcher.match_batch(events).matches]


def replay_args(stack: LocalStack, stream: str, *more: str) -> list[str]:
    return [
        "replay",
        "-c",
        str(SEED),
        "--stream",
        stream,
        "--kinesis-endpoint",
        stack.kinesis_url,
        "--dynamodb-endpoint",
        stack.moto_url,
        "--region",
        stack.region,
        "--format",
        "jsonl",
        *more,
    ]


def replay_alerts(
    stack: LocalStack, stream: str, capsys: pytest.CaptureFixture[str], *more: str
) -> list[dict[str, Any]]:
    assert main(replay_args(stack, stream, *more)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def shard_ids(stack: LocalStack, stream: str) -> list[str]:
    return [shard.shard_id for shard in list_shards(stack.kinesis_client(), stream)]


def test_from_the_checkpoint_it_prints_exactly_the_alerts_after_it_and_leaves_the_leases_alone(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two shards with records, and a lease table checkpointed part way into each
    stream = new_stream(2)
    first, second = shard_ids(local_stack, stream)
    first_records, second_records = subscription_records(12, seed=1), subscription_records(9, seed=2)
    first_sequences = put_to_shard(local_stack, stream, first, first_records)
    second_sequences = put_to_shard(local_stack, stream, second, second_records)
    application = unique_application()
    create_lease_table(
        local_stack,
        application,
        [lease(first, first_sequences[4], owner="worker-a"), lease(second, second_sequences[0], owner="worker-b")],
    )
    before = read_leases(local_stack.client("dynamodb"), application)

    # WHEN all shards are replayed from the application's checkpoint
    alerts = replay_alerts(local_stack, stream, capsys, "--all", "--from", "checkpoint", "--application", application)

    # THEN exactly the matches of the records after each checkpoint are printed, in shard order
    expected = matching_ids(first_records[5:]) + matching_ids(second_records[1:])
    by_shard = {
        shard: [a["eventID"] for a in alerts if a["position"].startswith(shard + "@")] for shard in (first, second)
    }
    assert by_shard[first] + by_shard[second] == expected
    assert len(alerts) == len(expected) > 0
    assert read_leases(local_stack.client("dynamodb"), application) == before


def test_from_a_time_it_reads_only_what_arrived_after_it(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(1)
    (shard,) = shard_ids(local_stack, stream)
    early, late = subscription_records(6, seed=3), subscription_records(6, seed=4)
    put_to_shard(local_stack, stream, shard, early)
    time.sleep(1.1)  # arrival timestamps are in milliseconds: keep the two groups well apart
    boundary = datetime.now(UTC)
    time.sleep(1.1)
    put_to_shard(local_stack, stream, shard, late)

    after_boundary = replay_alerts(local_stack, stream, capsys, "--all", "--from-time", boundary.isoformat())
    last_hour = replay_alerts(local_stack, stream, capsys, "--shard", shard, "--from-time", "1h ago")
    before_boundary = replay_alerts(
        local_stack, stream, capsys, "--all", "--from-time", "1h ago", "--to-time", boundary.isoformat()
    )

    assert [a["eventID"] for a in after_boundary] == matching_ids(late)
    assert [a["eventID"] for a in last_hour] == matching_ids(early + late)
    assert [a["eventID"] for a in before_boundary] == matching_ids(early)


def test_across_a_merge_parents_come_first_then_the_child(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two shards with records, merged into a child that then gets records of its own
    stream = new_stream(2)
    left, right = shard_ids(local_stack, stream)
    left_records, right_records, child_records = (subscription_records(6, seed=s) for s in (5, 6, 7))
    put_to_shard(local_stack, stream, left, left_records)
    put_to_shard(local_stack, stream, right, right_records)
    child = merge(local_stack, stream, left, right)
    put_to_shard(local_stack, stream, child, child_records)

    # WHEN everything is replayed, and then only the left parent
    everything = replay_alerts(local_stack, stream, capsys, "--all", "--from", "trim-horizon")
    left_only = replay_alerts(local_stack, stream, capsys, "--shard", left, "--from", "trim-horizon")

    # THEN every record is read once, and no child record comes before a parent's
    shards_in_order = [alert["position"].split("@")[0] for alert in everything]
    assert shards_in_order.index(child) > max(i for i, s in enumerate(shards_in_order) if s != child)
    assert sorted(a["eventID"] for a in everything) == sorted(
        matching_ids(left_records) + matching_ids(right_records) + matching_ids(child_records)
    )
    # following one parent leads into the child, not into the other parent
    assert [a["eventID"] for a in left_only] == matching_ids(left_records) + matching_ids(child_records)


def test_from_the_checkpoint_after_a_merge_skips_the_finished_parent(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(2)
    left, right = shard_ids(local_stack, stream)
    left_records, right_records, child_records = (subscription_records(5, seed=s) for s in (8, 9, 10))
    put_to_shard(local_stack, stream, left, left_records)
    right_sequences = put_to_shard(local_stack, stream, right, right_records)
    child = merge(local_stack, stream, left, right)
    put_to_shard(local_stack, stream, child, child_records)
    application = unique_application()
    # the application finished the left parent, is part way into the right one and has not started the child
    create_lease_table(
        local_stack,
        application,
        [lease(left, SHARD_END, child_shard_ids=(child,)), lease(right, right_sequences[2], owner="w")],
    )

    alerts = replay_alerts(local_stack, stream, capsys, "--all", "--from", "checkpoint", "--application", application)

    assert [a["eventID"] for a in alerts] == matching_ids(right_records[3:]) + matching_ids(child_records)


class ThrottlingKinesis:
    """A Kinesis client whose GetRecords is throttled `times` times before it answers (as AWS does past 5/s)."""

    def __init__(self, client: Any, times: int) -> None:
        self._client = client
        self.remaining = times
        self.exceptions = client.exceptions

    def get_records(self, **arguments: Any) -> Any:
        if self.remaining > 0:
            self.remaining -= 1
            raise self._client.exceptions.ProvisionedThroughputExceededException(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}},
                "GetRecords",
            )
        return self._client.get_records(**arguments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_throttled_get_records_backs_off_and_loses_nothing(
    local_stack: LocalStack, new_stream: Callable[[int], str]
) -> None:
    stream = new_stream(1)
    (shard,) = shard_ids(local_stack, stream)
    records = subscription_records(10, seed=11)
    put_to_shard(local_stack, stream, shard, records)
    kinesis = ThrottlingKinesis(local_stack.kinesis_client(), times=4)
    waits: list[float] = []
    printed: list[str] = []
    pipeline = Pipeline.build(load_config(str(SEED)), send=False, alert_sink=lambda a: printed.append(a.event.event_id))
    replay = StreamReplay(
        kinesis,
        stream,
        [shard],
        fixed_start(None, StartPosition.trim_horizon(), StartPosition.trim_horizon()),
        StopCondition(),
        limit=3,  # several GetRecords calls, so throttling hits the middle of the shard too
        sleep=waits.append,
    )

    totals = run_replay(pipeline, replay)

    assert kinesis.remaining == 0
    assert [p.throttled for p in replay.progress] == [4]
    assert waits and max(waits) > 0  # it did wait, growing from the initial backoff
    assert totals.records == len(records)
    assert printed == matching_ids(records)


def test_send_delivers_once_and_a_second_replay_sends_nothing(
    local_stack: LocalStack, new_stream: Callable[[int], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(1)
    (shard,) = shard_ids(local_stack, stream)
    records = subscription_records(6, seed=12)
    put_to_shard(local_stack, stream, shard, records)
    ledger = tmp_path / "dedupe.db"
    with SlackReceiver() as receiver:
        config = tmp_path / "seed.toml"
        config.write_text(SEED.read_text().replace("___YOUR_SLACK_WEBHOOK___", receiver.url))
        send = [
            *replay_args(local_stack, stream, "--shard", shard, "--from", "trim-horizon", "--send"),
            "-c",
            str(config),
        ]
        send += ["--dedupe-db", str(ledger), "--state-dir", str(tmp_path / "state")]

        assert main(send) == 0
        first = len(receiver.delivered)
        assert main(send) == 0
        second = len(receiver.delivered) - first

    assert first == len(matching_ids(records)) > 0
    assert second == 0
    assert "already sent (dedupe ledger)" in capsys.readouterr().err


def test_to_sequence_stops_after_that_record(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(1)
    (shard,) = shard_ids(local_stack, stream)
    records = subscription_records(8, seed=13)
    sequences = put_to_shard(local_stack, stream, shard, records)

    alerts = replay_alerts(
        local_stack, stream, capsys, "--shard", shard, "--from-sequence", sequences[2], "--to-sequence", sequences[5]
    )

    assert [a["eventID"] for a in alerts] == matching_ids(records[2:6])


def test_a_sequence_number_without_its_shard_is_a_usage_error(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(2)

    assert main(replay_args(local_stack, stream, "--all", "--from-sequence", "1")) == 2

    assert "needs exactly one --shard" in capsys.readouterr().err


class ExpiringKinesis:
    """A Kinesis client whose GetRecords answers ExpiredIteratorException on its `nth` call."""

    def __init__(self, client: Any, nth: int) -> None:
        self._client = client
        self.calls = 0
        self.nth = nth

    def get_records(self, **arguments: Any) -> Any:
        self.calls += 1
        if self.calls == self.nth:
            raise self._client.exceptions.ExpiredIteratorException(
                {"Error": {"Code": "ExpiredIteratorException", "Message": "Iterator expired"}}, "GetRecords"
            )
        return self._client.get_records(**arguments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def read_all(replay: StreamReplay) -> list[str]:
    """The sequence numbers `replay` yields, in order."""
    return [str(record.position.sequence) for batch in replay for record in batch.records]


def trim_horizon_everywhere() -> Any:
    return fixed_start(None, StartPosition.trim_horizon(), StartPosition.trim_horizon())


def test_an_expired_iterator_is_renewed_after_the_last_record_read(
    local_stack: LocalStack, new_stream: Callable[[int], str]
) -> None:
    stream = new_stream(1)
    (shard,) = shard_ids(local_stack, stream)
    sequences = put_to_shard(local_stack, stream, shard, subscription_records(9, seed=14))
    kinesis = ExpiringKinesis(local_stack.kinesis_client(), nth=3)
    replay = StreamReplay(kinesis, stream, [shard], trim_horizon_everywhere(), StopCondition(), limit=2)

    read = read_all(replay)

    assert read == sequences  # nothing skipped, nothing read twice
    assert [p.expired_iterators for p in replay.progress] == [1]


def test_follow_reads_what_arrives_later_and_follows_a_merge_made_meanwhile(
    local_stack: LocalStack, new_stream: Callable[[int], str]
) -> None:
    # GIVEN a follow replay of a 2-shard stream that has nothing in it yet
    stream = new_stream(2)
    left, right = shard_ids(local_stack, stream)
    replay = StreamReplay(
        local_stack.kinesis_client(),
        stream,
        [left, right],
        trim_horizon_everywhere(),
        StopCondition(follow=True),
        sleep=lambda seconds: time.sleep(min(seconds, 0.05)),
    )
    batches = iter(replay)
    assert next(batches).records == []  # at the tip, still reading

    # WHEN records arrive, the shards are merged and the child gets records too
    expected = put_to_shard(local_stack, stream, left, [b"l1", b"l2"])
    expected += put_to_shard(local_stack, stream, right, [b"r1"])
    child = merge(local_stack, stream, left, right)
    expected += put_to_shard(local_stack, stream, child, [b"c1", b"c2"])

    # THEN the follow replay reads all of them, the child's after both parents ended
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 30
    for batch in batches:
        seen.extend((batch.shard_id, str(record.position.sequence)) for record in batch.records)
        if len(seen) >= len(expected) or time.monotonic() > deadline:
            break
    batches.close()  # type: ignore[attr-defined]
    assert sorted(sequence for _, sequence in seen) == sorted(expected)
    assert [shard for shard, _ in seen][-2:] == [child, child]
    assert {p.shard_id: p.reason for p in replay.progress if p.done} == {left: "shard end", right: "shard end"}
