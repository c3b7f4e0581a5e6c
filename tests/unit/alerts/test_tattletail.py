"""`format = "tattletail"`: cloudtrail-tattletail's SNS, SES and Slack payloads, byte for byte.

The reference is Go itself: tests/support/tattletail_go is a small program built with the libraries tattletail
builds with (encoding/json, gojq v0.12.4, slack-go v0.9.1) that renders what tattletail sends; these tests run
the same rules over the same events through our matcher and renderer and compare the bytes. Without a Go
toolchain the differential tests skip (the golden strings below, taken from it, still run).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processor.alerts import tattletail
from stream_processor.alerts.destinations.base import DestinationConfig
from stream_processor.alerts.destinations.ses import SesDestination
from stream_processor.alerts.destinations.slack_webhook import SlackDestination
from stream_processor.alerts.destinations.sns import SnsDestination
from stream_processor.config import Rule, parse_config
from stream_processor.matcher import build_matcher
from stream_processor.model import Alert, CloudTrailEvent, Position

GO_PROGRAM = Path(__file__).resolve().parents[2] / "support" / "tattletail_go"

EVENT = {
    "eventVersion": "1.08",
    "eventID": "7f234c0f-61d9-4d9e-add6-f767474d9be6",
    "eventTime": "2021-07-13T15:30:43Z",
    "eventSource": "iam.amazonaws.com",
    "eventName": "CreateAccessKey",
    "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789:assumed-role/admin/<script>", "n": 3},
    "requestParameters": {"userName": "nopermuser & co"},
    "responseElements": None,
    "readOnly": False,
    "resources": [],
    "additionalEventData": {},
}

# A mix of what real events carry and what Go's encoder writes its own way: HTML characters, U+2028,
# control characters, non-ASCII, floats in e-notation, -0, integers beyond 2^53, empty containers.
EVENTS: list[dict[str, Any]] = [
    EVENT,
    {**EVENT, "eventName": "CreateUser", "requestParameters": {"userName": "ünï\u2028\u2029\x01\x7f\b\f\t\n\r\"\\"}},
    {**EVENT, "x": {"big": 12345678901234567890, "e21": 1e21, "small": 1.5e-7, "neg0": -0.0, "f": 0.1, "i": -42}},
    {**EVENT, "nested": [[[]], {"a": [{}, None, True, 1.0, "s"]}], "k<>&": "v"},
]
RULES = [
    'select(.eventName == "CreateAccessKey")',  # the event itself: no match text
    'select(.eventName | startswith("Create")) | "username: \\(.requestParameters.userName)"',  # a string
    '.eventName == "CreateUser"',  # true / false
    'select(.eventName == "CreateAccessKey") | {who: .userIdentity.arn, n: .userIdentity.n}',  # an object
    ".userIdentity.n",  # a number
    "[.eventName, .readOnly]",  # an array
    "{} + .",  # equal to the event, built anew
    # Go (RE2) regex syntax, as tattletail users wrote it: read the way gojq read it (stream_processor/go_regex.py)
    'select(.eventName | test("(?P<verb>Create)(?P<what>User|AccessKey)"))'
    ' | .eventName | capture("(?P<verb>[A-Z][a-z]+)")',
    'select(.requestParameters.userName | test("^\\\\pL+$"))',
    'select(.requestParameters.userName | test("\\\\PL"))',
]


def alert_for(
    rule: str, event: dict[str, Any], name: str = "Create <AccessKey>", description: str = "A & b"
) -> Alert | None:
    """What our engine alerts for `event` under `rule` (None: no match), through the real matcher."""
    raw = orjson.dumps(event)
    text = f"[[rule]]\nname = {json.dumps(name)}\njq_match = {json.dumps(rule)}\n"
    text += f"description = {json.dumps(description)}\n"
    config = parse_config(text, "t.toml")
    result = build_matcher(config.rules).match_batch([CloudTrailEvent(raw, orjson.loads(raw), Position("t", "1"))])
    if not result.matches:
        return None
    (match,) = result.matches
    return Alert(name, description, match.output, match.event)


# --------------------------------------------------------------------------- golden strings (from the Go program)


def test_the_sns_message_is_tattletails_four_keys_compact_with_gos_escaping() -> None:
    event = {"eventName": "CreateAccessKey", "n": 1e21, "f": 1.5e-7, "z": -0.0, "u": "\u2028é\x01"}
    alert = Alert("Create <AccessKey>", "A & b", event, CloudTrailEvent(orjson.dumps(event), event, Position("t", "1")))
    assert tattletail.sns_message(alert) == (
        '{"name":"Create \\u003cAccessKey\\u003e","description":"A \\u0026 b","record":{"eventName":"CreateAccessKey",'
        '"f":1.5e-7,"n":1e+21,"u":"\\u2028é\\u0001","z":-0},"match":{"eventName":"CreateAccessKey","f":1.5e-7,'
        '"n":1e+21,"u":"\\u2028é\\u0001","z":-0}}'
    )


def test_the_email_is_tattletails_subject_and_text() -> None:
    event = {"eventName": "CreateAccessKey", "n": 1e21}
    alert = Alert("Create <AccessKey>", "A & b", True, CloudTrailEvent(orjson.dumps(event), event, Position("t", "1")))
    assert tattletail.ses_subject(alert) == "Cloudtrail Tattletail event"
    assert tattletail.ses_body(alert) == (
        "Alert: Create <AccessKey>\n\nA & b\n\n\nevent:\n{\n  \"eventName\": \"CreateAccessKey\",\n  \"n\": 1e+21\n}\n"
        "match: true\n"
    )


def test_the_slack_body_is_slack_gos_attachment_with_its_null_blocks() -> None:
    event = {"eventName": "CreateAccessKey"}
    alert = Alert("Create AccessKey", "", event, CloudTrailEvent(orjson.dumps(event), event, Position("t", "1")))
    assert tattletail.slack_body(alert) == (
        b'{"username":"Cloudtrail Tattletail","icon_emoji":"red_circle","attachments":[{"color":"danger",'
        b'"title":"Cloudtrail Tattletail Event","text":"{\\n  \\"eventName\\": \\"CreateAccessKey\\"\\n}",'
        b'"fields":[{"title":"Alert Name","value":"Create AccessKey","short":true},'
        b'{"title":"Description","value":"","short":true}],"blocks":null}]}'
    )


@pytest.mark.parametrize(
    ("number", "go"),
    [(0.0, "0"), (-0.0, "-0"), (1.0, "1"), (100.0, "100"), (0.1, "0.1"), (1e-6, "0.000001"), (9.9e-7, "9.9e-7"),
     (1e-10, "1e-10"), (1e20, "100000000000000000000"), (1e21, "1e+21"), (1.5e300, "1.5e+300"),
     (2**53 + 1, "9007199254740992"), (123456789.125, "123456789.125"), (-2.5e-8, "-2.5e-8"), (math.inf, "null")],
    ids=lambda value: repr(value),
)  # fmt: skip
def test_numbers_are_gos_float64_formatting(number: float, go: str) -> None:
    assert tattletail.go_number(number) == go


def test_a_payload_too_deep_to_indent_is_refused_not_built() -> None:
    event: dict[str, Any] = {}
    inner = event
    for _ in range(3000):
        inner["a"] = [{}]
        inner = inner["a"][0]
    assert len(tattletail.go_marshal(event)) == 3000 * len('{"a":[]}') + len("{}")  # no recursion limit
    with pytest.raises(tattletail.PayloadTooLargeError):
        tattletail.go_marshal(event, "  ", max_chars=1_000_000)


def test_an_sns_message_over_256_kib_is_cut_and_flagged_not_dropped() -> None:
    event = {**EVENT, "requestParameters": {"policy": "x" * 400_000}}
    alert = alert_for(RULES[0], event)
    assert alert is not None
    message = tattletail.sns_message(alert)
    assert len(message.encode()) <= tattletail.SNS_MAX_BYTES
    body = json.loads(message)
    assert list(body)[:4] == ["name", "description", "record", "match"] and body["record_truncated"] is True


# --------------------------------------------------------------------------- the destinations send it


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    def send_email(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def test_sns_with_the_tattletail_format_publishes_its_message_without_subject() -> None:
    destination = SnsDestination(
        DestinationConfig("t", "sns", {"sns_arn": "arn:aws:sns:us-east-1:123456789012:t", "format": "tattletail"})
    )
    client = RecordingClient()
    destination._client = client
    alert = alert_for(RULES[0], EVENT)
    assert alert is not None
    destination.deliver(alert)
    assert client.calls == [
        {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": tattletail.sns_message(alert)}
    ]


def test_ses_with_the_tattletail_format_sends_its_subject_and_text_only() -> None:
    options = {"to_emails": ("a@example.com",), "from_email": "b@example.com", "format": "tattletail"}
    destination = SesDestination(DestinationConfig("t", "ses", options))
    client = RecordingClient()
    destination._client = client
    alert = alert_for(RULES[1], EVENT)
    assert alert is not None
    destination.deliver(alert)
    (call,) = client.calls
    assert call["Message"]["Subject"]["Data"] == "Cloudtrail Tattletail event"
    assert call["Message"]["Body"] == {"Text": {"Data": tattletail.ses_body(alert), "Charset": "UTF-8"}}


def test_slack_with_the_tattletail_format_posts_its_body(monkeypatch: pytest.MonkeyPatch) -> None:
    destination = SlackDestination(
        DestinationConfig("t", "slack_webhook", {"webhook_url": "https://hooks.slack.com/x", "format": "tattletail"})
    )
    posted: list[tuple[bytes, dict[str, str]]] = []
    monkeypatch.setattr(destination, "_post", lambda url, body, headers: posted.append((body, headers)))
    alert = alert_for(RULES[3], EVENT)
    assert alert is not None
    destination.deliver(alert)
    assert posted == [(tattletail.slack_body(alert), {"Content-Type": "application/json"})]


@pytest.mark.parametrize("kind", ["sns", "ses", "slack_webhook"])
def test_an_unknown_format_is_refused_with_the_choices(kind: str) -> None:
    options = {
        "sns": 'sns_arn = "arn:aws:sns:us-east-1:123456789012:t"',
        "ses": 'to_emails = ["a@example.com"]\nfrom_email = "b@example.com"',
        "slack_webhook": 'webhook_url = "https://hooks.slack.com/x"',
    }[kind]
    text = f'[[destination]]\nid = "d"\ntype = "{kind}"\n{options}\nformat = "tattletale"\n'
    with pytest.raises(Exception) as raised:
        parse_config(text, "t.toml")
    assert 'format "tattletale" is not one of "default", "tattletail"' in str(raised.value)


# --------------------------------------------------------------------------- differential: Go itself


@pytest.fixture(scope="module")
def go_renderer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain: the byte-for-byte comparison with tattletail's Go libraries needs `go`")
    binary = tmp_path_factory.mktemp("go") / "tattletail-golden"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=GO_PROGRAM, capture_output=True, text=True, timeout=600
    )
    if built.returncode != 0:
        pytest.fail(f"the Go reference did not build:\n{built.stderr[-2000:]}")
    yield binary


def go_render(binary: Path, cases: list[tuple[str, str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    lines = "".join(
        json.dumps({"name": name, "description": description, "jq_match": rule, "event": json.dumps(event)}) + "\n"
        for name, description, rule, event in cases
    )
    done = subprocess.run([str(binary)], input=lines, capture_output=True, text=True, timeout=120, check=True)
    return [json.loads(line) for line in done.stdout.split("\n") if line]  # not splitlines: U+0085 is data


def compare(binary: Path, cases: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    for (name, description, rule, event), go in zip(cases, go_render(binary, cases), strict=True):
        alert = alert_for(rule, event, name, description)
        where = f"rule {rule!r} on {json.dumps(event)[:200]}"
        assert (alert is not None) == go["matched"], f"match decision differs: {where}"
        if alert is None:
            continue
        assert tattletail.sns_message(alert) == go["sns"], f"SNS differs: {where}"
        assert tattletail.ses_subject(alert) == go["ses_subject"]
        assert tattletail.ses_body(alert) == go["ses_body"], f"SES body differs: {where}"
        assert tattletail.slack_body(alert).decode() == go["slack"], f"Slack differs: {where}"


def test_every_payload_is_what_tattletails_go_libraries_write(go_renderer: Path) -> None:
    cases = [("Create <AccessKey>", "A new key & <b>", rule, event) for rule in RULES for event in EVENTS]
    cases.append(("Ünïcødé name\u2028", "", RULES[0], EVENT))
    compare(go_renderer, cases)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.text(min_size=1, max_size=10), JSON_VALUES, max_size=6))
def test_generated_events_render_like_go(go_renderer: Path, extra: dict[str, Any]) -> None:
    event = {**extra, "eventName": "CreateAccessKey"}
    compare(go_renderer, [("r", "d", RULES[0], event), ("r", "d", RULES[3], event), ("r", "d", "{} + .", event)])


def test_a_rule_for_tattletail_sees_what_the_go_json_of_its_event_holds() -> None:
    """A sanity check of the harness itself: the rule files it writes load as our rules."""
    config = parse_config(f"[[rule]]\nname = \"r\"\njq_match = {json.dumps(RULES[1])}\n", "t.toml")
    assert config.rules == (Rule("r", RULES[1], index=1),)
