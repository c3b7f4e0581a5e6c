"""The libjq worker sees only the part of an event a rule can observe: same results as on the whole event."""

from __future__ import annotations

from typing import Any

import jq
import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stream_processor.config import Rule
from stream_processor.matcher import FastMatcher, LibjqMatcher
from stream_processor.matcher.fast import _libjq_plan
from stream_processor.matcher.jqparse import Unsupported, parse
from stream_processor.matcher.projection import analyse, merge, project, projection_of, projector
from stream_processor.model import CloudTrailEvent, Position
from tests.unit.matcher.differential import libjq_outcome, same
from tests.unit.matcher.test_differential import EXAMPLES, _compiles_in_jq, _same_result, events, programs


def test_typical_rules_read_a_few_fields() -> None:
    assert projection_of('select(.eventName == "CreateAccessKey")') == {"eventName": None}
    assert projection_of(
        'select(.eventName == "S") | "user: \\(.responseElements.sessionId) on \\(.requestParameters.target)"'
    ) == {"eventName": None, "responseElements": {"sessionId": None}, "requestParameters": {"target": None}}
    assert projection_of(".requestParameters.policyDocument // \"\" | test(\"x\")") == {
        "requestParameters": {"policyDocument": None}
    }
    assert projection_of(".userIdentity as $u | select($u.type == \"Root\")") == {"userIdentity": {"type": None}}


def test_rules_that_can_see_the_whole_event_get_it() -> None:
    for program in ("tojson", "keys", 'select(has("x"))', "[.[]]", "..", "to_entries", ". == {}", "def f: .; f"):
        assert projection_of(program) is None, program
    # The event or an object built to look like its projection: the worker could not tell them apart.
    assert projection_of('if .a then . else {a: 1} end') is None


def test_an_indexed_value_keeps_its_type_so_errors_are_the_same() -> None:
    trie = projection_of(".a.b | empty")
    assert trie is not None
    event = {"a": "a string, not an object", "b": 1}
    projected = project(event, trie)
    program = jq.compile(".a.b | empty")
    for data in (event, projected):
        try:
            list(program.input_value(data))
        except ValueError as error:
            assert str(error) == 'Cannot index string with string ("b")'
        else:
            raise AssertionError("jq did not fail")


def test_merge_and_projector() -> None:
    tries = [projection_of(".a.b"), projection_of(".a.c, .d")]
    merged = merge(tries)
    assert merged == {"a": {"b": None, "c": None}, "d": None}
    assert merge([*tries, None]) is None
    event = {"a": {"b": 1, "c": [2], "x": 3}, "d": None, "e": 4}
    assert projector(merged)(event) == project(event, merged) == {"a": {"b": 1, "c": [2]}, "d": None}


def _through_projection(program: str, event: dict[str, Any]) -> tuple[str, Any] | None:
    """What the matcher makes of the worker's answer: jq on the projection, the event itself when the output
    equals the projection and the rule may output the event."""
    trie, outputs_event = analyse(program)
    if trie is None:
        return None
    projected = project(event, trie)
    outcome = libjq_outcome(program, orjson.loads(orjson.dumps(projected)))
    if outcome[0] == "output" and outcome[1] == projected and outputs_event:
        return libjq_outcome(".", event)
    return outcome


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs(), event=events)
def test_a_rule_gives_the_same_on_the_projection_as_on_the_event(program: str, event: dict[str, Any]) -> None:
    assume(_compiles_in_jq(program))
    projected = _through_projection(program, event)
    assume(projected is not None)
    assert projected is not None
    whole = libjq_outcome(program, event)
    assert projected[0] == whole[0], (program, event, projected, whole)
    if whole[0] == "output":
        assert same(projected[1], whole[1]), (program, event, projected, whole)
    elif whole[0] == "error":
        assert projected[1] == whole[1], (program, event, projected, whole)


@settings(max_examples=max(EXAMPLES // 10, 20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(programs(), min_size=1, max_size=4), batch=st.lists(events, min_size=1, max_size=5))
def test_rules_forced_onto_the_libjq_worker_match_like_libjq(rules: list[str], batch: list[dict[str, Any]]) -> None:
    # The whole batched path: drivers, projection, the worker process, first-output semantics, errors, order.
    assume(all(_compiles_in_jq(program) for program in rules))
    rule_objects = [Rule(name=f"r{i}", jq_match=program) for i, program in enumerate(rules)]
    cloudtrail = [CloudTrailEvent(orjson.dumps(e), e, Position(f"e{i}")) for i, e in enumerate(batch)]
    matcher = FastMatcher(rule_objects, force_libjq={rule.name for rule in rule_objects})
    try:
        fast = matcher.match_batch(cloudtrail)
    finally:
        matcher.close()
    reference = LibjqMatcher(rule_objects).match_batch(cloudtrail)
    _same_result(fast, reference)
    assert [e.message for e in fast.errors] == [e.message for e in reference.errors]


@settings(max_examples=max(EXAMPLES // 10, 20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(programs(), min_size=3, max_size=3), batch=st.lists(events, min_size=1, max_size=6))
def test_a_libjq_rule_gated_by_its_compiled_select_matches_like_libjq(
    parts: list[str], batch: list[dict[str, Any]]
) -> None:
    # The gate (the rule's leading select, compiled) decides "no output" alone; everything else is libjq's.
    a, b, c = parts
    texts = [f"select({a}) | {b}", f"select({a} and {b}) | {c}", f"select(({a}) and ({b} | tojson | length > 3))"]
    assume(all(_compiles_in_jq(text) for text in texts))
    rules = [Rule(name=f"r{i}", jq_match=text) for i, text in enumerate(texts)]
    matcher = FastMatcher(rules)
    try:
        matcher.plans = tuple(_libjq_plan(r, "test", _parsed(r.jq_match)) for r in rules)
        matcher._index()
        cloudtrail = [CloudTrailEvent(orjson.dumps(e), e, Position(f"e{i}")) for i, e in enumerate(batch)]
        fast = matcher.match_batch(cloudtrail)
    finally:
        matcher.close()
    reference = LibjqMatcher(rules).match_batch(cloudtrail)
    _same_result(fast, reference)
    assert [e.message for e in fast.errors] == [e.message for e in reference.errors]


def _parsed(text: str) -> Any:
    try:
        return parse(text)
    except Unsupported:
        return None
