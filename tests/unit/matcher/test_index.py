"""The rule index never hides a match or an error: generated rules and events, and the corners by hand.

Deeper local runs: MATCHER_HYPOTHESIS_EXAMPLES=20000 .venv/bin/pytest tests/unit/matcher/test_index.py
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import jq
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from stream_processor.config import Rule
from stream_processor.matcher import FastMatcher, LibjqMatcher, explain
from stream_processor.matcher.index import (
    ERR,
    RuleIndex,
    Top,
    apply_chain,
    condition,
    read_path,
    regex_language,
)
from stream_processor.matcher.jqparse import parse
from stream_processor.matcher.libjq import _NO_OUTPUT, first_output
from stream_processor.model import CloudTrailEvent, MatchResult, Position
from tests.unit.matcher.differential import same
from tests.unit.matcher.index_grammar import events, rules

EXAMPLES = int(os.environ.get("MATCHER_HYPOTHESIS_EXAMPLES", "300"))


def _fires(program: str, event: dict[str, Any]) -> bool:
    """libjq's verdict: the rule matches (first output truthy) or fails on the event."""
    try:
        output = first_output(jq.compile(program), event)
    except ValueError:
        return True
    return output is not _NO_OUTPUT and output is not None and output is not False


def _cloudtrail(batch: list[dict[str, Any]]) -> list[CloudTrailEvent]:
    return [CloudTrailEvent(orjson.dumps(e), e, Position(f"e{i}")) for i, e in enumerate(batch)]


def _summary(result: MatchResult) -> tuple[list[tuple[str, str, Any]], set[tuple[str, str]]]:
    return (
        [(m.rule_name, str(m.event.position), m.output) for m in result.matches],
        {(e.rule_name, str(e.position)) for e in result.errors},
    )


def _same_result(a: MatchResult, b: MatchResult) -> None:
    (matches_a, errors_a), (matches_b, errors_b) = _summary(a), _summary(b)
    assert [m[:2] for m in matches_a] == [m[:2] for m in matches_b]
    assert all(same(x[2], y[2]) for x, y in zip(matches_a, matches_b, strict=True))
    assert errors_a == errors_b


# -- soundness on generated rules and events


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=rules(), batch=st.lists(events(), min_size=1, max_size=6))
def test_a_rule_the_index_skips_neither_matches_nor_fails(program: str, batch: list[dict[str, Any]]) -> None:
    # Alone in its file the rule's own fields are indexed: every skip is a claim checked against libjq.
    index = RuleIndex([condition(parse(program))], [program])
    by_class = RuleIndex([condition(parse(program))], [program])
    by_class.key_by_classes()
    for event in batch:
        chosen = index.dispatch(event)
        # the caches (by raw values, by classes) agree with the analysis
        assert chosen == index.candidates(event) == index.dispatch(event) == by_class.dispatch(event)
        assert by_class.dispatch(event) == chosen
        fires = _fires(program, event)
        hypothesis_event("skipped" if not chosen else "kept, fires" if fires else "kept, does not fire")
        if not chosen:
            assert not fires, (program, orjson.dumps(event), index.describe(0))


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs=st.lists(rules(), min_size=1, max_size=8), batch=st.lists(events(), min_size=1, max_size=8))
def test_indexed_matching_equals_every_rule_on_every_event_and_libjq(
    programs: list[str], batch: list[dict[str, Any]]
) -> None:
    rule_set = [Rule(name=f"r{i}", jq_match=program) for i, program in enumerate(programs)]
    cloudtrail = _cloudtrail(batch + batch)  # the second copy is served from the cache
    indexed = FastMatcher(rule_set)
    unindexed = FastMatcher(rule_set)
    every_rule = unindexed.index.entries
    unindexed.index = SimpleNamespace(dispatch=lambda data: every_rule)  # type: ignore[assignment]
    result = indexed.match_batch(cloudtrail)
    _same_result(result, unindexed.match_batch(cloudtrail))
    _same_result(result, LibjqMatcher(rule_set).match_batch(cloudtrail))


# -- the corners, by hand


def _skips(program: str, event: dict[str, Any]) -> bool:
    index = RuleIndex([condition(parse(program))], [program])
    return not index.dispatch(event)


@pytest.mark.parametrize(
    ("program", "event"),
    [
        # `$` matches before a final newline; case-insensitive matching folds Unicode (long s, Kelvin sign)
        ('select(.eventName | test("^StopLogging$"))', {"eventName": "StopLogging\n"}),
        ('select(.eventName | test("^stoplogging$"; "i"))', {"eventName": "\u017ftopLogging"}),
        ('select(.eventName | test("^k$"; "i"))', {"eventName": "\u212a"}),
        # the rule fails where the field is not a string, or cannot be read at all
        ('select((.eventName | ascii_downcase) == "stoplogging")', {"eventName": 7}),
        ('select(.userIdentity.type == "Root")', {"userIdentity": "Root"}),
        ('select(.errorCode | startswith("Access"))', {}),
        ('select([.eventName] | inside(["CreateUser"]))', {"eventName": "User"}),
        ('.eventName as $e | select(["A", "B"] | index($e))', {"eventName": ["A"]}),
        ('select(.eventName | tostring == "1.0")', {"eventName": 1.0}),
        ('select((.a // "x") == "x")', {"a": False}),
        ('select(.a == true)', {"a": True}),
        ('select(.eventName | test("("))', {"eventName": "x"}),
        ('select(.eventName | test("^Cre ate"; "x"))', {"eventName": "Create"}),
    ],
)
def test_the_index_keeps_what_jq_matches_or_fails_on(program: str, event: dict[str, Any]) -> None:
    assert _fires(program, event)
    assert not _skips(program, event)


@pytest.mark.parametrize(
    ("program", "event"),
    [
        ('select((.eventName | ascii_downcase) == "stoplogging")', {"eventName": "DeleteTrail"}),
        ('select(.eventName | test("^(Create|Delete)Trail$"))', {"eventName": "UpdateTrail"}),
        ('select(.eventName | test("^deletedetector$"; "i"))', {"eventName": "CreateDetector"}),
        ('select(.userIdentity.type == "Root")', {"userIdentity": {"type": "IAMUser"}}),
        ('select(.errorCode != null and (.errorCode | test("Denied")))', {"eventName": "x"}),
        ('.eventName as $v | any(["A", "B"][]; . == $v)', {"eventName": "C"}),
        ('if .eventName == "A" then . else empty end', {"eventName": "B"}),
        ('select(.eventName | startswith("Delete")) | true', {"eventName": "Create"}),
    ],
)
def test_the_index_skips_what_cannot_match_or_fail(program: str, event: dict[str, Any]) -> None:
    assert not _fires(program, event)
    assert _skips(program, event)


def test_true_and_one_never_share_a_cache_entry() -> None:
    # Python says True == 1 == 1.0 and hashes them alike; jq does not equate them.
    program = "select(.a == true)"
    index = RuleIndex([condition(parse(program))], [program])
    assert index.dispatch({"a": 1}) == ()
    assert index.dispatch({"a": True}) == (program,)
    assert index.dispatch({"a": 1.0}) == ()
    assert index.dispatch({"a": True}) == (program,)


def test_values_that_cannot_key_a_dict_are_classified_each_time() -> None:
    program = 'select(.a | IN("x"))'
    index = RuleIndex([condition(parse(program))], [program])
    assert index.dispatch({"a": ["x"]}) == ()
    assert index.dispatch({"a": {"b": 1}}) == ()
    assert index.dispatch({"a": "x"}) == (program,)
    assert index.dispatch("not an object") == (program,)


def test_an_index_over_varied_values_keys_its_cache_by_class(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_processor.matcher import index as index_module

    monkeypatch.setattr(index_module, "_CACHE_LIMIT", 4)
    programs = ['select(.eventName == "A")', 'select(.userAgent | test("kali"; "i"))']
    index = RuleIndex([condition(parse(p)) for p in programs], programs)
    agents = [f"agent-{i}" for i in range(12)] + ["x Kali y", "KALI"]
    for name in ("A", "B"):
        for agent in agents:
            event = {"eventName": name, "userAgent": agent}
            expected = index.candidates(event)
            assert index.dispatch(event) == expected
            assert expected == tuple(p for p in programs if _fires(p, event))
    assert index.keyed_by == "classes"
    odd = {"eventName": "A", "userAgent": True}  # test() fails on a boolean: that rule must see it
    assert index.dispatch(odd) == tuple(programs) == tuple(p for p in programs if _fires(p, odd))
    assert index.dispatch(["not", "an", "object"]) == tuple(programs)


def test_a_rule_the_index_cannot_read_runs_on_every_event() -> None:
    index = RuleIndex([condition(parse('select(.a == "x")')), Top(None, "unparsed")], ["a", "b"])
    assert index.dispatch({"a": "y"}) == ("b",)
    assert index.describe(1) == "not indexed: unparsed"


def test_reading_paths_like_jq() -> None:
    assert read_path({"a": {"b": 1}}, ("a", "b")) == 1
    assert read_path({"a": None}, ("a", "b")) is None
    assert read_path({"a": "s"}, ("a", "b")) is ERR
    assert read_path({"a": [1, 2]}, ("a", -1)) == 2
    assert read_path({"a": [1, 2]}, ("a", 5)) is None
    assert read_path({"a": {"0": 1}}, ("a", 0)) is ERR
    for event in ({"a": {"b": 1}}, {"a": None}, {"a": "s"}, {}):
        try:
            expected = jq.compile(".a.b").input_value(event).first()
        except ValueError:
            expected = ERR
        assert read_path(event, ("a", "b")) == expected


def test_normalisations_follow_jq() -> None:
    from stream_processor.matcher.index import WILD, Step

    cases: list[tuple[Any, str, Any]] = [
        ("ÀB", "ascii_downcase", "Àb"),
        (None, "tostring", "null"),
        (False, "tostring", "false"),
        ("x", "tostring", "x"),
    ]
    for value, op, expected in cases:
        assert apply_chain(value, (Step(op),)) == expected
        assert jq.compile(op).input_value(value).first() == expected
    assert apply_chain(1.0, (Step("tostring"),)) is WILD  # jq prints numbers from their literal text
    assert apply_chain(None, (Step("alt", "d"),)) == "d"
    assert apply_chain(3, (Step("ltrimstr", "a"),)) is ERR
    assert apply_chain("ab\n", (Step("regex", False),)) is WILD


def test_regex_languages() -> None:
    language = regex_language("^(Create|Update)LoginProfile$", False)
    assert not isinstance(language, str)
    assert language.exact == {"CreateLoginProfile", "UpdateLoginProfile"} and language.precise
    language = regex_language("^Delete(Bucket)?Polic[yi]", True)
    assert not isinstance(language, str)
    assert language.prefixes == {"deletebucketpolicy", "deletebucketpolici", "deletepolicy", "deletepolici"}
    language = regex_language("UnauthorizedOperation$|^AccessDenied", False)
    assert not isinstance(language, str)
    assert (language.suffixes, language.prefixes) == ({"UnauthorizedOperation"}, {"AccessDenied"})
    language = regex_language("^ab\\d+", False)
    assert not isinstance(language, str)
    assert language.prefixes == {"ab"} and not language.precise
    assert isinstance(regex_language("a(?#x|y)b", False), str)
    assert isinstance(regex_language("\\d+", False), str)


@pytest.mark.parametrize("example", ["untuned.toml", "sigma-cloudtrail.toml"])
def test_rules_nobody_wrote_for_the_index_are_all_indexed(example: str) -> None:
    from stream_processor.config import load_config
    from tests.conftest import REPO_ROOT

    rules_file = load_config(str(REPO_ROOT / "examples" / example)).rules
    not_indexed = [(name, reason) for name, _, reason in explain(rules_file) if "not indexed" in reason]
    assert not_indexed == []


def test_a_dotted_field_read_as_sigma_reads_it_is_indexed_with_null_where_unreadable() -> None:
    program = 'select((first(.userIdentity.type?, null) | tostring | ascii_downcase) == "root")'
    index = RuleIndex([condition(parse(program))], [program])
    assert index.dispatch({"userIdentity": {"type": "Root"}})
    assert not index.dispatch({"userIdentity": {"type": "IAMUser"}})
    assert not index.dispatch({"userIdentity": "root"})  # unreadable: null, "null", not "root"
    fallback = 'select(first(.userIdentity.type?, "Root") == "Root")'
    index = RuleIndex([condition(parse(fallback))], [fallback])
    assert index.dispatch({"userIdentity": "a string"}) and index.dispatch({"userIdentity": {"type": "Root"}})
    assert not index.dispatch({"userIdentity": {"type": "IAMUser"}})


def test_an_optional_field_with_a_default_is_indexed_with_the_default_where_unreadable() -> None:
    program = 'select((.userIdentity.type? // "none") | ascii_downcase == "root")'
    index = RuleIndex([condition(parse(program))], [program])
    assert index.dispatch({"userIdentity": {"type": "ROOT"}})
    assert not index.dispatch({"userIdentity": {"type": "IAMUser"}})
    assert not index.dispatch({"userIdentity": "root"})  # unreadable: "none"
    fallback = 'select((.userIdentity.type? // "Root") == "Root")'
    index = RuleIndex([condition(parse(fallback))], [fallback])
    assert index.dispatch({"userIdentity": "a string"}) and index.dispatch({"userIdentity": {"type": None}})
    assert not index.dispatch({"userIdentity": {"type": "IAMUser"}})


def test_match_capture_and_scan_as_conditions_are_indexed_like_test() -> None:
    for program in (
        'select(.eventName | match("^(Create|Delete)User$"))',
        'select(.eventName | capture("^(?<verb>Create|Delete)User$"))',
        'select(.eventName | scan("^(?:Create|Delete)User$"; "g"))',
    ):
        index = RuleIndex([condition(parse(program))], [program])
        assert index.dispatch({"eventName": "DeleteUser"}), program
        assert index.dispatch({"eventName": 7}), program  # fails there: kept, for the error count
        assert not index.dispatch({"eventName": "CreateRole"}), program


def test_an_array_compared_with_a_literal_array_is_indexed_on_each_element() -> None:
    program = 'select([.eventSource, .eventName] == ["iam.amazonaws.com", "CreateUser"])'
    alone = RuleIndex([condition(parse(program))], [program])  # reads eventName
    assert alone.dispatch({"eventSource": "iam.amazonaws.com", "eventName": "CreateUser"})
    assert not alone.dispatch({"eventSource": "iam.amazonaws.com", "eventName": "DeleteUser"})
    other = 'select(.eventSource == "sts.amazonaws.com")'
    both = RuleIndex([condition(parse(program)), condition(parse(other))], [program, other])  # reads eventSource
    assert both.dispatch({"eventSource": "iam.amazonaws.com", "eventName": "CreateUser"}) == (program,)
    assert both.dispatch({"eventSource": "sts.amazonaws.com", "eventName": "CreateUser"}) == (other,)
    never = 'select([.eventSource, .eventName] == ["iam.amazonaws.com"])'  # lengths differ: never equal
    assert not RuleIndex([condition(parse(never))], [never]).dispatch({"eventSource": "iam.amazonaws.com"})


@pytest.mark.parametrize(
    "program",
    [
        'select({"CreateUser": true, "DeleteUser": true, "GetUser": false}[.eventName])',
        'select(.eventName | in({"CreateUser": 1, "DeleteUser": null}))',
        '.eventName as $n | {"CreateUser": 0, "DeleteUser": 0} | has($n)',
    ],
)
def test_a_lookup_table_of_names_is_indexed_on_its_keys(program: str) -> None:
    index = RuleIndex([condition(parse(program))], [program])
    assert index.dispatch({"eventName": "DeleteUser"})
    assert index.dispatch({"eventName": ["not", "a", "string"]})  # fails there: kept for the error count
    assert not index.dispatch({"eventName": "GetUser"})
    assert not index.dispatch({"eventName": "CreateRole"})


def test_every_way_docs_rules_md_writes_a_rule_is_indexed_on_event_name() -> None:
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    start = text.index("```jq", text.index("a rule is indexed on eventName:")) + len("```jq")
    programs = [line.split("  #")[0].strip() for line in text[start : text.index("```", start)].strip().splitlines()]
    assert len(programs) >= 8
    reasons = [reason for _, _, reason in explain([Rule(name=p, jq_match=p) for p in programs])]
    assert all(", indexed on eventName" in reason for reason in reasons), reasons
