"""Go (RE2) regex syntax in tattletail rules: read as tattletail read it, or refused with the fix."""

from __future__ import annotations

import json

import orjson
import pytest

from stream_processor.cli import main
from stream_processor.config import parse_config
from stream_processor.config.go_regex import translate_pattern, translate_program
from stream_processor.errors import ConfigError
from stream_processor.matcher import build_matcher
from stream_processor.model import CloudTrailEvent, Position


def rules(jq_match: str) -> str:
    return f'[[rule]]\nname = "r"\njq_match = {json.dumps(jq_match)}\ndestinations = ["out"]\n' + (
        '[[destination]]\nid = "out"\ntype = "stdout"\n'
    )


def matches(jq_match: str, event: dict[str, object]) -> list[object]:
    config = parse_config(rules(jq_match), "t.toml")
    raw = orjson.dumps(event)
    found = build_matcher(config.rules).match_batch([CloudTrailEvent(raw, orjson.loads(raw), Position("t", "1"))])
    return [match.output for match in found.matches]


@pytest.mark.parametrize(
    ("go", "oniguruma"),
    [
        ("(?P<verb>Create)User", "(?<verb>Create)User"),
        ("^(?P<a>x)|(?P<b>y)$", "^(?<a>x)|(?<b>y)$"),
        ("\\pL+\\PN", "\\p{L}+\\P{N}"),
        ("[\\pL\\d]", "[\\p{L}\\d]"),
        ("(?i-U)abc", "(?i)abc"),
        ("(?-U:x+)", "(?:x+)"),
        ("\\\\pL", "\\\\pL"),  # an escaped backslash, then the letters p and L
        ("[(?P<]", "[(?P<]"),  # inside a class: literal characters
        ("\\p{Greek}", "\\p{Greek}"),
        ("(?i)CreateUser", "(?i)CreateUser"),
    ],
    ids=["named-group", "two-named-groups", "one-letter-classes", "class-in-brackets", "minus-U", "minus-U-group",
         "escaped-backslash", "literal-in-class", "braced-class", "other-flags"],
)  # fmt: skip
def test_go_patterns_read_as_go_read_them(go: str, oniguruma: str) -> None:
    translated, _, refused = translate_pattern(go)
    assert (translated, refused) == (oniguruma, [])


def test_a_tattletail_named_group_matches_as_it_did_under_tattletail() -> None:
    """`test("(?P<verb>Create)User")` is an Oniguruma error (no match ever); tattletail matched CreateUser."""
    program = 'select(.eventName | test("(?P<verb>Create)User")) | .eventName | capture("(?P<verb>[A-Z][a-z]+)")'
    assert matches(program, {"eventName": "CreateUser"}) == [{"verb": "Create"}]
    assert matches(program, {"eventName": "DeleteUser"}) == []


def test_only_regex_arguments_are_rewritten() -> None:
    program = '(.a == "(?P<x>)") and (.b | test("(?P<y>b)")) and (.c | split("(?P<z>"; null) | length > 0)'
    translated = translate_program(program)
    expected = '(.a == "(?P<x>)") and (.b | test("(?<y>b)")) and (.c | split("(?<z>"; null) | length > 0)'
    assert translated.program == expected
    assert len(translated.changes) == 2
    assert translate_program('split("(?P<a>")').program == 'split("(?P<a>")'  # split/1 takes a plain string


def test_regexes_inside_string_interpolation_are_found() -> None:
    translated = translate_program('"\\(.a | test("\\\\pL"))"')
    assert translated.program == '"\\(.a | test("\\\\p{L}"))"'


def test_ungreedy_mode_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(rules('select(.eventName | test("(?U)Create.+User"))'), "t.toml")
    (problem,) = raised.value.problems
    assert 'rule #1 "r": jq_match: regex "(?U)Create.+User"' in problem
    assert "make each quantifier lazy" in problem


def test_validate_says_what_it_translated(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "t.toml"
    path.write_text(rules('select(.eventName | test("(?P<verb>Create)User"))'))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: OK: 1 rule, 1 destination" in out
    assert "(?P<name>...) (Go's named group) reads (?<name>...)" in out


def test_a_program_that_does_not_lex_is_left_to_the_compile_check() -> None:
    assert translate_program('test("(?P<a>x)').program == 'test("(?P<a>x)'
