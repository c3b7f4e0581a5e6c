"""Rule tests: `[[rule.test]]` parsing, running with the real matcher, tests files, and `test-rules`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from stream_processor.cli import main
from stream_processor.config import RuleTest, load_config, parse_config
from stream_processor.errors import ConfigError
from stream_processor.rule_tests import run_rule_tests
from stream_processor.rule_tests import tests_file_beside as find_tests_file
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
SOURCE = "rules.toml"

RULES = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
title = '"Access key for \\(.requestParameters.userName)"'

[[rule.test]]
event = { eventName = "CreateAccessKey", requestParameters = { userName = "bob" } }
expect = "match"
title = "Access key for bob"

[[rule.test]]
event = '{"eventName": "DeleteAccessKey"}'
expect = "no_match"

[[rule]]
name = "SSM"
jq_match = 'select(.eventName == "StartSession") | "target: \\(.requestParameters.target)"'

[[rule.test]]
expect = "match"
output = "target: i-1"
[rule.test.event]
eventName = "StartSession"
requestParameters.target = "i-1"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, SOURCE)
    return caught.value.problems


# ---------------------------------------------------------------- parsing


def test_tests_are_parsed_into_the_rule() -> None:
    config = parse_config(RULES, SOURCE)

    first, second = config.rule("Create AccessKey").tests
    assert first == RuleTest(
        index=1,
        expect="match",
        event='{"eventName": "CreateAccessKey", "requestParameters": {"userName": "bob"}}',
        title="Access key for bob",
        source=SOURCE,
    )
    assert second.expect == "no_match" and json.loads(second.event or "") == {"eventName": "DeleteAccessKey"}
    (table_event,) = config.rule("SSM").tests
    assert json.loads(table_event.event or "") == {"eventName": "StartSession", "requestParameters": {"target": "i-1"}}


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        (
            'event = {a = 1}\nexpect = "matches"',
            'expect "matches" is not "match", "no_match" or "match_any": did you mean "match"?',
        ),
        ("event = {a = 1}", 'missing expect: add expect = "match"'),
        ('expect = "match"', "missing the event: add event = {"),
        ('event = {a = 1}\nevent_file = "x.json"\nexpect = "match"', "has both event and event_file: keep one"),
        ("event = '{not json'\nexpect = \"match\"", "event is not valid JSON"),
        ("event = '[1, 2]'\nexpect = \"match\"", "event must be a JSON object, got an array"),
        ('event = 3\nexpect = "match"', "event must be a table or a JSON string, got an integer"),
        ('event = { eventTime = 2024-01-01T00:00:00Z }\nexpect = "match"', "event.eventTime is a TOML date/time"),
        ('event = {a = 1}\nexpect = "no_match"\noutput = "x"', 'output is checked only for expect = "match"'),
        (
            'event = {a = 1}\nexpect = "match"\noutput = 1',
            "output must be the expected text (a string), got an integer",
        ),
        ('event_file = ""\nexpect = "match"', "event_file is empty"),
        ('event = {a = 1}\nexpect = "match"\nexpected = "x"', 'unknown key "expected": did you mean "expect"?'),
    ],
)
def test_malformed_tests_are_reported_with_rule_and_test_number(test: str, expected: str) -> None:
    (problem,) = problems_of(f'[[rule]]\nname = "r"\njq_match = "."\n[[rule.test]]\n{test}\n')

    assert problem.startswith(f'{SOURCE}: rule #1 "r": test #1: ')
    assert expected in problem


def test_a_single_bracket_test_table_is_explained() -> None:
    (problem,) = problems_of('[[rule]]\nname = "r"\njq_match = "."\n[rule.test]\nexpect = "match"\n')

    assert "test must be an array of tables: write [[rule.test]]" in problem


def test_a_title_test_on_a_rule_without_title_is_refused() -> None:
    (problem,) = problems_of(
        '[[rule]]\nname = "r"\njq_match = "."\n[[rule.test]]\nevent = {}\nexpect = "match"\ntitle = "x"\n'
    )

    assert "test #1 expects a title, but the rule has no title program" in problem


# ---------------------------------------------------------------- running


def test_passing_and_failing_tests_are_told_apart(tmp_path: Path) -> None:
    text = RULES + (
        '[[rule.test]]\nevent = { eventName = "StartSession", requestParameters = { target = "i-2" } }\n'
        'expect = "match"\noutput = "target: i-1"\n'
        '[[rule.test]]\nevent = { eventName = "StartSession" }\nexpect = "no_match"\n'
        '[[rule.test]]\nevent = { eventName = "Other" }\nexpect = "match"\n'
    )
    config = parse_config(text, str(tmp_path / "r.toml"))

    report = run_rule_tests(config)

    outcome = [(r.rule, r.index, r.expected, r.got, r.passed) for r in report.results]
    assert outcome == [
        ("Create AccessKey", 1, "match", "match", True),
        ("Create AccessKey", 2, "no_match", "no_match", True),
        ("SSM", 1, "match", "match", True),
        ("SSM", 2, "match", "match", False),
        ("SSM", 3, "no_match", "match", False),
        ("SSM", 4, "match", "no_match", False),
    ]
    assert report.results[3].detail == "output 'target: i-2', expected 'target: i-1'"
    assert report.results[4].detail == "matched (output: target: null)"
    assert report.results[5].detail == "no output, null or false"
    assert not report.ok and len(report.failed) == 3


def test_a_wrong_title_fails_with_both_titles() -> None:
    text = RULES.replace('title = "Access key for bob"', 'title = "Access key for alice"')

    report = run_rule_tests(parse_config(text, SOURCE))

    assert report.results[0].detail == "title 'Access key for bob', expected 'Access key for alice'"


def test_a_runtime_error_is_no_match_and_says_why() -> None:
    text = (
        '[[rule]]\nname = "r"\njq_match = \'select(.n | test("a"))\'\n'
        '[[rule.test]]\nevent = { n = 1 }\nexpect = "no_match"\n'
        '[[rule.test]]\nevent = { n = 1 }\nexpect = "match"\n'
    )

    passed, failed = run_rule_tests(parse_config(text, SOURCE)).results

    assert passed.passed and passed.got == "error" and "run-time error (no match)" in passed.detail
    assert not failed.passed and failed.got == "error" and "cannot be matched" in failed.detail


def test_event_files_of_any_decoder_format_relative_to_the_rule_file(tmp_path: Path) -> None:
    base = {"eventVersion": "1.09", "eventSource": "ssm.amazonaws.com", "eventName": "StartSession"}
    events = [{**base, "requestParameters": {"target": f"i-{n}"}} for n in (1, 2)]
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "trail.json.gz").write_bytes(gzip.compress(json.dumps({"Records": events}).encode()))
    (tmp_path / "events" / "lines.jsonl").write_text("\n".join(json.dumps(e) for e in events))
    (tmp_path / "events" / "junk.json").write_text("not json")
    text = (
        '[[rule]]\nname = "r"\njq_match = \'select(.requestParameters.target == "i-1")\'\n'
        '[[rule.test]]\nevent_file = "events/trail.json.gz"\nexpect = "match"\n'
        '[[rule.test]]\nevent_file = "events/lines.jsonl"\nexpect = "no_match"\n'
        '[[rule.test]]\nevent_file = "events/missing.json"\nexpect = "match"\n'
        '[[rule.test]]\nevent_file = "events/junk.json"\nexpect = "match"\n'
    )
    path = write(tmp_path, "rules.toml", text)

    results = run_rule_tests(load_config(str(path))).results

    assert [(r.got, r.passed) for r in results] == [
        ("no_match", False),
        ("match", False),
        ("unreadable", False),
        ("unreadable", False),
    ]
    assert results[0].detail == "event 2 of 2: no output, null or false"
    assert results[1].detail.startswith("event 1 of 2: matched")
    assert "not found" in results[2].detail
    assert "not CloudTrail events" in results[3].detail


def test_disabled_rules_are_tested_and_untested_rules_listed() -> None:
    text = RULES.replace('name = "SSM"', 'name = "SSM"\nenabled = false') + '[[rule]]\nname = "bare"\njq_match = "."\n'

    report = run_rule_tests(parse_config(text, SOURCE))

    assert [r.enabled for r in report.results] == [True, True, False]
    assert report.untested == ["bare"]


# ---------------------------------------------------------------- tests files


def test_a_tests_file_beside_the_rule_file_is_found_and_merged(tmp_path: Path) -> None:
    rules = write(tmp_path, "prod.toml", RULES)
    write(
        tmp_path,
        "tests/prod.tests.toml",
        '[[rule]]\nname = "SSM"\n[[rule.test]]\nevent = { eventName = "StartSession" }\nexpect = "match"\n'
        'output = "target: null"\n',
    )

    found = find_tests_file(str(rules))
    report = run_rule_tests(load_config(str(rules)), [found] if found else [])

    assert found == tmp_path / "tests" / "prod.tests.toml"
    assert [(r.rule, r.index, r.passed) for r in report.results][-2:] == [("SSM", 1, True), ("SSM", 1, True)]
    assert report.results[-1].source == str(found)


def test_a_tests_file_naming_an_unknown_rule_is_an_error(tmp_path: Path) -> None:
    tests = write(tmp_path, "x.tests.toml", '[[rule]]\nname = "SMS"\n[[rule.test]]\nevent = {}\nexpect = "match"\n')

    with pytest.raises(ConfigError) as caught:
        run_rule_tests(parse_config(RULES, SOURCE), [tests])

    assert caught.value.problems == [
        f'{tests}: tests for rule "SMS", which {SOURCE} does not have: '
        "fix the name (it must be the rule's name exactly)"
    ]


def test_a_tests_file_holds_only_names_and_tests(tmp_path: Path) -> None:
    tests = write(tmp_path, "x.tests.toml", '[[rule]]\nname = "SSM"\njq_match = "."\n[[destination]]\nid = "a"\n')

    with pytest.raises(ConfigError) as caught:
        run_rule_tests(parse_config(RULES, SOURCE), [tests])

    assert len(caught.value.problems) == 2
    assert 'unknown top-level key "destination": a tests file holds [[rule]] tables only' in caught.value.problems[0]
    assert 'unknown key "jq_match"' in caught.value.problems[1]


# ---------------------------------------------------------------- the command


def test_the_shipped_examples_carry_tests_that_pass(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = sorted(EXAMPLES.glob("*.toml"))

    code = main(["test-rules", "--require-tests", *map(str, shipped)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert {"seed.toml", "cis.toml", "rules60.toml"} <= {path.name for path in shipped}
    assert "seed.toml: 7 of 7 tests passed" in out
    assert "cis.toml: 45 of 45 tests passed" in out
    assert "rules60.toml: 124 of 124 tests passed" in out
    assert "without a test" not in out and "FAIL" not in out  # every shipped rule has tests, and they pass


def test_the_command_exits_1_on_a_failure_and_shows_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "r.toml", RULES.replace('output = "target: i-1"', 'output = "target: i-9"'))

    code = main(["test-rules", str(path)])

    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out and "expected 'target: i-9'" in out
    assert "2 of 3 tests passed, 1 FAILED" in out


def test_a_file_without_tests_says_so_and_passes_unless_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "r.toml", '[[rule]]\nname = "r"\njq_match = "."\n')

    assert main(["test-rules", str(path)]) == 0
    assert "no rule tests" in capsys.readouterr().out
    assert main(["test-rules", "--require-tests", str(path)]) == 1
    assert "1 enabled rule(s) without a test: r" in capsys.readouterr().out


def test_an_invalid_file_exits_1_with_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.toml", '[[rule]]\nname = "r"\njq_match = "select("\n')

    assert main(["test-rules", str(path)]) == 1
    err = capsys.readouterr().err
    assert "jq_match does not compile" in err and "INVALID: the tests were not run" in err


def test_secret_references_are_checked_not_resolved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN destinations whose secrets live in SSM and the environment, unreachable from here
    destinations = (
        '[[destination]]\nid = "hook"\ntype = "webhook"\nurl = "ssm:/alerts/hook-url"\n'
        '[[destination]]\nid = "pd"\ntype = "pagerduty"\nrouting_key = "env:NOT_SET_ANYWHERE"\n'
    )
    good = write(tmp_path, "good.toml", RULES + destinations)
    bad = write(tmp_path, "bad.toml", RULES + destinations.replace("env:NOT_SET_ANYWHERE", "env:"))

    # THEN the tests run without them, but a malformed reference is still an error
    assert main(["test-rules", str(good)]) == 0
    assert main(["test-rules", str(bad)]) == 1
    assert "routing_key: cannot resolve env:: not an environment variable name" in capsys.readouterr().err


def test_tests_option_needs_a_single_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "r.toml", RULES)

    assert main(["test-rules", str(path), str(path), "--tests", str(path)]) == 2
    assert "--tests applies to one CONFIG" in capsys.readouterr().err
