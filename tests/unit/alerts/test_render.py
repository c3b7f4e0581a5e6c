"""Rendering: who/what/where/when, the jq output as people read it, mrkdwn escaping and Slack's limits."""

from __future__ import annotations

import json
from typing import Any

from stream_processor.alerts import render
from stream_processor.model import Alert, CloudTrailEvent, Position

CREATE_ACCESS_KEY: dict[str, Any] = {
    "awsRegion": "us-east-1",
    "eventID": "c64c4ded-ef03-4e5c-81eb-153b118d72f2",
    "eventName": "CreateAccessKey",
    "eventSource": "iam.amazonaws.com",
    "eventTime": "2024-07-30T21:53:13Z",
    "recipientAccountId": "946986569305",
    "requestParameters": {"userName": "backdoor-user"},
    "sourceIPAddress": "211.9.16.253",
    "userIdentity": {
        "accountId": "946986569305",
        "arn": "arn:aws:iam::946986569305:user/christophe",
        "principalId": "AIDAKYRO1QIPZ5M62HCS",
        "type": "IAMUser",
        "userName": "christophe",
    },
}

ASSUMED_ROLE_IDENTITY: dict[str, Any] = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLE:alice@example.com",
    "arn": "arn:aws:sts::111122223333:assumed-role/AdminRole/alice@example.com",
    "accountId": "111122223333",
    "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "AdminRole"}},
}


def make_alert(
    event: dict[str, Any], output: Any = None, rule: str = "Create AccessKey", description: str = ""
) -> Alert:
    raw = json.dumps(event).encode()
    return Alert(rule, description, event if output is None else output, CloudTrailEvent(raw, event, Position("t")))


def all_slack_text(payload: dict[str, Any]) -> str:
    """Every string Slack would render from a payload, joined."""
    texts = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(field["text"] for field in block.get("fields", []))
    return "\n".join(texts)


def test_create_access_key_shows_arn_account_and_ip_in_slack_text() -> None:
    payload = render.slack_payload(make_alert(CREATE_ACCESS_KEY, description="A new Access Key has been created"))

    for text in (payload["text"], all_slack_text(payload)):
        assert "arn:aws:iam::946986569305:user/christophe" in text
        assert "946986569305" in text
        assert "211.9.16.253" in text
        assert "CreateAccessKey" in text
    assert payload["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Create AccessKey"}}
    assert "A new Access Key has been created" in all_slack_text(payload)


def test_who_names_the_assumed_role_and_its_session() -> None:
    who = render.who({"userIdentity": ASSUMED_ROLE_IDENTITY})

    assert who.startswith("arn:aws:sts::111122223333:assumed-role/AdminRole/alice@example.com")
    assert "role AdminRole" in who
    assert "session alice@example.com" in who


def test_who_without_an_arn_falls_back_to_principal_and_type() -> None:
    assert render.who({"userIdentity": {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}}) == (
        "ec2.amazonaws.com (AWSService)"
    )
    assert render.who({"userIdentity": {"type": "Root", "principalId": "111122223333"}}) == "111122223333 (Root)"
    assert render.who({}) == render.UNKNOWN


def test_what_includes_the_error_code_and_message() -> None:
    event = {
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "errorCode": "AccessDenied",
        "errorMessage": "Access Denied",
    }

    assert render.what(event) == "s3.amazonaws.com GetObject failed with AccessDenied: Access Denied"


def test_where_prefers_the_recipient_account_and_falls_back_to_the_callers() -> None:
    assert render.where(CREATE_ACCESS_KEY) == "account 946986569305, us-east-1, from 211.9.16.253"
    caller_only = {"userIdentity": {"accountId": "123456789012"}, "awsRegion": "eu-west-1"}
    assert render.where(caller_only) == "account 123456789012, eu-west-1"


def test_string_output_is_shown_unquoted() -> None:
    alert = make_alert(CREATE_ACCESS_KEY, output="username: alice-0123 target: i-0abc")

    assert render.output_text(alert) == "username: alice-0123 target: i-0abc"
    assert "username: alice-0123 target: i-0abc" in all_slack_text(render.slack_payload(alert))
    assert '"username: alice-0123' not in all_slack_text(render.slack_payload(alert))


def test_non_string_output_is_compact_json_and_true_or_the_event_itself_is_not_shown() -> None:
    assert render.output_text(make_alert(CREATE_ACCESS_KEY, output={"user": "bob", "n": [1, 2]})) == (
        '{"user":"bob","n":[1,2]}'
    )
    assert render.output_text(make_alert(CREATE_ACCESS_KEY, output=0)) == "0"
    assert render.output_text(make_alert(CREATE_ACCESS_KEY, output="")) == ""
    assert render.output_text(make_alert(CREATE_ACCESS_KEY, output=True)) is None
    assert render.output_text(make_alert(CREATE_ACCESS_KEY, output=dict(CREATE_ACCESS_KEY))) is None
    assert "*Match*" not in all_slack_text(render.slack_payload(make_alert(CREATE_ACCESS_KEY, output=True)))


def test_event_fields_cannot_ping_the_channel_or_inject_links() -> None:
    # GIVEN an attacker-chosen user name and error message carrying Slack control sequences
    event = dict(CREATE_ACCESS_KEY)
    event["userIdentity"] = {**CREATE_ACCESS_KEY["userIdentity"], "arn": "arn:aws:iam::1:user/<!channel>"}
    event["errorCode"] = "<!here>"
    event["errorMessage"] = "<http://evil.example|click> & <@U012ABC>"
    alert = make_alert(event, output="who: <!everyone> <http://evil.example|click>")

    # WHEN it is rendered for Slack
    payload = render.slack_payload(alert)
    text = all_slack_text(payload)

    # THEN no mention, link or channel ping survives, only their escaped forms
    for dangerous in ("<!channel>", "<!here>", "<!everyone>", "<http://evil.example|click>", "<@U012ABC>"):
        assert dangerous not in text
        assert dangerous not in json.dumps(payload)
    assert "&lt;!channel&gt;" in text
    assert "&lt;http://evil.example|click&gt; &amp; &lt;@U012ABC&gt;" in text
    assert "&lt;!everyone&gt;" in text


def test_backticks_in_the_event_cannot_close_the_code_block() -> None:
    event = {**CREATE_ACCESS_KEY, "requestParameters": {"userName": "```<!channel>```"}}

    code = render.slack_payload(make_alert(event))["blocks"][-1]["text"]["text"]

    assert code.startswith("```") and code.endswith("```")
    assert code.count("```") == 2
    assert "\\u0060\\u0060\\u0060&lt;!channel&gt;" in code


def test_a_huge_event_stays_within_slack_limits() -> None:
    # GIVEN an event with megabytes of attacker-controlled text in every field Slack shows
    big = "A&<" * 400_000
    event = {
        **CREATE_ACCESS_KEY,
        "userIdentity": {"arn": big},
        "errorCode": big,
        "sourceIPAddress": big,
        "eventTime": big,
        "requestParameters": {"policy": big},
    }
    alert = make_alert(event, output=big, description="d")

    payload = render.slack_payload(alert)

    assert len(json.dumps(payload, ensure_ascii=False)) < 40_000
    assert len(payload["text"]) <= render.FALLBACK_CHARS
    for block in payload["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= render.SECTION_CHARS
        for field in block.get("fields", []):
            assert len(field["text"]) <= render.SECTION_FIELD_CHARS
    code = payload["blocks"][-1]["text"]["text"]
    assert code.endswith("truncated)```")
    assert "&lt" not in code.replace("&lt;", "")  # no entity cut in half
    assert "<" not in code


def test_cap_escaped_never_splits_an_entity() -> None:
    capped = render.cap_escaped("<" * 100, 10)

    assert len(capped) <= 10
    assert capped == "&lt;&lt;" + render.ELLIPSIS


def test_subject_is_one_short_ascii_line() -> None:
    alert = make_alert({**CREATE_ACCESS_KEY, "eventName": "Create\nAccess\tKey ✓" + "x" * 300}, rule="Rule ñ")

    subject = render.subject(alert)

    assert len(subject) <= 100
    assert all(" " <= char <= "~" for char in subject)
    assert subject.startswith("Rule ?: Create Access Key ?")
    assert subject.endswith("...")


def test_email_bodies_escape_html_and_keep_the_facts() -> None:
    event = {**CREATE_ACCESS_KEY, "requestParameters": {"userName": "<script>alert(1)</script>"}}
    alert = make_alert(event, output="user <b>x</b>", description="New key")

    html_body = render.html_body(alert)
    text = render.plain_text(alert)

    assert "<script>" not in html_body and "&lt;script&gt;" in html_body
    assert "<b>x</b>" not in html_body
    assert "arn:aws:iam::946986569305:user/christophe" in html_body
    assert "Match: user <b>x</b>" in text
    assert "211.9.16.253" in text


def test_sns_message_carries_name_description_match_and_event() -> None:
    alert = make_alert(CREATE_ACCESS_KEY, output="key for backdoor-user", description="A new key")

    assert render.sns_message(alert) == {
        "name": "Create AccessKey",
        "description": "A new key",
        "match": "key for backdoor-user",
        "event": CREATE_ACCESS_KEY,
    }


def test_direction_overrides_and_invisible_characters_are_shown_not_obeyed_in_slack() -> None:
    # "exe.txt" written right to left reads as "txt.exe"; a zero-width space makes two names look alike
    event = {**CREATE_ACCESS_KEY, "requestParameters": {"userName": "ad\u200bmin\u202etxt.exe\u2066"}}

    text = all_slack_text(render.slack_payload(make_alert(event, output="user \u202eadmin")))

    for invisible in ("\u200b", "\u202e", "\u2066"):
        assert invisible not in text
    assert "[U+202E]" in text and "[U+200B]" in text and "[U+2066]" in text
