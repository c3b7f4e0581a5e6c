"""FastMatcher: the compiled path, the index, the per-event libjq hand-off, and what `explain` reports."""

from __future__ import annotations

import random
from typing import Any

import jq
import orjson
import pytest

from stream_processor.config import Rule
from stream_processor.matcher import FastMatcher, LibjqMatcher, build_matcher, explain
from stream_processor.matcher.jqruntime import format_float
from stream_processor.model import CloudTrailEvent, MatchResult, Position

SEED_RULES = [
    Rule(name="Create AccessKey", jq_match='select(.eventName == "CreateAccessKey")'),
    Rule(
        name="SSM Start Session",
        jq_match='select(.eventName == "StartSession") | '
        '"username: \\(.responseElements.sessionId) target: \\(.requestParameters.target)"',
    ),
]


def _events(*items: dict[str, Any]) -> list[CloudTrailEvent]:
    return [CloudTrailEvent(orjson.dumps(d), d, Position(f"e{i}")) for i, d in enumerate(items)]


def _summary(result: MatchResult) -> tuple[list[tuple[str, str, Any]], set[tuple[str, str]]]:
    matches = [(m.rule_name, str(m.event.position), m.output) for m in result.matches]
    errors = {(e.rule_name, str(e.position)) for e in result.errors}
    return matches, errors


def _both(rules: list[Rule], events: list[CloudTrailEvent]) -> tuple[Any, Any]:
    return _summary(FastMatcher(rules).match_batch(events)), _summary(LibjqMatcher(rules).match_batch(events))


def test_seed_rules_match_and_render_like_tattletail() -> None:
    events = _events(
        {"eventName": "StartSession", "responseElements": {"sessionId": "s-1"}, "requestParameters": {"target": "i-9"}},
        {"eventName": "CreateAccessKey", "eventID": "2"},
        {"eventName": "DescribeInstances"},
    )
    fast, reference = _both(SEED_RULES, events)
    assert fast == reference
    assert fast[0] == [
        ("SSM Start Session", "e0", "username: s-1 target: i-9"),
        ("Create AccessKey", "e1", {"eventName": "CreateAccessKey", "eventID": "2"}),
    ]


def test_explain_names_the_path_and_the_index_key() -> None:
    rules = [
        *SEED_RULES,
        Rule(name="def", jq_match='def f: .eventName; select(f == "X")'),
        Rule(name="recursive def", jq_match='def f: if type == "array" then .[0] | f end; select(.a | f)'),
        Rule(name="two names", jq_match='select(.eventName == "B" or .eventName == "A")'),
        Rule(name="source then name", jq_match='select(.eventSource == "iam.amazonaws.com" and .eventName == "X")'),
        Rule(name="IN", jq_match='select(.eventName | IN("P", "Q")) | .eventName'),
        Rule(name="anything", jq_match='select(.userIdentity.type == "Root")'),
        Rule(name="everything", jq_match="select(.requestParameters | length > 3)"),
    ]
    assert explain(rules) == [
        ("Create AccessKey", "compiled", 'compiled, indexed on eventName in {"CreateAccessKey"}'),
        ("SSM Start Session", "compiled", 'compiled, indexed on eventName in {"StartSession"}'),
        ("def", "compiled", 'compiled, indexed on eventName in {"X"}'),
        ("recursive def", "libjq", "libjq: uses the recursive `def f`, not indexed: `f/0` calls itself"),
        ("two names", "compiled", 'compiled, indexed on eventName in {"A", "B"}'),
        ("source then name", "compiled", 'compiled, indexed on eventName in {"X"}'),
        ("IN", "compiled", 'compiled, indexed on eventName in {"P", "Q"}'),
        ("anything", "compiled", 'compiled, indexed on userIdentity.type in {"Root"} or userIdentity.type fails'),
        ("everything", "compiled", "compiled, not indexed: `(length > 3)` orders computed values"),
    ]


def test_a_file_testing_many_fields_indexes_the_fields_that_serve_most_rules() -> None:
    rules = [Rule(name=f"r{i}", jq_match=f'select(.f{i % 8} == "x")') for i in range(12)]
    reasons = [reason for _, _, reason in explain(rules)]
    # f0..f3 serve two rules each, f4..f7 one: the index reads f0..f5, so r6 and r7 visit every event.
    assert reasons[6:8] == [
        f"compiled, not indexed: it tests f{i}, which the index of this file does not read (at most 6 fields)"
        for i in (6, 7)
    ]
    assert all(reason.startswith("compiled, indexed on f") for reason in reasons[:6] + reasons[8:])


def test_the_order_of_the_conditions_does_not_decide_the_index() -> None:
    sources = '(.eventSource | IN("iam.amazonaws.com", "sts.amazonaws.com"))'
    rules = [
        Rule(name="source first", jq_match=f'select({sources} and .userIdentity.type == "IAMUser")'),
        Rule(name="source last", jq_match=f'select(.userIdentity.type == "IAMUser" and {sources})'),
    ]
    # Both are indexed; the second must also run where reading userIdentity.type fails, as it fails first.
    assert [reason for _, _, reason in explain(rules)] == [
        'compiled, indexed on eventSource in {"iam.amazonaws.com", "sts.amazonaws.com"} '
        'and (userIdentity.type in {"IAMUser"} or userIdentity.type fails)',
        'compiled, indexed on userIdentity.type fails '
        'or (userIdentity.type in {"IAMUser"} and eventSource in {"iam.amazonaws.com", "sts.amazonaws.com"})',
    ]


def test_index_does_not_hide_errors_on_events_it_would_skip() -> None:
    # `.a | startswith` runs before the eventName check and errors on a number: every event must see it.
    rules = [Rule(name="fragile", jq_match='select((.a | startswith("x")) and .eventName == "X")')]
    assert explain(rules)[0][2] == 'compiled, indexed on a is not string or a starts with {"x"}'
    events = _events({"eventName": "Other", "a": 1}, {"eventName": "X", "a": "xy"})
    fast, reference = _both(rules, events)
    assert fast == reference
    assert fast[1] == {("fragile", "e0")}


def test_index_on_event_source_skips_other_sources_without_losing_matches() -> None:
    rules = [
        Rule(
            name="iam",
            jq_match='select(.eventSource == "iam.amazonaws.com" and (.eventName | startswith("Create")))',
        ),
    ]
    assert explain(rules)[0][2] == 'compiled, indexed on eventSource in {"iam.amazonaws.com"}'
    events = _events(
        {"eventSource": "iam.amazonaws.com", "eventName": "CreateUser"},
        {"eventSource": "ec2.amazonaws.com", "eventName": 5},
        {"eventSource": "iam.amazonaws.com", "eventName": 5},
        {"eventName": ["not", "hashable"]},
    )
    fast, reference = _both(rules, events)
    assert fast == reference
    assert [m[1] for m in fast[0]] == ["e0"]
    assert fast[1] == {("iam", "e2")}


def test_values_outside_the_compiled_model_are_handed_to_libjq() -> None:
    # A huge integer against a float literal, a regex class on a non-ASCII subject: libjq decides.
    rules = [
        Rule(name="big", jq_match="select(.n == 1.5 or .n > 2.5) | .n"),
        Rule(name="regex", jq_match='select(.s | test("^\\\\w+$")) | .s'),
    ]
    events = _events({"n": 2**60 + 1, "s": "héllo"}, {"n": 3, "s": "hello"}, {"n": 1.5, "s": "a b"})
    fast, reference = _both(rules, events)
    assert fast == reference
    expected = [("big", "e0"), ("regex", "e0"), ("big", "e1"), ("regex", "e1"), ("big", "e2")]
    assert [(m[0], m[1]) for m in fast[0]] == expected


def test_outputs_have_the_types_libjq_returns() -> None:
    rules = [
        Rule(name="float", jq_match='select(.eventName == "E") | [.x, .y, "\\(.x)", (.big | tojson), .big]'),
    ]
    events = _events({"eventName": "E", "x": 1.0, "y": -0.0, "big": 12345678901234567890})
    fast, reference = _both(rules, events)
    assert fast == reference
    output = fast[0][0][2]
    assert output == [1, 0, "1.0", "12345678901234567890", 12345678901234567168]
    assert [type(v) for v in output] == [int, int, str, str, int]


def test_build_matcher_by_name() -> None:
    assert isinstance(build_matcher(SEED_RULES), FastMatcher)
    assert isinstance(build_matcher(SEED_RULES, kind="libjq"), LibjqMatcher)
    with pytest.raises(ValueError, match="unknown matcher kind"):
        build_matcher(SEED_RULES, kind="fastest")


def test_a_program_jq_rejects_is_rejected() -> None:
    with pytest.raises(ValueError):
        FastMatcher([Rule(name="broken", jq_match="select(.a ==)")])


def test_a_program_jq_rejects_is_rejected_among_many_it_accepts() -> None:
    rules = [Rule(name=f"r{i}", jq_match=f'select(.eventName == "E{i}")') for i in range(5)]
    rules.insert(3, Rule(name="undefined", jq_match="select(.a == $nowhere)"))

    with pytest.raises(ValueError, match=r"\$nowhere is not defined"):
        FastMatcher(rules)


def test_float_printing_matches_jq_for_literals() -> None:
    rng = random.Random(7)
    values = [1e16, 1.5e-7, 1.234e-5, 1e-5, 1e22, 5e-324, -2.5e-6, 1e-6, 0.1, -0.0, 1.0, 123.456, 1.1208125838002882e16]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(500)]
    printed = jq.compile(".[] | tojson").input_value(values).all()
    assert [format_float(v) for v in values] == printed
