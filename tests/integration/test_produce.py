"""`stream-processor produce` against kinesis-local: what lands in the stream is what CloudWatch Logs sends."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.cli import main
from stream_processor.decode import decode_records
from stream_processor.local.producer import SubscriptionProducer
from stream_processor.local.stack import LocalStack
from stream_processor.local.traffic import TrafficGenerator
from stream_processor.model import Position, RawRecord

pytestmark = pytest.mark.integration


def read_stream(client: Any, stream: str) -> list[RawRecord]:
    """Every record of every shard, from the start."""
    records: list[RawRecord] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend(
                RawRecord(r["Data"], Position(shard["ShardId"], r["SequenceNumber"]), r["PartitionKey"])
                for r in page["Records"]
            )
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return records


def test_generated_events_and_seed_triggers_arrive_as_subscription_records_on_every_shard(
    local_stack: LocalStack, new_stream: Callable[[int], str]
) -> None:
    # GIVEN a 2-shard stream
    stream = new_stream(2)
    # WHEN 600 generated events and 6 seed triggers are produced, 20 per record, a control every 5 records
    code = main(
        [
            "produce",
            "--stream", stream,
            "--kinesis-endpoint", local_stack.kinesis_url,
            "--generate", "600",
            "--seed-triggers", "6",
            "--per-record", "20",
            "--control-every", "5",
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    # THEN every record is a gzip subscription record that decodes cleanly, on both shards
    records = read_stream(local_stack.kinesis_client(), stream)
    assert all(record.data[:2] == b"\x1f\x8b" for record in records)
    assert {record.position.origin for record in records} == {
        s["ShardId"] for s in local_stack.kinesis_client().list_shards(StreamName=stream)["Shards"]
    }
    decoded = decode_records(records)
    assert decoded.malformed == []
    assert len(decoded.events) == 606
    assert len({event.event_id for event in decoded.events}) == 606
    data_records = len(records) - decoded.control_messages
    assert data_records == 31  # 606 events / 20 per record, rounded up
    assert decoded.control_messages == 1 + data_records // 5
    names = Counter(event.event_name for event in decoded.events)
    assert names["CreateAccessKey"] >= 3 and names["StartSession"] >= 3
    payload = orjson.loads(gzip.decompress(records[-1].data))
    assert payload["messageType"] in {"DATA_MESSAGE", "CONTROL_MESSAGE"}
    assert len({record.partition_key for record in records}) == len(records)


def test_events_from_files_are_written_unchanged(
    local_stack: LocalStack, new_stream: Callable[[int], str], tmp_path: Path
) -> None:
    # GIVEN a CloudTrail log file (gzip) and a JSON lines file
    events = TrafficGenerator(seed=7).generate(30)
    log_file = tmp_path / "trail.json.gz"
    log_file.write_bytes(gzip.compress(orjson.dumps({"Records": events[:20]})))
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"\n".join(orjson.dumps(event) for event in events[20:]) + b"\nnot an event\n")
    stream = new_stream(1)
    # WHEN they are produced
    code = main(
        ["produce", "--stream", stream, "--kinesis-endpoint", local_stack.kinesis_url, "--no-progress",
         str(log_file), str(lines)]
    )  # fmt: skip
    # THEN the stream holds exactly those 30 events, byte-identical, and the junk line is skipped
    assert code == 0
    decoded = decode_records(read_stream(local_stack.kinesis_client(), stream))
    assert sorted(event.data["eventID"] for event in decoded.events) == sorted(e["eventID"] for e in events)
    assert {event.raw for event in decoded.events} == {orjson.dumps(event) for event in events}


class FlakyKinesis:
    """The real client, but the first attempt of every PutRecords call loses every other entry to throttling."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.calls = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if self.calls % 2 == 0 or len(Records) < 2:
            response: dict[str, Any] = self._client.put_records(StreamName=StreamName, Records=Records)
            return response
        kept = Records[0::2]
        real = self._client.put_records(StreamName=StreamName, Records=kept)["Records"]
        results: list[dict[str, Any]] = []
        for index in range(len(Records)):
            if index % 2 == 0:
                results.append(real[index // 2])
            else:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
        return {"FailedRecordCount": len(Records) // 2, "Records": results}


def test_entries_a_put_reports_as_failed_are_resent_once_each(
    local_stack: LocalStack, new_stream: Callable[[int], str]
) -> None:
    stream = new_stream(2)
    flaky = FlakyKinesis(local_stack.kinesis_client())
    producer = SubscriptionProducer(flaky, stream, per_record=5, control_every=0, sleep=lambda _: None)
    events = TrafficGenerator(seed=3).generate_bytes(400)
    summary = producer.produce(events, control_first=False)
    assert summary.retried_entries > 0
    decoded = decode_records(read_stream(local_stack.kinesis_client(), stream))
    assert sorted(event.raw for event in decoded.events) == sorted(events)  # all there, none twice
    assert summary.events == 400 and summary.records == 80


def test_the_rate_paces_events_on_the_clock() -> None:
    # A fake clock: the producer sleeps for the token bucket; nothing real waits.
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    class NullKinesis:
        exceptions = None

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}

    producer = SubscriptionProducer(
        NullKinesis(), "s", per_record=10, rate=200.0, control_every=0, clock=lambda: now[0], sleep=sleep
    )
    summary = producer.produce(TrafficGenerator(seed=1).generate_bytes(2000))
    assert summary.events == 2000
    # 2000 events at 200/s: 10 s, give or take one record (the first burst, the final empty pull)
    assert 9.9 <= summary.seconds <= 10.1


def test_a_missing_stream_is_a_readable_error(local_stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["produce", "--stream", "no-such-stream", "--kinesis-endpoint", local_stack.kinesis_url,
         "--generate", "10", "--no-progress"]
    )  # fmt: skip
    assert code == 1
    assert "no-such-stream" in capsys.readouterr().err


def test_time_lost_in_slow_puts_is_made_up_so_the_average_rate_holds() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    class SlowKinesis:
        exceptions = None

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            now[0] += 0.3  # every PutRecords call takes 300 ms
            return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}

    producer = SubscriptionProducer(
        SlowKinesis(), "s", per_record=10, rate=500.0, control_every=0, clock=lambda: now[0], sleep=sleep
    )
    summary = producer.produce(TrafficGenerator(seed=2).generate_bytes(5000))
    # 5000 events at 500/s: 10 s, although a third of each second goes into a put that waits
    assert summary.events == 5000
    assert 9.9 <= summary.seconds <= 10.6  # the last put still takes its 300 ms
