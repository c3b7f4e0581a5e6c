"""`stream-processor consume`: the KCL properties it writes, for real AWS and for the local stack.

No daemon runs here (tests/integration/test_kcl_consumer.py runs it); these read what `--print-properties`
writes, the file the daemon would be started with.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.cli import main
from stream_processor.commands.consume import ConsumerSettings, KclTimings, release_leader_lock, write_wrapper

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


def test_wrapper_runs_the_processor_even_from_a_folder_with_spaces(tmp_path: Path) -> None:
    work_dir = tmp_path / "my work dir"
    work_dir.mkdir()
    marker = tmp_path / "ran it"
    script = write_wrapper(work_dir, ["/bin/sh", "-c", f"echo ok > {shlex.quote(str(marker))}"])
    assert not any(ch.isspace() for ch in str(script))  # the daemon splits executableName on whitespace
    subprocess.run([str(script)], check=True, timeout=10)
    assert marker.read_text() == "ok\n"


def _settings(endpoint: str, worker_id: str) -> ConsumerSettings:
    return ConsumerSettings(
        stream="s",
        application="app",
        executable="/bin/true",
        region="us-east-1",
        initial_position="TRIM_HORIZON",
        worker_id=worker_id,
        metrics_level="NONE",
        timings=KclTimings.for_local(),
        kinesis_endpoint=None,
        dynamodb_endpoint=endpoint,
    )


def test_only_our_own_stale_leader_lock_is_released(moto_server: AwsSettings) -> None:
    # GIVEN KCL's coordinator state table with the leader lock held by worker "w1"
    assert moto_server.endpoint_url is not None
    dynamodb = moto_server.client("dynamodb")
    dynamodb.create_table(
        TableName="app-CoordinatorState",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="app-CoordinatorState", Item={"key": {"S": "Leader"}, "ownerName": {"S": "w1"}})

    # WHEN another worker's consume cleans up, THEN the lock stays; when w1's does, it goes
    assert not release_leader_lock(_settings(moto_server.endpoint_url, "w2"))
    assert "Item" in dynamodb.get_item(TableName="app-CoordinatorState", Key={"key": {"S": "Leader"}})
    assert release_leader_lock(_settings(moto_server.endpoint_url, "w1"))
    assert "Item" not in dynamodb.get_item(TableName="app-CoordinatorState", Key={"key": {"S": "Leader"}})


FAKE_DAEMON = r"""
echo '2026-11-27 01:00:00,000 [main] INFO  s.a.k.Scheduler [NONE] - Sleeping ...'
echo '2026-11-27 01:00:00,001 [main] WARN  s.a.k.LeaseAssignmentManager [NONE] - Not able to assign'
echo '2026-11-27 01:00:01,000 INFO [shardId-000000000001] kcl: holding shard shardId-000000000001 (after X)' >&2
echo '2026-11-27 01:00:01,000 INFO [shardId-000000000002] kcl: holding shard shardId-000000000002 (after Y)' >&2
echo '2026-11-27 01:00:02,000 INFO [shardId-000000000001] kcl: shard shardId-000000000001 ended: checkpointing' >&2
trap 'echo "2026-11-27 01:00:03,000 INFO [shardId-000000000002] kcl: shutdown requested" >&2; exit 143' TERM
echo ready > "$1"
while :; do sleep 0.05; done
"""


def test_daemon_output_is_relayed_and_a_stop_is_graceful(tmp_path: Path) -> None:
    import io
    import threading
    import time

    from stream_processor.commands.consume import KclDaemon

    script = tmp_path / "daemon.sh"
    script.write_text(FAKE_DAEMON)
    ready = tmp_path / "ready"
    out = io.StringIO()
    daemon = KclDaemon(["/bin/sh", str(script), str(ready)], dict(os.environ), tmp_path / "daemon.log", out=out)
    daemon.start()
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    threading.Timer(0.2, daemon.stop).start()
    assert daemon.wait(timeout=10) == 143
    relayed = out.getvalue()
    assert "kcl: 2026-11-27 01:00:00,001 [main] WARN" in relayed  # the daemon's warnings reach the user
    assert "Sleeping" not in relayed  # its INFO chatter stays in the log file
    assert "holding shard shardId-000000000002" in relayed and "shutdown requested" in relayed
    assert daemon.held == {"shardId-000000000002"}  # 1 ended, 2 still held when it stopped
    assert "Sleeping" in (tmp_path / "daemon.log").read_text()


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


def test_the_heartbeat_is_touched_while_the_daemon_runs_and_not_after(tmp_path: Path) -> None:
    """What the ECS health check reads: a fresh file while the daemon lives, a stale one once it is gone."""
    import time

    from stream_processor.commands.consume import Heartbeat, KclDaemon

    daemon = KclDaemon(["sleep", "30"], dict(os.environ), tmp_path / "daemon.log").start()
    heartbeat = Heartbeat(tmp_path / "heartbeat", daemon, interval=0.05).start()
    try:
        time.sleep(0.3)
        first = (tmp_path / "heartbeat").stat().st_mtime
        time.sleep(0.3)
        assert (tmp_path / "heartbeat").stat().st_mtime > first
        daemon.kill()
        daemon.wait(timeout=5)
        time.sleep(0.2)
        stopped = (tmp_path / "heartbeat").stat().st_mtime
        time.sleep(0.3)
        assert (tmp_path / "heartbeat").stat().st_mtime == stopped
    finally:
        heartbeat.stop()
        daemon.kill()
