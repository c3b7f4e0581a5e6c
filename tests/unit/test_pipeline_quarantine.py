"""A rule that keeps overrunning its time budget: one operator alert, counted, and it stays off across a reload."""

from __future__ import annotations

from typing import Any

import orjson

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.config import Config, DestinationConfig, Rule
from stream_processor.matcher import FastMatcher
from stream_processor.matcher.budget import RuleBudget
from stream_processor.metrics import BatchCounts, ShardMetrics
from stream_processor.model import Position, RawRecord
from stream_processor.pipeline import Pipeline
from tests.support.fakes import RecordingDestination

SLOW = Rule(
    "Quadratic", "[.a[] as $x | .a[] | select(. == $x)] | length > 0", "", ("slack",), 1, runbook="https://wiki/q"
)
NAMED = Rule("Create AccessKey", 'select(.eventName == "CreateAccessKey")', "", ("slack", "sns"), 2)
CONFIG = Config((SLOW, NAMED), (DestinationConfig("slack", "recording"), DestinationConfig("sns", "recording")))
BUDGET = RuleBudget(budget_ms=20, quarantine_after=2)


def _record(count: int, sequence: str) -> RawRecord:
    events = [
        {
            "eventVersion": "1.08",
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey",
            "eventID": f"{sequence}-{i}",
            "a": list(range(4_000)),
        }
        for i in range(count)
    ]
    return RawRecord(b"\n".join(orjson.dumps(e) for e in events), Position("shardId-0", sequence))


def _pipeline(destinations: dict[str, RecordingDestination]) -> Pipeline:
    deliverer = AlertDeliverer(dict(destinations), DeliveryPolicy.immediate())
    pipeline = Pipeline(CONFIG, FastMatcher(CONFIG.rules, BUDGET), deliverer)
    pipeline.rule_budget = BUDGET
    return pipeline


def test_a_quarantined_rule_sends_one_alert_to_its_destinations_and_the_shard_moves_on() -> None:
    destinations = {d.id: RecordingDestination(d) for d in CONFIG.destinations}
    pipeline = _pipeline(destinations)
    try:
        first = pipeline.process_records([_record(3, "1")])
        second = pipeline.process_records([_record(3, "2")])
    finally:
        pipeline.close()

    assert first.complete and second.complete
    assert [q.rule_name for q in first.matched.quarantined] == ["Quadratic"]
    assert second.matched.quarantined == []
    notices = [a for a in destinations["slack"].sent if a.rule_name == "Quadratic [quarantined]"]
    assert len(notices) == 1  # one alert, to the rule's own destination only
    (notice,) = notices
    assert notice.title == "Rule quarantined: Quadratic"
    assert "time budget" in notice.output and "disabled" in notice.output
    assert notice.runbook == "https://wiki/q"
    assert not any(a.rule_name.endswith("[quarantined]") for a in destinations["sns"].sent)
    # The other rule matched every event of both batches.
    assert [a.event.event_id for a in destinations["sns"].sent] == [f"{s}-{i}" for s in "12" for i in range(3)]

    counts: Any = BatchCounts.of(first, records=1)
    assert counts.quarantined == {"Quadratic": 1}
    metrics = ShardMetrics("w", log_interval_seconds=0)
    metrics.observe(first, records=1, seconds=0.1, millis_behind=None)
    assert metrics.summary()["rules_quarantined"] == 1
    assert metrics.registry.get_sample_value(
        "stream_processor_rules_quarantined_total", {"worker": "w", "shard": "-", "rule": "Quadratic"}
    ) == 1


def test_a_reload_keeps_the_rule_quarantined_unless_its_program_changed() -> None:
    pipeline = Pipeline(CONFIG, FastMatcher(CONFIG.rules, BUDGET), None)  # a dry run: alerts are not needed here
    pipeline.rule_budget = BUDGET
    try:
        pipeline.process_records([_record(2, "1")])
        assert pipeline.matcher.quarantined_rules == {"Quadratic": SLOW.jq_match}

        pipeline.reconfigure(CONFIG)  # the same file again
        assert pipeline.matcher.quarantined_rules == {"Quadratic": SLOW.jq_match}
        assert pipeline.process_records([_record(1, "2")]).matched.errors == []

        fixed = Rule("Quadratic", "(.a | length) > 0", "", ("slack",), 1)
        pipeline.reconfigure(Config((fixed, NAMED), CONFIG.destinations))
        assert pipeline.matcher.quarantined_rules == {}
        outcome = pipeline.process_records([_record(1, "3")])
        assert sorted(m.rule_name for m in outcome.matched.matches) == ["Create AccessKey", "Quadratic"]
    finally:
        pipeline.close()
