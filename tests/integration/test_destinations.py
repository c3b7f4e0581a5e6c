"""Destinations against real servers on 127.0.0.1: the Slack-compatible receiver, and moto for SNS and SES."""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations.base import create_destination
from stream_processor.aws import AwsSettings
from stream_processor.config import DestinationConfig
from stream_processor.local.receiver import SlackReceiver
from stream_processor.model import Alert, CloudTrailEvent, DeliveryResult, Position

pytestmark = pytest.mark.integration

CREATE_ACCESS_KEY: dict[str, Any] = {
    "awsRegion": "us-east-1",
    "eventID": "c64c4ded-ef03-4e5c-81eb-153b118d72f2",
    "eventName": "CreateAccessKey",
    "eventSource": "iam.amazonaws.com",
    "eventTime": "2024-07-30T21:53:13Z",
    "recipientAccountId": "946986569305",
    "sourceIPAddress": "211.9.16.253",
    "userIdentity": {
        "accountId": "946986569305",
        "arn": "arn:aws:iam::946986569305:user/christophe",
        "type": "IAMUser",
        "userName": "<!channel>",
    },
}
FAST = DeliveryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0.0, timeout=2.0)


def make_alert(output: Any = True) -> Alert:
    raw = json.dumps(CREATE_ACCESS_KEY).encode()
    event = CloudTrailEvent(raw, CREATE_ACCESS_KEY, Position("test"))
    return Alert("Create AccessKey", "A new Access Key has been created", output, event)


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as running:
        yield running


class Sleeps:
    """Records the waits the policy asked for, and waits them for real (they are short)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        import time

        self.seconds.append(seconds)
        time.sleep(seconds)


def deliver_to_slack(
    receiver: SlackReceiver, policy: DeliveryPolicy = FAST, sleep: Sleeps | None = None
) -> DeliveryResult:
    destination = create_destination(DestinationConfig("Slack Audit", "slack_webhook", {"webhook_url": receiver.url}))
    with AlertDeliverer({"Slack Audit": destination}, policy, sleep=sleep or Sleeps()) as deliverer:
        [result] = deliverer.deliver(make_alert(), ["Slack Audit"])
    return result


def assert_no_secret(receiver: SlackReceiver, caplog: pytest.LogCaptureFixture, result: DeliveryResult) -> None:
    for text in [record.getMessage() for record in caplog.records] + [result.reason]:
        assert receiver.url not in text
        assert receiver.path not in text


def test_slack_ok_posts_block_kit_with_the_event_facts(
    receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    result = deliver_to_slack(receiver)

    assert result.delivered and result.attempts == 1
    [post] = receiver.posts
    assert "arn:aws:iam::946986569305:user/christophe" in post["text"]
    assert "946986569305" in post["text"] and "211.9.16.253" in post["text"]
    assert post["blocks"][0]["type"] == "header"
    assert "<!channel>" not in json.dumps(post) and "&lt;!channel&gt;" in json.dumps(post)
    assert receiver.received[0].headers["Content-Type"].startswith("application/json")
    assert_no_secret(receiver, caplog, result)


def test_slack_429_waits_retry_after_then_delivers(receiver: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=429, retry_after=1)
    sleeps = Sleeps()

    result = deliver_to_slack(receiver, sleep=sleeps)

    assert result.delivered and result.attempts == 2
    assert sleeps.seconds == [1.0]
    assert [post.status for post in receiver.received] == [429, 200]
    assert receiver.posts[0] == receiver.posts[1]
    assert any("429" in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records)
    assert_no_secret(receiver, caplog, result)


def test_slack_500_is_retried(receiver: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=500)

    result = deliver_to_slack(receiver)

    assert result.delivered and result.attempts == 2
    assert [post.status for post in receiver.received] == [500, 200]
    assert_no_secret(receiver, caplog, result)


def test_slack_answer_slower_than_the_timeout_is_retried(
    receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=200, delay=3.0)
    policy = DeliveryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.0, timeout=0.5)

    result = deliver_to_slack(receiver, policy)

    assert result.delivered and result.attempts == 2
    assert len(receiver.posts) == 2
    assert any("no answer within 0.5 s" in record.getMessage() for record in caplog.records)
    assert_no_secret(receiver, caplog, result)


def test_slack_connection_reset_is_retried(receiver: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(reset=True, times=2)

    result = deliver_to_slack(receiver)

    assert result.delivered and result.attempts == 3
    assert [post.status for post in receiver.received] == [None, None, 200]
    assert_no_secret(receiver, caplog, result)


def test_slack_400_fails_at_once_with_the_reason(receiver: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=400, times=5)

    result = deliver_to_slack(receiver)

    assert not result.delivered and result.attempts == 1
    assert "400" in result.reason and "invalid_payload" in result.reason
    assert len(receiver.posts) == 1
    assert_no_secret(receiver, caplog, result)


def test_slack_keeps_failing_gives_up_after_the_bounded_attempts(
    receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=503, times=10)

    result = deliver_to_slack(receiver)

    assert not result.delivered and result.attempts == 3
    assert "failed after 3 attempts" in result.reason and "503" in result.reason
    assert len(receiver.posts) == 3
    assert_no_secret(receiver, caplog, result)


def test_slack_unreachable_is_retryable_and_the_error_never_holds_the_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SlackReceiver() as closed:
        url, path = closed.url, closed.path
    destination = create_destination(DestinationConfig("Slack Audit", "slack_webhook", {"webhook_url": url}))
    destination.timeout = 1.0

    with pytest.raises(Exception) as raised:
        destination.deliver(make_alert())

    error = raised.value
    assert type(error).__name__ == "RetryableDeliveryError"
    for text in (str(error), repr(error), str(error.__cause__), str(error.__context__)):
        assert url not in text and path not in text
    assert error.__cause__ is None and error.__context__ is None
    for record in caplog.records:
        assert url not in record.getMessage() and path not in record.getMessage()


# --- SNS and SES on moto in server mode -------------------------------------------------------


def test_sns_publishes_json_that_a_subscriber_reads_back(moto_server: AwsSettings) -> None:
    # GIVEN a topic with an SQS queue subscribed to it
    sns, sqs = moto_server.client("sns"), moto_server.client("sqs")
    topic_arn = sns.create_topic(Name=f"alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    destination = create_destination(DestinationConfig("Audit Topic", "sns", {"sns_arn": topic_arn}), moto_server)

    # WHEN an alert is delivered
    with AlertDeliverer({"Audit Topic": destination}, FAST) as deliverer:
        [result] = deliverer.deliver(make_alert("key for backdoor-user"), ["Audit Topic"])

    # THEN the subscriber gets the JSON message with its subject
    assert result.delivered and result.attempts == 1
    [message] = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == "Create AccessKey: CreateAccessKey"
    body = json.loads(envelope["Message"])
    assert body["name"] == "Create AccessKey"
    assert body["description"] == "A new Access Key has been created"
    assert body["match"] == "key for backdoor-user"
    assert body["event"] == CREATE_ACCESS_KEY


def test_sns_to_a_missing_topic_fails_permanently(moto_server: AwsSettings) -> None:
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    destination = create_destination(DestinationConfig("Audit Topic", "sns", {"sns_arn": missing}), moto_server)

    with AlertDeliverer({"Audit Topic": destination}, FAST) as deliverer:
        [result] = deliverer.deliver(make_alert(), ["Audit Topic"])

    assert not result.delivered and result.attempts == 1
    assert "NotFound" in result.reason


def sent_emails(settings: AwsSettings) -> list[dict[str, Any]]:
    """The messages moto's SES backend recorded, through its model data endpoint."""
    assert settings.endpoint_url is not None
    with urllib.request.urlopen(f"{settings.endpoint_url}/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    messages: list[dict[str, Any]] = data.get("ses", {}).get("Message", [])
    return messages


def test_ses_sends_text_and_html_email_from_a_verified_sender(moto_server: AwsSettings) -> None:
    sender = f"alerts-{uuid.uuid4().hex[:8]}@example.com"
    moto_server.client("ses").verify_email_identity(EmailAddress=sender)
    options = {"to_emails": ("security@example.com", "oncall@example.com"), "from_email": sender}
    destination = create_destination(DestinationConfig("Mail", "ses", options), moto_server)

    with AlertDeliverer({"Mail": destination}, FAST) as deliverer:
        [result] = deliverer.deliver(make_alert("user <b>x</b>"), ["Mail"])

    assert result.delivered and result.attempts == 1
    [message] = [m for m in sent_emails(moto_server) if m.get("source") == sender]
    assert message["subject"] == "Create AccessKey: CreateAccessKey"
    assert message["destinations"]["ToAddresses"] == ["security@example.com", "oncall@example.com"]
    assert "arn:aws:iam::946986569305:user/christophe" in message["body"]


def test_ses_from_an_unverified_sender_fails_permanently(moto_server: AwsSettings) -> None:
    options = {"to_emails": ("security@example.com",), "from_email": f"nobody-{uuid.uuid4().hex[:8]}@example.com"}
    destination = create_destination(DestinationConfig("Mail", "ses", options), moto_server)

    with AlertDeliverer({"Mail": destination}, FAST) as deliverer:
        [result] = deliverer.deliver(make_alert(), ["Mail"])

    assert not result.delivered and result.attempts == 1
    assert "MessageRejected" in result.reason
