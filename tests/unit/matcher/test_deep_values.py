"""Events nested 1,000 to 100,000 deep never crash the compiled path: it answers, or hands the event to libjq."""

from __future__ import annotations

from typing import Any

import pytest

from stream_processor.matcher.jqcompile import NONE, compile_program
from stream_processor.matcher.jqparse import parse
from stream_processor.matcher.jqruntime import JqError, NeedsLibjq, to_output, tojson

DEPTHS = [1_000, 10_000, 100_000]
PROGRAMS = [
    "tojson", "tostring", "[..] | length", "[paths] | length", "flatten", ". == .", ". < [.]", "[.] | sort | length",
    "contains(.)", "[.] | inside([.])", "length", ".a", ".[0]", 'getpath(["a", "a"])', "[.. | numbers]",
    "unique | length", '@json "\\(.)"', "to_entries | length", "add", "[.[]?] | length", "{a: .} | .a | type",
    '[paths(type == "number")] | length', "[., .] | group_by(.) | length", "tojson | length", 'test("a")', ".",
    "IN(.)", "any(..; . == 1)", "[.] | flatten | length", "[..] | last | type", "first(.. | strings)",
]  # fmt: skip


def _nested_arrays(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _nested_objects(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("shape", [_nested_arrays, _nested_objects], ids=["arrays", "objects"])
def test_compiled_programs_never_raise_anything_else(shape: Any, depth: int) -> None:
    # GIVEN an event nested `depth` deep, WHEN each program runs compiled, THEN it returns a value, raises a jq
    # error, or raises NeedsLibjq (the matcher then asks libjq): never RecursionError, MemoryError or a crash.
    value = shape(depth)
    for program in PROGRAMS:
        run = compile_program(parse(program))
        try:
            out = run(value)
            if out is not NONE:
                to_output(out)
        except (JqError, NeedsLibjq):
            pass


@pytest.mark.parametrize("depth", DEPTHS)
def test_recursion_free_builtins_answer_exactly(depth: int) -> None:
    arrays, objects = _nested_arrays(depth), _nested_objects(depth)
    assert compile_program(parse("[..] | length"))(arrays) == depth + 1
    assert compile_program(parse("first(.. | strings)"))(objects) == "x"
    assert compile_program(parse("flatten"))(arrays) == [1]
    assert to_output(arrays) is arrays
    if depth <= 10_000:  # jq prints up to 10,000 levels
        assert tojson(arrays) == "[" * depth + "1" + "]" * depth
        assert tojson(objects) == '{"a":' * depth + '"x"' + "}" * depth
    else:
        with pytest.raises(NeedsLibjq):
            tojson(arrays)
