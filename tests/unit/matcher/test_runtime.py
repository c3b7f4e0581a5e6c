"""Nothing a rule does on an event stops the shard: deep events, slow rules, rules that kill libjq.

Issue 12 (items 2 and 5): an event nested ~1,000 deep made the matcher raise RecursionError; rules without
bounds ran for minutes per event or aborted the process inside libjq.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from typing import Any

import orjson
import pytest

from stream_processor.config import Rule
from stream_processor.matcher import FastMatcher, LibjqMatcher
from stream_processor.matcher.budget import RuleBudget
from stream_processor.model import CloudTrailEvent, MatchResult, Position

# A quadratic loop over `.a`: bounded (validate accepts it), slow on a large array.
SLOW = "[.a[] as $x | .a[] | select(. == $x)] | length > 0"
NAMED = 'select(.eventName == "CreateAccessKey") | .eventName'
BUDGET = RuleBudget(budget_ms=20, quarantine_after=3, quarantine_window_seconds=600)


def _event(data: dict[str, Any], name: str, raw: bytes | None = None) -> CloudTrailEvent:
    return CloudTrailEvent(orjson.dumps(data) if raw is None else raw, data, Position(name))


def _deep(depth: int) -> tuple[dict[str, Any], bytes]:
    """`{"eventName": "CreateAccessKey", "a": [[[...]]]}` nested `depth` deep, and its JSON text."""
    inner: list[Any] = []
    data = {"eventName": "CreateAccessKey", "a": inner}
    for _ in range(depth):
        nested: list[Any] = []
        inner.append(nested)
        inner = nested
    raw = b'{"eventName":"CreateAccessKey","a":' + b"[" * (depth + 1) + b"]" * (depth + 1) + b"}"
    return data, raw


def _summary(result: MatchResult) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return (
        [(m.rule_name, str(m.event.position)) for m in result.matches],
        [(e.rule_name, str(e.position)) for e in result.errors],
    )


@pytest.fixture
def matchers() -> Any:
    made: list[FastMatcher] = []

    def make(rules: list[Rule], budget: RuleBudget = BUDGET, **options: Any) -> FastMatcher:
        matcher = FastMatcher(rules, budget, **options)
        made.append(matcher)
        return matcher

    yield make
    for matcher in made:
        matcher.close()


# -- deep events (issue 12, item 2)


@pytest.mark.parametrize("depth", [1_000, 3_000])
def test_a_deeply_nested_event_is_a_rule_result_not_a_crash(matchers: Any, depth: int) -> None:
    data, raw = _deep(depth)
    rules = [
        Rule(name="walks", jq_match="[..] | length > 10"),  # recursion over the event: too deep for Python
        Rule(name="prints", jq_match='select(.eventName == "CreateAccessKey") | tojson | length > 0'),
        Rule(name="named", jq_match=NAMED),
    ]
    result = matchers(rules).match_batch([_event(data, "deep", raw), _event({"eventName": "CreateAccessKey"}, "flat")])
    matches, _ = _summary(result)
    # libjq, fed the event's own text, decides where Python's recursion gives up: exact results, in order.
    assert matches == [
        ("walks", "deep"),
        ("prints", "deep"),
        ("named", "deep"),
        ("prints", "flat"),
        ("named", "flat"),
    ]


def test_the_reference_matcher_counts_a_deep_event_as_an_error_instead_of_raising() -> None:
    data, raw = _deep(3_000)
    result = LibjqMatcher([Rule(name="named", jq_match=NAMED)]).match_batch([_event(data, "deep", raw)])
    assert [(e.rule_name, str(e.position)) for e in result.errors] == [("named", "deep")]


def test_no_exception_from_a_compiled_rule_escapes(matchers: Any) -> None:
    matcher = matchers([Rule(name="named", jq_match=NAMED), Rule(name="other", jq_match=".eventName")])
    plan = matcher.plans[0]

    def broken(data: Any) -> Any:
        raise KeyError("a compiler bug")

    matcher.plans = (replace(plan, run=broken), *matcher.plans[1:])
    matcher._index()
    result = matcher.match_batch([_event({"eventName": "CreateAccessKey"}, "e0")])
    # The pair goes to libjq, which gives the right answer.
    assert _summary(result) == ([("named", "e0"), ("other", "e0")], [])


# -- the time budget on the compiled path


def test_a_slow_compiled_rule_is_interrupted_quarantined_and_the_others_keep_matching(matchers: Any) -> None:
    rules = [Rule(name="slow", jq_match=SLOW), Rule(name="named", jq_match=NAMED)]
    matcher = matchers(rules)
    assert [plan.path for plan in matcher.plans] == ["compiled", "compiled"]
    big = {"eventName": "CreateAccessKey", "a": list(range(4_000))}  # 16 million comparisons: seconds
    events = [_event(big, f"e{i}") for i in range(5)]

    result = matcher.match_batch(events)

    matches, errors = _summary(result)
    assert matches == [("named", f"e{i}") for i in range(5)]
    assert errors == [("slow", "e0"), ("slow", "e1"), ("slow", "e2")]  # then quarantined: not run on e3, e4
    assert all("time budget of 20 ms" in error.message for error in result.errors)
    (quarantined,) = result.quarantined
    assert quarantined.rule_name == "slow"
    assert quarantined.breaches == 3
    assert str(quarantined.event.position) == "e2"
    assert matcher.quarantined_rules == {"slow": SLOW}

    again = matcher.match_batch([_event(big, "e5")])
    assert _summary(again) == ([("named", "e5")], [])
    assert again.quarantined == []  # reported once


def test_a_rule_over_budget_once_is_an_error_for_that_event_only(matchers: Any) -> None:
    matcher = matchers([Rule(name="slow", jq_match=SLOW)])
    events = [
        _event({"a": [1, 2]}, "small"),
        _event({"a": list(range(4_000))}, "big"),
        _event({"a": [3]}, "small again"),
    ]
    result = matcher.match_batch(events)
    assert _summary(result) == ([("slow", "small"), ("slow", "small again")], [("slow", "big")])
    assert result.quarantined == []


def test_a_quarantined_rule_stays_quarantined_in_a_new_matcher_only_while_its_program_is_the_same(
    matchers: Any,
) -> None:
    rules = [Rule(name="slow", jq_match=SLOW)]
    same = matchers(rules, quarantined={"slow": SLOW})
    changed = matchers([Rule(name="slow", jq_match=SLOW + " and true")], quarantined={"slow": SLOW})
    events = [_event({"a": [1]}, "e0")]
    assert _summary(same.match_batch(events)) == ([], [])
    assert _summary(changed.match_batch(events)) == ([("slow", "e0")], [])


def test_budget_zero_disables_the_interruption(matchers: Any) -> None:
    matcher = matchers([Rule(name="slow", jq_match=SLOW)], RuleBudget(budget_ms=0))
    result = matcher.match_batch([_event({"a": list(range(600))}, "e0")])
    assert _summary(result) == ([("slow", "e0")], [])


# -- the libjq worker


def test_fallback_rules_run_batched_with_first_output_semantics(matchers: Any) -> None:
    rules = [
        Rule(name="select", jq_match='select(.eventName == "CreateAccessKey")'),
        Rule(name="string", jq_match='"user \\(.userIdentity.userName)"'),
        Rule(name="error", jq_match=".eventName | error"),
        Rule(name="first only", jq_match='.a[] | if . == 2 then error("after") else . end'),
        Rule(name="none", jq_match="empty"),
        Rule(name="false", jq_match="false"),
        Rule(name="loc", jq_match="$__loc__ | .line"),
    ]
    matcher = matchers(rules, force_libjq={rule.name for rule in rules})
    events = [
        _event({"eventName": "CreateAccessKey", "userIdentity": {"userName": "bob"}, "a": [1, 2]}, "e0"),
        _event({"eventName": "Other", "a": [2]}, "e1"),
    ]
    fast, reference = matcher.match_batch(events), LibjqMatcher(rules).match_batch(events)
    assert [(m.rule_name, str(m.event.position), m.output) for m in fast.matches] == [
        (m.rule_name, str(m.event.position), m.output) for m in reference.matches
    ]
    assert [(e.rule_name, str(e.position), e.message) for e in fast.errors] == [
        (e.rule_name, str(e.position), e.message) for e in reference.errors
    ]
    assert fast.matches[0].output == events[0].data  # the event itself, as tattletail shows it


def test_a_fallback_rule_over_budget_kills_the_worker_which_restarts_and_finds_the_culprit(matchers: Any) -> None:
    rules = [Rule(name="slow", jq_match=SLOW), Rule(name="named", jq_match=NAMED)]
    matcher = matchers(rules, force_libjq={"slow", "named"})
    big = {"eventName": "CreateAccessKey", "a": list(range(3_000))}
    events = [_event({"eventName": "CreateAccessKey", "a": [1]}, "e0"), _event(big, "e1"), _event(big, "e2")]

    result = matcher.match_batch(events)

    matches, errors = _summary(result)
    # The worker died on e1: run rule by rule there, "named" still matched; the rest of the batch went on.
    assert matches == [("slow", "e0"), ("named", "e0"), ("named", "e1"), ("named", "e2")]
    assert errors == [("slow", "e1"), ("slow", "e2")]
    assert all("time budget of 20 ms" in e.message for e in result.errors)
    worker = matcher._worker
    assert worker is not None and worker.deaths >= 2 and worker.starts >= 3


@pytest.mark.parametrize(
    "program",
    [
        "def f: [f]; f",  # unbounded recursion aborts libjq (validate refuses it; the matcher survives it anyway)
        'reduce range(40) as $i ("x"; . + .) | length',  # validate accepts it; 2^40 bytes: the memory limit stops it
    ],
)
def test_a_rule_that_kills_libjq_does_not_kill_the_worker(matchers: Any, program: str) -> None:
    budget = RuleBudget(budget_ms=10_000, libjq_memory_mib=128)  # the memory limit, not the time, ends it
    rules = [Rule(name="killer", jq_match=program), Rule(name="named", jq_match=NAMED)]
    matcher = matchers(rules, budget, force_libjq={"killer", "named"})
    events = [_event({"eventName": "CreateAccessKey"}, "e0"), _event({"eventName": "CreateAccessKey"}, "e1")]

    result = matcher.match_batch(events)

    matches, errors = _summary(result)
    assert matches == [("named", "e0"), ("named", "e1")]
    assert errors == [("killer", "e0"), ("killer", "e1")]
    assert all("libjq died on this event (SIGABRT" in e.message for e in result.errors), result.errors


def test_a_worker_killed_from_outside_between_batches_is_replaced(matchers: Any) -> None:
    matcher = matchers([Rule(name="named", jq_match=NAMED)], force_libjq={"named"})
    events = [_event({"eventName": "CreateAccessKey"}, "e0")]
    assert _summary(matcher.match_batch(events)) == ([("named", "e0")], [])
    worker = matcher._worker
    assert worker is not None and worker._process is not None
    os.kill(worker._process.pid, signal.SIGKILL)
    worker._process.wait()
    assert _summary(matcher.match_batch(events)) == ([("named", "e0")], [])
    assert worker.starts == 2


def test_repeated_libjq_deaths_quarantine_the_rule(matchers: Any) -> None:
    rules = [Rule(name="killer", jq_match="def f: [f]; f"), Rule(name="named", jq_match=NAMED)]
    matcher = matchers(rules, force_libjq={"killer", "named"})
    events = [_event({"eventName": "CreateAccessKey"}, f"e{i}") for i in range(5)]
    result = matcher.match_batch(events)
    assert [e.rule_name for e in result.errors] == ["killer"] * 3
    assert [q.rule_name for q in result.quarantined] == ["killer"]
    assert [m.rule_name for m in result.matches] == ["named"] * 5


def test_the_libjq_worker_is_fed_the_events_text_never_json_dumps(matchers: Any, monkeypatch: Any) -> None:
    import json

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("json.dumps called on the hot path")

    monkeypatch.setattr(json, "dumps", refuse)
    data, raw = _deep(2_000)  # too deep for orjson.dumps too: the original text is what libjq gets
    matcher = matchers([Rule(name="walks", jq_match="[..] | length > 10")], force_libjq={"walks"})
    assert _summary(matcher.match_batch([_event(data, "deep", raw)])) == ([("walks", "deep")], [])


def test_a_fallback_rule_is_indexed_so_libjq_sees_only_the_events_it_can_match(matchers: Any) -> None:
    rule = Rule(  # `now` keeps the rule on libjq
        name="admin key", jq_match='select(.eventName == "CreateAccessKey" and now > 0 and (.userName | index("adm")))'
    )
    matcher = matchers([rule])
    (plan,) = matcher.plans
    assert plan.path == "libjq" and "indexed on eventName" in matcher.index.describe(0)
    others = [_event({"eventName": "ListUsers", "userName": "admin"}, f"e{i}") for i in range(3)]
    assert _summary(matcher.match_batch(others)) == ([], [])
    assert matcher._worker is None  # no event of the batch could match: libjq never started
    hit = matcher.match_batch([_event({"eventName": "CreateAccessKey", "userName": "badmin"}, "hit")])
    assert _summary(hit) == ([("admin key", "hit")], [])


def test_libjq_answers_are_remembered_by_what_the_rule_reads(matchers: Any, monkeypatch: Any) -> None:
    rules = [
        Rule(name="root", jq_match='select(.userIdentity.type == "Root") | "root from \\(.sourceIPAddress)"'),
        Rule(name="clock", jq_match='select(.userIdentity.type == "Root" and now > 0)'),
    ]
    matcher = matchers(rules, force_libjq={"root", "clock"})
    asked: list[int] = []

    def batch(*types: str) -> MatchResult:
        events = [
            _event({"userIdentity": {"type": kind, "arn": f"arn:{i}"}, "sourceIPAddress": f"10.0.0.{i}"}, f"e{i}")
            for i, kind in enumerate(types)
        ]
        return matcher.match_batch(events)

    first = batch("IAMUser", "Root", "IAMUser")
    worker = matcher._worker
    evaluate = worker.evaluate
    monkeypatch.setattr(
        worker, "evaluate", lambda jobs, on_breach=None: asked.append(len(jobs)) or evaluate(jobs, on_breach)
    )
    second = batch("IAMUser", "Root", "IAMUser", "AssumedRole")
    # "root" on IAMUser events reads {"userIdentity": {"type": "IAMUser"}, "sourceIPAddress": ...}: the address
    # differs per event, so only the rule set without `now` could be remembered... and `now` is never remembered.
    assert _summary(first) == ([("root", "e1"), ("clock", "e1")], [])
    assert _summary(second) == ([("root", "e1"), ("clock", "e1")], [])
    assert asked == [4]  # every event still asked: the set includes "clock", which reads the clock

    alone = matchers([rules[0]], force_libjq={"root"})
    events = [_event({"userIdentity": {"type": "IAMUser"}, "sourceIPAddress": "10.0.0.1"}, f"e{i}") for i in range(3)]
    alone.match_batch(events[:1])
    calls: list[int] = []
    inner = alone._worker.evaluate
    monkeypatch.setattr(
        alone._worker, "evaluate", lambda jobs, on_breach=None: calls.append(len(jobs)) or inner(jobs, on_breach)
    )
    assert _summary(alone.match_batch(events)) == ([], [])
    assert calls == []  # the same projection, already answered: libjq is not asked again


def test_a_process_that_matched_exits_cleanly_with_its_own_status() -> None:
    # The budget's timer keeps ticking after a batch; at exit Python restores SIGPROF's default action (end the
    # process), so a late tick turned every clean exit into "killed by SIGPROF" (status -27).
    script = (
        "import sys\n"
        "from stream_processor.config import Rule\n"
        "from stream_processor.matcher import build_matcher\n"
        "from stream_processor.model import CloudTrailEvent, Position\n"
        "m = build_matcher([Rule('r', 'select(.eventName == \"X\")', '', (), 1)])\n"
        "ev = [CloudTrailEvent(b'{}', {'eventName': 'X', 'eventVersion': '1', 'eventSource': 's'}, Position('p'))]\n"
        "for _ in range(20):\n"
        "    m.match_batch(ev * 20000)\n"
        "sys.exit(3)\n"
    )
    codes = [subprocess.run([sys.executable, "-c", script], check=False).returncode for _ in range(3)]
    assert codes == [3, 3, 3]
