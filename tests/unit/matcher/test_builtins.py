"""Focused cases for each compiled builtin, checked against libjq: outputs, errors, and who answers.

Every (program, input) pair is run compiled and on libjq; the outcomes must agree exactly, error messages too.
An input the compiled path hands to libjq must be one listed in HANDED_TO_LIBJQ: the compiled path may not
quietly give up on the common cases.
"""

# ruff: noqa: E501, RUF001 - a table of jq programs and inputs, one case per line

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.matcher.differential import agree, compiled, fast_outcome, libjq_outcome

CASES: list[tuple[str, str]] = [
    ('indices("a"), index("a"), rindex("a")', '["banana", "", "aé a", null, [1,"a","a"], {"a":1}, 1]'),
    ("indices(1), indices([1,2]), indices([])", "[[1,2,1,2], [], [1]]"),
    ('[indices(", ")]', '["a, b, c", ", , "]'),
    ("explode, (explode | implode)", '["aé😀", "", 1]'),
    ("implode", '[[97,1.7,-1,1114112,55296], ["a"], [null], 1, []]'),
    ("trim, ltrim, rtrim", '[" \\u00a0a\\u3000 ", "\\u200bx\\u200b", 1, "", "   "]'),
    ('trimstr("a")', '["aba", "a", "b", 1]'),
    (
        "tonumber",
        '["abc", "", " 1", "1 ", "0x10", "1e", ".5", "5.", "+1", "-", "NaN", "nan", "1e1000", "01", "-0", "1.50", "1E2", "00", "12", "1.5", "-3", "1e-7", "١", 3, null]',
    ),
    ("tonumber | tojson", '["12", "1.5", "-3"]'),
    ("toboolean", '["true", "false", true, "x", 1, null]'),
    (
        "fromjson",
        '["{\\"a\\":1.50}", "nan", "[1,2", "1 2", " 1 ", "\\"x\\"", "", "-0", "{\\"a\\":1,\\"a\\":2}", "[-0.0]", "[1,{\\"b\\":[true,null]}]", "1.5", "12345678901234567890", 1]',
    ),
    ("abs", '[-1, -1.5, "a", null, false, [1], -0, 3]'),
    ("[isinfinite, isnan, isnormal, isfinite]", '[0, 1, 1e-310, "a", null, 1.5]'),
    ("[infinite, -infinite, nan] | map(isinfinite, isnan)", "[null]"),
    ("infinite, nan", "[null]"),
    ("[normals, finites]", '[0, 1, 1e-310, "a"]'),
    ("floor, ceil, round", '[1.5, -1.5, 2.5, -0.5, 0.49999999999999994, 3, "a", 1e300]'),
    ("sort, unique, min, max", '[[3,1,2,1], [], [null,1], {"a":1}, "x", [[1],"a",null,true,false,{"a":1},0.5]]'),
    (
        "sort_by(.a), group_by(.a), unique_by(.a), min_by(.a), max_by(.a)",
        '[[{"a":2,"i":0},{"a":1,"i":1},{"a":2,"i":2}], [], {"x":{"a":1}}, [1]]',
    ),
    ("sort_by(.a, .b)", '[[{"a":1,"b":2},{"a":1,"b":1},{"a":0,"b":3}]]'),
    ("reverse", '["abc", "", null, {"a":1}, {}, 0, 2, [1,2,3]]'),
    ("flatten, flatten(1), flatten(0)", '[[1,[2,[3,[4]]]], {"a":[1,[2]],"b":3}, "a", null, []]'),
    ("flatten(-1)", "[[1]]"),
    (
        "from_entries",
        '[[{"key":"a","value":1},{"k":"b","value":2}], [{"name":"a","Value":1},{"Key":"b","value":null}], [{"key":false,"name":"x","value":1}], [], {}, [1], [{"key":1,"value":2}], [{"key":null}]]',
    ),
    ("with_entries(.value |= .)", '[{"a":1}]'),
    ("with_entries(select(.value > 1))", '[{"a":1,"b":2}, [5,6]]'),
    ("with_entries({key: .value, value: .key})", '[{"a":"x","b":"y"}]'),
    (
        "add, add(.[]?), add(empty)",
        '[[1,2], ["a","b"], [[1],[2]], [{"a":1},{"b":2}], [], null, [1.5, 1], [null, "a"], ["a", 1], {"a":"x","b":"y"}]',
    ),
    ('getpath(["a","b"]), getpath([]), getpath(["a",0])', '[null, {"a":null}, {"a":1}, {"a":{"b":2}}, {"a":[7]}]'),
    ('getpath("a")', "[{}]"),
    ("[paths]", '[{"a":[1,{"b":null}],"c":2}, 1, [], [[[]]]]'),
    ('[paths(type == "number")], [paths(..)]', '[{"a":[1,{"b":null}],"c":2}, [[1]]]'),
    ("[limit(1.5; 1,2,3)], [limit(0; 1,2)], [limit(2; .[])]", "[[5,6,7]]"),
    ("[limit(-1; 1)]", "[null]"),
    ("[nth(1.5; 1,2,3)], [nth(0; 1,2)], [skip(1.5; 1,2,3)], [skip(0; 1)], nth(1), nth(-1)", "[[5,6,7]]"),
    ("[nth(-1; 1)]", "[null]"),
    ("[range(3)], [range(1;3)], [range(.)]", "[2, 0, -1]"),
    ("@text, @json, @html, @uri, @sh, @base64", '["<&\'\\"> a/é~", 1, null, [1,"<"], "it\'s"]'),
    ("@csv, @tsv", '[[1,"a\\"b",null,true,1.5,"a\\tb\\\\c\\nd\\re"], [[1]], "x"]'),
    ("@base64d", '["YWJj", "YWI=", "YQ", "Y", "YW=Jj", "!!!!", "/w==", 1, "4pyT"]'),
    ("@urid", '["a%20b", "%zz", "%e9", "%C3%A9"]'),
    ('@base64 "x\\(.a)y", @csv "\\(.)", @json "a\\(.)b"', '[{"a":"hi"}, {"a":[1]}]'),
    ('format("csv"), format("text")', '[[1,"a"]]'),
    (
        "mktime",
        '[[1970,0,1,0,0,0,4,0], [2024,1,29,12,30,15.7,0,0], [2024,12,1,0,0,0], [1969,11,31,23,59,59], [], ["a"], 1, [2024,0,1]]',
    ),
    ("gmtime", '[0, 1.5, -1.5, 1700000000, 1e12, "a", 1.7e9]'),
    (
        'strftime("%Y-%m-%dT%H:%M:%SZ"), strftime("%A %B %d %j %e %a %b %c %y %%")',
        '[0, 1700000000, [2024,1,29,12,30,15,0,0], [2024,13,1], "x", 1.5]',
    ),
    ('strftime("%Z")', "[0]"),
    (
        'strptime("%Y-%m-%dT%H:%M:%SZ")',
        '["2024-02-29T12:30:15Z", "2023-02-29T12:30:15Z", "2024-1-05T00:00:00Z", "x", 1, "2024-02-29T12:30:15Zx", "1900-01-01T00:00:00Z"]',
    ),
    ("fromdateiso8601, fromdate", '["2024-02-29T12:30:15Z", "1970-01-01T00:00:00Z", "x", "2015-03-05T23:51:47Z"]'),
    ("todateiso8601, todate", '[1425599507, 0, 1.9, "x", [2015,2,5,23,51,47,4,63]]'),
    ('strptime("%d/%m/%Y") | mktime', '["05/03/2015"]'),
    ("[infinite, -infinite, nan] | map(isinfinite, isnan)", "[null]"),
    ("-(.a), -(1.5), -.", '[{"a":2}, 0, "x", 1.5]'),
    ('$__loc__, "a\\n\\(1 | $__loc__)"', "[null]"),
    ("[label $f | 1, break $f, 2]", "[null]"),
    ('label $f | try (break $f) catch "caught"', "[null]"),
    ("[.[] | label $out | if . > 1 then ., break $out else . end]", "[[1,2,3]]"),
    (
        'try error("x") catch ., try error({"a":1}) catch .a, try error(null) catch ., (try error catch .)',
        '[null, 5, "m"]',
    ),
    ('try (1, error("x"), 3) catch [.]', "[null]"),
    ("try .a catch .", "[1]"),
    ('[.[] | try tonumber catch "bad"]', '[["1", "x", null]]'),
    ("def f: .a; f, (def g(x): x + 1; g(f))", '[{"a":2}, {"a":"s"}]'),
    ("def f($a; b): [$a, b, a]; f(.x, .y; .z)", '[{"x":1,"y":2,"z":3}]'),
    ("def f(g): [g, g]; f(.[] | select(. > 1))", "[[1,2,3]]"),
    ("def f(g): def h: g; [h, (1 | h)]; f(.)", "[5]"),
    ("def f: def f: 2; f; [f, 1]", "[null]"),
    ("def inc(x): x + 1; def twice(f): f | f; [.[] | twice(inc(.))]", "[[1,2]]"),
    ("def f: reduce .[] as $x (0; . + $x); f", "[[1,2,3]]"),
    ("def f($x): $x as $y | [$x, $y]; f(1,2)", "[null]"),
    ("def f: f; 1", "[null]"),
    ("def f: f; f", "[null]"),
    ("def f(g): g; f(f(1))", "[null]"),
    ('def map(f): "mine"; map(.)', "[[1]]"),
    ("try error catch (. + 1)", "[1]"),
    ("[.[] as $x | label $f | $x | if . == 2 then break $f else . end]", "[[1,2,3]]"),
    ("[path(..)]", '[{"a":[1,{"b":2}]}, 1, null, []]'),
    ("[path(.a[].b?)]", '[{"a":[{"b":1},2]}, {"a":null}, {"a":1}]'),
    ("[path(.a[].b)]", '[{"a":[{"b":1},2]}]'),
    ("[path(.a | select(.b == 0))]", '[{"a":{"b":0}}, {"a":{"b":1}}]'),
    ("[path(first(.a,.b))]", "[{}]"),
    ('[path(getpath(["a","b"]))]', '[null, {"a":1}]'),
    ("[path(.a, .b[0], .[])]", '[{"a":1,"b":[2]}, null]'),
    ('[path(..|select(type == "number"))]', '[{"a":[1,{"b":2}]}]'),
    ("[path(if .a then .a else .b end)]", '[{"a":1}, {"b":2}]'),
    ("[path(.[]?)]", '[1, [1,2], {"x":1}]'),
    ("[path(.a[1:])]", '[{"a":[1,2]}]'),
    ("[path(1)]", "[null]"),
    ("[path(empty)]", "[null]"),
    ("path(.a[.b])", '[{"a":{"k":1},"b":"k"}]'),
    ("[path(.. | numbers)]", "[[1,[2]]]"),
    ("map_values(. + 1)", '[[1,2], {"a":1}, 1, null]'),
    ("map_values(empty), map_values(.,.)", '[[1,2,3], {"a":1}, [1]]'),
    ('walk(if type == "number" then . + 1 else . end)', '[[1,[2,{"a":3}]], 5, "x"]'),
    ("[walk(numbers)], [walk(.,.)]", '[[1,[2,{"a":"x","b":3}]], [[1]], {"a":[1]}]'),
    ("transpose", '[[[1,2],[3]], ["ab", [1]], [{"a":1}], [], [[]], {"a":[1]}]'),
    ("INDEX(.id)", '[[{"id":1},{"id":"a"},{"id":1}], []]'),
    ("INDEX(.[]; .id, .x)", '[[{"id":1,"x":2}]]'),
    ("bsearch(2), bsearch(0), bsearch(5)", '[[1,2,3], [], "a"]'),
    ("[recurse(.[]?; . != 2)], [recurse], [recurse(.a?)]", '[[1,[2]], {"a":{"a":1}}]'),
    ("[recurse(if . < 3 then .+1 else empty end)]", "[0, 5]"),
    ("have_decnum, have_literal_numbers", "[null]"),
    (
        ".a - .b, .a * .b, (.a | length) - 1",
        '[{"a":5,"b":3}, {"a":[1,2],"b":[2]}, {"a":"x","b":1}, {"a":1.5,"b":1}, {"a":9007199254740993,"b":1}]',
    ),
    (
        'test("a")',
        '[{"a":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}, {"a":"xxxxxxxxxxxxxxxxxxx"}, {"a":"xxxxxxxxxxxxxxxxxxxxx"}, {"a":"xxxxxxxxxxxxxxxxxxxxxx"},{"a":"xxxxxxxxxxxxxxxxxxxxxxé"}, {"a":"xxxxxxxxxxxxxxxxxxxxxé"}, {"a":"xxxxxxxxxxxxxxxxxxxxxxxxé"}, [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15], 12345678901234567890123456789012345, ["ééééééééééééééééééééé"]]',
    ),
    (
        ".a",
        '["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "éééééééééééééééééééééééééééééééééé", "x\\"xxxxxxxxxxxxxxxxxxxxxxxxxxxx", "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀"]',
    ),
    ("[range(0;10;3)], [range(5;0;-2)], [range(0;3;0)], [range(0,1; 3,4)], [range(0,1; 3,4; 1,2)]", "[null]"),
    ("[combinations], [combinations(2)]", '[[[1,2],[3,4]], [[], 3], [], [0,1], [[1], 3], {"a":[1]}, "ab", 0]'),
    ("trunc", '[1.5, -1.5, 3, "a"]'),
]

# (program, input) pairs whose exact answer needs libjq: literal-preserving numbers, glibc's date parsing, jq's
# replacement of invalid UTF-8, computed doubles, a catch handler reading a built-in message.
HANDED_TO_LIBJQ = (
    {
        ("tonumber", v)
        for v in (
            '".5"',
            '"5."',
            '"+1"',
            '"NaN"',
            '"nan"',
            '"1e1000"',
            '"01"',
            '"-0"',
            '"1.50"',
            '"1E2"',
            '"00"',
            '"1e-7"',
        )
    }
    | {
        ("fromjson", v)
        for v in ('"{\\"a\\":1.50}"', '"nan"', '"[1,2"', '"1 2"', '""', '"-0"', '"12345678901234567890"')
    }
    | {
        ("floor, ceil, round", "1e+300"),
        ("reverse", '{"a": 1}'),
        ("reverse", "2"),
        ("add, add(.[]?), add(empty)", "[1.5, 1]"),
        ("@base64d", '"/w=="'),
        ("gmtime", "1000000000000.0"),
        ('strftime("%Z")', "0"),
        ('strptime("%Y-%m-%dT%H:%M:%SZ")', '"2023-02-29T12:30:15Z"'),
        ('strptime("%Y-%m-%dT%H:%M:%SZ")', '"2024-1-05T00:00:00Z"'),
        ('strptime("%Y-%m-%dT%H:%M:%SZ")', '"x"'),
        ('strptime("%Y-%m-%dT%H:%M:%SZ")', '"2024-02-29T12:30:15Zx"'),
        ("fromdateiso8601, fromdate", '"x"'),
        *(
            (".a - .b, .a * .b, (.a | length) - 1", json.dumps(v))
            for v in ({"a": [1, 2], "b": [2]}, {"a": "x", "b": 1}, {"a": 1.5, "b": 1}, {"a": 9007199254740993, "b": 1})
        ),
        ("try .a catch .", "1"),
    }
)
NOT_COMPILED = {"with_entries(.value |= .)", "def f: f; f", "[path(.a[1:])]", "[path(1)]"}


def _pairs() -> list[tuple[str, Any]]:
    return [(program, value) for program, inputs in CASES for value in json.loads(inputs)]


@pytest.mark.parametrize(("program", "value"), _pairs(), ids=lambda v: json.dumps(v, ensure_ascii=True)[:60])
def test_builtin_agrees_with_libjq(program: str, value: Any) -> None:
    if program in NOT_COMPILED:
        pytest.skip("outside the compiled subset: runs on libjq whole")
    every_output = f"[{program}]"  # the matcher reads first outputs; here every output must agree
    compiled(every_output)
    fast = fast_outcome(every_output, value)
    reference = libjq_outcome(every_output, value)
    if fast is None:
        assert (program, json.dumps(value)) in HANDED_TO_LIBJQ, f"handed to libjq: {program} on {value!r}"
        return
    assert agree(fast, reference), (program, value, fast, reference)
    if fast[0] == "error":  # users read these: jq's own wording, truncation of the value included
        assert fast[1] == reference[1]
