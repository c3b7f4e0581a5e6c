"""The fast path must give exactly libjq's result: shipped rules x corpus, and generated rules x events.

Deeper local runs: MATCHER_HYPOTHESIS_EXAMPLES=20000 .venv/bin/pytest tests/unit/matcher/test_differential.py
"""

from __future__ import annotations

import gzip
import os
import tomllib
from typing import Any

import jq
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from stream_processor.config import Rule
from stream_processor.matcher import LibjqMatcher
from stream_processor.matcher.fast import FastMatcher
from stream_processor.matcher.jqparse import Unsupported
from stream_processor.model import CloudTrailEvent, MatchResult, Position
from tests.conftest import REPO_ROOT, corpus_path
from tests.unit.matcher.differential import agree, compiled, fast_outcome, libjq_outcome, same

EXAMPLES = int(os.environ.get("MATCHER_HYPOTHESIS_EXAMPLES", "600"))


# -- shipped rules x corpus


def _shipped_rules() -> list[Rule]:
    rules: list[Rule] = []
    for path in sorted((REPO_ROOT / "examples").glob("*.toml")):
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        for entry in document.get("rule", []):
            rules.append(Rule(name=f"{path.stem}: {entry['name']}", jq_match=entry["jq_match"]))
    return rules


def _documents(raw: bytes) -> list[Any]:
    try:
        return [orjson.loads(raw)]
    except orjson.JSONDecodeError:
        documents = []
        for line in raw.splitlines():
            try:
                documents.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return documents


def _corpus_events() -> list[CloudTrailEvent]:
    root = corpus_path()
    events: list[CloudTrailEvent] = []
    for path in sorted(root.rglob("*")):
        if not path.name.endswith((".json", ".jsonl", ".json.gz")):
            continue
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        for document in _documents(raw):
            for item in document if isinstance(document, list) else [document]:
                if not isinstance(item, dict):
                    continue
                # Every object is a fair input; CloudTrail files also carry their events in Records.
                candidates = [item]
                if isinstance(item.get("Records"), list):
                    candidates += [r for r in item["Records"] if isinstance(r, dict)]
                for data in candidates:
                    position = Position(f"{path.relative_to(root)}#{len(events)}")
                    events.append(CloudTrailEvent(orjson.dumps(data), data, position))
    return events


def _same_result(fast: MatchResult, reference: MatchResult) -> None:
    got = [(m.rule_name, m.event.position, m.output) for m in fast.matches]
    want = [(m.rule_name, m.event.position, m.output) for m in reference.matches]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for g, w in zip(got, want, strict=True):
        assert same(g[2], w[2]), (g, w)
    assert {(e.rule_name, e.position) for e in fast.errors} == {(e.rule_name, e.position) for e in reference.errors}


@pytest.mark.corpus
def test_shipped_rules_agree_with_libjq_on_the_corpus() -> None:
    rules = _shipped_rules()
    events = _corpus_events()
    assert rules, "examples/*.toml has no rules"
    assert len(events) > 100
    _same_result(FastMatcher(rules).match_batch(events), LibjqMatcher(rules).match_batch(events))


@pytest.mark.corpus
def test_shipped_rules_agree_rule_by_rule_without_the_index() -> None:
    # The index could hide a disagreement on events it never dispatches: compare each rule's own output.
    rules = _shipped_rules()
    events = _corpus_events()
    for rule in rules:
        try:
            compiled(rule.jq_match)
        except Unsupported:
            continue
        for event in events:
            fast = fast_outcome(rule.jq_match, event.data)
            if fast is None:
                continue
            reference = libjq_outcome(rule.jq_match, event.data)
            assert agree(fast, reference), (rule.name, event.position, fast, reference)


def test_all_shipped_rules_take_the_fast_path() -> None:
    from stream_processor.matcher import explain

    # untuned.toml (rules as users write them) and sigma-cloudtrail.toml (SigmaHQ's, imported) included: a
    # rule of theirs on libjq is a gap of the compiler, never to be hidden by rewriting the rule.
    slow = [(name, reason) for name, path, reason in explain(_shipped_rules()) if path != "compiled"]
    assert slow == []


# -- generated rules x generated events

KEYS = ("a", "b", "eventName", "é k", "key", "value")
STRINGS = (
    "", "a", "ab", "A", "x", "Create", "CreateUser", "é", "\x7f", "\u2028", "😀", "a,b", "1", "null", " a\u00a0",
    "12", "-1.5", "1e2", "2024-02-29T12:30:15Z", "1970-01-01T00:00:00Z", "YWJj", "4pyT", '{"a":[1,2.5]}', "[1,2]",
    "a b\tc", "%41%C3%A9", "ß", "Straße", "aé a", "\u212a", "it's", "<&>", "foo bar", "a\n",
)  # fmt: skip
NUMBERS: tuple[int | float, ...] = (
    0, 1, -1, 2, 1.0, 1.5, -0.0, 0.1, 1e16, 1e-07, 2**53 + 1, 2**63 - 1, 12345.678, -2.5, 1700000000, 97, 233,
)  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(STRINGS),
    st.text(max_size=4),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
    ),
    max_leaves=8,
)
events = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4)

LITERALS = (
    "null", "true", "false", "0", "1", "-1", "1.0", "1.5", "2", "100000000000000000000", '""', '"a"', '"x"',
    '"é"', '"Create"', '"CreateUser"', '"a,b"', "[]", "{}", '["a"]', '{"a": 1}', '[1, [2, [3]]]', '"a b"',
    '[{"key": "k", "value": 1}]', '[3, 1, 2, 1]', '[97, 233, 128512]', '"2024-02-29T12:30:15Z"', '[2024, 1, 29]',
)  # fmt: skip
PATHS = (
    ".", ".a", ".b", ".eventName", '."é k"', ".a.b", ".a?", ".a.b?", '.["a"]', ".[0]", ".[-1]", ".a[0]", ".[]",
    ".[]?", ".a[]?", "..", ".a[]", ".[1]?", ".key", ".value",
)  # fmt: skip
UNARY = (
    "not", "length", "type", "keys", "tostring", "tojson", "ascii_downcase", "ascii_upcase", "any", "all",
    "to_entries", "add", "first", "last", "values", "empty", "tonumber", "error", "keys_unsorted", "utf8bytelength",
    "strings", "objects", "explode", "implode", "trim", "ltrim", "rtrim", "toboolean", "fromjson", "abs",
    "isinfinite", "isnan", "isnormal", "isfinite", "floor", "ceil", "round", "sort", "unique", "min", "max",
    "reverse", "flatten", "from_entries", "[paths]", "@text", "@json", "@html", "@uri", "@csv", "@tsv", "@sh",
    "@base64", "@base64d", "@urid", "gmtime", "mktime", "todate", "fromdate", "fromdateiso8601", "todateiso8601",
    "normals", "finites", "infinite", "nan", "[.[]?] | length", "explode | implode", "-.", "$__loc__",
    "tojson | fromjson", "[splits(\", \")]", "getpath([\"a\", 0])", "[paths(type == \"number\")]", "transpose",
    "[recurse]", "[recurse(.[]?; type != \"string\")]", "walk(if type == \"number\" then . + 1 else . end)",
    "INDEX(.a)",
)  # fmt: skip
WITH_ARG = (
    "startswith", "endswith", "contains", "inside", "has", "IN", "ltrimstr", "rtrimstr", "split", "join", "map",
    "any", "all", "select", "error", "first", "isempty", "in", "last", "indices", "index", "rindex", "trimstr",
    "flatten", "getpath", "strftime", "strptime", "nth", "sort_by", "group_by", "unique_by", "min_by", "max_by",
    "with_entries", "add", "paths", "format", "map_values", "walk", "bsearch", "INDEX",
)  # fmt: skip
REGEXES = (
    '"a"', '"^a"', '"b$"', '"a.b"', '"^Create"', '"(a|b)+"', '"[a-c]"', '"a*"', '"\\\\d"', '"É"', '"\\\\w+"',
    '"[[:alpha:]]+"', '"\\\\p{L}"', '"(?<x>a)(?<y>b)?"', '"a|"', '"^(\\\\w+\\\\s?)*$"', '"\\\\s+"', '"[^a-c]"',
    '"\\\\bé"', '"\\\\x{e9}"', '"\\\\d{2}"', '"."', '""', '"(?i)ss"', '"(a)|(b)"', '", "', '"\\\\ "', '"(?<n>\\\\d+)"',
)  # fmt: skip
REGEX_FLAGS = ("", '; "g"', '; "i"', '; "x"', '; "gi"', "; null", '; "n"', '; "s"', '; "p"')
REPLACEMENTS = ('"X"', '"<\\(.x)>"', ".x", '"a", "b"', "empty", '(.n // "-")', "1")
COUNTS = ("0", "1", "2", "1.5", "-1", ".a")
PATH_STEPS = (
    ".", "..", ".a", ".a?", ".[]", ".[]?", ".[0]", ".a[]?", "select(.a)", "numbers", "first(.[]?)", 'getpath(["a", 0])',
    "(.a, .b)", "if .a then .a else .b end", "try .a.b", "empty", "strings", "(.. | select(type == \"string\"))",
)  # fmt: skip
SIMPLE_PROGRAMS = PATHS + LITERALS


@st.composite
def programs(draw: st.DrawFn, depth: int = 0) -> str:
    sub = programs(depth=depth + 1)
    if depth >= 3:
        return draw(st.sampled_from(SIMPLE_PROGRAMS))
    choice = draw(st.integers(min_value=0, max_value=63))
    if choice <= 3:
        return draw(st.sampled_from(SIMPLE_PROGRAMS))
    if choice == 4:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "and", "or", "//", "|", ",", "+", "-", "*"]))
        return f"({draw(sub)} {op} {draw(sub)})"
    if choice == 5:
        op = draw(st.sampled_from(["==", "!=", "<", "and", "or", "//", "|", ","]))
        op2 = draw(st.sampled_from(["==", "and", "or", "//", "|", ","]))
        return f"{draw(sub)} {op} {draw(sub)} {op2} {draw(sub)}"
    if choice == 6:
        return f"select({draw(sub)})"
    if choice == 7 or choice >= 50:  # builtins weigh most: each one should meet many inputs
        if choice >= 58:
            return f"{draw(st.sampled_from(WITH_ARG))}({draw(sub)})"
        subject = draw(st.one_of(sub, st.sampled_from(SIMPLE_PROGRAMS)))
        return f"({subject} | {draw(st.sampled_from(UNARY))})"
    if choice == 8:
        name = draw(st.sampled_from(WITH_ARG))
        return f"{name}({draw(sub)})"
    if choice == 9:
        name = draw(st.sampled_from(["any", "all", "IN"]))
        return f"{name}({draw(sub)}; {draw(sub)})"
    if choice == 10:
        flags = draw(st.sampled_from(REGEX_FLAGS))
        return f"({draw(sub)} | test({draw(st.sampled_from(REGEXES))}{flags}))"
    if choice == 11:
        return f'"p \\({draw(sub)}) q \\({draw(sub)})"'
    if choice == 12:
        return f'{{a: {draw(sub)}, "b": {draw(sub)}, ({draw(sub)}): 1, eventName}}'
    if choice == 13:
        return f"[{draw(sub)}]"
    if choice == 14:
        return f"if {draw(sub)} then {draw(sub)} else {draw(sub)} end"
    if choice == 15:
        return f"if {draw(sub)} then {draw(sub)} elif {draw(sub)} then {draw(sub)} end"
    if choice == 16:
        return f"try {draw(sub)}"
    if choice == 17:
        catch = draw(st.sampled_from(["1", '"c"', "null", "empty", "false", ".", "[., 1]", "error"]))
        return f"try {draw(sub)} catch {catch}"
    if choice == 18:
        return f"({draw(sub)})?"
    if choice == 19:
        field = draw(st.sampled_from(KEYS[:3]))
        value = draw(st.sampled_from(STRINGS[:8]))
        return f'select(.{field} == "{value}" {draw(st.sampled_from(["and", "or"]))} {draw(sub)}) | {draw(sub)}'
    if choice == 20:
        values = draw(st.lists(st.sampled_from(STRINGS[:8]), min_size=1, max_size=3))
        subject = draw(st.one_of(st.just(".eventName"), sub))  # IN over strings is a set lookup: any subject
        return f"select({subject} | IN({', '.join(orjson.dumps(v).decode() for v in values)})) | {draw(sub)}"
    if choice == 21:
        return f"({draw(sub)})[{draw(sub)}]"
    if choice == 22:
        return f"{draw(sub)}.a"
    if choice == 23:
        return f"[.[] | {draw(sub)}]"
    if choice == 24:
        fmt = draw(st.sampled_from(["@json", "@text", "@base64", "@csv", "@sh", "@html", "@uri", "@tsv"]))
        return f'{fmt} "j \\({draw(sub)}) k \\({draw(sub)})"'
    if choice == 25:
        name = draw(st.sampled_from(["limit", "skip", "nth"]))
        return f"[{name}({draw(st.sampled_from(COUNTS))}; {draw(sub)})]"
    if choice == 26:
        return f"({draw(sub)}) as $v | ({draw(sub)} | [$v, .]), {{$v}}"
    if choice == 27:
        return f"{draw(sub)} as $v | select($v == {draw(sub)}) | {{($v | tostring): $v}}"
    if choice == 28:
        return f"reduce ({draw(sub)}) as $v ({draw(sub)}; [., $v] | {draw(sub)})"
    if choice == 29:
        extract = draw(st.sampled_from(["", "; [$v, .]", "; select(.)"]))
        return f"[foreach ({draw(sub)}) as $v ({draw(sub)}; {draw(sub)}{extract})]"
    if choice == 30:
        name = draw(st.sampled_from(["match", "capture", "scan", "splits"]))
        flags = draw(st.sampled_from(REGEX_FLAGS))
        return f"[{draw(sub)} | {name}({draw(st.sampled_from(REGEXES))}{flags})]"
    if choice == 31:
        name = draw(st.sampled_from(["sub", "gsub"]))
        flags = draw(st.sampled_from(REGEX_FLAGS))
        replacement = draw(st.sampled_from(REPLACEMENTS))
        return f"[{draw(sub)} | {name}({draw(st.sampled_from(REGEXES))}; {replacement}{flags})]"
    if choice == 32:
        flags = draw(st.sampled_from(REGEX_FLAGS))
        return f"({draw(sub)} | split({draw(st.sampled_from(REGEXES))}{flags or '; null'}))"
    if choice == 33:
        return f"def f: {draw(sub)}; [f, (. as $d | {draw(sub)} | f)]"
    if choice == 34:
        return f"def f(g): [g, (g | {draw(sub)})]; f({draw(sub)})"
    if choice == 35:
        return f"def f($a; g): [$a, g, a]; f({draw(sub)}; {draw(sub)})"
    if choice == 36:
        return f"[label $out | {draw(sub)} | ., break $out]"
    if choice == 37:
        return f"[label $f | {draw(sub)}, break $f, {draw(sub)}]"
    if choice == 38:
        return f"try error({draw(sub)}) catch {draw(sub)}"
    if choice == 39:
        return f"[{draw(sub)} | try error catch .]"
    if choice == 40:
        name = draw(st.sampled_from(["sort_by", "group_by", "unique_by", "min_by", "max_by", "add", "paths"]))
        return f"({draw(sub)} | {name}({draw(sub)}))"
    if choice == 41:
        name = draw(st.sampled_from(["indices", "index", "rindex", "getpath", "flatten", "nth", "trimstr", "has"]))
        return f"({draw(sub)} | {name}({draw(sub)}))"
    if choice == 42:
        fmt = draw(st.sampled_from(['"%Y-%m-%dT%H:%M:%SZ"', '"%A %j %e %b %c"', '"%d/%m/%Y"', '"%H:%M"']))
        return f"({draw(sub)} | strftime({fmt}))"
    if choice == 43:
        return f"({draw(sub)} | strptime(\"%Y-%m-%dT%H:%M:%SZ\") | ., mktime)"
    if choice == 44:
        return f"-({draw(sub)})"
    if choice == 45:
        return f"[limit(4; range({draw(st.sampled_from(['0', '1', '3', '-1', '2.5', '.a', '1; 3']))}))]"
    if choice == 46:
        return f"with_entries({draw(sub)})"
    if choice == 47:
        return f"({draw(sub)} | test([{draw(st.sampled_from(REGEXES))}, \"gi\"]))"
    if choice == 48:
        step = draw(st.sampled_from(PATH_STEPS))
        return f"[path({draw(st.sampled_from(PATH_STEPS))} | {step})]"
    return f"{draw(sub)} | {draw(sub)}"


def _compiles_in_jq(program: str) -> bool:
    try:
        jq.compile(program)
    except ValueError:
        return False
    return True


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs(), event=events)
def test_generated_programs_agree_with_libjq(program: str, event: dict[str, Any]) -> None:
    assume(_compiles_in_jq(program))
    try:
        compiled(program)
    except Unsupported:
        assume(False)
    fast = fast_outcome(program, event)
    assume(fast is not None)
    assert fast is not None
    reference = libjq_outcome(program, event)
    hypothesis_event(f"outcome: {reference[0]}")
    assert agree(fast, reference), (program, orjson.dumps(event), fast, reference)
    # Rules read the first output; inside `[...]` every output counts, in jq's order.
    every_output = f"[{program}]"
    fast_all = fast_outcome(every_output, event)
    if fast_all is not None:
        reference_all = libjq_outcome(every_output, event)
        assert agree(fast_all, reference_all), (every_output, orjson.dumps(event), fast_all, reference_all)


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(programs(), min_size=1, max_size=4),
    batch=st.lists(events, min_size=1, max_size=5),
)
def test_generated_rule_sets_match_like_libjq(rules: list[str], batch: list[dict[str, Any]]) -> None:
    # Whole matcher, index included: same matches in the same order, same errors.
    assume(all(_compiles_in_jq(program) for program in rules))
    rule_objects = [Rule(name=f"r{i}", jq_match=program) for i, program in enumerate(rules)]
    cloudtrail = [CloudTrailEvent(orjson.dumps(e), e, Position(f"e{i}")) for i, e in enumerate(batch)]
    _same_result(FastMatcher(rule_objects).match_batch(cloudtrail), LibjqMatcher(rule_objects).match_batch(cloudtrail))
