"""Anything jq can output can be written: big integers, any depth, NaN and infinities."""

from __future__ import annotations

import json
from typing import Any

import jq
import pytest

from stream_processor.json_out import dumps, dumps_text


def nested(depth: int) -> list[Any]:
    top: list[Any] = []
    current = top
    for _ in range(depth - 1):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return top


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        pytest.param("1e20", b"100000000000000000000", id="integer-beyond-64-bits"),
        pytest.param("[pow(2; 70), -pow(2; 70)]", b"[1180591620717411303424,-1180591620717411303424]", id="pow"),
        pytest.param("{a: 1e19}", b'{"a":10000000000000000000}', id="in-an-object"),
        pytest.param(
            "[nan, infinite, -infinite]", b"[null,1.7976931348623157e+308,-1.7976931348623157e+308]", id="nan"
        ),
    ],
)
def test_every_number_jq_outputs_is_written_as_jq_writes_it(program: str, expected: bytes) -> None:
    value = jq.compile(program).input_value(None).first()
    assert dumps(value) == expected
    assert json.loads(dumps_text(value, spaced=True)) == json.loads(expected)


def test_a_value_nested_past_every_library_limit_is_written_whole() -> None:
    value = nested(5_000)
    text = dumps(value)
    assert text == b"[" * 5_000 + b"]" * 5_000
    assert dumps_text({"k": value}, spaced=True).startswith('{"k": [[[')


def test_python_floats_jq_never_writes_as_such_still_give_json() -> None:
    text = dumps_text({"n": float("nan"), "i": float("inf"), 2**80: "big key"}, spaced=True)
    assert json.loads(text) == {"n": None, "i": 1.7976931348623157e308, str(2**80): "big key"}
