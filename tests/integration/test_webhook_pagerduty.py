"""`webhook` and `pagerduty` against real HTTP servers on 127.0.0.1, through the one delivery policy."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations.base import create_destination
from stream_processor.alerts.destinations.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from stream_processor.config import parse_config
from stream_processor.errors import ConfigError
from stream_processor.local.receiver import SlackReceiver
from stream_processor.model import Alert, CloudTrailEvent, DeliveryResult, Position
from stream_processor.secrets import SecretResolver

pytestmark = pytest.mark.integration

EVENT: dict[str, Any] = {
    "eventVersion": "1.09",
    "awsRegion": "us-east-1",
    "eventID": "c64c4ded-ef03-4e5c-81eb-153b118d72f2",
    "eventName": "CreateAccessKey",
    "eventSource": "iam.amazonaws.com",
    "eventTime": "2024-07-30T21:53:13Z",
    "recipientAccountId": "946986569305",
    "sourceIPAddress": "211.9.16.253",
    "userIdentity": {"arn": "arn:aws:iam::946986569305:user/christophe", "type": "IAMUser"},
}
HMAC_SECRET = "whsec-hM4cS3cr3t-value"
ROUTING_KEY = "R0uT1nGkEyR0uT1nGkEyR0uT1nGkEy00"
HEADER_TOKEN = "Bearer t0k3n-in-a-header"
FAST = DeliveryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, jitter=0.0, timeout=2.0)


def make_alert(**extensions: Any) -> Alert:
    event = CloudTrailEvent(json.dumps(EVENT).encode(), EVENT, Position("test"))
    return Alert("Create AccessKey", "A new Access Key has been created", True, event, **extensions)


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as running:
        yield running


def deliverer_for(toml: str, environ: dict[str, str] | None = None) -> AlertDeliverer:
    """Destinations loaded the way a worker loads them: from rule-file text, references resolved."""
    config = parse_config(toml, "dest.toml", resolver=SecretResolver(None, environ or {}))
    return AlertDeliverer({d.id: create_destination(d) for d in config.destinations}, FAST, sleep=lambda _: None)


def webhook_toml(url: str, signed: bool = True) -> str:
    text = f'[[destination]]\nid = "hook"\ntype = "webhook"\nurl = "{url}"\n'
    text += 'headers = { "X-Team" = "security", Authorization = "env:HOOK_AUTH" }\n'
    if signed:
        text += 'hmac_secret = "env:HOOK_HMAC"\n'
    return text


ENVIRON = {"HOOK_AUTH": HEADER_TOKEN, "HOOK_HMAC": HMAC_SECRET}


def pagerduty_toml(url: str) -> str:
    return f'[[destination]]\nid = "pd"\ntype = "pagerduty"\nrouting_key = "{ROUTING_KEY}"\nevents_url = "{url}"\n'


# --- webhook ------------------------------------------------------------------------------------------------


def test_webhook_posts_the_alert_as_signed_json(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(webhook_toml(receiver.url), ENVIRON)
    alert = make_alert(title="Access key for bob", severity="high", tags=("T1098.001",), runbook="https://rb/x")

    (result,) = deliverer.deliver(alert, ["hook"])

    assert result.delivered and result.attempts == 1
    (post,) = receiver.received
    assert post.payload["rule"] == "Create AccessKey"
    assert post.payload["title"] == "Access key for bob"
    assert post.payload["severity"] == "high"
    assert post.payload["tags"] == ["T1098.001"]
    assert post.payload["runbook"] == "https://rb/x"
    assert post.payload["eventID"] == EVENT["eventID"]
    assert post.payload["event"] == EVENT
    assert post.headers["X-Team"] == "security"
    assert post.headers["Authorization"] == HEADER_TOKEN
    assert post.headers["Content-Type"].startswith("application/json")
    # the receiver can check the signature over timestamp "." raw body, and a changed body fails it
    timestamp, signature = post.headers[TIMESTAMP_HEADER], post.headers[SIGNATURE_HEADER]
    assert signature.startswith("sha256=")
    assert verify(HMAC_SECRET, timestamp, post.body, signature)
    assert not verify(HMAC_SECRET, timestamp, post.body.replace(b"bob", b"eve"), signature)
    assert not verify(HMAC_SECRET, str(int(timestamp) + 1), post.body, signature)
    assert not verify("another secret", timestamp, post.body, signature)


def test_an_unsigned_webhook_sends_no_signature_and_plain_alerts_get_the_rule_name_as_title(
    receiver: SlackReceiver,
) -> None:
    deliverer = deliverer_for(webhook_toml(receiver.url, signed=False), ENVIRON)

    (result,) = deliverer.deliver(make_alert(), ["hook"])

    assert result.delivered
    (post,) = receiver.received
    assert SIGNATURE_HEADER not in post.headers and TIMESTAMP_HEADER not in post.headers
    assert post.payload["title"] == "Create AccessKey"
    assert post.payload["severity"] is None and post.payload["tags"] == []


def test_webhook_retries_429_and_500_then_delivers_with_the_same_alert_key(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(webhook_toml(receiver.url), ENVIRON)
    receiver.fail_next(429, retry_after="0")
    receiver.fail_next(500)

    (result,) = deliverer.deliver(make_alert(), ["hook"])

    assert result.delivered and result.attempts == 3
    assert [post.status for post in receiver.received] == [429, 500, 200]
    assert len({post.headers["X-Alert-Key"] for post in receiver.received}) == 1
    for post in receiver.received:  # each attempt is signed on its own
        assert verify(HMAC_SECRET, post.headers[TIMESTAMP_HEADER], post.body, post.headers[SIGNATURE_HEADER])


def test_webhook_400_is_permanent_and_the_reason_holds_no_secret(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(webhook_toml(receiver.url), ENVIRON)
    receiver.fail_next(400, body=f"bad request to {receiver.url} with {HEADER_TOKEN}")

    (result,) = deliverer.deliver(make_alert(), ["hook"])

    assert not result.delivered and result.attempts == 1
    assert "answered 400" in result.reason
    assert receiver.path not in result.reason and HEADER_TOKEN not in result.reason


def test_webhook_connection_refused_is_retried_and_reported_without_the_url() -> None:
    from stream_processor.local.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/hooks/s3cr3t-path"
    deliverer = deliverer_for(webhook_toml(url), ENVIRON)

    (result,) = deliverer.deliver(make_alert(), ["hook"])

    assert not result.delivered and result.attempts == FAST.max_attempts
    assert "connection failed" in result.reason and "s3cr3t-path" not in result.reason


# --- pagerduty ----------------------------------------------------------------------------------------------


def test_pagerduty_trigger_payload(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(pagerduty_toml(receiver.url))
    receiver.fail_next(202, body='{"status":"success","message":"Event processed","dedup_key":"x"}')
    alert = make_alert(title="Access key for bob", severity="critical", tags=("T1098",), runbook="https://rb/x")

    (result,) = deliverer.deliver(alert, ["pd"])

    assert result.delivered and result.attempts == 1
    body = receiver.received[0].payload
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == f"Create AccessKey:{EVENT['eventID']}"
    assert body["links"] == [{"href": "https://rb/x", "text": "Runbook"}]
    payload = body["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("Access key for bob: iam.amazonaws.com CreateAccessKey by arn:aws:iam::")
    assert payload["timestamp"] == EVENT["eventTime"]
    assert payload["component"] == "iam.amazonaws.com" and payload["class"] == "CreateAccessKey"
    assert payload["group"] == "946986569305"
    assert payload["custom_details"]["event"] == EVENT
    assert payload["custom_details"]["tags"] == ["T1098"]


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("info", "info"),
        ("low", "warning"),
        ("medium", "warning"),
        ("high", "error"),
        ("critical", "critical"),
        (None, "warning"),
    ],
)
def test_pagerduty_severity_mapping(receiver: SlackReceiver, severity: str | None, expected: str) -> None:
    deliverer = deliverer_for(pagerduty_toml(receiver.url))

    deliverer.deliver(make_alert(severity=severity), ["pd"])

    assert receiver.received[0].payload["payload"]["severity"] == expected


def test_pagerduty_summary_is_capped_at_1024(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(pagerduty_toml(receiver.url))

    deliverer.deliver(make_alert(title="x" * 150 + " " + "y" * 2000), ["pd"])

    assert len(receiver.received[0].payload["payload"]["summary"]) == 1024


def test_pagerduty_429_and_5xx_are_retried(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(pagerduty_toml(receiver.url))
    receiver.fail_next(429, retry_after="0", body='{"status":"throttle event"}')
    receiver.fail_next(503)
    receiver.fail_next(202)

    (result,) = deliverer.deliver(make_alert(), ["pd"])

    assert result.delivered and result.attempts == 3
    assert len({post.payload["dedup_key"] for post in receiver.received}) == 1


def test_pagerduty_400_is_permanent_and_never_shows_the_routing_key(receiver: SlackReceiver) -> None:
    deliverer = deliverer_for(pagerduty_toml(receiver.url))
    receiver.fail_next(400, body=f'{{"status":"invalid event","errors":["bad routing_key {ROUTING_KEY}"]}}')

    (result,) = deliverer.deliver(make_alert(), ["pd"])

    assert not result.delivered and result.attempts == 1
    assert "PagerDuty answered 400" in result.reason and "invalid event" in result.reason
    assert ROUTING_KEY not in result.reason


def test_no_secret_reaches_a_log_line(receiver: SlackReceiver, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN both destinations failing in every way the policy logs, with urllib3 logging at DEBUG
    caplog.set_level(logging.DEBUG)
    deliverer = deliverer_for(webhook_toml(receiver.url) + pagerduty_toml(receiver.url), ENVIRON)
    receiver.fail_next(500, times=3, body=f"{ROUTING_KEY} {HMAC_SECRET} {HEADER_TOKEN} {receiver.url}")
    receiver.fail_next(400, times=2, body=f"{ROUTING_KEY} {HMAC_SECRET} {HEADER_TOKEN} {receiver.url}")

    # WHEN alerts go to both
    results: list[DeliveryResult] = deliverer.deliver(make_alert(), ["hook", "pd", "hook"])

    # THEN they failed, and no log line nor reason holds a secret, the URL or its path
    assert [r.delivered for r in results] == [False, False, False]
    text = "\n".join(record.getMessage() for record in caplog.records) + "\n".join(r.reason for r in results)
    assert "retrying" in text
    for secret in (ROUTING_KEY, HMAC_SECRET, HEADER_TOKEN, receiver.path):
        assert secret not in text
    assert "hook" in repr(deliverer.destinations["hook"]) and receiver.path not in repr(deliverer.destinations)
    assert ROUTING_KEY not in repr(deliverer.destinations["pd"])


# --- load-time checks (no server needed) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("", 'missing url (required for type webhook): add url = "https://receiver.example.com/hooks/cloudtrail"'),
        ('url = "ftp://s3cr3t.example.com/x"', "url is not an https:// URL with a host"),
        ('url = "http://s3cr3t.example.com/x"', "url is an http:// URL: use https://"),
        ('url = "https://h/x"\nheaders = "X-A: 1"', "headers must be a table of strings, got a string"),
        ('url = "https://h/x"\nheaders = { "X-A" = 1 }', "headers.X-A must be a non-empty string"),
        ('url = "https://h/x"\nheaders = { "X-Signature-256" = "sha256=s3cr3t" }', "is set by stream-processor itself"),
        ('url = "https://h/x"\nheaders = { "Bad Name" = "v" }', '"Bad Name" is not a valid HTTP header name'),
        (
            'url = "https://h/x"\nheaders = { "X-A" = "a\\r\\nX-Injected: s3cr3t" }',
            "headers.X-A: the value holds a line",
        ),
        ('url = "https://h/x"\nhmac_secret = ""', "hmac_secret is empty"),
    ],
)
def test_webhook_options_are_checked_at_load_without_echoing_values(keys: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[[destination]]\nid = "hook"\ntype = "webhook"\n{keys}\n', "dest.toml")

    (problem,) = caught.value.problems
    assert problem.startswith('dest.toml: destination #1 "hook" (type webhook): ')
    assert expected in problem and "s3cr3t" not in problem


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("", "missing routing_key (required for type pagerduty)"),
        ('routing_key = "R0uT1nG s3cr3t"', "routing_key holds spaces"),
        ('routing_key = "k"\nevents_url = "events.pagerduty.com/s3cr3t"', "events_url is not an https:// URL"),
    ],
)
def test_pagerduty_options_are_checked_at_load_without_echoing_values(keys: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[[destination]]\nid = "pd"\ntype = "pagerduty"\n{keys}\n', "dest.toml")

    (problem,) = caught.value.problems
    assert expected in problem and "s3cr3t" not in problem


def test_pagerduty_defaults_to_pagerdutys_endpoint() -> None:
    from stream_processor.alerts.destinations.pagerduty import DEFAULT_EVENTS_URL, PagerDutyDestination

    config = parse_config('[[destination]]\nid = "pd"\ntype = "pagerduty"\nrouting_key = "k"\n', "dest.toml")
    destination = create_destination(config.destination("pd"))

    assert isinstance(destination, PagerDutyDestination)
    assert destination._events_url == DEFAULT_EVENTS_URL == "https://events.pagerduty.com/v2/enqueue"


def test_dedup_key_stays_within_255_characters() -> None:
    from stream_processor.alerts.destinations.pagerduty import dedup_key

    short = make_alert()
    long = Alert("R" * 400, "", True, short.event)

    assert dedup_key(short) == f"Create AccessKey:{EVENT['eventID']}"
    assert len(dedup_key(long)) <= 255 and dedup_key(long).endswith(f":{EVENT['eventID']}")
    assert dedup_key(long) != dedup_key(Alert("R" * 399 + "S", "", True, short.event))
