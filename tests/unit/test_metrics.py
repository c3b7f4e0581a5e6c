"""Metrics: the counters a batch outcome adds, the JSON line, and one /metrics over many shard processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations.base import Destination
from stream_processor.config import Config, DestinationConfig, Rule
from stream_processor.dead_letters import SQLiteDeadLetterStore
from stream_processor.errors import PermanentDeliveryError, RetryableDeliveryError
from stream_processor.matcher import LibjqMatcher
from stream_processor.metrics import BatchCounts, MetricsServer, ShardMetrics, prepare_multiprocess_dir
from stream_processor.model import Alert, Position, RawRecord
from stream_processor.pipeline import BatchOutcome, Pipeline
from tests.conftest import REPO_ROOT
from tests.support.kclpy_inputs import KinesisRecord, ProcessRecordsInput, RecordingCheckpointer

RULES = (
    Rule("Create AccessKey", 'select(.eventName == "CreateAccessKey")', "", ("flaky",), 1),
    Rule("Stop Logging", 'select(.eventName == "StopLogging")', "", ("broken",), 2),
)
CONFIG = Config(RULES, (DestinationConfig("flaky", "scripted"), DestinationConfig("broken", "scripted")))


class ScriptedDestination(Destination):
    """Fails `retryable` times with a retryable error, then succeeds; or always fails permanently."""

    TYPE: ClassVar[str] = "scripted"

    def __init__(self, config: DestinationConfig, retryable: int = 0, permanent: bool = False) -> None:
        super().__init__(config)
        self.retryable = retryable
        self.permanent = permanent

    def _send(self, alert: Alert) -> None:
        if self.permanent:
            raise PermanentDeliveryError("rejected")
        if self.retryable > 0:
            self.retryable -= 1
            raise RetryableDeliveryError("busy")


def events(*names: str) -> list[RawRecord]:
    lines = [
        orjson.dumps({"eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": n, "eventID": f"e{i}"})
        for i, n in enumerate(names)
    ]
    return [
        RawRecord(b"\n".join(lines), Position("shardId-000000000001", "7")),
        RawRecord(b"\x00junk", Position("s", "8")),
    ]


@pytest.fixture
def outcome(tmp_path: Path) -> BatchOutcome:
    destinations = {
        "flaky": ScriptedDestination(CONFIG.destinations[0], retryable=2),
        "broken": ScriptedDestination(CONFIG.destinations[1], permanent=True),
    }
    deliverer = AlertDeliverer(destinations, DeliveryPolicy.immediate(max_attempts=5))
    pipeline = Pipeline(
        CONFIG, LibjqMatcher(RULES), deliverer, dead_letters=SQLiteDeadLetterStore(str(tmp_path / "dl.sqlite3"))
    )
    result = pipeline.process_records(events("CreateAccessKey", "CreateAccessKey", "StopLogging", "ListUsers"))
    pipeline.close()
    return result


def test_batch_counts_from_an_outcome(outcome: BatchOutcome) -> None:
    counts = BatchCounts.of(outcome, records=2)
    assert (counts.records, counts.events, counts.malformed) == (2, 4, 1)
    assert counts.matches == {"Create AccessKey": 2, "Stop Logging": 1}
    assert counts.delivered == {"flaky": 2}
    assert counts.retried == {"flaky": 2}  # the first alert took three attempts
    assert counts.failed == {"broken": 1}
    assert counts.dead_lettered == {"broken": 1}
    assert counts.inputs_parked == 1


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_shard_metrics_count_per_worker_shard_rule_and_destination(outcome: BatchOutcome) -> None:
    metrics = ShardMetrics("w1", log_interval_seconds=0)
    metrics.hold("shardId-000000000001")
    metrics.observe(outcome, records=2, seconds=0.02, millis_behind=1500)
    metrics.observe(outcome, records=2, seconds=0.03, millis_behind=0)
    r, ws = metrics.registry, {"worker": "w1", "shard": "shardId-000000000001"}
    assert sample(r, "stream_processor_events_total", **ws) == 8
    assert sample(r, "stream_processor_malformed_total", **ws) == 2
    assert sample(r, "stream_processor_matches_total", **ws, rule="Create AccessKey") == 4
    assert sample(r, "stream_processor_matches_total", **ws, rule="Stop Logging") == 2
    assert sample(r, "stream_processor_alerts_delivered_total", **ws, destination="flaky") == 4
    assert sample(r, "stream_processor_alerts_retried_total", **ws, destination="flaky") == 4
    assert sample(r, "stream_processor_alerts_failed_total", **ws, destination="broken") == 2
    assert sample(r, "stream_processor_alerts_dead_lettered_total", **ws, destination="broken") == 2
    assert sample(r, "stream_processor_millis_behind_latest", **ws) == 0
    assert sample(r, "stream_processor_batch_seconds_count", **ws) == 2


def test_json_line_is_one_parseable_object_with_the_window_counters(outcome: BatchOutcome) -> None:
    now = [0.0]
    stream = io.StringIO()
    metrics = ShardMetrics("w1", log_interval_seconds=30, stream=stream, clock=lambda: now[0])
    metrics.hold("shardId-000000000001")
    metrics.observe(outcome, records=2, seconds=0.25, millis_behind=1200)
    assert stream.getvalue() == ""  # not due yet
    now[0] = 31.0
    metrics.observe(outcome, records=2, seconds=0.5, millis_behind=900)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["type"] == "shard_metrics"
    assert (line["worker"], line["shard"]) == ("w1", "shardId-000000000001")
    assert (line["events"], line["malformed"], line["batches"]) == (8, 2, 2)
    assert line["matches"] == {"Create AccessKey": 4, "Stop Logging": 2}
    assert (line["alerts_delivered"], line["alerts_retried"], line["alerts_failed"]) == (4, 4, 2)
    assert line["alerts_dead_lettered"] == 2
    assert line["millis_behind_latest"] == 900
    assert line["batch_ms_max"] == 500
    # the next window starts from zero
    now[0] = 62.0
    metrics.observe(outcome, records=2, seconds=None, millis_behind=None)
    assert json.loads(stream.getvalue().splitlines()[1])["events"] == 4


WRITER = textwrap.dedent(
    """
    import sys
    from stream_processor.metrics import ShardMetrics, BatchCounts
    from collections import Counter
    metrics = ShardMetrics("w1", log_interval_seconds=0)
    metrics.hold(sys.argv[1])
    metrics.add(BatchCounts(records=1, events=int(sys.argv[2]), matches=Counter({"Create AccessKey": 1})), 0.01)
    metrics.behind.labels("w1", sys.argv[1]).set(250)
    """
)


def test_one_endpoint_serves_every_shard_process_and_drops_dead_gauges(tmp_path: Path) -> None:
    # GIVEN two shard processes (gone by now) that wrote their values to the multiprocess folder
    folder = prepare_multiprocess_dir(tmp_path / "metrics")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(REPO_ROOT)}
    for shard, count in (("shardId-000000000000", "5"), ("shardId-000000000001", "7")):
        subprocess.run([sys.executable, "-c", WRITER, shard, count], env=env, check=True, timeout=60)

    # WHEN /metrics is scraped
    server = MetricsServer(folder, "127.0.0.1", 0).start()
    try:
        text = requests.get(server.url, timeout=10).text
    finally:
        server.stop()

    # THEN each shard has its own labelled counters; the dead processes' live gauges are gone
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for shard, count in (("shardId-000000000000", 5), ("shardId-000000000001", 7)):
        assert samples[("stream_processor_events_total", (("shard", shard), ("worker", "w1")))] == count
        assert (
            samples[
                ("stream_processor_matches_total", (("rule", "Create AccessKey"), ("shard", shard), ("worker", "w1")))
            ]
            == 1
        )
    assert not any(name == "stream_processor_millis_behind_latest" for name, _ in samples)
    assert not list(folder.glob("gauge_live*"))


def test_the_kcl_processor_counts_each_batch_under_its_shard_with_the_lag(tmp_path: Path) -> None:
    from stream_processor.sources.kcl import KclRecordProcessor

    alerts: list[Alert] = []
    pipeline = Pipeline(CONFIG, LibjqMatcher(RULES), None, alert_sink=alerts.append)
    stream = io.StringIO()
    metrics = ShardMetrics("w7", log_interval_seconds=60, stream=stream)
    processor = KclRecordProcessor(pipeline, metrics=metrics, exit_process=lambda code: pytest.fail(f"exit {code}"))
    processor.initialize(type("Init", (), {"shard_id": "shardId-000000000003", "sequence_number": "0"})())
    data = events("CreateAccessKey", "StopLogging")[0].data
    processor.process_records(ProcessRecordsInput([KinesisRecord(data, "11")], millis_behind=4200))
    processor.process_records(ProcessRecordsInput([], millis_behind=0))  # an idle poll: the lag, no batch time

    r, ws = metrics.registry, {"worker": "w7", "shard": "shardId-000000000003"}
    assert sample(r, "stream_processor_events_total", **ws) == 2
    assert sample(r, "stream_processor_matches_total", **ws, rule="Stop Logging") == 1
    assert sample(r, "stream_processor_millis_behind_latest", **ws) == 0
    assert sample(r, "stream_processor_batch_seconds_count", **ws) == 1
    processor.shutdown_requested(type("Shutdown", (), {"checkpointer": RecordingCheckpointer()})())
    last = json.loads(stream.getvalue().splitlines()[-1])  # the last window is written when the shard goes
    assert (last["shard"], last["events"], last["batches"]) == ("shardId-000000000003", 2, 1)


def test_consume_passes_reload_and_metrics_settings_the_processor_understands() -> None:
    from stream_processor.kcl.processor import build_parser, command_line
    from stream_processor.wiring import MetricsSettings, Settings

    settings = Settings(metrics=MetricsSettings(worker_id="host-1", log_seconds=0.0))
    argv = command_line("rules.toml", settings, dry_run=False, reload_interval=2.5, verbose=False)
    parsed = build_parser().parse_args(argv[3:])  # after `python -m stream_processor.kcl.processor`
    assert (parsed.reload_interval, parsed.metrics_log_seconds, parsed.worker_id) == (2.5, 0.0, "host-1")
