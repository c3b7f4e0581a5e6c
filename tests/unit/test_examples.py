"""The shipped rulesets: they load, their jq compiles, CIS gives the metric filters' decisions, rules60 covers
the Stratus Red Team techniques."""

from __future__ import annotations

import json
import re
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jq
import orjson
import pytest

from stream_processor.config import Rule, load_config
from stream_processor.local.traffic import SCENARIOS, TrafficGenerator
from stream_processor.matcher import LibjqMatcher, Matcher, build_matcher
from stream_processor.model import CloudTrailEvent, Position
from tests.conftest import REPO_ROOT, corpus_path

EXAMPLES = REPO_ROOT / "examples"
TOML_FILES = sorted(EXAMPLES.glob("*.toml"))
# Written by `import-sigma`, which keeps Sigma's metadata in our extension keys (severity, tags, ...).
IMPORTED = {"sigma-cloudtrail.toml"}
Event = dict[str, Any]


def _rules(name: str) -> tuple[Rule, ...]:
    return load_config(str(EXAMPLES / name)).rules


def _matched(rules: Iterable[Rule], events: list[Event]) -> dict[str, list[int]]:
    """Rule name -> indexes of the events it matched (with tattletail's first-output semantics)."""
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("t", str(i))) for i, e in enumerate(events)]
    result = LibjqMatcher(list(rules)).match_batch(wrapped)
    hits: dict[str, list[int]] = defaultdict(list)
    for match in result.matches:
        hits[match.rule_name].append(int(match.event.position.sequence or 0))
    return hits


# --- every shipped file ----------------------------------------------------------------------------------


def test_the_shipped_rulesets_are_there() -> None:
    assert {"cis.toml", "rules60.toml"} <= {path.name for path in TOML_FILES}


@pytest.mark.parametrize("path", TOML_FILES, ids=lambda path: path.name)
def test_every_example_parses_and_every_jq_compiles(path: Path) -> None:
    document = tomllib.loads(path.read_text())
    rules = document["rule"]
    assert rules, path
    for rule in rules:
        # tattletail's schema only: the file must work unchanged with tattletail itself.
        if path.name not in IMPORTED:
            assert set(rule) <= {"name", "jq_match", "description", "destinations"}, rule["name"]
        assert rule["name"] and rule["description"], rule
        jq.compile(rule["jq_match"])
    assert len({rule["name"] for rule in rules}) == len(rules)
    config = load_config(str(path))
    assert len(config.rules) == len(rules)


def test_rule_counts() -> None:
    assert len(_rules("cis.toml")) == 15
    assert len(_rules("rules60.toml")) == 60


# --- CIS: the jq translation decides like the CloudWatch metric filter -----------------------------------

_ABSENT = object()


def _lookup(event: Any, path: list[str]) -> Any:
    value = event
    for key in path:
        if type(value) is not dict or key not in value:
            return _ABSENT
        value = value[key]
    return value


def _compile_filter(pattern: str) -> Callable[[Event], bool]:
    """A reference evaluator for the CloudWatch JSON filter syntax the CIS patterns use.

    `$.a.b = V` holds when the property exists and is a string equal to V (`*` is a wildcard); `!=` holds
    when the property exists and `=` does not (an absent property satisfies neither: AWS's documented fix is
    adding `|| $.x NOT EXISTS`); `NOT EXISTS` holds when it is absent; `&&` binds tighter than `||`.
    """
    tokens = re.findall(r'\(|\)|&&|\|\||!=|=|"[^"]*"|\$[\w.]+|NOT EXISTS|[^\s()&|=!"]+', pattern.strip()[1:-1])
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def parse_or() -> Callable[[Event], bool]:
        terms = [parse_and()]
        while peek() == "||":
            take()
            terms.append(parse_and())
        return lambda event: any(term(event) for term in terms)

    def parse_and() -> Callable[[Event], bool]:
        terms = [parse_primary()]
        while peek() == "&&":
            take()
            terms.append(parse_primary())
        return lambda event: all(term(event) for term in terms)

    def parse_primary() -> Callable[[Event], bool]:
        token = take()
        if token == "(":
            inner = parse_or()
            assert take() == ")"
            return inner
        assert token.startswith("$."), token
        path = token[2:].split(".")
        operator = take()
        if operator == "NOT EXISTS":
            return lambda event: _lookup(event, path) is _ABSENT
        literal = take().strip('"')
        regex = re.compile("^" + ".*".join(re.escape(part) for part in literal.split("*")) + "$")

        def equal(event: Event) -> bool:
            value = _lookup(event, path)
            return type(value) is str and regex.match(value) is not None

        if operator == "=":
            return equal
        assert operator == "!="
        return lambda event: _lookup(event, path) is not _ABSENT and not equal(event)

    result = parse_or()
    assert position == len(tokens), pattern
    return result


CIS_CONTROLS = {
    "CloudWatch.1": "CIS 4.3 Root account usage",
    "CloudWatch.2": "CIS 4.1 Unauthorized API calls",
    "CloudWatch.3": "CIS 4.2 Console sign-in without MFA",
    "CloudWatch.4": "CIS 4.4 IAM policy changes",
    "CloudWatch.5": "CIS 4.5 CloudTrail configuration changes",
    "CloudWatch.6": "CIS 4.6 Console authentication failures",
    "CloudWatch.7": "CIS 4.7 CMK disabled or scheduled for deletion",
    "CloudWatch.8": "CIS 4.8 S3 bucket policy changes",
    "CloudWatch.9": "CIS 4.9 AWS Config configuration changes",
    "CloudWatch.10": "CIS 4.10 Security group changes",
    "CloudWatch.11": "CIS 4.11 Network ACL changes",
    "CloudWatch.12": "CIS 4.12 Network gateway changes",
    "CloudWatch.13": "CIS 4.13 Route table changes",
    "CloudWatch.14": "CIS 4.14 VPC changes",
    None: "CIS 4.15 AWS Organizations changes",
}


def _event(name: str, source: str = "ec2.amazonaws.com", **fields: Any) -> Event:
    event: Event = {
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice", "userName": "alice"},
        "eventTime": "2024-08-01T09:00:00Z",
        "eventSource": source,
        "eventName": name,
        "awsRegion": "us-east-1",
        "eventType": "AwsApiCall",
        "eventID": "00000000-0000-4000-8000-000000000000",
    }
    event.update(fields)
    return event


_CONSOLE = {"eventType": "AwsConsoleSignIn", "responseElements": {"ConsoleLogin": "Success"}}
_ROOT = {"type": "Root", "arn": "arn:aws:iam::123456789012:root", "accountId": "123456789012"}

# One event each CIS alarm exists for: the rule must fire on it.
CIS_POSITIVE: dict[str, Event] = {
    "CloudWatch.1": _event("ConsoleLogin", "signin.amazonaws.com", userIdentity=_ROOT, **_CONSOLE),
    "CloudWatch.2": _event("DescribeInstances", errorCode="Client.UnauthorizedOperation"),
    "CloudWatch.3": _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData={"MFAUsed": "No"}, **_CONSOLE),
    "CloudWatch.4": _event("AttachUserPolicy", "iam.amazonaws.com"),
    "CloudWatch.5": _event("StopLogging", "cloudtrail.amazonaws.com"),
    "CloudWatch.6": _event("ConsoleLogin", "signin.amazonaws.com", errorMessage="Failed authentication"),
    "CloudWatch.7": _event("ScheduleKeyDeletion", "kms.amazonaws.com"),
    "CloudWatch.8": _event("PutBucketPolicy", "s3.amazonaws.com"),
    "CloudWatch.9": _event("StopConfigurationRecorder", "config.amazonaws.com"),
    "CloudWatch.10": _event("AuthorizeSecurityGroupIngress"),
    "CloudWatch.11": _event("ReplaceNetworkAclEntry"),
    "CloudWatch.12": _event("AttachInternetGateway"),
    "CloudWatch.13": _event("CreateRoute"),
    "CloudWatch.14": _event("CreateVpcPeeringConnection"),
    "None": _event("LeaveOrganization", "organizations.amazonaws.com"),
}

# Near misses: every field that should keep an alarm quiet, one at a time.
CIS_EDGE_CASES: list[Event] = [
    _event("DescribeInstances"),
    _event("DescribeInstances", errorCode="AccessDeniedException"),
    _event("GetObject", "s3.amazonaws.com", errorCode="AccessDenied"),
    _event("DescribeInstances", errorCode="UnauthorizedOperation"),
    _event("DescribeInstances", errorCode="Client.UnauthorizedOperationX"),
    _event("DescribeInstances", errorCode="accessdenied"),
    _event("DescribeInstances", errorCode=403),
    _event("DescribeInstances", errorCode=None),
    _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData={"MFAUsed": "Yes"}, **_CONSOLE),
    _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData={}, **_CONSOLE),
    _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData={"MFAUsed": None}, **_CONSOLE),
    _event("ConsoleLogin", "signin.amazonaws.com", **_CONSOLE),
    _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData="MFAUsed=No", **_CONSOLE),
    _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData={"MFAUsed": "No"},
           eventType="AwsConsoleSignIn", responseElements={"ConsoleLogin": "Failure"}),
    _event("ConsoleLogin", "signin.amazonaws.com", additionalEventData={"MFAUsed": "No"},
           userIdentity={"type": "AssumedRole"}, **_CONSOLE),
    _event("ConsoleLogin", "signin.amazonaws.com", errorMessage="Failed authentication."),
    _event("ConsoleLogin", "signin.amazonaws.com", errorMessage="failed authentication"),
    _event("DescribeInstances", userIdentity=_ROOT),
    _event("DescribeInstances", userIdentity={**_ROOT, "invokedBy": "support.amazonaws.com"}),
    _event("DescribeInstances", userIdentity={**_ROOT, "invokedBy": None}),
    _event("DescribeInstances", userIdentity=_ROOT, eventType="AwsServiceEvent"),
    {k: v for k, v in _event("DescribeInstances", userIdentity=_ROOT).items() if k != "eventType"},
    _event("DescribeInstances", userIdentity=_ROOT, eventType=None),
    _event("DescribeInstances", userIdentity={"type": "root"}),
    _event("DescribeInstances", userIdentity=None),
    _event("DisableKey", "ec2.amazonaws.com"),
    _event("DisableKey", "kms.amazonaws.com"),
    _event("PutBucketPolicy", "s3control.amazonaws.com"),
    _event("PutBucketPublicAccessBlock", "s3.amazonaws.com"),
    _event("PutConfigRule", "config.amazonaws.com"),
    _event("CreatePolicy", "organizations.amazonaws.com"),
    _event("CreatePolicy", "iam.amazonaws.com"),
    _event("ListAccounts", "organizations.amazonaws.com"),
    _event("LeaveOrganization", "iam.amazonaws.com"),
    _event("createVpc"),
    _event("CreateVpcEndpoint"),
    _event("DeleteRouteTable"),
    _event("ModifySecurityGroupRules"),
    _event("StartLogging", "cloudtrail.amazonaws.com"),
    _event("LookupEvents", "cloudtrail.amazonaws.com"),
    _event(None),  # type: ignore[arg-type]
]


def _cis_filters() -> list[dict[str, Any]]:
    document = json.loads(corpus_path("cis-metric-filters", "cis_cloudwatch_metric_filters.json").read_text())
    filters: list[dict[str, Any]] = document["filters"]
    assert [f["securityhub_control"] for f in filters] == list(CIS_CONTROLS)
    return filters


def _corpus_events() -> list[Event]:
    events: list[Event] = []
    for path in sorted(corpus_path("stratus-red-team").glob("*.json")):
        events.extend(json.loads(path.read_text()))
    for path in sorted(corpus_path("aws-cloudtrail-processing-library").glob("*.json")):
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue
        records = document.get("Records") if isinstance(document, dict) else None
        if isinstance(records, list):
            events.extend(record for record in records if isinstance(record, dict))
    otrf = corpus_path("otrf-security-datasets", "ec2_proxy_s3_exfiltration_2020-09-14011940.json")
    events.extend(json.loads(line) for line in otrf.read_text().splitlines() if line.strip())
    return events


def test_each_cis_rule_fires_on_its_event_and_not_on_benign_traffic() -> None:
    rules = _rules("cis.toml")
    names = [CIS_CONTROLS[None if key == "None" else key] for key in CIS_POSITIVE]
    hits = _matched(rules, list(CIS_POSITIVE.values()))
    for index, name in enumerate(names):
        assert index in hits[name], f"{name} does not fire on its representative event"
    benign = [item.data for item in TrafficGenerator(seed=21, match_rate=0.0).generate_labelled(2000)]
    benign = [event for event in benign if "errorCode" not in event]
    assert not _matched(rules, benign), "a CIS alarm fires on ordinary reads"


def test_cis_rules_decide_like_the_cloudwatch_metric_filters() -> None:
    """GIVEN the metric-filter patterns from the corpus and a reference evaluator of their syntax,
    WHEN the jq rules and the filters see the same events (corpus, generated traffic, near misses),
    THEN they agree on every event, and every alarm fires at least once."""
    filters = _cis_filters()
    events = (
        _corpus_events()
        + TrafficGenerator(seed=22, match_rate=1.0).generate(3000)
        + TrafficGenerator(seed=23).generate(2000)
        + list(CIS_POSITIVE.values())
        + CIS_EDGE_CASES
    )
    hits = _matched(_rules("cis.toml"), events)
    disagreements: list[str] = []
    for cis_filter in filters:
        name = CIS_CONTROLS[cis_filter["securityhub_control"]]
        reference = _compile_filter(cis_filter["filter_pattern"])
        expected = {index for index, event in enumerate(events) if reference(event)}
        assert expected, f"no event exercises {name}"
        actual = set(hits[name])
        for index in sorted(expected ^ actual)[:3]:
            disagreements.append(f"{name}: filter says {index in expected}, jq says {index in actual}: "
                                 f"{json.dumps(events[index])[:300]}")
    assert not disagreements, "\n".join(disagreements)


def test_reference_evaluator_reads_the_filter_syntax() -> None:
    """The reference used above is itself checked on the documented behaviours it encodes."""
    suffix = _compile_filter('{($.errorCode="*UnauthorizedOperation") || ($.errorCode="AccessDenied*")}')
    assert suffix({"errorCode": "Client.UnauthorizedOperation"}) and suffix({"errorCode": "AccessDenied"})
    assert not suffix({"errorCode": "ThrottlingException"}) and not suffix({})
    root = _compile_filter('{$.userIdentity.type="Root" && $.userIdentity.invokedBy NOT EXISTS && '
                           '$.eventType !="AwsServiceEvent"}')
    assert root({"userIdentity": {"type": "Root"}, "eventType": "AwsApiCall"})
    assert not root({"userIdentity": {"type": "Root", "invokedBy": "x"}, "eventType": "AwsApiCall"})
    assert not root({"userIdentity": {"type": "Root"}})  # != needs the property
    unquoted = _compile_filter("{($.eventSource=kms.amazonaws.com) && (($.eventName=DisableKey))}")
    assert unquoted({"eventSource": "kms.amazonaws.com", "eventName": "DisableKey"})


# --- rules60: every Stratus Red Team technique is caught ---------------------------------------------------

# Techniques whose CloudTrail footprint a per-event rule cannot tell from benign traffic. Empty: each
# technique has at least one event a rule can single out (see the coverage report printed below).
UNDETECTABLE_TECHNIQUES: dict[str, str] = {}


def _labelled() -> dict[str, list[Event]]:
    by_technique: dict[str, list[Event]] = defaultdict(list)
    path = corpus_path("stratus-red-team", "stratus-detonations.labelled.jsonl")
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            by_technique[item["technique"]].append(item["event"])
    return by_technique


def test_rules60_catches_every_stratus_technique(capsys: pytest.CaptureFixture[str]) -> None:
    rules = _rules("rules60.toml")
    report: list[str] = []
    missed: list[str] = []
    for technique, events in sorted(_labelled().items()):
        hits = _matched(rules, events)
        caught = {index for indexes in hits.values() for index in indexes}
        report.append(f"{technique}: {len(caught)}/{len(events)} events caught by {sorted(hits)}")
        if not caught and technique not in UNDETECTABLE_TECHNIQUES:
            missed.append(technique)
    with capsys.disabled():
        print("\nStratus Red Team detection coverage (rules60):\n  " + "\n  ".join(report))
    assert not missed, f"techniques no rule catches: {missed}"


def _scenario_events(per_scenario: int = 6) -> list[tuple[str, Event]]:
    generator = TrafficGenerator(seed=31)
    return [(scenario.name, scenario.build(generator)) for scenario in SCENARIOS for _ in range(per_scenario)]


def test_rules60_catches_every_generated_scenario() -> None:
    labelled = _scenario_events()
    hits = _matched(_rules("rules60.toml"), [event for _, event in labelled])
    caught = {index for indexes in hits.values() for index in indexes}
    missed = sorted({name for index, (name, _) in enumerate(labelled) if index not in caught})
    assert not missed, f"scenarios no rule catches: {missed}"


def test_rules60_keeps_quiet_on_benign_traffic() -> None:
    benign = TrafficGenerator(seed=32, match_rate=0.0).generate(1000)
    hits = _matched(_rules("rules60.toml"), benign)
    matched = {index for indexes in hits.values() for index in indexes}
    assert len(matched) / len(benign) < 0.01, {name: len(indexes) for name, indexes in hits.items()}


def test_rules_with_string_outputs_render_them() -> None:
    """Rules that build a message must yield it (a string without `null` holes, or an object), not an error."""
    rules = [rule for rule in _rules("rules60.toml") if "\\(" in rule.jq_match]
    assert len(rules) >= 5
    events = [event for _, event in _scenario_events(3)]
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("t", str(i))) for i, e in enumerate(events)]
    result = LibjqMatcher(rules).match_batch(wrapped)
    assert not result.errors, result.errors[:3]
    outputs = defaultdict(list)
    for match in result.matches:
        outputs[match.rule_name].append(match.output)
    assert len(outputs) >= 20, sorted(outputs)
    for name, values in outputs.items():
        texts = [value for value in values if isinstance(value, str)]
        assert len(texts) == len(values) or all(isinstance(value, dict) for value in values), (name, values[:2])
        assert all("null" not in text for text in texts), (name, texts[:2])


@pytest.mark.parametrize("ruleset", ["seed.toml", "cis.toml", "rules60.toml"])
def test_fast_matcher_agrees_with_libjq_on_generated_traffic(ruleset: str) -> None:
    """The benchmark's fast figures count the same matches, with the same outputs, as the naive loop."""
    rules = list(_rules(ruleset))
    events = TrafficGenerator(seed=51, match_rate=0.2).generate(600) + [event for _, event in _scenario_events(1)]
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("t", str(i))) for i, e in enumerate(events)]

    def summary(matcher: Matcher) -> tuple[list[tuple[str, str | None, Any]], list[tuple[str, str | None]]]:
        result = matcher.match_batch(wrapped)
        matches = [(m.rule_name, m.event.position.sequence, m.output) for m in result.matches]
        errors = [(e.rule_name, e.position.sequence) for e in result.errors]
        return matches, errors

    fast = summary(build_matcher(rules, kind="fast"))
    assert fast == summary(LibjqMatcher(rules))
    assert fast[0], "no rule matched: the comparison proves nothing"
