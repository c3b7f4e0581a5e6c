"""The pipeline's batch contract: alerts per rule destination, dedupe by rule + eventID, failures reported."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.destinations.stdout import StdoutDestination
from stream_processor.alerts.storm import SQLiteStormStore, StormPolicy
from stream_processor.config import Config, DestinationConfig, Rule
from stream_processor.dead_letters import SQLiteDeadLetterStore
from stream_processor.dedupe import MemoryDedupeStore
from stream_processor.matcher import LibjqMatcher, build_matcher
from stream_processor.model import Alert, Position, RawRecord
from stream_processor.pipeline import Pipeline
from tests.support.fakes import RecordingDestination

RULES = (
    Rule("Create AccessKey", 'select(.eventName == "CreateAccessKey")', "new key", ("slack", "sns"), 1),
    Rule(
        "Stop Logging", 'select(.eventName == "StopLogging") | "trail \\(.requestParameters.name)"', "", ("slack",), 2
    ),
)
CONFIG = Config(RULES, (DestinationConfig("slack", "recording"), DestinationConfig("sns", "recording")))


def event(name: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": name, "eventID": event_id, **extra}


def record(*events: dict[str, Any], sequence: str = "1") -> RawRecord:
    data = b"\n".join(orjson.dumps(e) for e in events)
    return RawRecord(data, Position("shardId-000000000000", sequence))


@pytest.fixture
def destinations() -> dict[str, RecordingDestination]:
    return {d.id: RecordingDestination(d) for d in CONFIG.destinations}


def build(destinations: dict[str, RecordingDestination], **kwargs: Any) -> Pipeline:
    deliverer = AlertDeliverer(dict(destinations), DeliveryPolicy.immediate())
    return Pipeline(CONFIG, LibjqMatcher(RULES), deliverer, **kwargs)


def test_each_match_goes_to_each_of_its_rules_destinations(destinations: dict[str, RecordingDestination]) -> None:
    pipeline = build(destinations)
    outcome = pipeline.process_records(
        [
            record(
                event("CreateAccessKey", "e1"),
                event("ListUsers", "e2"),
                event("StopLogging", "e3", requestParameters={"name": "org-trail"}),
            )
        ]
    )
    assert outcome.complete
    assert [a.event.event_id for a in destinations["slack"].sent] == ["e1", "e3"]
    assert [a.event.event_id for a in destinations["sns"].sent] == ["e1"]
    assert destinations["slack"].sent[1].output == "trail org-trail"


def test_a_replayed_batch_sends_nothing_twice(destinations: dict[str, RecordingDestination]) -> None:
    pipeline = build(destinations, ledger=MemoryDedupeStore())
    batch = [record(event("CreateAccessKey", "e1"))]
    pipeline.process_records(batch)
    again = pipeline.process_records(batch)
    assert again.complete and again.duplicates == 2
    assert len(destinations["slack"].sent) == 1 and len(destinations["sns"].sent) == 1


def test_the_same_event_id_twice_in_one_batch_alerts_once(destinations: dict[str, RecordingDestination]) -> None:
    pipeline = build(destinations, ledger=MemoryDedupeStore())
    pipeline.process_records([record(event("CreateAccessKey", "dup")), record(event("CreateAccessKey", "dup"))])
    assert len(destinations["slack"].sent) == 1


def test_a_failed_destination_is_reported_and_retried_alone(destinations: dict[str, RecordingDestination]) -> None:
    # GIVEN SNS rejects the alert while Slack takes it
    destinations["sns"].fail = True
    pipeline = build(destinations, ledger=MemoryDedupeStore())
    batch = [record(event("CreateAccessKey", "e1"))]
    outcome = pipeline.process_records(batch)
    # THEN the batch is not complete and says why
    assert not outcome.complete
    assert [r.destination_id for r in outcome.failed] == ["sns"]
    assert "rejected" in outcome.failed[0].reason
    # WHEN the batch is retried after SNS recovers, Slack gets no second copy
    destinations["sns"].fail = False
    retried = pipeline.process_records(batch)
    assert retried.complete
    assert len(destinations["slack"].sent) == 1 and len(destinations["sns"].sent) == 1


def test_bad_records_are_reported_and_the_rest_still_match(destinations: dict[str, RecordingDestination]) -> None:
    pipeline = build(destinations)
    outcome = pipeline.process_records(
        [RawRecord(b"\x1f\x8bnot gzip", Position("s", "1")), record(event("CreateAccessKey", "e9"), sequence="2")]
    )
    assert len(outcome.decoded.malformed) == 1
    assert outcome.decoded.malformed[0].position.sequence == "1"
    assert [a.event.event_id for a in outcome.alerts] == ["e9"]


def test_dry_run_sends_nothing_and_hands_alerts_to_the_sink() -> None:
    seen: list[Alert] = []
    pipeline = Pipeline(CONFIG, LibjqMatcher(RULES), None, alert_sink=seen.append)
    outcome = pipeline.process_records([record(event("CreateAccessKey", "e1"))])
    assert outcome.complete and outcome.deliveries == []
    assert [a.rule_name for a in seen] == ["Create AccessKey"]


# --- hostile outputs and events ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        pytest.param('select(.eventName == "CreateAccessKey") | 1e20', id="integer-beyond-64-bits"),
        pytest.param('select(.eventName == "CreateAccessKey") | {n: pow(2; 80), x: [range(3)]}', id="big-in-object"),
        pytest.param('select(.eventName == "CreateAccessKey") | reduce range(600) as $i (.; [.])', id="600-deep"),
    ],
)
def test_any_output_is_printed_delivered_and_parked(tmp_path: Path, program: str) -> None:
    rule = Rule("odd output", program, "", ("out", "broken"), 1)
    config = Config((rule,), (DestinationConfig("out", "stdout"), DestinationConfig("broken", "recording")))
    stdout = StdoutDestination(config.destinations[0])
    stdout.stream = io.StringIO()
    broken = RecordingDestination(config.destinations[1], fail=True)
    deliverer = AlertDeliverer({"out": stdout, "broken": broken}, DeliveryPolicy.immediate())
    store = SQLiteDeadLetterStore(tmp_path / "dead.sqlite3")
    pipeline = Pipeline(config, LibjqMatcher((rule,)), deliverer, ledger=MemoryDedupeStore(), dead_letters=store)

    outcome = pipeline.process_records([record(event("CreateAccessKey", "e1"))])

    assert outcome.complete
    assert [result.delivered for result in outcome.deliveries] == [True, False]
    printed = json.loads(stdout.stream.getvalue())  # type: ignore[union-attr]
    [letter] = store.list()
    assert letter.output == printed["output"] == outcome.alerts[0].output


def test_an_event_without_event_id_is_not_sent_again_when_its_batch_is_replayed(
    destinations: dict[str, RecordingDestination],
) -> None:
    pipeline = build(destinations, ledger=MemoryDedupeStore())
    no_id = {key: value for key, value in event("CreateAccessKey", "").items() if key != "eventID"}
    other = {**no_id, "userAgent": "another call"}
    batch = [record(no_id, other)]

    pipeline.process_records(batch)
    replay = pipeline.process_records(batch)

    assert len(destinations["slack"].sent) == 2  # two different events: two alerts, not collapsed into one
    assert replay.duplicates == 4  # both events, to both destinations


def test_title_and_group_by_run_on_an_event_nested_past_pythons_recursion_limit(tmp_path: Path) -> None:
    data = {**event("CreateAccessKey", "deep"), "requestParameters": {"x": "DEEP"}}
    text = json.dumps(data).replace('"DEEP"', "[" * 1_010 + "]" * 1_010)
    rule = Rule(
        "deep", 'select(.eventName == "CreateAccessKey")', "", ("out",), 1,
        title='"key for \\(.requestParameters.x | length)"', group_by=".requestParameters.x",
    )  # fmt: skip
    config = Config((rule,), (DestinationConfig("out", "recording"),))
    out = RecordingDestination(config.destinations[0])
    storm = SQLiteStormStore(tmp_path / "storm.sqlite3", StormPolicy())
    pipeline = Pipeline(config, build_matcher((rule,)), AlertDeliverer({"out": out}, DeliveryPolicy.immediate()),
                        storm=storm)  # fmt: skip

    outcome = pipeline.process_records([RawRecord(text.encode(), Position("s", "1"))])

    assert outcome.complete and [alert.title for alert in out.sent] == ["key for 1"]
