"""No secret reaches a log line, an error, stdout or stderr, whatever path handled it.

Every destination secret here is distinctive and comes from a reference (`env:`, `ssm:`, `secretsmanager:` on
moto): Slack webhook paths, a webhook URL, a header value, an HMAC key and a PagerDuty routing key. The test
runs the code paths that touch them (validate, match --send, delivery that fails with 404, 500, refused
connections and timeouts, a hot reload that refreshes them, the KCL record processor) with the root logger
at DEBUG (urllib3 and botocore included), both in this process and as `stream-processor -v` subprocesses, and
then greps every captured log record, stdout and stderr, and every file under the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.aws import AwsSettings
from stream_processor.config import load_config
from stream_processor.dead_letters import SQLiteDeadLetterStore
from stream_processor.decode import encode_subscription_record
from stream_processor.local.processes import free_port
from stream_processor.local.receiver import SlackReceiver
from stream_processor.local.traffic import seed_triggers
from stream_processor.metrics import ShardMetrics
from stream_processor.pipeline import Pipeline
from stream_processor.reload import ConfigWatcher
from stream_processor.secrets import SecretResolver
from stream_processor.sources.kcl import KclRecordProcessor
from tests.conftest import REPO_ROOT
from tests.support.kclpy_inputs import KinesisRecord, ProcessRecordsInput

pytestmark = pytest.mark.integration


def secret(label: str) -> str:
    return f"{label}{uuid.uuid4().hex}"


CONFIG = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
destinations = ["Slack ok", "Slack 404", "Slack 500 once", "Hook", "PagerDuty"]

[[rule]]
name = "SSM Start Session"
jq_match = 'select(.eventName == "StartSession") | "session \\(.responseElements.sessionId)"'
destinations = ["Slack refused", "Slack slow"]

[[destination]]
id = "Slack ok"
type = "slack_webhook"
webhook_url = "env:LEAK_SLACK_OK"

[[destination]]
id = "Slack 404"
type = "slack_webhook"
webhook_url = "env:LEAK_SLACK_404"

[[destination]]
id = "Slack 500 once"
type = "slack_webhook"
webhook_url = "ssm:/leaktest/slack-500"

[[destination]]
id = "Slack refused"
type = "slack_webhook"
webhook_url = "env:LEAK_SLACK_REFUSED"

[[destination]]
id = "Slack slow"
type = "slack_webhook"
webhook_url = "env:LEAK_SLACK_SLOW"

[[destination]]
id = "Hook"
type = "webhook"
url = "secretsmanager:leaktest/hook"
hmac_secret = "ssm:/leaktest/hmac"
headers = {{ Authorization = "env:LEAK_HEADER" }}

[[destination]]
id = "PagerDuty"
type = "pagerduty"
routing_key = "secretsmanager:leaktest/pagerduty#routing_key"
events_url = "{base}/pagerduty/enqueue"
"""


class Secrets:
    """The secret values, where they are stored, and the servers they point at."""

    def __init__(self, ok: SlackReceiver, failing: SlackReceiver, slow: SlackReceiver, aws: AwsSettings) -> None:
        self.tokens = {name: secret(f"leak-{name}-") for name in ("ok", "404", "500", "refused", "slow", "hook")}
        self.hmac = secret("hmac-")
        self.header = "Bearer " + secret("header-")
        self.routing_key = secret("R")
        refused_port = free_port()
        self.env = {
            "LEAK_SLACK_OK": f"{ok.url}/{self.tokens['ok']}",
            "LEAK_SLACK_404": f"http://127.0.0.1:{failing.port}/services/T404/{self.tokens['404']}",
            "LEAK_SLACK_REFUSED": f"http://127.0.0.1:{refused_port}/services/T0/{self.tokens['refused']}",
            "LEAK_SLACK_SLOW": f"http://127.0.0.1:{slow.port}/services/T1/{self.tokens['slow']}",
            "LEAK_HEADER": self.header,
        }
        self.slack_500 = f"http://127.0.0.1:{failing.port}/services/T500/{self.tokens['500']}"
        self.hook_url = f"http://127.0.0.1:{ok.port}/hook/{self.tokens['hook']}?token={self.tokens['hook']}"
        ssm = aws.client("ssm")
        ssm.put_parameter(Name="/leaktest/slack-500", Value=self.slack_500, Type="SecureString", Overwrite=True)
        ssm.put_parameter(Name="/leaktest/hmac", Value=self.hmac, Type="SecureString", Overwrite=True)
        manager = aws.client("secretsmanager")
        for name, value in (
            ("leaktest/hook", self.hook_url),
            ("leaktest/pagerduty", json.dumps({"routing_key": self.routing_key})),
        ):
            try:
                manager.create_secret(Name=name, SecretString=value)
            except manager.exceptions.ResourceExistsException:
                manager.put_secret_value(SecretId=name, SecretString=value)

    def values(self) -> list[str]:
        """Every value that must never show: whole URLs, their secret parts, the key, header and routing key."""
        return [
            *self.tokens.values(),
            *self.env.values(),
            self.slack_500,
            self.hook_url,
            self.hmac,
            self.header.removeprefix("Bearer "),
            self.routing_key,
        ]


@pytest.fixture
def receivers() -> Iterator[tuple[SlackReceiver, SlackReceiver, SlackReceiver]]:
    with SlackReceiver() as ok, SlackReceiver() as failing, SlackReceiver() as slow:
        yield ok, failing, slow


class Capture(logging.Handler):
    """Every record any logger emits, formatted with its arguments and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def capture_everything() -> Iterator[Capture]:
    """The root logger (and the AWS and HTTP libraries') at DEBUG into one handler, for the block."""
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "requests", "s3transfer"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def cli(args: list[str], env: dict[str, str], log: Path, stdin: bytes | None = None) -> int:
    """`stream-processor -v ARGS` as a subprocess; stdout and stderr to files under the test's tmp dir."""
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.run(
            [sys.executable, "-m", "stream_processor", "-v", *args],
            input=stdin,
            stdout=out,
            stderr=err,
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            timeout=240,
            check=False,
        ).returncode


def run_everything(
    secrets: Secrets,
    aws: AwsSettings,
    receivers: tuple[SlackReceiver, SlackReceiver, SlackReceiver],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every path that handles the secrets: the CLI as subprocesses, then the pipeline, reload and processor."""
    ok, failing, slow = receivers
    for name, value in secrets.env.items():
        monkeypatch.setenv(name, value)
    config_path = tmp_path / "rules.toml"
    config_path.write_text(CONFIG.format(base=f"http://127.0.0.1:{ok.port}"))
    events = seed_triggers(4, seed=5)
    events_path = tmp_path / "events.jsonl"
    events_path.write_text("".join(json.dumps(event) + "\n" for event in events))
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    aws_flags = ["--region", "us-east-1", "--aws-endpoint", str(aws.endpoint_url)]

    # destinations that answer 404 for good, 500 once, refuse connections and answer too slowly
    failing.fail_next(status=500, times=1)
    failing.fail_next(status=404, times=1000)
    slow.fail_next(status=200, delay=3, times=1000)

    # the CLI validates (resolving the references) and sends, with debug logging
    assert cli(["validate", str(config_path), *aws_flags], env, tmp_path / "validate") == 0
    cli(["match", "--config", str(config_path), "--send", str(events_path), *aws_flags], env, tmp_path / "match")
    # a reference that cannot be resolved: its error names the reference, never a value
    broken = tmp_path / "broken.toml"
    broken.write_text(config_path.read_text().replace("ssm:/leaktest/hmac", "ssm:/leaktest/missing"))
    assert cli(["validate", str(broken), *aws_flags], env, tmp_path / "validate-broken") != 0

    # in this process: a pipeline under a fast policy (timeouts, refused, 404), a hot reload that refreshes the
    # references, and the KCL processor on a batch
    resolver = SecretResolver(aws, os.environ)
    config = load_config(str(config_path), aws, resolver=resolver)
    pipeline = Pipeline.build(config, aws=aws, dead_letters=SQLiteDeadLetterStore(str(tmp_path / "dl.sqlite3")))
    assert pipeline.deliverer is not None
    policy = DeliveryPolicy.immediate(max_attempts=2, timeout=0.5)
    pipeline.deliverer = AlertDeliverer(pipeline.deliverer.destinations, policy)
    ticks = iter(range(0, 10**6, 10))  # every look at the clock is 10 s later: each poll is due
    watcher = ConfigWatcher(str(config_path), aws, resolver, interval_seconds=1, clock=lambda: next(ticks))
    config_path.write_text(config_path.read_text() + "\n# edited\n")
    os.utime(config_path, ns=(1_800_000_000 * 10**9, 1_800_000_000 * 10**9))
    assert watcher.apply(pipeline)
    pipeline.deliverer = AlertDeliverer(pipeline.deliverer.destinations, policy)
    stream = io.StringIO()
    metrics = ShardMetrics("w1", log_interval_seconds=0.001, stream=stream)
    processor = KclRecordProcessor(pipeline, watcher=watcher, metrics=metrics)
    processor.initialize(type("Init", (), {"shard_id": "shardId-000000000000", "sequence_number": "0"})())
    processor.process_records(ProcessRecordsInput([KinesisRecord(encode_subscription_record(events), "1")]))
    pipeline.close()
    logging.getLogger("stream_processor.test").debug("shard metrics: %s", stream.getvalue())


def test_no_secret_reaches_any_log_line_output_or_file(
    moto_server: AwsSettings,
    receivers: tuple[SlackReceiver, SlackReceiver, SlackReceiver],
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN distinctive secrets in env, SSM and Secrets Manager, pointing at local receivers
    ok, failing, slow = receivers
    secrets = Secrets(ok, failing, slow, moto_server)  # stored before the capture: that is the test's own doing
    capfd.readouterr()

    # WHEN every path that handles them runs with debug logging
    with capture_everything() as capture:
        run_everything(secrets, moto_server, receivers, tmp_path, monkeypatch)
    out, err = capfd.readouterr()

    # THEN the secrets were used (deliveries happened) and failures were logged ...
    assert any(post.status == 200 and "/hook/" in post.path for post in ok.received)
    assert any("pagerduty" in post.path for post in ok.received)
    assert {post.status for post in failing.received} >= {500, 404}
    assert any("delivery of rule" in line for line in capture.lines)

    # ... but no secret value is in any log record, in stdout/stderr, or in any file the runs wrote
    texts: dict[str, str] = {"log records": "\n".join(capture.lines), "stdout": out, "stderr": err}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".toml":  # the rule files hold references, by design
            texts[str(path.relative_to(tmp_path))] = path.read_bytes().decode("utf-8", errors="replace")
    assert len(capture.lines) > 50  # debug logging was really on
    assert "urllib3" in texts["log records"] and "botocore" in texts["log records"]
    assert "DEBUG botocore" in texts["match.err"]
    leaks = [
        f"{where}: ...{text[max(0, text.index(value) - 120) : text.index(value) + 40]!r}..."
        for value in secrets.values()
        for where, text in texts.items()
        if value in text
    ]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
