"""Hot reload: a changed rule file is applied between batches, a broken one is refused, an unchanged one is left."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream_processor.aws import AwsSettings
from stream_processor.config import load_config
from stream_processor.local.receiver import SlackReceiver
from stream_processor.model import Alert, Position, RawRecord
from stream_processor.pipeline import Pipeline
from stream_processor.reload import ConfigWatcher
from stream_processor.secrets import SecretResolver
from tests.support.fakes import FakeClock

RULE = """\
[[rule]]
name = "{name}"
jq_match = 'select(.eventName == "{event}")'
destinations = ["Audit"]
"""
DESTINATION = """\
[[destination]]
id = "Audit"
type = "slack_webhook"
webhook_url = "{url}"
"""
BROKEN = """\
[[rule]]
name = "Broken"
jq_match = 'select(.eventName == '
destinations = ["Nowhere"]
"""


def rules(*pairs: tuple[str, str], url: str = "https://hooks.slack.invalid/services/T/B/x") -> str:
    return "".join(RULE.format(name=name, event=event) for name, event in pairs) + DESTINATION.format(url=url)


def write(path: Path, text: str, mtime: int) -> None:
    """Write and give the file a distinct mtime (two writes within a clock tick look alike otherwise)."""
    path.write_text(text)
    os.utime(path, ns=(mtime * 1_000_000_000, mtime * 1_000_000_000))


def batch(*names: str) -> list[RawRecord]:
    data = b"\n".join(
        orjson.dumps(
            {"eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": name, "eventID": f"id-{i}-{name}"}
        )
        for i, name in enumerate(names)
    )
    return [RawRecord(data, Position("shardId-000000000000", "1"))]


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    write(path, rules(("Create AccessKey", "CreateAccessKey")), 1_700_000_000)
    return path


@pytest.fixture
def dry_run(rule_file: Path) -> tuple[Pipeline, list[Alert]]:
    alerts: list[Alert] = []
    return Pipeline.build(load_config(str(rule_file)), send=False, alert_sink=alerts.append), alerts


def test_a_good_change_is_applied_between_batches(rule_file: Path, dry_run: tuple[Pipeline, list[Alert]]) -> None:
    pipeline, alerts = dry_run
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(rule_file), interval_seconds=10, clock=clock)
    pipeline.process_records(batch("CreateAccessKey", "StopLogging"))
    assert [a.rule_name for a in alerts] == ["Create AccessKey"]

    # WHEN a rule is added to the file and the interval has passed
    write(rule_file, rules(("Create AccessKey", "CreateAccessKey"), ("Stop Logging", "StopLogging")), 1_700_000_100)
    clock.now += 11
    assert watcher.apply(pipeline)

    # THEN the next batch matches the new rule too
    alerts.clear()
    pipeline.process_records(batch("CreateAccessKey", "StopLogging"))
    assert sorted(a.rule_name for a in alerts) == ["Create AccessKey", "Stop Logging"]
    assert watcher.reloads == 1


def test_a_change_waits_for_the_interval(rule_file: Path, dry_run: tuple[Pipeline, list[Alert]]) -> None:
    pipeline, _ = dry_run
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(rule_file), interval_seconds=10, clock=clock)
    write(rule_file, rules(("Stop Logging", "StopLogging")), 1_700_000_100)
    clock.now += 5
    assert not watcher.apply(pipeline)
    assert [rule.name for rule in pipeline.config.rules] == ["Create AccessKey"]
    clock.now += 6
    assert watcher.apply(pipeline)
    assert [rule.name for rule in pipeline.config.rules] == ["Stop Logging"]


def test_a_broken_change_is_refused_with_its_problems_and_the_last_good_config_keeps_running(
    rule_file: Path, dry_run: tuple[Pipeline, list[Alert]], caplog: pytest.LogCaptureFixture
) -> None:
    pipeline, alerts = dry_run
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(rule_file), interval_seconds=10, clock=clock)
    write(rule_file, BROKEN + DESTINATION.format(url="https://hooks.slack.invalid/x"), 1_700_000_100)
    clock.now += 11
    with caplog.at_level(logging.ERROR, logger="stream_processor.reload"):
        assert not watcher.apply(pipeline)

    refused = [r.getMessage() for r in caplog.records if "config reload rejected" in r.getMessage()]
    assert any("2 problem(s)" in line or "problem(s)" in line for line in refused)
    assert any("Broken" in line and "jq" in line.lower() for line in refused), refused
    assert any("Nowhere" in line for line in refused), refused
    assert all("\n" not in line for line in refused)  # one line per problem
    assert watcher.rejections == 1
    pipeline.process_records(batch("CreateAccessKey"))
    assert [a.rule_name for a in alerts] == ["Create AccessKey"]  # the last good rules still match

    # AND the same broken version is not reported again on the next poll
    caplog.clear()
    clock.now += 11
    with caplog.at_level(logging.ERROR, logger="stream_processor.reload"):
        assert not watcher.apply(pipeline)
    assert not caplog.records

    # AND a fixed file is applied again
    write(rule_file, rules(("Stop Logging", "StopLogging")), 1_700_000_200)
    clock.now += 11
    assert watcher.apply(pipeline)
    assert [rule.name for rule in pipeline.config.rules] == ["Stop Logging"]


def test_a_rule_too_deep_for_the_checks_is_refused_and_the_worker_keeps_its_rules(
    rule_file: Path, dry_run: tuple[Pipeline, list[Alert]], caplog: pytest.LogCaptureFixture
) -> None:
    # A 600-deep string interpolation made the checks raise RecursionError, which escaped the reload.
    program = "1"
    for _ in range(600):
        program = '"\\(' + program + ')"'
    pipeline, alerts = dry_run
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(rule_file), interval_seconds=10, clock=clock)
    deep = RULE.format(name="Deep", event="x").replace('select(.eventName == "x")', program)
    write(rule_file, deep + DESTINATION.format(url="https://hooks.slack.invalid/x"), 1_700_000_100)
    clock.now += 11

    with caplog.at_level(logging.ERROR, logger="stream_processor.reload"):
        assert not watcher.apply(pipeline)

    assert any('rule #1 "Deep"' in r.getMessage() and "nested too deeply" in r.getMessage() for r in caplog.records)
    pipeline.process_records(batch("CreateAccessKey"))
    assert [a.rule_name for a in alerts] == ["Create AccessKey"]


def test_an_unchanged_or_only_touched_file_is_not_reloaded(
    rule_file: Path, dry_run: tuple[Pipeline, list[Alert]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = dry_run
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(rule_file), interval_seconds=10, clock=clock)
    loads: list[str] = []
    monkeypatch.setattr("stream_processor.reload.load_config", lambda *a, **k: loads.append("load"))
    clock.now += 11
    assert not watcher.apply(pipeline)
    os.utime(rule_file, ns=(1_700_000_500 * 10**9, 1_700_000_500 * 10**9))  # touched, same bytes
    clock.now += 11
    assert not watcher.apply(pipeline)
    assert loads == []
    assert watcher.reloads == 0


def test_zero_interval_disables_reload(rule_file: Path, dry_run: tuple[Pipeline, list[Alert]]) -> None:
    pipeline, _ = dry_run
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(rule_file), interval_seconds=0, clock=clock)
    write(rule_file, rules(("Stop Logging", "StopLogging")), 1_700_000_100)
    clock.now += 1000
    assert not watcher.apply(pipeline)
    assert [rule.name for rule in pipeline.config.rules] == ["Create AccessKey"]


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as server:
        yield server


def test_reload_swaps_destinations_and_refreshes_secret_references(tmp_path: Path, receiver: SlackReceiver) -> None:
    # GIVEN a running pipeline whose webhook URL comes from an env: reference
    base = f"http://127.0.0.1:{receiver.port}"
    environ = {"AUDIT_HOOK": f"{base}/first"}
    resolver = SecretResolver(None, environ)
    path = tmp_path / "rules.toml"
    write(path, rules(("Create AccessKey", "CreateAccessKey"), url="env:AUDIT_HOOK"), 1_700_000_000)
    pipeline = Pipeline.build(load_config(str(path), resolver=resolver))
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(str(path), resolver=resolver, interval_seconds=1, clock=clock)
    pipeline.process_records(batch("CreateAccessKey"))

    # WHEN the secret changes and the file changes (a new rule)
    environ["AUDIT_HOOK"] = f"{base}/second"
    write(path, rules(("Create AccessKey", "CreateAccessKey"), ("Stop Logging", "StopLogging"), url="env:AUDIT_HOOK"),
          1_700_000_100)  # fmt: skip
    clock.now += 2
    assert watcher.apply(pipeline)
    outcome = pipeline.process_records(batch("StopLogging"))

    # THEN the new alert went to the new URL, through the new destination
    assert outcome.complete
    assert [post.path for post in receiver.received if post.status == 200] == ["/first", "/second"]
    pipeline.close()


def test_s3_object_change_is_seen_by_its_etag(moto_server: AwsSettings) -> None:
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="reload-rules")
    s3.put_object(Bucket="reload-rules", Key="rules.toml", Body=rules(("Create AccessKey", "CreateAccessKey")).encode())
    location = "s3://reload-rules/rules.toml"
    alerts: list[Alert] = []
    pipeline = Pipeline.build(load_config(location, moto_server), send=False, alert_sink=alerts.append)
    clock = FakeClock(1000.0)
    watcher = ConfigWatcher(location, moto_server, interval_seconds=10, clock=clock)

    clock.now += 11
    assert not watcher.apply(pipeline)  # same ETag: nothing to do

    s3.put_object(Bucket="reload-rules", Key="rules.toml", Body=BROKEN.encode())
    clock.now += 11
    assert not watcher.apply(pipeline)
    assert watcher.rejections == 1

    s3.put_object(Bucket="reload-rules", Key="rules.toml", Body=rules(("Stop Logging", "StopLogging")).encode())
    clock.now += 11
    assert watcher.apply(pipeline)
    pipeline.process_records(batch("CreateAccessKey", "StopLogging"))
    assert [a.rule_name for a in alerts] == ["Stop Logging"]
