"""The Lambda front ends with real-shaped events, real S3/DynamoDB/SQS (moto server) and a real Slack receiver.

The reference is the pipeline itself over the same records (what the KCL record processor runs): the
handlers must produce exactly its alerts, report a failed record in `batchItemFailures` with its sequence
number, and lose nothing after it.
"""

from __future__ import annotations

import base64
import gzip
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import orjson
import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations import create_destination
from stream_processor.aws import AwsSettings
from stream_processor.config import Config, parse_config
from stream_processor.dead_letters import SQSDeadLetterStore
from stream_processor.decode import decode_bytes, encode_subscription_record
from stream_processor.dedupe import DynamoDBDedupeStore
from stream_processor.local.receiver import SlackReceiver
from stream_processor.local.traffic import TrafficGenerator, seed_triggers
from stream_processor.matcher import build_matcher
from stream_processor.model import Position, RawRecord
from stream_processor.pipeline import Pipeline
from stream_processor.sources import lambda_kinesis, lambda_s3
from stream_processor.sources.lambda_runtime import ContainerRuntime
from tests.support.state_tables import create_state_table

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
SHARD = "shardId-000000000003"
STREAM_ARN = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/cloudtrail"
FAST = DeliveryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0.0, timeout=5.0)
SEED_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "seed.toml"
WEBHOOK_PLACEHOLDER = "___YOUR_SLACK_WEBHOOK___"
EVENT_ID = re.compile(r'"eventID":"([^"]+)"')

# --------------------------------------------------------------------------- building real-shaped input


def sequence_number(index: int) -> str:
    """A Kinesis-looking sequence number (56 digits), increasing with `index`."""
    return f"4965{index:052d}"


def cloudtrail_events(n_benign: int, n_triggers: int, seed: int) -> list[dict[str, Any]]:
    """Benign traffic with the seed config's triggers spread through it."""
    benign = TrafficGenerator(seed=seed, match_rate=0.0).generate(n_benign)
    triggers = seed_triggers(n_triggers, seed=seed)
    step = max(1, len(benign) // max(1, n_triggers))
    events: list[dict[str, Any]] = []
    for index, event in enumerate(benign):
        events.append(event)
        if index % step == 0 and triggers:
            events.append(triggers.pop(0))
    return events + triggers


def subscription_payloads(events: list[dict[str, Any]], per_record: int) -> list[bytes]:
    """CloudWatch Logs subscription records as Kinesis carries them (gzip DATA_MESSAGE)."""
    return [
        encode_subscription_record(events[start : start + per_record], timestamp_ms=1_722_502_800_000 + start)
        for start in range(0, len(events), per_record)
    ]


def kinesis_event(payloads: list[bytes], first_index: int = 0) -> dict[str, Any]:
    """The event Lambda's Kinesis event source mapping hands a function."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": f"{ACCOUNT}_CloudTrail_us-east-1",
                    "sequenceNumber": sequence_number(first_index + offset),
                    "data": base64.b64encode(payload).decode(),
                    "approximateArrivalTimestamp": 1722502800.5 + offset,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{sequence_number(first_index + offset)}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/stream-processor-kinesis",
                "awsRegion": "us-east-1",
                "eventSourceARN": STREAM_ARN,
            }
            for offset, payload in enumerate(payloads)
        ]
    }


def raw_records(payloads: list[bytes]) -> list[RawRecord]:
    """The same records as the KCL record processor hands the pipeline."""
    return [RawRecord(payload, Position(SHARD, sequence_number(i))) for i, payload in enumerate(payloads)]


def s3_event(bucket: str, *keys: str) -> dict[str, Any]:
    """An S3 ObjectCreated notification; S3 URL-encodes keys in it (space → `+`, `+` → `%2B`)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key), "size": 1},
                },
            }
            for key in keys
        ]
    }


def trail_key(name: str, digest: bool = False) -> str:
    kind = "CloudTrail-Digest" if digest else "CloudTrail"
    return f"AWSLogs/{ACCOUNT}/{kind}/us-east-1/2024/08/01/{ACCOUNT}_{kind}_us-east-1_20240801T0905Z_{name}.json.gz"


# --------------------------------------------------------------------------- expectations and observations


def expected_alerts(config: Config, records: list[RawRecord]) -> Counter[tuple[str, str]]:
    """(rule, eventID) of every alert the pipeline gives for these records: the KCL path's answer."""
    pipeline = Pipeline(config, build_matcher(config.rules), deliverer=None)
    outcome = pipeline.process_records(records)
    return Counter((alert.rule_name, alert.event.event_id) for alert in outcome.alerts)


def slack_alert(post: dict[str, Any]) -> tuple[str, str]:
    """(rule, eventID) of one Slack post: the header block and the event JSON block."""
    rule = post["blocks"][0]["text"]["text"]
    match = EVENT_ID.search(post["blocks"][-1]["text"]["text"])
    assert match, "the Slack post carries no eventID"
    return rule, match.group(1)


def delivered_alerts(receiver: SlackReceiver) -> Counter[tuple[str, str]]:
    return Counter(slack_alert(post) for post in receiver.delivered)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as running:
        yield running


def seed_rules(receiver: SlackReceiver) -> str:
    """The seed's tattletail.toml, unchanged but for its webhook, which points at the local receiver."""
    text = SEED_CONFIG.read_text(encoding="utf-8")
    assert WEBHOOK_PLACEHOLDER in text
    return text.replace(WEBHOOK_PLACEHOLDER, receiver.url)


@pytest.fixture
def config(receiver: SlackReceiver) -> Config:
    return parse_config(seed_rules(receiver), "seed.toml")


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, moto_server: AwsSettings, receiver: SlackReceiver) -> dict[str, str]:
    """A Lambda container's environment: the rule file in S3 (tattletail's variables), AWS = moto."""
    s3 = moto_server.client("s3")
    bucket = f"config-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="rules/tattletail.toml", Body=seed_rules(receiver).encode())
    env = {
        "S3_CONFIG_BUCKET": bucket,
        "S3_CONFIG_PATH": "rules/tattletail.toml",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": str(moto_server.endpoint_url),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("CONFIG_PATH", "STREAM_PROCESSOR_DEDUPE_TABLE", "STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    # a fresh container for each test
    monkeypatch.setattr(lambda_kinesis, "RUNTIME", ContainerRuntime())
    monkeypatch.setattr(lambda_s3, "RUNTIME", ContainerRuntime())
    return env


@pytest.fixture
def dedupe_table(moto_server: AwsSettings) -> str:
    return create_state_table(moto_server.client("dynamodb"), "dedupe")


def fast_pipeline(
    config: Config, aws: AwsSettings, *, dedupe_table: str | None = None, queue_url: str | None = None
) -> Pipeline:
    """What `build_pipeline` makes, with a delivery policy that gives up in milliseconds."""
    destinations = {d.id: create_destination(d, aws) for d in config.destinations}
    ledger = DynamoDBDedupeStore(aws.client("dynamodb"), dedupe_table) if dedupe_table else None
    dead_letters = SQSDeadLetterStore(aws.client("sqs"), queue_url) if queue_url else None
    return Pipeline(
        config, build_matcher(config.rules), AlertDeliverer(destinations, FAST), ledger=ledger,
        dead_letters=dead_letters,
    )


# --------------------------------------------------------------------------- Kinesis front end


def test_kinesis_handler_sends_exactly_the_pipelines_alerts(
    lambda_env: dict[str, str], config: Config, receiver: SlackReceiver
) -> None:
    # GIVEN a batch of subscription records (a health-check record and a corrupt one among them)
    payloads = subscription_payloads(cloudtrail_events(400, 10, seed=11), per_record=40)
    payloads.insert(3, encode_subscription_record([], message_type="CONTROL_MESSAGE"))
    payloads.insert(5, b"not gzip, not json")
    expected = expected_alerts(config, raw_records(payloads))
    assert sum(expected.values()) == 10

    # WHEN Lambda invokes the handler with them (config read from S3 by the container)
    response = lambda_kinesis.handler(kinesis_event(payloads), None)

    # THEN every record is done and Slack got exactly the pipeline's alerts, once each
    assert response == {"batchItemFailures": []}
    assert delivered_alerts(receiver) == expected


@pytest.mark.parametrize(("status", "answers"), [(500, FAST.max_attempts), (400, 1)], ids=["500-retried", "400"])
def test_kinesis_failed_record_is_reported_and_nothing_after_it_is_lost(
    moto_server: AwsSettings, dedupe_table: str, config: Config, receiver: SlackReceiver, status: int, answers: int
) -> None:
    # GIVEN 6 records of 2 triggers each; Slack takes the alerts of records 0 and 1, then fails one of record 2
    payloads = subscription_payloads(cloudtrail_events(120, 12, seed=5), per_record=22)
    records = raw_records(payloads)
    per_record = [expected_alerts(config, [record]) for record in records]
    assert all(per_record), "every record must carry an alert for this test to mean anything"
    expected = sum(per_record, Counter())
    receiver.fail_next(status=200, times=sum(per_record[0].values()) + sum(per_record[1].values()))
    receiver.fail_next(status=status, times=answers)
    pipeline = fast_pipeline(config, moto_server, dedupe_table=dedupe_table)

    # WHEN the batch is invoked
    response = lambda_kinesis.process_kinesis_event(kinesis_event(payloads), pipeline)

    # THEN the lowest unfinished record is reported by its sequence number
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence_number(2)}]}
    # and the records after it were not even started (Lambda retries them with record 2)
    later = {key for counter in per_record[3:] for key in counter}
    assert not {slack_alert(post) for post in receiver.posts} & later
    assert per_record[0] + per_record[1] <= delivered_alerts(receiver)

    # WHEN Lambda retries from the reported record (as the event source mapping does) and Slack is back
    retry = lambda_kinesis.process_kinesis_event(kinesis_event(payloads[2:], first_index=2), pipeline)

    # THEN everything is delivered, and nothing twice (the ledger skips what record 2 had already sent)
    assert retry == {"batchItemFailures": []}
    assert delivered_alerts(receiver) == expected


def test_kinesis_failed_alert_parked_in_sqs_lets_the_batch_finish(
    moto_server: AwsSettings, config: Config, receiver: SlackReceiver
) -> None:
    sqs = moto_server.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"dead-letters-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    payloads = subscription_payloads(seed_triggers(1, seed=3), per_record=1)
    receiver.fail_next(status=500, times=FAST.max_attempts)

    response = lambda_kinesis.process_kinesis_event(kinesis_event(payloads), fast_pipeline(config, moto_server,
                                                                                           queue_url=queue_url))

    assert response == {"batchItemFailures": []}
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    [letter] = [orjson.loads(message["Body"]) for message in messages]
    assert letter["rule_name"] == "Create AccessKey"
    assert letter["position"][:2] == [SHARD, sequence_number(0)]
    assert receiver.url not in messages[0]["Body"]


def test_kinesis_handler_stops_before_running_out_of_time(config: Config, receiver: SlackReceiver) -> None:
    class AlmostOutOfTime:
        def get_remaining_time_in_millis(self) -> int:
            return lambda_kinesis.TIME_RESERVE_MILLIS - 1

    payloads = subscription_payloads(seed_triggers(3, seed=1), per_record=1)
    pipeline = Pipeline(config, build_matcher(config.rules), AlertDeliverer(
        {d.id: create_destination(d) for d in config.destinations}, FAST))

    response = lambda_kinesis.process_kinesis_event(kinesis_event(payloads), pipeline, AlmostOutOfTime())

    # one record is always processed (else no progress is ever made); the rest are handed back
    assert response == {"batchItemFailures": [{"itemIdentifier": sequence_number(1)}]}
    assert len(receiver.delivered) == 1


# --------------------------------------------------------------------------- S3 front end


def put_trail_file(s3: Any, bucket: str, key: str, body: dict[str, Any]) -> bytes:
    data = gzip.compress(orjson.dumps(body))
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return data


def test_s3_handler_alerts_like_the_kinesis_path_and_skips_digests(
    lambda_env: dict[str, str], moto_server: AwsSettings, config: Config, receiver: SlackReceiver
) -> None:
    # GIVEN a CloudTrail log file whose key has a space and a plus, and a digest file, in a trail bucket
    s3 = moto_server.client("s3")
    bucket = f"trail-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    events = cloudtrail_events(300, 8, seed=21)
    log_key = trail_key("a b+c")
    digest_key = trail_key("digest", digest=True)
    put_trail_file(s3, bucket, log_key, {"Records": events})
    put_trail_file(s3, bucket, digest_key, {"digestStartTime": "2024-08-01T08:05:00Z", "logFiles": []})
    # the same events as Kinesis would carry them, through the pipeline (the KCL path)
    expected = expected_alerts(config, raw_records(subscription_payloads(events, per_record=50)))
    assert sum(expected.values()) == 8

    # WHEN S3 notifies the function of both objects
    summary = lambda_s3.handler(s3_event(bucket, log_key, digest_key), None)

    # THEN the log file's alerts are exactly the Kinesis path's; the digest is skipped
    assert delivered_alerts(receiver) == expected
    assert summary["objects"] == 2
    assert summary["digest_files"] == 1
    assert summary["events"] == len(events)
    assert summary["alerts"] == summary["delivered"] == 8


def test_s3_handler_raises_when_an_alert_is_not_delivered(
    moto_server: AwsSettings, config: Config, receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = moto_server.client("s3")
    bucket = f"trail-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    key = trail_key("failing")
    data = put_trail_file(s3, bucket, key, {"Records": seed_triggers(2, seed=9)})
    receiver.fail_next(status=500, times=FAST.max_attempts)

    with pytest.raises(lambda_s3.IncompleteDeliveryError) as raised:
        lambda_s3.process_s3_event(s3_event(bucket, key), fast_pipeline(config, moto_server), s3)

    assert key in str(raised.value)
    assert receiver.url not in str(raised.value)
    assert all(receiver.path not in record.getMessage() for record in caplog.records)
    # the other alert of the file went out; the retry Lambda makes will send the failed one
    assert len(receiver.delivered) == 1
    assert len(decode_bytes(data, key).events) == 2


def test_s3_handler_skips_an_object_deleted_since_the_notification(
    moto_server: AwsSettings, config: Config, receiver: SlackReceiver
) -> None:
    s3 = moto_server.client("s3")
    bucket = f"trail-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)

    summary = lambda_s3.process_s3_event(s3_event(bucket, trail_key("gone")), fast_pipeline(config, moto_server), s3)

    assert summary["objects"] == 1 and summary["missing"] == 1
    assert receiver.received == []
