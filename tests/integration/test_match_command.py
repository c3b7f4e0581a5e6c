"""`stream-processor match` end to end: the seed config, the corpus, and Slack on a real local server."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream_processor.cli import main
from stream_processor.local.receiver import SlackReceiver
from tests.conftest import REPO_ROOT, corpus_path

SEED = REPO_ROOT / "examples" / "seed.toml"

CREATE_ACCESS_KEY = {
    "eventVersion": "1.09",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": "arn:aws:iam::111122223333:user/mallory",
        "accountId": "111122223333",
        "userName": "mallory",
    },
    "eventTime": "2026-11-27T01:02:03Z",
    "eventSource": "iam.amazonaws.com",
    "eventName": "CreateAccessKey",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "203.0.113.77",
    "userAgent": "aws-cli/2.15.0",
    "requestParameters": {"userName": "backdoor"},
    "responseElements": {"accessKey": {"accessKeyId": "AKIAEXAMPLE", "status": "Active"}},
    "eventID": "7f1f5c5e-0000-4000-8000-000000000001",
    "readOnly": False,
    "eventType": "AwsApiCall",
    "recipientAccountId": "111122223333",
}


def seed_config_pointing_at(url: str, tmp_path: Path) -> Path:
    text = SEED.read_text().replace("___YOUR_SLACK_WEBHOOK___", url)
    path = tmp_path / "seed.toml"
    path.write_text(text)
    return path


def test_seed_rules_alert_once_per_start_session_with_the_interpolated_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    events_file = corpus_path("stratus-red-team", "aws.execution.ssm-start-session.json")
    events = json.loads(events_file.read_text())
    events = events["Records"] if isinstance(events, dict) else events
    start_sessions = [e for e in events if e.get("eventName") == "StartSession"]

    assert main(["match", "-c", str(SEED), "--format", "jsonl", str(events_file)]) == 0

    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(a["eventID"] for a in alerts) == sorted(e["eventID"] for e in start_sessions)
    expected = {
        e["eventID"]: f"username: {e['responseElements']['sessionId']} target: {e['requestParameters']['target']}"
        for e in start_sessions
    }
    assert {a["eventID"]: a["output"] for a in alerts} == expected
    assert {a["rule"] for a in alerts} == {"SSM Start Session"}


@pytest.mark.integration
def test_create_access_key_reaches_slack_with_who_where_and_ip(tmp_path: Path) -> None:
    events_file = tmp_path / "trail.json.gz"
    events_file.write_bytes(gzip.compress(orjson.dumps({"Records": [CREATE_ACCESS_KEY]})))
    with SlackReceiver() as receiver:
        config = seed_config_pointing_at(receiver.url, tmp_path)
        assert main(["match", "-c", str(config), "--send", str(events_file)]) == 0
        posts = receiver.delivered
    assert len(posts) == 1
    body = json.dumps(posts[0])
    assert "arn:aws:iam::111122223333:user/mallory" in body
    assert "111122223333" in body and "203.0.113.77" in body
    assert "Create AccessKey" in body


@pytest.mark.integration
def test_send_exits_non_zero_and_names_what_failed_when_slack_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(orjson.dumps(CREATE_ACCESS_KEY) + b"\n")
    with SlackReceiver() as receiver:
        receiver.fail_next(status=404, times=10)
        url = receiver.url
        config = seed_config_pointing_at(url, tmp_path)
        assert main(["match", "-c", str(config), "--send", str(events_file)]) == 1
    err = capsys.readouterr().err
    assert "not delivered: Create AccessKey → Slack Audit" in err
    assert url not in err


def test_malformed_input_is_reported_with_its_position_and_the_rest_still_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(orjson.dumps(CREATE_ACCESS_KEY) + b"\n")
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(b'{"Records": [')[:-6])
    assert main(["match", "-c", str(SEED), "--format", "jsonl", str(bad), str(good)]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["eventID"] for line in captured.out.splitlines()] == [CREATE_ACCESS_KEY["eventID"]]
    assert "bad.json.gz" in captured.err and "malformed" in captured.err


def test_a_bad_rule_file_exits_non_zero_naming_the_file_and_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[[rule]]\nname = "Broken"\njq_match = "select(.eventName == "\ndestinations = []\n')
    assert main(["match", "-c", str(config), "-"]) == 2  # configuration
    err = capsys.readouterr().err
    assert "broken.toml" in err and "Broken" in err


def test_an_endless_input_stops_at_its_budget_in_bounded_memory() -> None:
    # `match /dev/zero` read the whole "file" and ended in a MemoryError traceback.
    completed = subprocess.run(
        [sys.executable, "-m", "stream_processor", "match", "-c", str(SEED), "/dev/zero"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 1  # nothing could be read: a finding, not a crash
    assert "Traceback" not in completed.stderr
    assert "malformed: /dev/zero" in completed.stderr and "event_too_large" in completed.stderr
