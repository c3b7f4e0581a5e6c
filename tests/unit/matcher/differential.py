"""Shared helpers for the differential tests: exact comparison and running one program both ways."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jq

from stream_processor.matcher.jqcompile import NONE, compile_program
from stream_processor.matcher.jqparse import parse
from stream_processor.matcher.jqruntime import JqError, NeedsLibjq, to_output
from stream_processor.matcher.libjq import _NO_OUTPUT, first_output


def same(a: Any, b: Any) -> bool:
    """Equal with exact types all the way down: 1, 1.0 and True are three different outputs."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, float) and a != a:
        return bool(b != b)
    return bool(a == b)


@lru_cache(maxsize=512)
def _libjq(program: str) -> Any:
    return jq.compile(program)


@lru_cache(maxsize=512)
def compiled(program: str) -> Any:
    """The compiled first-output function; raises Unsupported when the program is outside the subset."""
    return compile_program(parse(program))


def libjq_outcome(program: str, event: Any) -> tuple[str, Any]:
    compiled = _libjq(program)
    try:
        out = first_output(compiled, event)
    except ValueError as error:
        return ("error", str(error))
    return ("none", None) if out is _NO_OUTPUT else ("output", out)


def fast_outcome(program: str, event: Any) -> tuple[str, Any] | None:
    """The compiled path's outcome, or None when it hands this event to libjq."""
    run = compiled(program)
    try:
        out = run(event)
        if out is NONE:
            return ("none", None)
        return ("output", to_output(out))
    except JqError as error:
        return ("error", str(error))
    except NeedsLibjq:
        return None


def agree(fast: tuple[str, Any], reference: tuple[str, Any]) -> bool:
    if fast[0] != reference[0]:
        return False
    return fast[0] != "output" or same(fast[1], reference[1])
