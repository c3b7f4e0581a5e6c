"""Rule tests on a real CloudTrail file: "at least one event of this file matches", or the named eventIDs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from stream_processor.config import parse_config
from stream_processor.errors import ConfigError
from stream_processor.rule_tests import run_rule_tests


def cloudtrail_file(folder: Path) -> Path:
    """What CloudTrail writes to S3: gzip of {"Records": [...]}, mostly events no rule is about."""
    records = [
        {"eventVersion": "1.09", "eventID": f"e-{number}", "eventTime": "2026-11-27T01:05:00Z", "eventName": name,
         "eventSource": "iam.amazonaws.com", "awsRegion": "us-east-1",
         "requestParameters": {"userName": f"user{number}"}}
        for number, name in enumerate(["ListUsers", "CreateAccessKey", "GetUser", "CreateAccessKey", "ListRoles"])
    ]  # fmt: skip
    path = folder / "events" / "123456789012_CloudTrail_us-east-1_20261127T0105Z_x.json.gz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return path


def report(
    folder: Path, test: str, jq_match: str = 'select(.eventName == "CreateAccessKey")'
) -> list[tuple[bool, str]]:
    cloudtrail_file(folder)
    text = f'[[rule]]\nname = "Access key"\njq_match = {json.dumps(jq_match)}\n'
    text += f'title = \'"key for \\(.requestParameters.userName)"\'\n[[rule.test]]\n{test}\n'
    results = run_rule_tests(parse_config(text, str(folder / "rules.toml"))).results
    return [(result.passed, result.detail) for result in results]


FILE = 'event_file = "events/123456789012_CloudTrail_us-east-1_20261127T0105Z_x.json.gz"'


def test_a_cloudtrail_file_passes_when_at_least_one_event_matches(tmp_path: Path) -> None:
    assert report(tmp_path, f'{FILE}\nexpect = "match_any"') == [(True, "2 of 5 event(s) matched")]


def test_match_any_fails_when_no_event_of_the_file_matches(tmp_path: Path) -> None:
    (outcome,) = report(tmp_path, f'{FILE}\nexpect = "match_any"', 'select(.eventName == "DeleteTrail")')
    assert outcome == (False, "none of the 5 event(s) matched")


def test_named_events_must_match_and_the_others_are_free(tmp_path: Path) -> None:
    assert report(tmp_path, f'{FILE}\nevent_ids = ["e-1", "e-3"]') == [(True, "")]
    ((passed, detail),) = report(tmp_path, f'{FILE}\nevent_ids = ["e-1", "e-2"]')
    assert not passed and "event e-2: no output, null or false" in detail


def test_named_events_can_be_required_not_to_match(tmp_path: Path) -> None:
    assert report(tmp_path, f'{FILE}\nevent_ids = ["e-0", "e-2"]\nexpect = "no_match"') == [(True, "")]


def test_the_title_of_each_named_event_is_checked(tmp_path: Path) -> None:
    assert report(tmp_path, f'{FILE}\nevent_ids = ["e-3"]\ntitle = "key for user3"') == [(True, "")]
    ((passed, detail),) = report(tmp_path, f'{FILE}\nevent_ids = ["e-1"]\ntitle = "key for user3"')
    assert not passed and "event e-1: title 'key for user1', expected 'key for user3'" in detail


def test_an_event_id_the_file_does_not_hold_fails_the_test(tmp_path: Path) -> None:
    ((passed, detail),) = report(tmp_path, f'{FILE}\nevent_ids = ["e-1", "nope"]')
    assert not passed and detail == "event_ids not in the event_file: nope"


@pytest.mark.parametrize(
    ("test", "problem"),
    [
        (f'{FILE}\nexpect = "match_any"\ntitle = "x"', "title needs the events it is checked on: name them with"),
        (f'{FILE}\nexpect = "match_any"\nevent_ids = ["e-1"]', "match_any\" with event_ids: keep one"),
        ('event = { eventName = "x" }\nevent_ids = ["e-1"]', "event_ids needs an event_file with several events"),
        (f"{FILE}\nevent_ids = []", "event_ids must be a non-empty list of eventIDs"),
        (f'{FILE}\nevent_ids = ["a", "a"]', 'event_ids lists "a" twice'),
    ],
    ids=["match-any-with-title", "match-any-with-ids", "ids-without-file", "empty-ids", "repeated-id"],
)
def test_impossible_tests_are_refused_with_the_fix(tmp_path: Path, test: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        report(tmp_path, test)
    assert any(problem in line for line in raised.value.problems), raised.value.problems


def test_junit_xml_for_ci(tmp_path: Path) -> None:
    """`test-rules --junit FILE`: a testsuite per rule file, a testcase per test, failures with their detail."""
    from xml.etree import ElementTree

    from stream_processor.cli import main

    cloudtrail_file(tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "Access key \\u0001"\njq_match = \'select(.eventName == "CreateAccessKey")\'\n'
        f'[[rule.test]]\n{FILE}\nexpect = "match_any"\n'
        f'[[rule.test]]\n{FILE}\nevent_ids = ["e-0"]\n'
        '[[rule]]\nname = "Untested"\njq_match = "false"\n'
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("[[rule]]\nname = 1\n")
    junit = tmp_path / "junit.xml"
    assert main(["test-rules", str(rules), str(broken), "--require-tests", "--junit", str(junit)]) == 1
    root = ElementTree.parse(junit).getroot()  # well-formed: the control character in the name was replaced
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "1")
    suite, invalid = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == ["test #1 (rules.toml)", "test #2 (rules.toml)", "has a test"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "expected match, got no_match"
    assert "event e-0" in (failure.text or "")
    assert invalid.find("testcase/error") is not None
