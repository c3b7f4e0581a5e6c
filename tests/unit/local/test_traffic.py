"""The traffic generator: deterministic, CloudTrail-shaped, and matching the shipped rulesets a few percent."""

from __future__ import annotations

import gzip
import re
import tomllib
from collections import Counter

import orjson
import pytest

from stream_processor.config import Rule
from stream_processor.decode import decode_record
from stream_processor.local.traffic import (
    SCENARIOS,
    TrafficGenerator,
    control_message_record,
    pack_subscription_records,
    seed_triggers,
)
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import CloudTrailEvent, Position, RawRecord
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
SEED_RULES = (
    Rule("Create AccessKey", 'select(.eventName == "CreateAccessKey")'),
    Rule(
        "SSM Start Session",
        'select(.eventName == "StartSession") | '
        '"username: \\(.responseElements.sessionId) target: \\(.requestParameters.target)"',
    ),
)
REQUIRED = (
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
    "userAgent", "requestParameters", "responseElements", "requestID", "eventID", "readOnly", "eventType",
    "managementEvent", "recipientAccountId", "eventCategory", "tlsDetails",
)  # fmt: skip
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _rules(name: str) -> list[Rule]:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    document = tomllib.loads(path.read_text())
    return [Rule(rule["name"], rule["jq_match"]) for rule in document["rule"]]


def _share(rules: list[Rule], events: list[dict[str, object]]) -> float:
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("gen", str(i))) for i, e in enumerate(events)]
    result = LibjqMatcher(rules).match_batch(wrapped)
    assert not result.errors, result.errors[:3]
    return len({id(match.event) for match in result.matches}) / len(events)


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    assert TrafficGenerator(seed=7).generate_bytes(500) == TrafficGenerator(seed=7).generate_bytes(500)
    assert TrafficGenerator(seed=7).generate_bytes(50) != TrafficGenerator(seed=8).generate_bytes(50)


def test_events_have_cloudtrail_shape_and_size() -> None:
    events = TrafficGenerator(seed=3).generate(3000)
    sizes = sorted(len(orjson.dumps(event)) for event in events)
    assert 800 <= sizes[len(sizes) // 2] <= 2000
    assert sizes[0] >= 500 and sizes[-1] <= 8000
    for event in events:
        missing = [field for field in REQUIRED if field not in event]
        assert not missing, (missing, event)
        assert UUID.match(event["eventID"]), event["eventID"]
        assert TIME.match(event["eventTime"]), event["eventTime"]
        assert event["eventCategory"] in ("Management", "Data")
        assert event["userIdentity"]["type"] in ("IAMUser", "AssumedRole", "AWSService", "Root")
    assert len({event["eventID"] for event in events}) == len(events)
    assert [event["eventTime"] for event in events] == sorted(event["eventTime"] for event in events)


def test_reads_dominate_with_a_long_tail() -> None:
    events = TrafficGenerator(seed=4).generate(10_000)
    assert sum(1 for event in events if event["readOnly"]) > 0.75 * len(events)
    names = Counter(event["eventName"] for event in events)
    top_two = names.most_common(2)
    assert {name for name, _ in top_two} == {"AssumeRole", "Decrypt"}
    assert len(names) > 60
    identities = Counter(event["userIdentity"]["type"] for event in events)
    assert identities["AssumedRole"] > identities["IAMUser"] > 0 and identities["AWSService"] > 0


def test_match_rate_controls_the_share_of_interesting_events() -> None:
    labelled = TrafficGenerator(seed=5, match_rate=0.05).generate_labelled(10_000)
    share = sum(1 for item in labelled if item.scenario) / len(labelled)
    assert 0.04 < share < 0.06
    assert not any(item.scenario for item in TrafficGenerator(seed=5, match_rate=0.0).generate_labelled(2000))
    assert {item.scenario for item in TrafficGenerator(seed=5, match_rate=1.0).generate_labelled(3000)} == {
        scenario.name for scenario in SCENARIOS
    }


def test_seed_triggers_fire_both_seed_rules() -> None:
    events = seed_triggers(4)
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("t", str(i))) for i, e in enumerate(events)]
    matches = LibjqMatcher(SEED_RULES).match_batch(wrapped).matches
    assert [m.rule_name for m in matches] == ["Create AccessKey", "SSM Start Session"] * 2
    assert re.fullmatch(r"username: \S+-[a-z0-9]{26} target: i-0[0-9a-f]{16}", matches[1].output)


def test_seed_rules_match_a_small_positive_share() -> None:
    share = _share(list(SEED_RULES), TrafficGenerator(seed=6).generate(5000))
    assert 0.001 < share < 0.05


@pytest.mark.parametrize("ruleset", ["cis.toml", "rules60.toml"])
def test_shipped_rulesets_match_one_to_five_percent(ruleset: str) -> None:
    share = _share(_rules(ruleset), TrafficGenerator(seed=11).generate(1500))
    assert 0.01 <= share <= 0.05, share


def test_subscription_records_round_trip_in_order() -> None:
    messages = TrafficGenerator(seed=9).generate_bytes(400)
    records = pack_subscription_records(messages, per_record=(1, 100), seed=2)
    assert len(records) > 4
    unpacked: list[bytes] = []
    for record in records:
        payload = orjson.loads(gzip.decompress(record))
        assert payload["messageType"] == "DATA_MESSAGE"
        assert {"owner", "logGroup", "logStream", "subscriptionFilters"} <= payload.keys()
        assert 1 <= len(payload["logEvents"]) <= 100
        unpacked.extend(event["message"].encode() for event in payload["logEvents"])
    assert unpacked == messages
    assert len(pack_subscription_records(messages, per_record=50)) == 8
    assert orjson.loads(gzip.decompress(control_message_record()))["messageType"] == "CONTROL_MESSAGE"


def test_packed_records_decode_to_the_same_events() -> None:
    events = TrafficGenerator(seed=10).generate(300)
    records = pack_subscription_records(events, seed=1)
    decoded = [
        event.data
        for i, record in enumerate(records)
        for event in decode_record(RawRecord(record, Position("shard-0", str(i)))).events
    ]
    assert decoded == events
    assert decode_record(RawRecord(control_message_record(), Position("shard-0", "x"))).control_messages == 1
