"""What `validate` checks by form (ARNs, emails, URLs) and what a config needs before it may send."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_processor import config as rule_file
from stream_processor.cli import main
from stream_processor.config import parse_config
from stream_processor.errors import ConfigError
from stream_processor.wiring import Settings, build_pipeline

RULE = '[[rule]]\nname = "r"\njq_match = "true"\ndestinations = ["d"]\n'


def destination(body: str) -> str:
    return f'{RULE}[[destination]]\nid = "d"\n{body}\n'


def load_problems(text: str) -> list[str]:
    try:
        parse_config(text, "t.toml")
    except ConfigError as error:
        return error.problems
    return []


def sending_problems(text: str) -> list[str]:
    return rule_file.sending_problems(parse_config(text, "t.toml"))


@pytest.mark.parametrize(
    "arn",
    ["cloudtail_alert", "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:sns:us-east-1:1234:t", "sns:alerts"],
    ids=["bare-topic-name", "a-queue-arn", "short-account", "no-arn-prefix"],
)
def test_sns_arn_must_be_a_topic_arn(arn: str) -> None:
    text = destination(f'type = "sns"\nsns_arn = "{arn}"')
    if arn.startswith("arn:"):  # tattletail loaded any arn:...; refused before going live
        assert load_problems(text) == []
        (problem,) = sending_problems(text)
    else:  # tattletail refused it at load too
        (problem,) = load_problems(text)
    assert "sns_arn is not an SNS topic ARN: write the whole ARN, arn:aws:sns:REGION:ACCOUNT:TOPIC" in problem


@pytest.mark.parametrize(
    "arn",
    ["arn:aws:sns:us-east-1:123456789012:alerts", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:a.fifo",
     "arn:aws-cn:sns:cn-north-1:123456789012:cloudtail_alert"],
    ids=["commercial", "govcloud-fifo", "china"],
)  # fmt: skip
def test_topic_arns_of_every_partition_are_accepted(arn: str) -> None:
    text = destination(f'type = "sns"\nsns_arn = "{arn}"')
    assert load_problems(text) == [] and sending_problems(text) == []


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("from_email", '"alerts"', "from_email is not an email address"),
        ("from_email", '"a@b"', "from_email is not an email address"),
        ("to_emails", '["ok@example.com", "not an address"]', "to_emails[2] is not an email address"),
    ],
    ids=["no-at", "no-domain", "second-recipient"],
)
def test_email_addresses_are_checked_before_sending(field: str, value: str, expected: str) -> None:
    options = {"from_email": '"alerts@example.com"', "to_emails": '["sec@example.com"]', field: value}
    text = destination('type = "ses"\n' + "\n".join(f"{key} = {item}" for key, item in options.items()))
    assert load_problems(text) == []  # tattletail loaded it: a dry run still reads it
    (problem,) = sending_problems(text)
    assert expected in problem


def test_display_names_are_addresses_ses_takes() -> None:
    text = destination('type = "ses"\nfrom_email = "Alerts <alerts@example.com>"\nto_emails = ["Sec <s@example.org>"]')
    assert sending_problems(text) == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.slack.com/services/T/B/x", True),
        ("http://127.0.0.1:8080/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]:9/hook", True),
        ("http://hooks.slack.com/services/T/B/x", False),
        ("ftp://hooks.slack.com/x", False),
        ("___YOUR_SLACK_WEBHOOK___", False),
    ],
    ids=["https", "loopback-v4", "localhost", "loopback-v6", "plain-http", "ftp", "placeholder"],
)
def test_webhooks_need_https_except_on_loopback(url: str, ok: bool) -> None:
    problems = sending_problems(destination(f'type = "slack_webhook"\nwebhook_url = "{url}"'))
    assert (problems == []) == ok
    assert all(url not in problem for problem in problems)  # a webhook URL is a secret


def test_a_generic_webhook_is_refused_over_plain_http_at_load() -> None:
    (problem,) = load_problems(destination('type = "webhook"\nurl = "http://receiver.example.com/x"'))
    assert "url is an http:// URL: use https://" in problem


def test_a_rule_without_destinations_cannot_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = '[[rule]]\nname = "Orphan"\njq_match = "true"\n'
    text += '[[rule]]\nname = "Later"\njq_match = "true"\nenabled = false\n'
    config = parse_config(text, "t.toml")  # loads: a dry run and test-rules need no destination
    (problem,) = rule_file.sending_problems(config)  # the disabled one is fine
    assert 'rule #1 "Orphan": has no destinations: its alerts would go nowhere' in problem
    with pytest.raises(ConfigError):
        build_pipeline(config, Settings(), send=True)
    build_pipeline(config, Settings(), send=False).close()
    path = tmp_path / "t.toml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 1
    assert "has no destinations" in capsys.readouterr().err
