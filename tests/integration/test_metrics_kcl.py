"""Metrics of a running `consume` (the real KCL daemon, one process per shard) on the local stack: one /metrics
endpoint with every shard's counters, and JSON lines on the processors' stderr that add up to the same."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from stream_processor.local.stack import LocalStack

# The KCL consumer's own fixtures and helpers: workers run `consume` as separate processes.
from tests.integration.test_kcl_consumer import (  # noqa: F401 - fixtures are used by name
    Inbox,
    config_path,
    inbox,
    produce,
    receiver,
    start_worker,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

METRICS_URL = re.compile(r"serving metrics of every shard process on (http://127\.0\.0\.1:\d+/metrics)")
SHARDS = {"shardId-000000000000", "shardId-000000000001"}


def scrape(url: str) -> dict[str, Counter[tuple[tuple[str, str], ...]]]:
    """Sample name -> {sorted labels: value}."""
    samples: dict[str, Counter[tuple[tuple[str, str], ...]]] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            samples.setdefault(sample.name, Counter())[tuple(sorted(sample.labels.items()))] += sample.value
    return samples


def by(samples: dict[str, Counter[tuple[tuple[str, str], ...]]], name: str, label: str) -> Counter[str]:
    """One label's values of a sample, summed over the other labels."""
    total: Counter[str] = Counter()
    for labels, value in samples.get(name, Counter()).items():
        total[dict(labels)[label]] += value
    return total


def json_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            parsed = json.loads(line)  # prefix-free: the whole line is the object
            if parsed.get("type") == "shard_metrics":
                lines.append(parsed)
    return lines


def test_consume_serves_metrics_of_every_shard_process_and_logs_them_as_json(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    inbox: Inbox,  # noqa: F811 - the fixtures imported above
    start_worker: Any,  # noqa: F811
) -> None:
    # GIVEN a 2-shard stream with 200 events, 6 of them seed triggers
    stream, application = new_stream(2), unique("app")
    produced = produce(local_stack, stream, background=194, triggers=6, seed=91)

    # WHEN one worker consumes it with /metrics on a free port and JSON lines every second
    worker = start_worker(stream, application, "w1", extra=["--metrics-port", "0", "--metrics-log-seconds", "1"])
    wait_for("the metrics endpoint", lambda: METRICS_URL.search(worker.log()) is not None, [worker])
    match = METRICS_URL.search(worker.log())
    assert match is not None
    url = match.group(1)
    wait_for("every event", lambda: inbox.count() >= len(produced.event_ids), [worker])
    wait_for(
        "the events counted on /metrics",
        lambda: sum(by(scrape(url), "stream_processor_events_total", "shard").values()) >= len(produced.event_ids),
        [worker],
    )

    # THEN /metrics has the events per shard (both shards, one process each) and the matches per rule
    samples = scrape(url)
    events = by(samples, "stream_processor_events_total", "shard")
    assert set(events) == SHARDS and all(events[shard] > 0 for shard in SHARDS)
    assert sum(events.values()) == len(produced.event_ids)
    assert set(by(samples, "stream_processor_events_total", "worker")) == {"w1"}
    matches = by(samples, "stream_processor_matches_total", "rule")
    assert matches["Every event"] == len(produced.event_ids)
    assert matches["Create AccessKey"] + matches["SSM Start Session"] == len(produced.trigger_ids)
    assert set(by(samples, "stream_processor_matches_total", "shard")) == SHARDS
    delivered = by(samples, "stream_processor_alerts_delivered_total", "destination")
    assert delivered["All"] == len(produced.event_ids)
    assert delivered["Slack Audit"] == len(produced.trigger_ids)
    assert set(by(samples, "stream_processor_millis_behind_latest", "shard")) == SHARDS
    assert sum(by(samples, "stream_processor_batch_seconds_count", "shard").values()) > 0

    # AND the JSON lines on stderr add up to the same counts
    wait_for(
        "JSON lines with every event",
        lambda: sum(line["events"] for line in json_lines(worker.log())) >= len(produced.event_ids),
        [worker],
    )
    lines = json_lines(worker.log())
    assert {line["shard"] for line in lines if line["events"]} == SHARDS
    assert sum(line["events"] for line in lines) == len(produced.event_ids)
    assert sum(line["matches"].get("Every event", 0) for line in lines) == len(produced.event_ids)
    assert worker.stop() == 0
