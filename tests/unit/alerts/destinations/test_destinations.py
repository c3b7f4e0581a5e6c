"""Destination plug-ins without a network: registration, stdout lines, AWS error mapping, Retry-After parsing."""

from __future__ import annotations

import io
import json
from email.utils import formatdate
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from stream_processor.alerts.destinations.base import create_destination, destination_class
from stream_processor.alerts.destinations.ses import SesDestination
from stream_processor.alerts.destinations.slack_webhook import SlackDestination, parse_retry_after
from stream_processor.alerts.destinations.sns import SnsDestination
from stream_processor.alerts.destinations.stdout import StdoutDestination
from stream_processor.aws_errors import delivery_error
from stream_processor.config import DestinationConfig
from stream_processor.errors import PermanentDeliveryError, RetryableDeliveryError
from stream_processor.model import Alert, CloudTrailEvent, Position

EVENT = {"eventID": "e-1", "eventName": "StartSession", "responseElements": {"sessionId": "alice-0123"}}


def make_alert(output: Any = "username: alice-0123 target: i-0abc") -> Alert:
    return Alert("SSM Start Session", "SSM start session", output, CloudTrailEvent(b"{}", EVENT, Position("t")))


@pytest.mark.parametrize(
    ("type_name", "cls", "required"),
    [
        ("slack_webhook", SlackDestination, ("webhook_url",)),
        ("sns", SnsDestination, ("sns_arn",)),
        ("ses", SesDestination, ("to_emails", "from_email")),
        ("stdout", StdoutDestination, ()),
    ],
)
def test_each_type_is_registered_with_the_keys_the_validator_reads(
    type_name: str, cls: type[Any], required: tuple[str, ...]
) -> None:
    assert destination_class(type_name) is cls
    assert type_name == cls.TYPE
    assert required == cls.REQUIRED_KEYS


def test_stdout_prints_one_json_line_per_alert() -> None:
    destination = create_destination(DestinationConfig("out", "stdout"))
    assert isinstance(destination, StdoutDestination)
    destination.stream = io.StringIO()

    destination.deliver(make_alert())
    destination.deliver(make_alert({"n": 1}))

    lines = destination.stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["rule"] == "SSM Start Session"
    assert first["eventID"] == "e-1" and first["eventName"] == "StartSession"
    assert first["output"] == "username: alice-0123 target: i-0abc"
    assert first["event"] == EVENT
    assert json.loads(lines[1])["output"] == {"n": 1}


def test_stdout_writes_to_the_current_sys_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    create_destination(DestinationConfig("out", "stdout")).deliver(make_alert())

    assert json.loads(capsys.readouterr().out)["rule"] == "SSM Start Session"


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Publish")


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (client_error("Throttling", 400), True),
        (client_error("ThrottlingException", 400), True),
        (client_error("InternalError", 500), True),
        (client_error("ServiceUnavailable", 503), True),
        (client_error("Whatever", 502), True),
        (client_error("NotFound", 404), False),
        (client_error("AuthorizationError", 403), False),
        (client_error("MessageRejected", 400), False),
        (client_error("InvalidParameter", 400), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (NoCredentialsError(), False),
    ],
)
def test_aws_errors_map_to_retryable_or_permanent(error: Exception, retryable: bool) -> None:
    mapped = delivery_error(error, "sns", "Audit Topic")

    assert isinstance(mapped, RetryableDeliveryError if retryable else PermanentDeliveryError)
    assert "'Audit Topic'" in str(mapped)


class FakeSnsClient:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return {"MessageId": "m-1"}

    def close(self) -> None:
        pass


def test_sns_publishes_json_with_a_subject_and_maps_throttling_to_retryable() -> None:
    destination = SnsDestination(DestinationConfig("topic", "sns", {"sns_arn": "arn:aws:sns:us-east-1:1:alerts"}))
    client = FakeSnsClient()
    destination._client = client

    destination.deliver(make_alert())

    [call] = client.calls
    assert call["TopicArn"] == "arn:aws:sns:us-east-1:1:alerts"
    assert call["Subject"] == "SSM Start Session: StartSession"
    assert json.loads(call["Message"])["match"] == "username: alice-0123 target: i-0abc"

    destination._client = FakeSnsClient(client_error("Throttling", 400))
    with pytest.raises(RetryableDeliveryError) as raised:
        destination.deliver(make_alert())
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_sns_caps_an_event_too_big_for_one_message() -> None:
    big_event = {"eventID": "e-1", "eventName": "PutObject", "blob": "x" * 400_000}
    alert = Alert("Big", "", True, CloudTrailEvent(b"{}", big_event, Position("t")))
    destination = SnsDestination(DestinationConfig("topic", "sns", {"sns_arn": "arn:aws:sns:us-east-1:1:alerts"}))

    message = destination.message(alert)

    assert len(message.encode()) <= SnsDestination.MAX_MESSAGE_BYTES
    body = json.loads(message)
    assert body["event_truncated"] is True and body["name"] == "Big"


def test_ses_without_recipients_is_a_permanent_error() -> None:
    destination = SesDestination(DestinationConfig("mail", "ses", {"to_emails": (), "from_email": "a@example.com"}))

    with pytest.raises(PermanentDeliveryError, match="to_emails"):
        destination.deliver(make_alert())


def test_ses_accepts_a_list_or_a_comma_separated_string_of_recipients() -> None:
    as_list = SesDestination(DestinationConfig("m", "ses", {"to_emails": ("a@x.com", "b@x.com"), "from_email": "f@x"}))
    as_text = SesDestination(DestinationConfig("m", "ses", {"to_emails": "a@x.com, b@x.com", "from_email": "f@x"}))

    assert as_list.to_emails == as_text.to_emails == ["a@x.com", "b@x.com"]


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)


def test_slack_destination_repr_hides_the_webhook_url() -> None:
    url = "https://hooks.slack.com/services/T000/B000/SECRETSECRET"
    destination = create_destination(DestinationConfig("Slack Audit", "slack_webhook", {"webhook_url": url}))

    assert "SECRET" not in repr(destination)
    assert "SECRET" not in repr(destination.config)


def test_slack_with_the_placeholder_url_fails_permanently_without_echoing_it() -> None:
    destination = create_destination(
        DestinationConfig("Slack Audit", "slack_webhook", {"webhook_url": "___YOUR_SLACK_WEBHOOK___"})
    )

    with pytest.raises(PermanentDeliveryError, match="webhook_url is not a usable") as raised:
        destination.deliver(make_alert())
    assert "___YOUR_SLACK_WEBHOOK___" not in str(raised.value)
