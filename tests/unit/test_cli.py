"""The CLI's habits: "did you mean" for flags, and one line with a documented exit code for every AWS failure a
user can cause (no region, unknown profile, no credentials, expired token, access denied, unreachable,
throttled); the traceback only with -v."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stream_processor.aws import AwsSettings, forget_sessions
from stream_processor.cli import COMMANDS, main
from stream_processor.errors import EXIT_AWS_ACCESS, EXIT_AWS_UNAVAILABLE, EXIT_FINDINGS, EXIT_USAGE
from tests.support.fake_aws import aws_error_server

RULES = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
destinations = ["Audit"]

[[destination]]
id = "Audit"
type = "sns"
sns_arn = "arn:aws:sns:us-east-1:123456789012:alerts"
"""


@pytest.fixture
def no_aws_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with no AWS configuration at all: no credentials, no region, no config files, no IMDS."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
                 "AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)  # fmt: skip
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    forget_sessions()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return rules


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- did you mean


def test_a_mistyped_flag_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--explian", "rules.toml"])
    assert exited.value.code == EXIT_USAGE
    assert "unrecognized arguments: --explian (did you mean --explain?)" in capsys.readouterr().err


def test_a_mistyped_flag_of_a_nested_command_is_suggested_from_that_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["dead-letters", "list", "--stat-dir", "x"])
    err = capsys.readouterr().err
    assert "usage: stream-processor dead-letters list" in err
    assert "did you mean --state-dir?" in err


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["valdate", "rules.toml"])
    assert exited.value.code == EXIT_USAGE
    assert "(did you mean 'validate'?)" in capsys.readouterr().err


def test_hidden_aliases_are_never_suggested(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["validate", "--aws-endpont", "http://x", "rules.toml"])
    assert "did you mean --aws-endpoint" not in capsys.readouterr().err


# --------------------------------------------------------------------------- region and profile


def test_aws_region_alone_is_enough(no_aws_setup: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ECS and Lambda set AWS_REGION only; botocore itself reads AWS_DEFAULT_REGION."""
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert AwsSettings.from_environ({"AWS_REGION": "eu-central-1"}).require_region() == "eu-central-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert AwsSettings.from_environ({"AWS_REGION": "eu-central-1"}).require_region() == "eu-central-1"
    assert AwsSettings(region="ap-south-1").require_region() == "ap-south-1"


def test_the_profile_gives_region_and_credentials(
    no_aws_setup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "no-config").write_text("[profile alerts]\nregion = sa-east-1\n")
    (tmp_path / "no-credentials").write_text("[alerts]\naws_access_key_id = AKIA1\naws_secret_access_key = s\n")
    settings = AwsSettings(profile="alerts")
    assert settings.require_region() == "sa-east-1"
    assert settings.session().get_credentials().access_key == "AKIA1"


def test_status_without_a_region_says_how_to_give_one(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--stream", "s", "--application", "a"]) == EXIT_USAGE
    line = one_line(capsys)
    assert "no AWS region" in line and "--region" in line and "AWS_REGION" in line


@pytest.mark.parametrize("how", ["environment", "flag"])
def test_an_unknown_profile_is_one_line(
    how: str, no_aws_setup: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["validate", "s3://bucket/tattletail.toml"]
    if how == "environment":
        monkeypatch.setenv("AWS_PROFILE", "nosuch")
    else:
        argv += ["--profile", "nosuch"]
    assert main(argv) == EXIT_USAGE
    line = one_line(capsys)
    assert "AWS profile 'nosuch'" in line and "aws configure --profile nosuch" in line


def test_the_traceback_is_there_with_verbose(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-v", "status", "--stream", "s", "--application", "a"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" in err and "no AWS region" in err


# --------------------------------------------------------------------------- credentials and access


def test_no_credentials_is_one_line_with_what_to_do(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["validate", "--region", "us-east-1", "s3://bucket/tattletail.toml"])
    assert code == EXIT_AWS_ACCESS
    line = one_line(capsys)
    assert "no AWS credentials found" in line and "aws configure" in line


def test_replay_without_credentials_is_one_line(
    no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", "-c", str(no_aws_setup), "--stream", "s", "--all", "--from", "trim-horizon"]
    assert main([*argv, "--region", "us-east-1"]) == EXIT_AWS_ACCESS
    assert "no AWS credentials found" in one_line(capsys)


@pytest.mark.parametrize(
    ("status", "code", "expected_exit", "says"),
    [
        (400, "ExpiredToken", EXIT_AWS_ACCESS, "credentials have expired"),
        (403, "AccessDenied", EXIT_AWS_ACCESS, "access denied"),
        (403, "InvalidAccessKeyId", EXIT_AWS_ACCESS, "does not accept these credentials"),
        (503, "SlowDown", EXIT_AWS_UNAVAILABLE, "throttling"),
    ],
    ids=["expired-token", "access-denied", "unknown-key", "throttled"],
)
def test_what_aws_answers_becomes_one_line_and_an_exit_code(
    status: int, code: str, expected_exit: int, says: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with aws_error_server(status, code, "refused by the test server") as url:
        result = main(["validate", "--endpoint-url", url, "s3://bucket/tattletail.toml"])
    assert result == expected_exit
    assert says in one_line(capsys)


def test_an_unreachable_endpoint_is_exit_4(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["status", "--stream", "s", "--application", "a", "--endpoint-url", url]) == EXIT_AWS_UNAVAILABLE
    line = one_line(capsys)
    assert "cannot reach AWS" in line and url in line


def test_a_malformed_endpoint_url_is_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--stream", "s", "--application", "a", "--endpoint-url", "not a url"]) == EXIT_USAGE
    assert "--endpoint-url" in one_line(capsys)


def test_aws_endpoint_url_from_the_environment_is_used(
    moto_server: AwsSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SDK's own variable, no flag: the rule file is read from moto."""
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="env-endpoint")
    s3.put_object(Bucket="env-endpoint", Key="rules.toml", Body=RULES.encode())
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", str(moto_server.endpoint_url))
    assert main(["validate", "s3://env-endpoint/rules.toml"]) == 0
    assert "OK: 1 rule" in capsys.readouterr().out


def test_a_queue_url_brings_its_region_to_dead_letters(
    moto_server: AwsSettings, no_aws_setup: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`dead-letters list --dead-letters sqs:https://sqs.REGION...` needs no --region."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    moto_server.client("sqs").create_queue(QueueName="region-from-url")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/region-from-url"
    argv = ["dead-letters", "list", "--dead-letters", f"sqs:{url}", "--endpoint-url", str(moto_server.endpoint_url)]
    assert main(argv) == 0
    assert "no dead letters" in capsys.readouterr().out


def test_dead_letters_refuses_a_state_dir_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL", raising=False)
    typo = tmp_path / "wrok"
    assert main(["dead-letters", "list", "--state-dir", str(typo)]) == EXIT_USAGE
    assert f"state folder {typo} does not exist" in one_line(capsys)
    assert not typo.exists()


def test_match_exits_1_when_every_input_is_malformed(
    tmp_path: Path, no_aws_setup: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("this is not CloudTrail")
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["match", "-c", str(no_aws_setup), str(bad), str(empty)]) == EXIT_FINDINGS


# --------------------------------------------------------------------------- dry runs need no secrets

SECRET_RULES = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
destinations = ["Slack", "Hook"]

[[destination]]
id = "Slack"
type = "slack_webhook"
webhook_url = "secretsmanager:stream-processor/webhooks#slack"

[[destination]]
id = "Hook"
type = "webhook"
url = "ssm:/stream-processor/hook-url"
headers = { Authorization = "env:HOOK_TOKEN_NOT_SET" }
"""
EVENT_LINE = (
    '{"eventVersion":"1.09","eventID":"e-1","eventTime":"2026-11-27T01:02:03Z","eventSource":"iam.amazonaws.com",'
    '"eventName":"CreateAccessKey","awsRegion":"us-east-1"}\n'
)


@pytest.mark.parametrize("command", ["match", "backtest"])
def test_dry_runs_never_resolve_secrets(
    command: str, no_aws_setup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No credentials, no region, an unset variable: a dry run still matches (it sends nothing)."""
    rules = tmp_path / "secret-rules.toml"
    rules.write_text(SECRET_RULES)
    events = tmp_path / "events.jsonl"
    events.write_text(EVENT_LINE)
    argv = [command, "-c", str(rules), str(events)] + (["--format", "json"] if command == "backtest" else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "e-1" in out


def test_sending_resolves_them_and_says_what_is_missing(
    no_aws_setup: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "secret-rules.toml"
    rules.write_text(SECRET_RULES)
    events = tmp_path / "events.jsonl"
    events.write_text(EVENT_LINE)
    assert main(["match", "--send", "--region", "us-east-1", "-c", str(rules), str(events)]) == EXIT_AWS_ACCESS
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err and "HOOK_TOKEN_NOT_SET is not set" in err


def test_a_command_imports_only_what_it_runs_on(tmp_path: Path) -> None:
    # `match` over a file is a short process: it must not pay for boto3, botocore or the KCL's tooling.
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    trail = tmp_path / "trail.json"
    trail.write_text('{"Records": [{"eventVersion": "1.08", "eventName": "CreateAccessKey", "eventSource": "x"}]}')
    probe = (
        "import sys\n"
        "from stream_processor.cli import main\n"
        f"code = main(['match', '-c', {str(rules)!r}, {str(trail)!r}, '--format', 'jsonl'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'urllib3') "
        "or m.startswith(('stream_processor.kcl', 'stream_processor.local', 'stream_processor.commands.consume')))\n"
        "print(code, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)

    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert "Create AccessKey" in done.stdout  # the alert was printed


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"    {name}" in listed for name in COMMANDS), listed
