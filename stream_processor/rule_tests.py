"""Rule tests: the examples a rule carries (`[[rule.test]]`), run with the real matcher.

Tests live in the rule file, under each rule, or in a tests file (`NAME.tests.toml` next to `NAME.toml`
or in a `tests/` folder beside it, found automatically, or given explicitly), which holds `[[rule]]` tables
with only `name` and `[[rule.test]]`: that keeps a rule file byte-for-byte what tattletail reads.

A test passes when the rule decides as expected on every event of the test (an inline event, or every
event an `event_file` decodes to), and, for a match, the rendered output and title are the expected text.
With `expect = "match_any"` one matching event of the file is enough (a real CloudTrail file as fixture);
with `event_ids` only the named events are held to `expect`, the others of the file are free.
A run-time error is no match (the engine's semantics); the detail says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from stream_processor.alerts.render import output_text, render_title
from stream_processor.aws import S3_SCHEME
from stream_processor.config import parse_tests_file
from stream_processor.decode import decode_bytes
from stream_processor.errors import ConfigError
from stream_processor.matcher import build_matcher
from stream_processor.matcher.base import Matcher
from stream_processor.model import Alert, CloudTrailEvent, Config, Position, Rule, RuleTest

TESTS_SUFFIX = ".tests.toml"
TESTS_DIR = "tests"
MATCH = "match"
NO_MATCH = "no_match"
MATCH_ANY = "match_any"
ERROR = "error"
UNREADABLE = "unreadable"
DETAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class RuleTestResult:
    """One test's outcome: `got` is match, no_match, error (no match by a run-time error) or unreadable."""

    rule: str
    index: int
    source: str
    expected: str
    got: str
    passed: bool
    detail: str = ""
    enabled: bool = True


@dataclass(slots=True)
class RuleTestReport:
    """Every result for one config, and the enabled rules that have no test."""

    location: str
    results: list[RuleTestResult] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RuleTestResult]:
        return [result for result in self.results if not result.passed]

    @property
    def ok(self) -> bool:
        return not self.failed


def tests_file_beside(location: str) -> Path | None:
    """The tests file of a local `NAME.toml`: `NAME.tests.toml` beside it, else `tests/NAME.tests.toml`."""
    if location.startswith(S3_SCHEME):
        return None
    path = Path(location)
    name = path.name.removesuffix(".toml") + TESTS_SUFFIX
    for candidate in (path.with_name(name), path.parent / TESTS_DIR / name):
        if candidate != path and candidate.is_file():
            return candidate
    return None


def collect_tests(config: Config, tests_files: Sequence[str | Path] = ()) -> dict[str, tuple[RuleTest, ...]]:
    """Rule name -> its tests: those in the rule file first, then each tests file's, in order.

    Raises:
        ConfigError: a tests file cannot be read, is malformed, or names a rule the config does not have.
    """
    tests: dict[str, tuple[RuleTest, ...]] = {rule.name: rule.tests for rule in config.rules}
    problems: list[str] = []
    for tests_file in tests_files:
        source = str(tests_file)
        try:
            text = Path(tests_file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{source}: cannot be read ({type(error).__name__}): check the path")
            continue
        try:
            found = parse_tests_file(text, source)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        for name, extra in found.items():
            if name not in tests:
                problems.append(
                    f"{source}: tests for rule {orjson.dumps(name).decode()}, which {config.source} does not have: "
                    "fix the name (it must be the rule's name exactly)"
                )
                continue
            tests[name] += extra
    if problems:
        raise ConfigError(problems)
    return tests


def run_rule_tests(
    config: Config,
    tests_files: Sequence[str | Path] = (),
    matcher_kind: str | None = None,
) -> RuleTestReport:
    """Run every test of every rule (disabled rules too: tests are how a rule gets ready to enable).

    Raises:
        ConfigError: see `collect_tests`.
    """
    tests = collect_tests(config, tests_files)
    rules = list(config.rules)
    matcher = build_matcher(rules) if matcher_kind is None else build_matcher(rules, kind=matcher_kind)
    report = RuleTestReport(config.source)
    for rule in rules:
        rule_tests = tests.get(rule.name, ())
        if not rule_tests and rule.enabled:
            report.untested.append(rule.name)
        for test in rule_tests:
            report.results.append(run_one(rule, test, matcher))
    return report


def run_one(rule: Rule, test: RuleTest, matcher: Matcher) -> RuleTestResult:
    """One test of one rule against a matcher built over (at least) that rule."""

    def result(got: str, passed: bool, detail: str) -> RuleTestResult:
        return RuleTestResult(
            rule.name, test.index, test.source, test.expect, got, passed, _cap(detail), enabled=rule.enabled
        )

    try:
        events = load_test_events(rule, test)
    except ValueError as unreadable:
        return result(UNREADABLE, False, str(unreadable))

    # each test event carries its own sequence number: matches and errors are told apart by it
    matched = matcher.match_batch(events)
    if test.event_ids:
        present = {event.event_id for event in events}
        missing = [event_id for event_id in test.event_ids if event_id not in present]
        if missing:
            return result(UNREADABLE, False, f"event_ids not in the event_file: {', '.join(missing)}")
        named = set(test.event_ids)
        events = [event for event in events if event.event_id in named]
    outputs: dict[str | None, object] = {}
    for match in matched.matches:
        if match.rule_name == rule.name:
            outputs.setdefault(match.event.position.sequence, match.output)
    error_of: dict[str | None, str] = {}
    for failure in matched.errors:
        if failure.rule_name == rule.name:
            error_of.setdefault(failure.position.sequence, failure.message)

    decisions = []
    for event in events:
        key = event.position.sequence
        decisions.append(MATCH if key in outputs else ERROR if key in error_of else NO_MATCH)
    several = len(events) > 1

    def which(position: int) -> str:
        if test.event_ids:
            return f"event {events[position].event_id}: "
        return f"event {position + 1} of {len(events)}: " if several else ""

    error_notes = [
        f"{which(i)}run-time error (no match): {error_of[e.position.sequence]}"
        for i, e in enumerate(events)
        if e.position.sequence in error_of
    ]
    if test.expect == MATCH_ANY:
        if MATCH in decisions:
            count = decisions.count(MATCH)
            return result(MATCH, True, f"{count} of {len(events)} event(s) matched")
        got = ERROR if ERROR in decisions else NO_MATCH
        detail = "; ".join(error_notes[:3]) or f"none of the {len(events)} event(s) matched"
        return result(got, False, detail)
    if test.expect == NO_MATCH:
        hits = [i for i, decision in enumerate(decisions) if decision == MATCH]
        got = MATCH if hits else (ERROR if ERROR in decisions else NO_MATCH)
        if hits:
            first = events[hits[0]]
            shown = output_text(Alert(rule.name, rule.description, outputs[first.position.sequence], first))
            said = f"output: {shown}" if shown is not None else "the output is true or the event itself"
            detail = f"{which(hits[0])}matched ({said})"
            return result(got, False, detail)
        return result(got, True, "; ".join(error_notes))

    misses = [i for i, decision in enumerate(decisions) if decision != MATCH]
    if misses:
        got = ERROR if decisions[misses[0]] == ERROR else NO_MATCH
        if error_notes:
            return result(got, False, "; ".join(error_notes))
        return result(got, False, f"{which(misses[0])}no output, null or false")
    problems: list[str] = []
    for position, event in enumerate(events):
        alert = Alert(rule.name, rule.description, outputs[event.position.sequence], event)
        if test.output is not None:
            shown = output_text(alert)
            if shown != test.output:
                actual = "(none: the output is true or the event itself)" if shown is None else repr(shown)
                problems.append(f"{which(position)}output {actual}, expected {test.output!r}")
        if test.title is not None:
            title = render_title(rule, event) or rule.name
            if title != test.title:
                problems.append(f"{which(position)}title {title!r}, expected {test.title!r}")
    return result(MATCH, not problems, "; ".join(problems))


def load_test_events(rule: Rule, test: RuleTest) -> list[CloudTrailEvent]:
    """The events of a test: the inline one as is, or every CloudTrail event `event_file` decodes to.

    Raises:
        ValueError: the file is missing, unreadable, not CloudTrail, or holds no event.
    """
    origin = f"{test.source} rule {rule.name!r} test #{test.index}"
    if test.event is not None:
        raw = test.event.encode()
        return [CloudTrailEvent(raw, orjson.loads(raw), Position(origin, "1"))]
    assert test.event_file is not None
    if test.source.startswith(S3_SCHEME):
        raise ValueError(f"event_file {test.event_file!r}: only tests in a local file can name event files")
    path = Path(test.source).parent / test.event_file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"event_file {test.event_file!r}: not found (looked at {path})") from None
    except OSError as error:
        raise ValueError(f"event_file {test.event_file!r}: cannot be read ({error.strerror})") from None
    decoded = decode_bytes(data, str(path))
    if decoded.malformed:
        first = decoded.malformed[0]
        raise ValueError(
            f"event_file {test.event_file!r}: {len(decoded.malformed)} part(s) are not CloudTrail events "
            f"(first: {first.kind} at {first.position}: {first.reason})"
        )
    if not decoded.events:
        raise ValueError(f"event_file {test.event_file!r}: holds no CloudTrail event")
    return [
        CloudTrailEvent(event.raw, event.data, Position(origin, str(number)))
        for number, event in enumerate(decoded.events, start=1)
    ]


def _cap(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


__all__ = [
    "TESTS_SUFFIX",
    "RuleTestReport",
    "RuleTestResult",
    "collect_tests",
    "load_test_events",
    "run_one",
    "run_rule_tests",
    "tests_file_beside",
]
