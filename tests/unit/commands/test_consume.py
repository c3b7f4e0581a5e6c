"""`stream-processor consume`: the KCL properties it writes, for real AWS and for the local stack.

No daemon runs here (tests/integration/test_kcl_consumer.py runs it); these read what `--print-properties`
writes, the file the daemon would be started with.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.cli import main

SEED = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
destinations = ["Slack Audit"]

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhook_url = "https://hooks.slack.com/services/T0/B0/x"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tattletail.toml"
    path.write_text(SEED)
    return path


def properties(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, str]:
    assert main(["consume", *argv, "--print-properties"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")]
    return dict((part.strip() for part in line.split("=", 1)) for line in lines)  # type: ignore[misc]


def test_properties_for_aws_have_no_endpoints_and_kcl_defaults(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = properties(
        capsys, "--config", str(config), "--stream", "cloudtrail", "--application", "alerts",
        "--region", "eu-west-1", "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    assert not [key for key in written if "ndpoint" in key]
    assert written["streamName"] == "cloudtrail"
    assert written["applicationName"] == "alerts"
    assert written["regionName"] == "eu-west-1"
    assert written["AwsCredentialsProvider"] == "DefaultCredentialsProvider"  # the SDK's default chain
    assert written["initialPositionInStream"] == "LATEST"  # a first start does not replay a day of alerts
    assert written["retrievalMode"] == "POLLING"
    assert written["metricsLevel"] == "SUMMARY"
    assert int(written["shutdownGraceMillis"]) > 0  # else SIGTERM never reaches the processors
    # KCL's own timing on AWS: none of the local short-cuts
    for key in ("failoverTimeMillis", "leaseAssignmentIntervalMillis", "shardSyncIntervalMillis"):
        assert key not in written
    executable = written["executableName"]
    assert " " not in executable and Path(executable).is_file() and os.access(executable, os.X_OK)


def test_region_comes_from_the_sdk_when_not_given(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    monkeypatch.delenv("AWS_REGION", raising=False)
    written = properties(
        capsys, "--config", str(config), "--stream", "s", "--application", "a", "--work-dir", str(tmp_path)
    )
    assert written["regionName"] == "ap-southeast-2"


def test_properties_for_the_local_stack_point_at_it_with_short_timings(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = properties(
        capsys, "--config", str(config), "--stream", "demo", "--application", "demo", "--region", "us-east-1",
        "--kinesis-endpoint", "http://127.0.0.1:4567", "--dynamodb-endpoint", "http://127.0.0.1:5000",
        "--work-dir", str(tmp_path / "work"), "--failover-ms", "9000", "--kcl-property", "maxLeasesForWorker=3",
    )  # fmt: skip
    assert written["kinesisEndpoint"] == "http://127.0.0.1:4567"
    assert written["dynamoDBEndpoint"] == "http://127.0.0.1:5000"
    assert written["initialPositionInStream"] == "TRIM_HORIZON"
    assert written["metricsLevel"] == "NONE"
    assert written["failoverTimeMillis"] == "9000"  # a flag beats the local default
    assert int(written["leaseAssignmentIntervalMillis"]) <= 1000
    assert int(written["idleTimeBetweenReadsInMillis"]) <= 500
    assert int(written["workerMetricsReporterFreqInMillis"]) <= 5000  # a stopped worker's shards move soon
    assert written["maxLeasesForWorker"] == "3"


def test_a_bad_config_stops_consume_before_any_daemon_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\n')
    assert main(["consume", "--config", str(bad), "--stream", "s", "--application", "a", "--region", "us-east-1",
                 "--work-dir", str(tmp_path / "work")]) == 2  # fmt: skip
    assert not (tmp_path / "work").exists()


def test_a_missing_stream_stops_consume_before_the_daemon_starts(
    config: Path, tmp_path: Path, moto_server: AwsSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert moto_server.endpoint_url is not None
    code = main(
        ["consume", "--config", str(config), "--stream", "no-such-stream", "--application", "a",
         "--region", "us-east-1", "--kinesis-endpoint", moto_server.endpoint_url,
         "--dynamodb-endpoint", moto_server.endpoint_url, "--work-dir", str(tmp_path / "work")]
    )  # fmt: skip
    assert code == 2
    assert "no Kinesis stream 'no-such-stream'" in capsys.readouterr().err
    assert not (tmp_path / "work" / "daemon.log").exists()
