"""Converted Sigma rules decide exactly like the reference evaluator (tests/unit/sigma/reference.py).

Hypothesis writes detections (fields, modifiers, values, conditions) and events built from the rule's
own values (so matches happen); the converted jq runs through the engine's matcher and through libjq.
The corpus test draws detections from the values of the real CloudTrail events in ../shared/corpus.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
import warnings
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stream_processor.config import Rule
from stream_processor.matcher import FastMatcher, LibjqMatcher
from stream_processor.matcher.fast import plan_rule
from stream_processor.model import CloudTrailEvent, Position
from stream_processor.sigma.importer import ConvertedRule, convert_text
from tests.conftest import corpus_path
from tests.unit.sigma.reference import MISSING, evaluate, lookup

FIELDS = (
    "eventName",
    "eventSource",
    "userAgent",
    "errorCode",
    "requestParameters.userName",
    "requestParameters.enable",
    "userIdentity.sessionContext.type",
    "x-y",
    "and",
    "requestParameters",
    "tags",
)
# letters in both cases, wildcards and their escape, regex metacharacters, newline, non-ASCII letters whose
# case folding differs between ASCII and Unicode (K is the Kelvin sign), quotes, and the TOML/jq delimiters
ALPHABET = "aAbBkK*?\\.-/ \n\u00e9\u00df\u212a0\"'&[]$"
PLAIN = st.text(alphabet="aAbBkK.-/ \n\u00e9\u00df\u212a0\"'&[]$", max_size=5)
PATTERN = st.text(alphabet=ALPHABET, max_size=6)
ASCII_TEXT = st.text(alphabet="aAbB0-/ ", min_size=1, max_size=5)


# --------------------------------------------------------------------------- rule values


def _regex() -> st.SearchStrategy[str]:
    atom = st.sampled_from(
        [
            "a",
            "A",
            "b",
            "k",
            "\\.",
            "-",
            ".",
            "[a-c]",
            "[^a]",
            "[A-Z0-9]",
            "\\d",
            "\\w",
            "\\s",
            "\\n",
            "[\\]x]",
            " ",
            "&",
        ]
    )
    quantified = st.tuples(atom, st.sampled_from(["", "", "*", "+", "?", "{1,2}", "*?", "{2}"])).map("".join)
    sequence = st.lists(quantified, min_size=1, max_size=4).map("".join)
    grouped = st.one_of(sequence, st.tuples(sequence, sequence).map(lambda p: f"({p[0]}|{p[1]})"))
    body = st.lists(grouped, min_size=1, max_size=2).map("".join)
    return st.tuples(st.sampled_from(["", "^"]), body, st.sampled_from(["", "$"])).map("".join)


def _network() -> st.SearchStrategy[str]:
    return st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda t: str(ipaddress.ip_network((t[0], t[1]), strict=False))
    )


@st.composite
def detection_item(draw: st.DrawFn) -> tuple[str, Any]:
    field = draw(st.sampled_from(FIELDS))
    kind = draw(
        st.sampled_from(
            [
                "plain",
                "plain",
                "list",
                "contains",
                "startswith",
                "endswith",
                "all",
                "cased",
                "exists",
                "null",
                "number",
                "bool",
                "re",
                "cidr",
                "base64",
                "base64offset",
                "wide",
                "windash",
                "fieldref",
                "compare",
                "neq",
            ]
        )
    )
    if kind == "plain":
        return field, draw(st.one_of(PATTERN, st.just("null"), st.just("*"), st.just("")))
    if kind == "list":
        return field, draw(st.lists(st.one_of(PATTERN, st.integers(-3, 12)), min_size=1, max_size=3))
    if kind in ("contains", "startswith", "endswith"):
        value = draw(st.one_of(PATTERN, st.lists(PATTERN, min_size=1, max_size=2)))
        cased = draw(st.booleans())
        return f"{field}|{kind}" + ("|cased" if cased else ""), value
    if kind == "all":
        return f"{field}|contains|all", draw(st.lists(PATTERN, min_size=2, max_size=3))
    if kind == "cased":
        return f"{field}|cased", draw(PATTERN)
    if kind == "exists":
        return f"{field}|exists", draw(st.booleans())
    if kind == "null":
        return field, None
    if kind == "number":
        return field, draw(st.integers(-3, 12))
    if kind == "bool":
        return field, draw(st.booleans())
    if kind == "re":
        flags = draw(st.lists(st.sampled_from(["i", "m", "s"]), unique=True, max_size=3))
        return "|".join([field, "re", *flags]), draw(_regex())
    if kind == "cidr":
        return f"{field}|cidr", draw(st.one_of(_network(), st.lists(_network(), min_size=1, max_size=2)))
    if kind == "base64":
        return f"{field}|base64", draw(st.text(alphabet="aB0\u00e9 ", min_size=1, max_size=5))
    if kind == "base64offset":
        return f"{field}|base64offset|contains", draw(st.text(alphabet="aB0\u00e9 ", min_size=1, max_size=5))
    if kind == "wide":
        return f"{field}|wide|base64offset|contains", draw(ASCII_TEXT)
    if kind == "windash":
        return f"{field}|windash", draw(st.sampled_from(["-a", "x -a", "/a -b", "a-b"]))
    if kind == "fieldref":
        how = draw(st.sampled_from(["", "|contains", "|startswith", "|endswith"]))
        return f"{field}|fieldref{how}", draw(st.sampled_from(FIELDS))
    if kind == "compare":
        return f"{field}|{draw(st.sampled_from(['lt', 'lte', 'gt', 'gte']))}", draw(st.integers(-3, 12))
    return f"{field}|neq", draw(st.one_of(PATTERN, st.lists(PATTERN, min_size=1, max_size=2)))


@st.composite
def detection(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(
            st.sampled_from(["selection", "selection_x", "filter_main", "filter_b", "_hidden"]),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    searches: dict[str, Any] = {}
    for name in names:
        maps = [dict(draw(st.lists(detection_item(), min_size=1, max_size=3, unique_by=lambda kv: kv[0])))]
        if draw(st.integers(0, 3)) == 0:
            maps.append(dict(draw(st.lists(detection_item(), min_size=1, max_size=2, unique_by=lambda kv: kv[0]))))
        searches[name] = maps[0] if len(maps) == 1 else maps
    terms = list(names)
    terms += [f"1 of {p}*" for p in ("selection", "filter") if any(n.startswith(p) for n in names)]
    terms += ["1 of them", "all of them"] if any(not n.startswith("_") for n in names) else []

    def condition(depth: int) -> str:
        choice = draw(st.integers(0, 4 if depth < 2 else 0))
        if choice == 0:
            return draw(st.sampled_from(terms))
        if choice == 1:
            return f"not {condition(depth + 1)}"
        if choice == 2:
            return f"({condition(depth + 1)})"
        return f"{condition(depth + 1)} {'and' if choice == 3 else 'or'} {condition(depth + 1)}"

    return {**searches, "condition": condition(0)}


def _rule_yaml(found: dict[str, Any]) -> str:
    rule = {
        "title": "Generated",
        "id": "00000000-0000-4000-8000-000000000000",
        "status": "test",
        "logsource": {"product": "aws", "service": "cloudtrail"},
        "detection": found,
        "level": "low",
    }
    return yaml.safe_dump(rule, allow_unicode=True, sort_keys=False)


# --------------------------------------------------------------------------- events


def _literals(found: dict[str, Any]) -> list[Any]:
    """Every value a detection names (so generated events can hold them and their near misses)."""
    values: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif node is not None:
            values.append(node)

    walk({k: v for k, v in found.items() if k != "condition"})
    return values


@st.composite
def field_value(draw: st.DrawFn, literals: list[Any]) -> Any:
    strings = [v for v in literals if isinstance(v, str)]
    choice = draw(st.integers(0, 9))
    if choice <= 3 and strings:
        text = draw(st.sampled_from(strings))
        for char, replacement in (("*", draw(st.sampled_from(["", "x", "\n", "ab"]))), ("?", "\n"), ("\\", "")):
            if draw(st.booleans()):
                text = text.replace(char, replacement)
        if draw(st.booleans()):
            text = text.upper() if draw(st.booleans()) else text.swapcase()
        return draw(st.sampled_from(["", "x", "\n"])) + text + draw(st.sampled_from(["", "", "y", "\n"]))
    if choice == 4:
        regexes = [v for v in strings if v.startswith(("^", "[", "(")) or "\\" in v]
        if regexes:
            try:
                with warnings.catch_warnings():  # a plain value read as a regex may look like a nested set
                    warnings.simplefilter("ignore", FutureWarning)
                    compiled = re.compile(draw(st.sampled_from(regexes)), re.ASCII)
                return draw(st.from_regex(compiled))
            except re.error:
                pass
        return draw(PLAIN)
    if choice == 5:
        return ".".join(str(draw(st.integers(0, 260))) for _ in range(4)) + draw(st.sampled_from(["", "", "\n", "0"]))
    if choice == 6:
        return draw(st.one_of(st.integers(-5, 15), st.sampled_from([0.5, 1.0, -0.0, 1e100, 1e-07, 2.5e16])))
    if choice == 7:
        return draw(st.sampled_from([None, True, False, "null", "NULL", "true", "False", ""]))
    if choice == 8:
        inner = draw(st.one_of(PLAIN, st.none(), st.booleans(), st.integers(0, 9)))
        return draw(st.sampled_from([{"userName": inner, "enable": inner}, [inner], {"type": inner}, {}, []]))
    return draw(PLAIN)


@st.composite
def event(draw: st.DrawFn, literals: list[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        keys = name.split(".")
        target = data
        for key in keys[:-1]:
            node = target.get(key)
            if not isinstance(node, dict):
                if draw(st.integers(0, 5)) == 0:  # something that is not an object on the way
                    target[key] = draw(st.sampled_from(["text", 3, None, [1]]))
                    break
                node = target[key] = {}
            target = node
        else:
            target[keys[-1]] = draw(field_value(literals))
    return data


# --------------------------------------------------------------------------- running both


def _convert(found: dict[str, Any]) -> ConvertedRule:
    outcomes = convert_text(_rule_yaml(found), "generated.yml")
    assert len(outcomes) == 1
    converted = outcomes[0]
    assert isinstance(converted, ConvertedRule), f"not converted: {converted}\n{_rule_yaml(found)}"
    return converted


def _check(found: dict[str, Any], events: list[dict[str, Any]]) -> None:
    converted = _convert(found)
    rule = Rule(name="generated", jq_match=converted.jq_match)
    plan = plan_rule(rule)
    assert plan.path == "compiled", plan.reason  # every shape the converter writes is on the compiled path
    wrapped = [CloudTrailEvent(orjson.dumps(e), e, Position("gen", str(i))) for i, e in enumerate(events)]
    expected = [evaluate(found, e) for e in events]
    fast = FastMatcher([rule])
    for matcher in (fast, LibjqMatcher([rule])):
        result = matcher.match_batch(wrapped)
        assert not result.errors, (converted.jq_match, result.errors[:3])  # converted rules never raise
        got = [False] * len(events)
        for match in result.matches:
            got[int(match.event.position.sequence or 0)] = True
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert g == e, (
                f"{type(matcher).__name__} says {g}, reference says {e}\n"
                f"event: {events[index]!r}\nrule:\n{_rule_yaml(found)}jq: {converted.jq_match}"
            )
    # The compiled path hands libjq one corner only: a regex `$` on a text that ends in a newline (jq's `$`
    # also matches before it, which RE2 cannot say); the answer is libjq's own either way.
    if not any(_ends_in_newline(event) for event in events):
        assert fast.libjq_fallbacks == 0


def _ends_in_newline(value: Any) -> bool:
    if isinstance(value, str):
        return value.endswith("\n")
    if isinstance(value, dict):
        return any(_ends_in_newline(item) for item in value.values())
    if isinstance(value, list):
        return any(_ends_in_newline(item) for item in value)
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_generated_detections_decide_like_the_reference(data: st.DataObject) -> None:
    found = data.draw(detection(), label="detection")
    events = data.draw(st.lists(event(_literals(found)), min_size=1, max_size=8), label="events")
    _check(found, events)


# --------------------------------------------------------------------------- the corpus


def _corpus_events() -> list[dict[str, Any]]:
    root = corpus_path()
    events: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*")):
        if not path.name.endswith((".json", ".jsonl", ".json.gz")):
            continue
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        try:
            documents = [orjson.loads(raw)]
        except orjson.JSONDecodeError:
            documents = []
            for line in raw.splitlines():
                try:
                    documents.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        for document in documents:
            for item in document if isinstance(document, list) else [document]:
                if isinstance(item, dict):
                    records = item.get("Records")
                    events.extend(r for r in records if isinstance(r, dict)) if isinstance(records, list) else None
                    events.append(item)
    return events


def _paths(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Dotted field names of an event and their values (objects walked, not arrays)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key and "." not in key and "|" not in key:
                name = f"{prefix}.{key}" if prefix else key
                yield name, item
                yield from _paths(item, name)


@pytest.mark.corpus
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_detections_on_corpus_values_decide_like_the_reference(data: st.DataObject) -> None:
    events = _CORPUS.get() or _CORPUS.load()
    event = data.draw(st.sampled_from(events))
    fields = [(n, v) for n, v in _paths(event) if v is not None and not isinstance(v, float)]
    assume(fields)
    items: dict[str, Any] = {}
    for name, value in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique_by=lambda f: f[0])):
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        how = data.draw(st.sampled_from(["", "|contains", "|startswith", "|endswith", "|re", "|cased", "|exists"]))
        if how == "|exists":
            items[f"{name}|exists"] = True
        elif how == "|re":
            items[f"{name}|re"] = re.escape(text[:12]).replace("\\ ", " ")
        elif isinstance(value, bool | int) and how == "":
            items[name] = value
        elif how in ("|contains", "|startswith", "|endswith") and len(text) > 4:
            start = data.draw(st.integers(0, len(text) - 3))
            items[f"{name}{how}"] = (
                text[start : start + 6].replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
            )
        else:
            items[f"{name}{how}"] = text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    condition = data.draw(st.sampled_from(["selection", "not selection", "selection and not filter", "1 of them"]))
    found = {"selection": items, "filter": {"eventName": event.get("eventName") or "x"}, "condition": condition}
    _check(found, events)


class _Corpus:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] | None = None

    def get(self) -> list[dict[str, Any]] | None:
        return self.events

    def load(self) -> list[dict[str, Any]]:
        self.events = _corpus_events()
        return self.events


_CORPUS = _Corpus()


def test_reference_reads_dotted_names_through_objects_only() -> None:
    # the reference itself: the meaning docs/sigma.md gives dotted names
    assert lookup({"a": {"b": 1}}, "a.b") == 1
    assert lookup({"a": [{"b": 1}]}, "a.b") is MISSING
    assert lookup({"a": "x"}, "a.b") is MISSING
