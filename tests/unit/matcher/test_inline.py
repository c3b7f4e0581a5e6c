"""A rule's own `def`s are read through by the index: inlined with jq's scoping, refused when recursive."""

from __future__ import annotations

import pytest

from stream_processor.config import Rule
from stream_processor.matcher import explain
from stream_processor.matcher.index import RuleIndex, Top, condition
from stream_processor.matcher.inline import MAX_NODES, CannotInline, inline_definitions
from stream_processor.matcher.jqparse import parse


def _dispatches(program: str, event: dict[str, object]) -> bool:
    return bool(RuleIndex([condition(parse(program))], [program]).dispatch(event))


@pytest.mark.parametrize(
    "program",
    [
        'def is_create: .eventName == "CreateUser"; select(is_create)',
        'def named($n): .eventName == $n; select(named("CreateUser") or named("DeleteUser"))',
        'def one_of(f): f | IN("CreateUser", "DeleteUser"); select(one_of(.eventName))',
        'def lower: ascii_downcase; select(.eventName | lower == "createuser")',
        'def select(f): if f then . else empty end; select(.eventName == "CreateUser")',  # shadows a builtin
    ],
)
def test_a_rule_written_with_helper_functions_is_indexed(program: str) -> None:
    (_, path, why) = explain([Rule(name="r", jq_match=program)])[0]
    assert path == "compiled" and "indexed on eventName" in why, why
    assert _dispatches(program, {"eventName": "CreateUser"})
    assert not _dispatches(program, {"eventName": "CreateRole"})


def test_a_body_sees_the_variables_where_it_was_defined_not_where_it_is_called() -> None:
    # jq binds $e in f to the event; the `$e` bound later to {} at the call site is another variable.
    program = '. as $e | def f: $e.eventName == "CreateUser"; {} as $e | select(f)'
    assert _dispatches(program, {"eventName": "CreateUser"})
    assert not _dispatches(program, {"eventName": "DeleteUser"})


def test_an_argument_keeps_the_callers_variables() -> None:
    # f binds its own $v; the argument's $v is the caller's, the event name.
    program = '.eventName as $v | def f(g): "other" as $v | g; select(f($v == "CreateUser"))'
    assert _dispatches(program, {"eventName": "CreateUser"})
    assert not _dispatches(program, {"eventName": "DeleteUser"})


def test_a_recursive_function_is_not_inlined_and_the_rule_runs_on_every_event() -> None:
    program = 'def walk_up: if . == null then . else walk_up end; select(.eventName == "A" and walk_up)'
    found = condition(parse(program))
    assert isinstance(found, Top) and "calls itself" in found.why
    with pytest.raises(CannotInline, match="calls itself"):
        inline_definitions(parse('def f(g): g; def h: f(h); h'))


def test_a_program_that_doubles_at_each_call_is_refused_past_the_bound() -> None:
    levels = 16  # 2^16 copies of the innermost body
    defs = "".join(f"def f{i}: f{i - 1}, f{i - 1}; " for i in range(1, levels + 1))
    program = f'def f0: .eventName == "A"; {defs}select(f{levels})'
    with pytest.raises(CannotInline, match=str(MAX_NODES)):
        inline_definitions(parse(program))
    assert isinstance(condition(parse(program)), Top)
