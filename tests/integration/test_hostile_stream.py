"""A stream of good records interleaved with every hostile kind, through the real KCL consumer.

What must hold, whatever the stream carries: every good event's alert arrives exactly once; the checkpoint
passes every hostile record; each hostile record is parked with its shard and sequence number; each record
processor stays under its documented memory; no processor is restarted. The rule file includes a regex that
backtracks exponentially under a backtracking engine and a rule that runs far past its time budget.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.decode import encode_subscription_record
from stream_processor.local.receiver import ReceivedPost, SlackReceiver
from stream_processor.local.stack import LocalStack
from stream_processor.local.traffic import TrafficGenerator, seed_triggers
from tests.integration.test_kcl_consumer import (  # noqa: F401 - fixtures are used by name
    Worker,
    _kcl_jars,
    start_worker,
    unique,
    wait_for,
)
from tests.integration.test_kill_9 import record_processors
from tests.integration.test_nothing_lost import checkpoints, parked

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PROCESSOR_RSS_LIMIT_MIB = 300  # docs/operations.md: ~50 MiB at rest, decoding one record adds at most ~110 MiB
SLOW_RULE = "Slow rule"
SLOW_EVENT = "RunInstances"

CONFIG = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
description = "A new Access Key has been created"
destinations = ["Slack Audit"]

[[rule]]
name = "SSM Start Session"
jq_match = '''select(.eventName == "StartSession")
  | "username: \\(.responseElements.sessionId) target: \\(.requestParameters.target)"'''
description = "SSM start session"
destinations = ["Slack Audit"]

[[rule]]
name = "Odd user agent"
jq_match = 'select(.userAgent | test("^(\\\\w+\\\\s?)*$")) | select(.eventName == "NeverCalled")'
description = "exponential under a backtracking regex engine, on a 46-character userAgent"
destinations = ["Slack Audit"]

[[rule]]
name = "{slow}"
jq_match = 'select(.eventName == "{slow_event}") | first(range(100000) as $i | range(100000) | select(. < 0))'
description = "ten billion steps on every {slow_event}: over any time budget"
destinations = ["Slack Audit"]

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhook_url = "{base}/audit"
"""


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as server:
        yield server


@pytest.fixture
def config_path(tmp_path: Path, receiver: SlackReceiver) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(CONFIG.format(base=f"http://127.0.0.1:{receiver.port}", slow=SLOW_RULE, slow_event=SLOW_EVENT))
    return path


# --- the records -------------------------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def hostile_records() -> list[tuple[str, bytes]]:
    """(kind, record data) of each hostile kind; each must be parked and passed by the checkpoint."""
    deep_message = '{"eventVersion":"1.08","eventName":"X","eventSource":"s","x":' + nested(2000) + "}"
    envelope = b'{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":[],'
    return [
        ("a flood of 200,000 zeros", gzip.compress(envelope + b'"logEvents":[' + b"0," * 199_999 + b"0]}")),
        ("an event nested 2,000 deep", encode_subscription_record([deep_message])),
        ("a gzip bomb", gzip.compress(b"[" + b" " * (9 << 20) + b"]")),
        ("random bytes", os.urandom(4096)),
        ("invalid UTF-8", gzip.compress(envelope + b'"logEvents":[{"id":"1","timestamp":1,"message":"\xff\xfe"}]}')),
        ("5,000 bad log events", gzip.compress(envelope + b'"logEvents":[' + b'{"id":"1"},' * 4_999 + b'{"id":"1"}]}')),
        ("a megabyte of {}", gzip.compress(envelope + b'"logEvents":[' + b"{}," * 600_000 + b"{}]}")),
    ]


def good_records(triggers: list[dict[str, Any]]) -> list[bytes]:
    """Triggers in every shape that must still alert: plain, beside a poisoned value, deep, with a long agent."""
    noise = TrafficGenerator(seed=31, match_rate=0.0).generate(60)
    slow = [{**event, "eventName": SLOW_EVENT, "eventID": str(uuid.uuid4())} for event in noise[:5]]
    long_agent = [{**event, "userAgent": "a" * 45 + "!"} for event in noise[5:10]]
    deep = {**triggers[0], "requestParameters": {"x": json.loads(nested(900))}}
    poisoned_file = (
        b'{"Records":[' + orjson.dumps(triggers[1])[:-1] + b',"odd":1e400},' + orjson.dumps(triggers[2]) + b"]}"
    )
    return [
        encode_subscription_record([*noise[10:30], deep, *triggers[3:6]]),
        gzip.compress(poisoned_file),
        encode_subscription_record([*slow, *long_agent, *triggers[6:]]),
        encode_subscription_record(noise[30:]),
    ]


def put_in_order(stack: LocalStack, stream: str, records: list[bytes]) -> list[str]:
    """Put the records one by one (one shard, in this order); their sequence numbers."""
    kinesis = stack.kinesis_client()
    return [kinesis.put_record(StreamName=stream, Data=data, PartitionKey="one")["SequenceNumber"] for data in records]


# --- what came out -----------------------------------------------------------------------------------------


def alerts(posts: list[ReceivedPost], event_ids: set[str]) -> Counter[tuple[str, str]]:
    """(rule, eventID) of each alert Slack accepted, for the eventIDs we put (Slack shows every alert's id)."""
    found: Counter[tuple[str, str]] = Counter()
    for post in posts:
        text = str(post.payload.get("text", "")) if isinstance(post.payload, dict) else ""
        rule = next((name for name in ("Create AccessKey", "SSM Start Session") if text.startswith(name)), None)
        shown = json.dumps(post.payload)
        if rule and post.status == 200:
            found.update((rule, event_id) for event_id in event_ids if event_id in shown)
    return found


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_hostile_records_are_parked_and_the_good_ones_alert_exactly_once(
    local_stack: LocalStack,
    new_stream: Any,
    receiver: SlackReceiver,
    start_worker: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    # GIVEN one shard holding good records interleaved with every hostile kind
    stream, application = new_stream(1), unique("hostile")
    triggers = seed_triggers(10, seed=77)
    hostile = hostile_records()
    good = good_records(triggers)
    order: list[tuple[str, bytes]] = []
    for index, (kind, data) in enumerate(hostile):
        if index < len(good):
            order.append(("good", good[index]))
        order.append((kind, data))
    order.append(("good", encode_subscription_record(TrafficGenerator(seed=32, match_rate=0.0).generate(5))))
    sequences = put_in_order(local_stack, stream, [data for _, data in order])
    hostile_sequences = {seq: kind for (kind, _), seq in zip(order, sequences, strict=True) if kind != "good"}
    expected = Counter(
        ("Create AccessKey" if event["eventName"] == "CreateAccessKey" else "SSM Start Session", event["eventID"])
        for event in triggers
    )

    # WHEN the real consumer reads the shard (with a ledger, so a repeat would show)
    worker = start_worker(stream, application, unique("w"), dedupe_db=tmp_path / "ledger.sqlite3")
    wait_for("the checkpoint past the last record", lambda: checkpoints(local_stack, application)
             == {"shardId-000000000000": sequences[-1]}, [worker])  # fmt: skip
    ids = {event_id for _, event_id in expected}
    wait_for("every alert", lambda: set(alerts(receiver.received, ids)) >= set(expected), [worker])
    peaks = {pid: peak_rss_mib(pid) for pid in record_processors(worker)}
    log = worker.log()
    assert worker.stop() == 0

    # THEN every good event alerted exactly once
    assert alerts(receiver.received, ids) == expected
    # AND each hostile record is parked with its position, a bounded number of times
    letters = parked(tmp_path / f"work-{worker.name}", local_stack)
    by_sequence = Counter(letter["position"].split("@", 1)[1].split("/")[0] for letter in letters)
    for sequence, kind in hostile_sequences.items():
        assert 1 <= by_sequence[sequence] <= 101, (kind, by_sequence[sequence])
    assert set(by_sequence) == set(hostile_sequences)  # nothing good was parked
    # AND the slow rule was quarantined, once, and said so
    assert log.count(f"quarantined: rule '{SLOW_RULE}'") == 1, log[-3000:]
    # AND one process held the shard throughout, within its memory
    assert log.count("holding shard shardId-000000000000") == 1, log[-3000:]
    assert peaks and all(peak < PROCESSOR_RSS_LIMIT_MIB for peak in peaks.values()), peaks
