"""`validate` refuses what can run or allocate without bound on one event, and only that."""

from __future__ import annotations

import jq
import pytest

from stream_processor.config import parse_config
from stream_processor.errors import ConfigError
from stream_processor.matcher.bounds import RANGE_CAP, bounds_violations

REFUSED = [
    # (program, what the message must name)
    ("def f: f; f", "`f`"),
    ("def f: [f]; f", "`f`"),
    ("def f(x): x | f(x); f(.)", "`f`"),
    ("def f: def g: f; g; f", "`f` → `g` → `f`"),
    ("def apply(g): g; def loop: apply(loop); loop", "`loop`"),  # through a parameter
    ("def f: 1; def g: g | f; g", "`g`"),
    ("def f: f; 1", "`f`"),  # defined, never called: still refused
    ("if .a then def f: f | .b; f else . end", "`f`"),
    ("reduce .[] as $x (0; def f: f; f)", "`f`"),
    ("repeat(.)", "`repeat`"),
    ("limit(1e9; repeat(.))", "`repeat`"),
    ("first(repeat(.a))", "`repeat`"),
    ("[while(true; .)]", "`while`"),
    ("until(. > 100; . + 1)", "`until`"),
    ("reduce range(1e9) as $i (0; . + 1)", "`range`"),
    ("[range(1e8)]", "`range`"),
    ("range(.n)", "`range`"),
    (".n as $n | [range($n)]", "`range`"),
    ("range(0; .count)", "`range`"),
    ("range(0; infinite)", "`range`"),
    ("range(0; 1e9; 2)", "`range`"),
    (f"range({RANGE_CAP + 1})", "`range`"),
    ('"\\(range(1e9))"', "`range`"),
    ("{a: [range(1e9)]}", "`range`"),
    ("recurse(.a)", "`recurse(f)`"),
    ("recurse(. + 1)", "`recurse(f)`"),
    ("recurse(.a; . != null)", "`recurse(f)`"),
    ("recurse(..)", "`recurse(f)`"),
    ("[.[]] | combinations", "`combinations`"),
    ("[.a, .b] | combinations(3)", "`combinations`"),
    ('"x" * 1e9', "`*`"),
    (".userAgent * .n", "`*`"),
    ('"=" * (.requestParameters.count | tonumber)', "`*`"),
    (".s * 3 * .n", "`*`"),
    (".a *= .n", "`*=`"),
    (".[.n] = 1", "`=`"),
    (".i as $i | .a[$i] |= 1", "`|=`"),
    (".[1e9] = 1", "`=`"),
    ("(.a | .[.n]) = 1", "`=`"),
    ("first(.[.i]) = 1", "`=`"),
    ("getpath(.p) = 1", "`=`"),
    ("setpath(.p; 1)", "`setpath`"),
    ('setpath(["a", 1e9]; 1)', "`setpath`"),
    ("pick(.a[1e9])", "`pick`"),
    ("pick(.[.n])", "`pick`"),
    ("fromstream(.a[])", "`fromstream`"),
]

ALLOWED = [
    'select(.eventName == "CreateAccessKey")',
    'select(.eventName == "StartSession") | "user: \\(.responseElements.sessionId) on \\(.requestParameters.target)"',
    "recurse",
    "..",
    "[.. | strings] | length",
    "recurse(.[]?)",
    "recurse(.children[])",
    "recurse(.[]; . != null)",
    'recurse(.[] | select(type == "object"))',
    'walk(if type == "string" then ascii_downcase else . end)',
    "[paths] | length",
    "limit(3; .[])",
    "first(range(10))",
    "range(5)",
    "range(0; 10)",
    "range(10; 0; -1)",
    "range(0; 1e5; 1)",
    "[range(0; 10; 0)]",
    "reduce .[] as $x (0; . + $x)",
    "foreach .[] as $x (0; . + 1; [$x, .])",
    ". * 2",
    "2 * 3 * .s",
    "60 * 60 * 24",
    "(.x | tonumber) * 1000",
    "-1 * .x",
    ".a *= 3",
    ".a.b = 1",
    ".[5] = 1",
    '.["key"] |= ascii_downcase',
    ".a[] |= tostring",
    "del(.[1e9])",
    'getpath(["a", 1e9])',
    'setpath(["a", 0]; 1)',
    "pick(.a.b)",
    "fromstream(tostream)",
    'to_entries | map(.key) | join(",")',
    "def f: 1; def g: f + f; g",
    "def f(x): x | x; f(f(.))",
    "def repeat(f): f; repeat(.)",  # a definition shadows the builtin
    "def range($n): $n; range(1e9)",
    "{repeat: 1, range: 2, while}",
    ".repeat",
    '"repeat(.) range(1e9)"',
    ". as {a: $x, $y} | [$x, $y]",
    "label $out | .[] | if . then ., break $out else empty end",
    'try error("x") catch .',
    '{a: if .x then 1, 2 else 3 end, "b": .c}',
    "$__loc__",
    ".[1:3]",
    'test("^(\\\\w+\\\\s?)*$")',  # backtracking regexes are the time budget's to stop
]


@pytest.mark.parametrize(("program", "named"), REFUSED)
def test_unbounded_constructs_are_refused_by_name(program: str, named: str) -> None:
    violations = bounds_violations(program)
    assert violations, program
    assert any(named in message for message in violations), violations


@pytest.mark.parametrize("program", [program for program, _ in REFUSED])
def test_refused_programs_are_valid_jq(program: str) -> None:
    # Refusing a program jq would reject anyway proves nothing.
    jq.compile(program)


@pytest.mark.parametrize("program", ALLOWED)
def test_bounded_programs_are_allowed(program: str) -> None:
    assert bounds_violations(program) == []


@pytest.mark.parametrize("program", ALLOWED)
def test_allowed_programs_are_valid_jq(program: str) -> None:
    jq.compile(program)


def test_the_position_of_the_construct_is_given() -> None:
    (message,) = bounds_violations("select(.a)\n| limit(5; repeat(.b))")
    assert "line 2, column 12" in message


def test_a_program_too_deep_to_check_is_refused_not_crashed() -> None:
    program = '"' + "\\(" * 2000 + "." + ")" * 2000 + '"'
    assert bounds_violations(program)


def test_validate_names_the_rule_and_the_construct() -> None:
    text = "[[rule]]\nname = \"Spin\"\njq_match = 'limit(1e9; repeat(.))'\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "rules.toml")
    (problem,) = raised.value.problems
    assert problem.startswith('rules.toml: rule #1 "Spin": jq_match uses `repeat`')


def test_validate_checks_title_and_group_by_too() -> None:
    # Titles and group_by run per alert in the worker, on libjq: the same bounds apply.
    text = "[[rule]]\nname = \"r\"\njq_match = 'select(.a)'\ntitle = 'def f: f; f'\ngroup_by = '[range(1e9)]'\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "rules.toml")
    problems = raised.value.problems
    assert any("title defines `f`" in problem for problem in problems), problems
    assert any("group_by uses `range`" in problem for problem in problems), problems


def test_validate_refuses_a_program_too_deep_to_read_with_one_problem() -> None:
    program = '"' + '\\("' * 600 + "x" + '")' * 600 + '"'
    text = f"[[rule]]\nname = \"deep\"\njq_match = '''{program}'''\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "rules.toml")
    (problem,) = raised.value.problems
    assert "nested too deeply" in problem
