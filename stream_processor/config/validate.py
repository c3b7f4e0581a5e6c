"""The validator: walks a parsed rule file and collects every problem before raising, so one run of
`stream-processor validate` shows them all.

Each problem is one line naming the file, the rule or destination, and what to change. Destination option
values are never echoed: a webhook URL is a secret. It sits above what it validates: the destination
classes say which options they take, the matcher which jq programs rules may use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from stream_processor.alerts.destinations.base import destination_class, known_types
from stream_processor.aws import AwsSettings
from stream_processor.config.durations import parse_duration
from stream_processor.config.go_regex import translate_program
from stream_processor.config.messages import (
    closest,
    destination_label,
    did_you_mean,
    distinct_names,
    example_value,
    is_name,
    json_kind,
    kind,
    non_json_path,
    one_line,
    quote,
    rule_label,
    unknown_destination,
    unknown_key,
)
from stream_processor.errors import EXIT_USAGE, ConfigError
from stream_processor.matcher.bounds import bounds_violations
from stream_processor.matcher.libjq import compile_jq, compiling_together
from stream_processor.matcher.sandbox import sandbox_violations
from stream_processor.model import Config, DestinationConfig, Rule, RuleTest
from stream_processor.secrets import SecretReferenceError, SecretResolver, is_reference

# The keys each table may hold. tattletail's schema; later issues add their extensions here.
TOP_LEVEL_KEYS: tuple[str, ...] = ("rule", "destination")
RULE_KEYS: tuple[str, ...] = ("name", "jq_match", "description", "destinations")
# Our extensions: all optional, so a tattletail file stays valid (docs/rules.md describes each).
EXTENSION_RULE_KEYS: tuple[str, ...] = (
    "severity",
    "title",
    "runbook",
    "tags",
    "enabled",
    "storm_window",
    "group_by",
    "test",
    "references",
    "false_positives",
)
ALL_RULE_KEYS: tuple[str, ...] = (*RULE_KEYS, *EXTENSION_RULE_KEYS)
JQ_PROGRAM_KEYS: tuple[str, ...] = ("jq_match", "title", "group_by")
RENAMED_RULE_KEYS: Mapping[str, str] = {"dedupe_window": "storm_window"}
"""Old name -> new name of rule keys still read, each with a warning saying what to write instead."""
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
TEST_KEYS: tuple[str, ...] = ("event", "event_file", "expect", "event_ids", "output", "title")
TEST_EXPECTATIONS: tuple[str, ...] = ("match", "no_match", "match_any")
DESTINATION_KEYS: tuple[str, ...] = ("id", "type")  # plus the type's REQUIRED_KEYS and OPTIONAL_KEYS
# Destination options that hold a list of strings in tattletail (`to_emails`); every other option is a string.
LIST_OPTION_KEYS: frozenset[str] = frozenset({"to_emails"})
# Destination options that hold a table of strings (the webhook's `headers`).
TABLE_OPTION_KEYS: frozenset[str] = frozenset({"headers"})
_Checked = TypeVar("_Checked")


def sending_problems(config: Config) -> list[str]:
    """Why `config` cannot go live although it loads: an enabled rule without destinations would match and send
    its alerts nowhere, or a destination cannot send as configured. `validate`, every sending pipeline and a hot
    reload refuse it; dry runs and rule tests do not need destinations."""
    problems = [
        f"{config.source}: {rule_label(rule.index, rule.name)}: has no destinations: its alerts would go nowhere; "
        'add destinations = ["..."] (a [[destination]] id), or enabled = false while the rule is being written'
        for rule in config.enabled_rules
        if not rule.destinations
    ]
    for destination in config.destinations:
        check = getattr(destination_class(destination.type), "sending_problems", None)
        label = f"destination {quote(destination.id)} (type {destination.type})"
        for problem in check(destination.options) if check else ():
            problems.append(f"{config.source}: {label}: {problem}")
    return problems


class ConfigBuilder:
    """Walks one parsed document, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str, resolver: SecretResolver | None = None, aws: AwsSettings | None = None) -> None:
        self.source = source
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.exit_code = EXIT_USAGE
        """3 or 4 when a problem came from AWS (a secret that could not be fetched), else 2."""
        self._resolver = resolver
        self._aws = aws
        self.compiled: frozenset[str] = frozenset()
        """Programs libjq compiled together (`compiling_together`): the others are compiled alone."""

    @property
    def resolver(self) -> SecretResolver:
        """The given resolver, else one over `aws` and the process environment, made on first need."""
        if self._resolver is None:
            self._resolver = SecretResolver(self._aws, os.environ)
        return self._resolver

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def warn(self, where: str, message: str) -> None:
        """Something the file should change although it loads (a deprecated key); `validate` prints it."""
        self.warnings.append(f"{self.source}: {where}: {message}")

    def build(self, document: Mapping[str, Any]) -> Config:
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.problem("", f"unknown top-level key {quote(key)}{did_you_mean(key, TOP_LEVEL_KEYS)}")
        rule_tables = self.tables(document, "rule")
        destination_tables = self.tables(document, "destination")

        # Problems come out in reading order: rules first (as files usually are), then destinations.
        defined = distinct_names(table.get("id") for _, table in destination_tables)
        self.compiled = compiling_together(_jq_programs(rule_tables))
        rules = [
            self.guarded(rule_label, index, table, lambda i, t: self.rule(i, t, defined))
            for index, table in rule_tables
        ]
        self.report_repeats(
            [(index, table.get("name")) for index, table in rule_tables],
            rule_label,
            "name is already used by rule #{first}: rule names must be unique (alerts and counts are keyed by "
            "them), rename one",
        )
        destinations = [
            self.guarded(destination_label, index, table, self.destination) for index, table in destination_tables
        ]
        self.report_repeats(
            [(index, table.get("id")) for index, table in destination_tables],
            destination_label,
            "id is already used by destination #{first}: ids must be unique, rename one",
        )

        if self.problems:
            raise ConfigError(self.problems, self.exit_code)
        return Config(
            rules=tuple(r for r in rules if r is not None),
            destinations=tuple(d for d in destinations if d is not None),
            source=self.source,
            notes=tuple(self.notes),
            warnings=tuple(self.warnings),
        )

    def guarded(
        self,
        label: Callable[[int, str | None], str],
        index: int,
        table: Mapping[str, Any],
        check: Callable[[int, Mapping[str, Any]], _Checked | None],
    ) -> _Checked | None:
        """Check one table; a failure of the checks themselves (a program nested too deeply for them, a bug)
        is one problem naming the table, never an escape that would stop a running worker's reload."""
        try:
            return check(index, table)
        except RecursionError:
            what = "nested too deeply to be checked"
        except Exception as error:  # the type only: a message could hold a secret being resolved
            what = f"could not be checked ({type(error).__name__})"
        name = table.get("name") if label is rule_label else table.get("id")
        self.problem(label(index, name if isinstance(name, str) and name else None), f"{what}: simplify it")
        return None

    def report_repeats(self, named: Sequence[tuple[int, Any]], label: Callable[[int, str], str], message: str) -> None:
        """Report each repeated name against the index of its first use."""
        first: dict[str, int] = {}
        for index, name in named:
            if not is_name(name):
                continue
            if name in first:
                self.problem(label(index, name), message.format(first=first[name]))
            else:
                first[name] = index

    def tables(self, document: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
        """The `[[key]]` array of tables with 1-based indexes; wrong shapes are reported and skipped."""
        value = document.get(key, [])
        if isinstance(value, dict):
            self.problem("", f"{key} must be an array of tables: write [[{key}]] (double brackets), not [{key}]")
            return []
        if not isinstance(value, list):
            self.problem("", f"{key} must be an array of tables written [[{key}]], got {kind(value)}")
            return []
        tables: list[tuple[int, Mapping[str, Any]]] = []
        for index, item in enumerate(value, start=1):
            if isinstance(item, dict):
                tables.append((index, item))
            else:
                self.problem("", f"{key} #{index} must be a table written [[{key}]], got {kind(item)}")
        return tables

    # ------------------------------------------------------------------ rules

    def rule(self, index: int, table: Mapping[str, Any], destination_ids: Sequence[str]) -> Rule | None:
        raw_name = table.get("name")
        label = rule_label(index, raw_name if isinstance(raw_name, str) and raw_name else None)
        before = len(self.problems)

        current = {key: value for key, value in table.items() if key not in RENAMED_RULE_KEYS}
        misspelled = self.unknown_keys(label, current, ALL_RULE_KEYS)

        name = self.string(label, table, "name", 'add name = "..." (a short title shown in every alert)', misspelled)
        jq_match = self.string(
            label,
            table,
            "jq_match",
            "add jq_match = '...' (the jq program that selects events, "
            "e.g. 'select(.eventName == \"CreateAccessKey\")')",
            misspelled,
        )
        description = table.get("description", "")
        if not isinstance(description, str):
            self.problem(label, f'description must be a string, got {kind(description)}: write description = "..."')
            description = ""
        destinations = self.destination_list(label, table)

        if jq_match:
            jq_match = self.go_regex(label, "jq_match", jq_match)
            compile_error = self.jq_compile_error(jq_match)
            if compile_error is not None:
                self.problem(label, f"jq_match does not compile: {compile_error}: fix the jq program")
            for violation in _sandbox_violations(jq_match):
                if compile_error is not None and violation.startswith("cannot be checked"):
                    continue  # the same syntax error, already reported with libjq's own words
                self.problem(label, f"jq_match {violation} (refused in rules: rewrite the program without it)")

        for position, destination_id in enumerate(destinations):
            if destination_id not in destination_ids:
                self.problem(label, unknown_destination(destination_id, destination_ids))
            elif destination_id in destinations[:position]:
                self.problem(label, f"destinations lists {quote(destination_id)} twice: remove the repeat")

        severity = self.severity(label, table)
        title = self.jq_option(label, table, "title", "'\"Access key for \\(.requestParameters.userName)\"'")
        runbook = self.runbook(label, table)
        tags = self.tags(label, table)
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(label, f"enabled must be true or false, got {kind(enabled)}: write enabled = false")
            enabled = True
        storm_window = self.storm_window(label, table)
        group_by = self.jq_option(label, table, "group_by", "'.userIdentity.arn'")
        references = self.texts(label, table, "references", 'write references = ["https://attack.mitre.org/..."]')
        false_positives = self.texts(label, table, "false_positives", 'write false_positives = ["Admin scripts"]')
        tests = self.rule_tests(label, table)
        for test in tests:
            if test.title is not None and title is None and test.title != name:
                self.problem(
                    label,
                    f"test #{test.index} expects a title, but the rule has no title program (alerts are titled "
                    "with the rule name): add title = '...' to the rule or remove the test's title",
                )

        if len(self.problems) != before or name is None or jq_match is None:
            return None
        return Rule(
            name=name,
            jq_match=jq_match,
            description=description,
            destinations=destinations,
            index=index,
            severity=severity,
            title=title,
            runbook=runbook,
            tags=tags,
            enabled=enabled,
            storm_window=storm_window,
            group_by=group_by,
            tests=tests,
            references=references,
            false_positives=false_positives,
        )

    # ------------------------------------------------------------------ rule extensions

    def severity(self, label: str, table: Mapping[str, Any]) -> str | None:
        if "severity" not in table:
            return None
        value = table["severity"]
        if isinstance(value, str) and value.strip().lower() in SEVERITIES:
            return value.strip().lower()
        shown = quote(value) if isinstance(value, str) else kind(value)
        hint = did_you_mean(value, SEVERITIES) if isinstance(value, str) else ""
        self.problem(label, f"severity {shown} is not one of {', '.join(SEVERITIES)}{hint}")
        return None

    def jq_option(self, label: str, table: Mapping[str, Any], key: str, example: str) -> str | None:
        """An optional jq program (title, group_by), checked like jq_match: it compiles and stays in the sandbox."""
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            got = "empty" if isinstance(value, str) else f"must be a jq program (a string), got {kind(value)}"
            self.problem(label, f"{key} {'is ' if got == 'empty' else ''}{got}: write {key} = {example}")
            return None
        value = self.go_regex(label, key, value)
        compile_error = self.jq_compile_error(value)
        if compile_error is not None:
            self.problem(label, f"{key} does not compile: {compile_error}: fix the jq program")
        for violation in _sandbox_violations(value):
            if compile_error is not None and violation.startswith("cannot be checked"):
                continue
            self.problem(label, f"{key} {violation} (refused in rules: rewrite the program without it)")
        return value if compile_error is None else None

    def storm_window(self, label: str, table: Mapping[str, Any]) -> float | None:
        """`storm_window` in seconds, or None (the storm policy's window). Its old name `dedupe_window` is still
        read, with a warning: it never set deduplication (that is by eventID, whatever the window)."""
        old = "dedupe_window"
        new = RENAMED_RULE_KEYS[old]
        if new in table and old in table:
            self.problem(label, f"has both {new} and {old} (its old name): keep {new}")
            return None
        key = new if new in table else old
        if key not in table:
            return None
        value = table[key]
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            self.problem(label, f"{key} {error}")
            return None
        if key == old:
            written = quote(value) if isinstance(value, str) else str(value)
            self.warn(
                label,
                f"{old} is deprecated, it sets the storm window (alerts folded into a digest): "
                f"write {new} = {written} instead",
            )
        return seconds

    def jq_compile_error(self, program: str) -> str | None:
        """libjq's compile error for `program`, on one line, or None when it compiles."""
        if program in self.compiled:
            return None
        try:
            compile_jq(program)
        except ValueError as error:
            lines = [line.strip() for line in str(error).splitlines()]
            errors = [line.rstrip(":") for line in lines if line.startswith("jq: error")]
            return "; ".join(errors) if errors else one_line(str(error))
        return None

    def go_regex(self, label: str, key: str, program: str) -> str:
        """`program` with Go (RE2) regex syntax read as tattletail read it (`go_regex`); what cannot be is a
        problem with its fix, what was translated a note."""
        translation = translate_program(program)
        for refusal in translation.refusals:
            self.problem(label, f"{key}: {refusal}")
        for change in translation.changes:
            self.notes.append(f"{self.source}: {label}: {key}: {change} (Go regex syntax, as tattletail read it)")
        return translation.program

    def runbook(self, label: str, table: Mapping[str, Any]) -> str | None:
        if "runbook" not in table:
            return None
        value = table["runbook"]
        how = 'write runbook = "https://wiki.example.com/runbooks/..."'
        if not isinstance(value, str):
            self.problem(label, f"runbook must be a URL (a string), got {kind(value)}: {how}")
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(label, f"runbook {quote(value)} is not an http(s) URL: {how}")
            return None
        return value.strip()

    def tags(self, label: str, table: Mapping[str, Any]) -> tuple[str, ...]:
        value = table.get("tags", [])
        how = 'write tags = ["T1098", "persistence"]'
        if isinstance(value, str):
            self.problem(label, f"tags must be a list of strings, got a string: write tags = [{quote(value)}]")
            return ()
        if not isinstance(value, list):
            self.problem(label, f"tags must be a list of strings, got {kind(value)}: {how}")
            return ()
        tags: list[str] = []
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str) or not item.strip():
                got = "an empty string" if isinstance(item, str) else kind(item)
                self.problem(label, f"tags[{position}] must be a non-empty string, got {got}: {how}")
            elif item in tags:
                self.problem(label, f"tags lists {quote(item)} twice: remove the repeat")
            else:
                tags.append(item)
        return tuple(tags)

    def texts(self, label: str, table: Mapping[str, Any], key: str, how: str) -> tuple[str, ...]:
        """An optional list of non-empty strings (`references`, `false_positives`: kept for readers)."""
        value = table.get(key, [])
        if isinstance(value, str):
            self.problem(label, f"{key} must be a list of strings, got a string: write {key} = [{quote(value)}]")
            return ()
        if not isinstance(value, list):
            self.problem(label, f"{key} must be a list of strings, got {kind(value)}: {how}")
            return ()
        texts: list[str] = []
        for position, item in enumerate(value, start=1):
            if isinstance(item, str) and item.strip():
                texts.append(item)
            else:
                got = "an empty string" if isinstance(item, str) else kind(item)
                self.problem(label, f"{key}[{position}] must be a non-empty string, got {got}: {how}")
        return tuple(texts)

    def rule_tests(self, label: str, table: Mapping[str, Any]) -> tuple[RuleTest, ...]:
        """The rule's `[[rule.test]]` examples, each checked for shape (running them is `test-rules`' job)."""
        value = table.get("test", [])
        if isinstance(value, dict):
            self.problem(label, "test must be an array of tables: write [[rule.test]] (double brackets)")
            return ()
        if not isinstance(value, list):
            self.problem(label, f"test must be an array of tables written [[rule.test]], got {kind(value)}")
            return ()
        tests: list[RuleTest] = []
        for index, item in enumerate(value, start=1):
            where = f"{label}: test #{index}"
            if not isinstance(item, dict):
                self.problem(where, f"must be a table written [[rule.test]], got {kind(item)}")
                continue
            test = self.rule_test(where, index, item)
            if test is not None:
                tests.append(test)
        return tuple(tests)

    def rule_test(self, where: str, index: int, table: Mapping[str, Any]) -> RuleTest | None:
        before = len(self.problems)
        misspelled = self.unknown_keys(where, table, TEST_KEYS)
        event_ids = self.test_event_ids(where, table)
        expect = table.get("expect", "match" if event_ids else None)
        if expect is None:
            if "expect" not in misspelled:
                self.problem(where, 'missing expect: add expect = "match", "no_match" or "match_any"')
        elif expect not in TEST_EXPECTATIONS:
            shown = quote(expect) if isinstance(expect, str) else kind(expect)
            hint = did_you_mean(expect, TEST_EXPECTATIONS) if isinstance(expect, str) else ""
            self.problem(where, f'expect {shown} is not "match", "no_match" or "match_any"{hint}')
        elif expect == "match_any" and event_ids:
            self.problem(where, 'expect = "match_any" with event_ids: keep one (event_ids names what must match)')
        if (expect == "match_any" or event_ids) and "event_file" not in table:
            self.problem(where, f"{'event_ids' if event_ids else 'match_any'} needs an event_file with several events")
        event_text: str | None = None
        event_file: str | None = None
        if "event" in table and "event_file" in table:
            self.problem(where, "has both event and event_file: keep one")
        elif "event" in table:
            event_text = self.test_event(where, table["event"])
        elif "event_file" in table:
            value = table["event_file"]
            if isinstance(value, str) and value.strip():
                event_file = value
            else:
                got = "is empty" if isinstance(value, str) else f"must be a path (a string), got {kind(value)}"
                self.problem(where, f'event_file {got}: write event_file = "events/create-access-key.json"')
        elif not misspelled & {"event", "event_file"}:
            self.problem(
                where,
                'missing the event: add event = { eventName = "...", ... } (or a [rule.test.event] table, or a '
                'JSON string) or event_file = "path relative to this file"',
            )
        expected: dict[str, str | None] = {"output": None, "title": None}
        for key in expected:
            if key in table:
                value = table[key]
                if not isinstance(value, str):
                    self.problem(where, f"{key} must be the expected text (a string), got {kind(value)}")
                elif expect == "no_match":
                    self.problem(where, f'{key} is checked only for expect = "match": remove it or expect a match')
                elif expect == "match_any":
                    self.problem(where, f"{key} needs the events it is checked on: name them with event_ids")
                else:
                    expected[key] = value
        if len(self.problems) != before or not isinstance(expect, str):
            return None
        return RuleTest(
            index=index,
            expect=expect,
            event=event_text,
            event_file=event_file,
            output=expected["output"],
            title=expected["title"],
            source=self.source,
            event_ids=event_ids,
        )

    def test_event_ids(self, where: str, table: Mapping[str, Any]) -> tuple[str, ...]:
        """`event_ids`: the eventIDs of an event_file the test is about, a non-empty list of distinct strings."""
        if "event_ids" not in table:
            return ()
        value = table["event_ids"]
        how = 'write event_ids = ["7f234c0f-61d9-4d9e-add6-f767474d9be6"] (eventIDs of the event_file)'
        if not isinstance(value, list) or not value:
            self.problem(where, f"event_ids must be a non-empty list of eventIDs, got {kind(value)}: {how}")
            return ()
        ids: list[str] = []
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str) or not item.strip():
                self.problem(where, f"event_ids[{position}] must be an eventID (a non-empty string): {how}")
            elif item in ids:
                self.problem(where, f"event_ids lists {quote(item)} twice: remove the repeat")
            else:
                ids.append(item)
        return tuple(ids)

    def test_event(self, where: str, value: Any) -> str | None:
        """An inline test event as canonical JSON text: a TOML table, or a string holding a JSON object."""
        how = "write event = { eventName = \"...\" } or event = '''{\"eventName\": \"...\"}'''"
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError as error:
                self.problem(where, f"event is not valid JSON ({error}): fix it, or write the event as a TOML table")
                return None
            if not isinstance(parsed, dict):
                self.problem(where, f"event must be a JSON object, got {json_kind(parsed)}: {how}")
                return None
            return json.dumps(parsed, ensure_ascii=False)
        if isinstance(value, dict):
            bad = non_json_path(value, "event")
            if bad is not None:
                self.problem(
                    where,
                    f"{bad} is a TOML date/time, which JSON has no type for: quote it (CloudTrail times are strings)",
                )
                return None
            return json.dumps(value, ensure_ascii=False)
        self.problem(where, f"event must be a table or a JSON string, got {kind(value)}: {how}")
        return None

    def destination_list(self, label: str, table: Mapping[str, Any]) -> tuple[str, ...]:
        value = table.get("destinations", [])
        example = 'write destinations = ["Slack Audit"] (a list of destination ids)'
        if isinstance(value, str):
            self.problem(
                label,
                f"destinations must be a list of destination ids, got a string: write destinations = [{quote(value)}]",
            )
            return (value,)  # still checked against the defined ids
        if not isinstance(value, list):
            self.problem(label, f"destinations must be a list of destination ids, got {kind(value)}: {example}")
            return ()
        ids: list[str] = []
        for position, item in enumerate(value, start=1):
            if isinstance(item, str):
                ids.append(item)
            else:
                self.problem(
                    label,
                    f"destinations[{position}] must be a destination id (a string), got {kind(item)}: {example}",
                )
        return tuple(ids)

    # ------------------------------------------------------------------ destinations

    def destination(self, index: int, table: Mapping[str, Any]) -> DestinationConfig | None:
        raw_id = table.get("id")
        label = destination_label(index, raw_id if isinstance(raw_id, str) and raw_id else None)
        before = len(self.problems)

        misspelled = {closest(key, DESTINATION_KEYS) for key in table if key not in DESTINATION_KEYS}
        how_id = 'add id = "..." (the name rules use in destinations)'
        destination_id = self.string(label, table, "id", how_id, misspelled)
        how_type = f'add type = "..." (one of: {", ".join(known_types())})'
        type_name = self.string(label, table, "type", how_type, misspelled)
        options = {key: value for key, value in table.items() if key not in DESTINATION_KEYS}
        if type_name is None:
            for key in options:  # without a type the valid keys are unknown: report only what no type accepts
                if not _is_any_type_key(key):
                    self.problem(label, unknown_key(key, DESTINATION_KEYS))
            return None

        label = f"{label} (type {type_name})"
        cls = self.destination_type(label, type_name)
        if cls is None:
            return None
        required = tuple(getattr(cls, "REQUIRED_KEYS", ()))
        optional = tuple(getattr(cls, "OPTIONAL_KEYS", ()))
        valid = (*DESTINATION_KEYS, *required, *optional)
        misspelled = self.unknown_keys(label, table, valid)
        for key in required:
            if key not in options and key not in misspelled:
                self.problem(label, f"missing {key} (required for type {type_name}): add {key} = {example_value(key)}")
        clean: dict[str, Any] = {}
        references: dict[str, str] = {}
        for key, value in options.items():
            if key in valid:
                checked = self.option_value(label, key, value)
                if checked is not None:
                    resolved = self.resolve_option(label, key, checked, references)
                    if resolved is not None:
                        clean[key] = resolved

        resolved = not references or self.resolver.RESOLVES
        if len(self.problems) == before and resolved:
            check = getattr(cls, "check_options", None)
            if callable(check):
                for message in check(clean):
                    self.problem(label, str(message))
        if len(self.problems) != before or destination_id is None:
            return None
        return DestinationConfig(id=destination_id, type=type_name, options=clean, references=references)

    def resolve_option(self, label: str, key: str, value: Any, references: dict[str, str]) -> Any:
        """`value` with every secret reference in it replaced by the secret; None after reporting a failure.

        Messages name the destination, the field and the reference, never a resolved value.
        """
        def one(field_name: str, text: str) -> str | None:
            if not is_reference(text):
                return text
            try:
                resolved = self.resolver.resolve(text)
            except SecretReferenceError as error:
                self.problem(label, f"{field_name}: cannot resolve {error}")
                self.exit_code = max(self.exit_code, error.exit_code)
                return None
            references[field_name] = text
            return resolved

        if isinstance(value, str):
            return one(key, value)
        if isinstance(value, tuple):
            items = [one(f"{key}[{position}]", item) for position, item in enumerate(value, start=1)]
            return None if None in items else tuple(cast(list[str], items))
        if isinstance(value, Mapping):
            table = {name: one(f"{key}.{name}", item) for name, item in value.items()}
            return None if None in table.values() else table
        return value

    def destination_type(self, label: str, type_name: str) -> type[Any] | None:
        try:
            return destination_class(type_name)
        except KeyError:
            types = known_types()
            self.problem(
                label,
                f"unknown destination type {quote(type_name)}{did_you_mean(type_name, types)}"
                f" (known types: {', '.join(types) or 'none installed'})",
            )
        except Exception as error:  # a broken destination module must not hide the file's other problems
            self.problem(
                label,
                f"destination type {quote(type_name)} failed to load ({type(error).__name__}): "
                "this is a bug in stream-processor, not in your file",
            )
        return None

    def option_value(self, label: str, key: str, value: Any) -> Any:
        """A checked option value; values are never echoed (they may be secrets)."""
        if key in TABLE_OPTION_KEYS:
            how = f'write {key} = {{ "X-Team" = "security", Authorization = "env:HOOK_TOKEN" }}'
            if not isinstance(value, dict):
                self.problem(label, f"{key} must be a table of strings, got {kind(value)}: {how}")
                return None
            bad = [name for name, item in value.items() if not isinstance(item, str) or not item.strip()]
            for name in bad:
                self.problem(label, f"{key}.{name} must be a non-empty string (values are not shown): {how}")
            return None if bad else dict(value)
        if key in LIST_OPTION_KEYS:
            if isinstance(value, list) and value and all(isinstance(item, str) and item for item in value):
                return tuple(value)
            if isinstance(value, str):
                self.problem(label, f'{key} must be a list of strings, got a string: write {key} = ["..."]')
            else:
                self.problem(label, f"{key} must be a non-empty list of non-empty strings, got {kind(value)}")
            return None
        if not isinstance(value, str):
            self.problem(label, f"{key} must be a string, got {kind(value)}: write {key} = {example_value(key)}")
            return None
        if not value.strip():
            self.problem(label, f"{key} is empty: set it to {example_value(key)}")
            return None
        return value

    # ------------------------------------------------------------------ shared

    def unknown_keys(self, label: str, table: Mapping[str, Any], valid: Sequence[str]) -> set[str | None]:
        """Report keys outside `valid`; returns the valid keys they look like misspellings of."""
        misspelled: set[str | None] = set()
        for key in table:
            if key not in valid:
                self.problem(label, unknown_key(key, valid))
                misspelled.add(closest(key, valid))
        return misspelled

    def string(
        self, label: str, table: Mapping[str, Any], key: str, how: str, misspelled: set[str | None]
    ) -> str | None:
        """A required non-empty string key, or None after reporting what is wrong with it.

        A missing key already reported as misspelled ("did you mean") is not reported twice.
        """
        if key not in table:
            if key not in misspelled:
                self.problem(label, f"missing {key}: {how}")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.problem(label, f"{key} must be a string, got {kind(value)}: {how.removeprefix('add ')}")
            return None
        if not value.strip():
            self.problem(label, f"{key} is empty: {how.removeprefix('add ')}")
            return None
        return value


# --------------------------------------------------------------------------- hooks into other parts


def _jq_programs(rule_tables: Sequence[tuple[int, Mapping[str, Any]]]) -> Iterator[str]:
    """Every jq program of the rules as it will be checked (Go regex syntax read as tattletail read it)."""
    for _, table in rule_tables:
        for key in JQ_PROGRAM_KEYS:
            value = table.get(key)
            if isinstance(value, str) and value.strip():
                yield translate_program(value).program


def _sandbox_violations(program: str) -> list[str]:
    """What `program` uses that rules may not ($ENV, input, halt, ...), from `matcher/sandbox.py`, and what
    could run or allocate without bound on one event (`repeat`, recursive `def`, ...), from `matcher/bounds.py`."""
    found = sandbox_violations(program)
    unreadable = ("cannot be checked", "is nested too deeply")
    if any(message.startswith(unreadable) for message in found):  # the bounds check could not read it either
        return found + [m for m in bounds_violations(program) if not m.startswith(unreadable)]
    return found + bounds_violations(program)


def _is_any_type_key(key: str) -> bool:
    """Whether some shipped destination type accepts `key` (used when a destination has no type)."""
    for type_name in known_types():
        try:
            cls = destination_class(type_name)
        except Exception:  # reported where the type is actually used
            continue
        if key in (*cls.REQUIRED_KEYS, *cls.OPTIONAL_KEYS):
            return True
    return False

