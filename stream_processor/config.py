"""Loads and validates the rule file (tattletail's `tattletail.toml` schema plus our extensions).

Validation collects every problem of a file before raising, so one run of `stream-processor validate`
shows them all. Each problem is one line naming the file, the rule or destination, and what to change.
Destination option values are never echoed: a webhook URL is a secret.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import jq

from stream_processor.errors import EXIT_AWS_ACCESS, EXIT_USAGE, AwsError, ConfigError

if TYPE_CHECKING:
    from stream_processor.aws import AwsSettings
    from stream_processor.secrets import SecretResolver

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
    "dedupe_window",
    "group_by",
    "test",
    "references",
    "false_positives",
)
ALL_RULE_KEYS: tuple[str, ...] = (*RULE_KEYS, *EXTENSION_RULE_KEYS)
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
TEST_KEYS: tuple[str, ...] = ("event", "event_file", "expect", "event_ids", "output", "title")
TEST_EXPECTATIONS: tuple[str, ...] = ("match", "no_match", "match_any")
DESTINATION_KEYS: tuple[str, ...] = ("id", "type")  # plus the type's REQUIRED_KEYS and OPTIONAL_KEYS
# Destination options that hold a list of strings in tattletail (`to_emails`); every other option is a string.
LIST_OPTION_KEYS: frozenset[str] = frozenset({"to_emails"})
# Destination options that hold a table of strings (the webhook's `headers`).
TABLE_OPTION_KEYS: frozenset[str] = frozenset({"headers"})

S3_SCHEME = "s3://"
ENV_CONFIG_BUCKET = "S3_CONFIG_BUCKET"
ENV_CONFIG_PATH = "S3_CONFIG_PATH"
_LABEL_LIMIT = 80
_Checked = TypeVar("_Checked")


@dataclass(frozen=True, slots=True)
class RuleTest:
    """One `[[rule.test]]`: example events and what the rule must make of them.

    `event` is the inline event as JSON text (TOML tables become JSON; hashable, unlike a dict);
    `event_file` is a path as written, relative to `source` (the file the test came from).
    `expect`: match (every event), no_match (none), match_any (at least one event of the file).
    `event_ids`: only these events of the file are held to `expect` (match or no_match); the rest are free.
    `output` and `title` are the expected rendered jq output and title (None: not checked).
    """

    index: int
    expect: str
    event: str | None = None
    event_file: str | None = None
    output: str | None = None
    title: str | None = None
    source: str = "<memory>"
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One `[[rule]]`: `index` is its 1-based position in the file, for error messages.

    The fields after `index` are our extensions; their defaults are what a tattletail rule means.
    `dedupe_window` is in seconds. `title` and `group_by` are jq programs (validated at load).
    """

    name: str
    jq_match: str
    description: str = ""
    destinations: tuple[str, ...] = ()
    index: int = 0
    severity: str | None = None
    title: str | None = None
    runbook: str | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    dedupe_window: float | None = None
    group_by: str | None = None
    tests: tuple[RuleTest, ...] = ()
    references: tuple[str, ...] = ()
    false_positives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    """One `[[destination]]`: `options` holds the type's own keys (webhook_url, sns_arn, to_emails, ...).

    Values are strings, except list options such as `to_emails`, which are tuples of strings. `options` is
    left out of the repr because it holds secrets (webhook URLs).
    """

    id: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    references: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Option name -> the secret reference it was resolved from (`ssm:/...`); names, never values."""


@dataclass(frozen=True, slots=True)
class Config:
    """A validated rule file."""

    rules: tuple[Rule, ...]
    destinations: tuple[DestinationConfig, ...]
    source: str = "<memory>"
    notes: tuple[str, ...] = ()
    """What loading changed, not a problem (Go regex syntax of a tattletail rule read as Oniguruma's)."""

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        """The rules to match: a rule with `enabled = false` is loaded and validated, never matched."""
        return tuple(rule for rule in self.rules if rule.enabled)

    def sending_problems(self) -> list[str]:
        """Why this config cannot go live although it loads: an enabled rule without destinations would match
        and send its alerts nowhere. `validate`, every sending pipeline and a hot reload refuse it; dry runs and
        rule tests do not need destinations."""
        from stream_processor.alerts.destinations.base import destination_class

        problems = [
            f"{self.source}: {_rule_label(rule.index, rule.name)}: has no destinations: its alerts would go nowhere; "
            'add destinations = ["..."] (a [[destination]] id), or enabled = false while the rule is being written'
            for rule in self.enabled_rules
            if not rule.destinations
        ]
        for destination in self.destinations:
            check = getattr(destination_class(destination.type), "sending_problems", None)
            label = f"destination {_quote(destination.id)} (type {destination.type})"
            for problem in check(destination.options) if check else ():
                problems.append(f"{self.source}: {label}: {problem}")
        return problems

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def destination(self, destination_id: str) -> DestinationConfig:
        for destination in self.destinations:
            if destination.id == destination_id:
                return destination
        raise KeyError(destination_id)


# --------------------------------------------------------------------------- locations


def config_location_from_env(environ: Mapping[str, str]) -> str | None:
    """tattletail's `S3_CONFIG_BUCKET` + `S3_CONFIG_PATH` as an `s3://bucket/key` location, or None.

    Raises:
        ConfigError: only one of the two is set (tattletail would silently fall back to its bundled file).
    """
    bucket = environ.get(ENV_CONFIG_BUCKET, "").strip()
    key = environ.get(ENV_CONFIG_PATH, "")
    if not bucket and not key:
        return None
    if not bucket or not key:
        present, missing = (ENV_CONFIG_BUCKET, ENV_CONFIG_PATH) if bucket else (ENV_CONFIG_PATH, ENV_CONFIG_BUCKET)
        raise ConfigError(f"{present} is set but {missing} is not: set both (bucket and object key) or neither")
    return f"{S3_SCHEME}{bucket}/{key}"


def split_s3_location(location: str) -> tuple[str, str]:
    """(bucket, key) of `s3://bucket/key`; the key is kept verbatim (S3 keys may start with `/`).

    Raises:
        ConfigError: not of the form `s3://bucket/key`.
    """
    bucket, _, key = location[len(S3_SCHEME) :].partition("/")
    if not location.startswith(S3_SCHEME) or not bucket or not key:
        raise ConfigError(f"{location}: not an S3 location of the form s3://bucket/key: give the bucket and the key")
    return bucket, key


def load_config(location: str, aws: AwsSettings | None = None, *, resolver: SecretResolver | None = None) -> Config:
    """Read, parse and validate the rule file at a local path or `s3://bucket/key`.

    Secret references in destinations (`env:`, `ssm:`, `secretsmanager:`) are resolved by `resolver`; without
    one, a resolver over `aws` and this process's environment is made when the file has references. A
    reloader keeps its own resolver and calls `resolver.refresh()` before loading again.

    Raises:
        ConfigError: the file cannot be read, or it has problems; `problems` lists every one.
    """
    data = _read_s3(location, aws) if location.startswith(S3_SCHEME) else _read_local(location)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ConfigError(
            f"{location}: not valid UTF-8 (at line {line}, column {column}): save the rule file as UTF-8 text"
        ) from None
    try:
        return parse_config(text, location, resolver=resolver, aws=aws)
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{location}: nested too deeply to be read: simplify the file") from None
    except Exception as error:  # the type only: a message could hold a secret being resolved
        raise ConfigError(f"{location}: could not be loaded ({type(error).__name__}): check the file") from None


def _read_local(location: str) -> bytes:
    path = Path(location).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{location}: file not found: check the path (a tattletail.toml, or s3://bucket/key for S3); "
            "examples/seed.toml shows the format"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{location}: is a directory: give the rule file inside it (e.g. tattletail.toml)") from None
    except PermissionError:
        raise ConfigError(f"{location}: permission denied: make the file readable by this user") from None
    except OSError as error:
        raise ConfigError(f"{location}: cannot be read ({error.strerror}): check the path") from None


def _read_s3(location: str, aws: AwsSettings | None) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    from stream_processor.alerts.aws_errors import describe_failure, error_code
    from stream_processor.aws import AwsSettings

    bucket, key = split_s3_location(location)
    client = (aws or AwsSettings()).client("s3")
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        return cast(bytes, body.read())
    except ClientError as error:
        code = error_code(error)
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ConfigError(
                f"{location}: no object {key!r} in bucket {bucket!r}: upload the rule file there "
                f"(aws s3 cp tattletail.toml {location}) or fix the key ({ENV_CONFIG_PATH})"
            ) from None
        if code == "NoSuchBucket":
            raise ConfigError(
                f"{location}: bucket {bucket!r} does not exist (or not in this account/endpoint): "
                f"fix the bucket name ({ENV_CONFIG_BUCKET})"
            ) from None
        if code in ("AccessDenied", "403", "Forbidden"):
            raise AwsError(
                f"{location}: access denied: grant s3:GetObject on arn:aws:s3:::{bucket}/{key} to this identity "
                "(and kms:Decrypt when the bucket uses SSE-KMS)",
                EXIT_AWS_ACCESS,
            ) from None
        failure = describe_failure(error)
        if failure is not None and failure.kind != "service":
            raise AwsError(f"{location}: {failure.message}", failure.exit_code) from None
        raise ConfigError(f"{location}: S3 refused the read ({code or 'error'}): {_one_line(str(error))}") from None
    except BotoCoreError as error:
        failure = describe_failure(error)
        if failure is not None:
            raise AwsError(f"{location}: {failure.message}", failure.exit_code) from None
        raise ConfigError(
            f"{location}: cannot read from S3 ({type(error).__name__}): {_one_line(str(error))}: "
            "check credentials, region and endpoint"
        ) from None


# --------------------------------------------------------------------------- parsing and validation


def parse_config(
    text: str, source: str, *, resolver: SecretResolver | None = None, aws: AwsSettings | None = None
) -> Config:
    """Parse and validate a rule file's text; `source` names it in every message.

    Raises:
        ConfigError: the text is not TOML, or it breaks the schema; `problems` lists every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}: fix the syntax there") from None
    except RecursionError:
        raise ConfigError(f"{source}: not readable TOML: nested too deeply") from None
    return _ConfigBuilder(source, resolver, aws).build(document)


def parse_tests_file(text: str, source: str) -> dict[str, tuple[RuleTest, ...]]:
    """Rule tests kept beside a rule file: `[[rule]]` tables with only `name` and `[[rule.test]]`.

    Returns rule name -> its tests, in file order (names are checked against the config by the caller).

    Raises:
        ConfigError: not TOML, or a test breaks the schema; `problems` lists every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}: fix the syntax there") from None
    builder = _ConfigBuilder(source)
    for key in document:
        if key != "rule":
            builder.problem("", f"unknown top-level key {_quote(key)}: a tests file holds [[rule]] tables only")
    tests: dict[str, tuple[RuleTest, ...]] = {}
    for index, table in builder.tables(document, "rule"):
        raw_name = table.get("name")
        label = _rule_label(index, raw_name if isinstance(raw_name, str) and raw_name else None)
        builder.unknown_keys(label, table, ("name", "test"))
        how = 'add name = "..." (the name of the rule these tests are for)'
        name = builder.string(label, table, "name", how, set())
        found = builder.rule_tests(label, table)
        if name is not None:
            if name in tests:
                builder.problem(label, "the same rule appears twice: put all its [[rule.test]] under one [[rule]]")
            tests[name] = tests.get(name, ()) + found
    if builder.problems:
        raise ConfigError(builder.problems)
    return tests


@functools.lru_cache(maxsize=4096)
def compile_jq(program: str) -> Any:
    """libjq's compiled program, once per distinct text (rule titles and group_by are rendered per alert).

    Raises:
        ValueError: the program does not compile.
    """
    return jq.compile(program)


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a duration such as `"90s"`, `"10m"`, `"1h30m"`, `"1d"`.

    Raises:
        ValueError: not a positive, finite duration (the message says what is accepted).
    """
    if isinstance(value, bool):
        raise ValueError('must be a number of seconds or a duration such as "10m", got a boolean')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if not text or not _DURATION.fullmatch(text):
            raise ValueError(
                f'{_quote(value)} is not a duration: write seconds (600) or a duration such as "90s", '
                '"10m", "1h30m", "1d"'
            )
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))
    else:
        raise ValueError(f'must be a number of seconds or a duration such as "10m", got {_kind(value)}')
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be more than zero seconds")
    return seconds


_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")


class _ConfigBuilder:
    """Walks one parsed document, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str, resolver: SecretResolver | None = None, aws: AwsSettings | None = None) -> None:
        self.source = source
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.exit_code = EXIT_USAGE
        """3 or 4 when a problem came from AWS (a secret that could not be fetched), else 2."""
        self._resolver = resolver
        self._aws = aws

    @property
    def resolver(self) -> SecretResolver:
        """The given resolver, else one over `aws` and the process environment, made on first need."""
        if self._resolver is None:
            from stream_processor.secrets import SecretResolver

            self._resolver = SecretResolver(self._aws, os.environ)
        return self._resolver

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def build(self, document: Mapping[str, Any]) -> Config:
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.problem("", f"unknown top-level key {_quote(key)}{_did_you_mean(key, TOP_LEVEL_KEYS)}")
        rule_tables = self.tables(document, "rule")
        destination_tables = self.tables(document, "destination")

        # Problems come out in reading order: rules first (as files usually are), then destinations.
        defined = _distinct_names(table.get("id") for _, table in destination_tables)
        rules = [
            self.guarded(_rule_label, index, table, lambda i, t: self.rule(i, t, defined))
            for index, table in rule_tables
        ]
        self.report_repeats(
            [(index, table.get("name")) for index, table in rule_tables],
            _rule_label,
            "name is already used by rule #{first}: rule names must be unique (alerts and counts are keyed by "
            "them), rename one",
        )
        destinations = [
            self.guarded(_destination_label, index, table, self.destination) for index, table in destination_tables
        ]
        self.report_repeats(
            [(index, table.get("id")) for index, table in destination_tables],
            _destination_label,
            "id is already used by destination #{first}: ids must be unique, rename one",
        )

        if self.problems:
            raise ConfigError(self.problems, self.exit_code)
        return Config(
            rules=tuple(r for r in rules if r is not None),
            destinations=tuple(d for d in destinations if d is not None),
            source=self.source,
            notes=tuple(self.notes),
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
        name = table.get("name") if label is _rule_label else table.get("id")
        self.problem(label(index, name if isinstance(name, str) and name else None), f"{what}: simplify it")
        return None

    def report_repeats(self, named: Sequence[tuple[int, Any]], label: Callable[[int, str], str], message: str) -> None:
        """Report each repeated name against the index of its first use."""
        first: dict[str, int] = {}
        for index, name in named:
            if not _is_name(name):
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
            self.problem("", f"{key} must be an array of tables written [[{key}]], got {_kind(value)}")
            return []
        tables: list[tuple[int, Mapping[str, Any]]] = []
        for index, item in enumerate(value, start=1):
            if isinstance(item, dict):
                tables.append((index, item))
            else:
                self.problem("", f"{key} #{index} must be a table written [[{key}]], got {_kind(item)}")
        return tables

    # ------------------------------------------------------------------ rules

    def rule(self, index: int, table: Mapping[str, Any], destination_ids: Sequence[str]) -> Rule | None:
        raw_name = table.get("name")
        label = _rule_label(index, raw_name if isinstance(raw_name, str) and raw_name else None)
        before = len(self.problems)

        misspelled = self.unknown_keys(label, table, ALL_RULE_KEYS)

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
            self.problem(label, f'description must be a string, got {_kind(description)}: write description = "..."')
            description = ""
        destinations = self.destination_list(label, table)

        if jq_match:
            jq_match = self.go_regex(label, "jq_match", jq_match)
            compile_error = _jq_compile_error(jq_match)
            if compile_error is not None:
                self.problem(label, f"jq_match does not compile: {compile_error}: fix the jq program")
            for violation in _sandbox_violations(jq_match):
                if compile_error is not None and violation.startswith("cannot be checked"):
                    continue  # the same syntax error, already reported with libjq's own words
                self.problem(label, f"jq_match {violation} (refused in rules: rewrite the program without it)")

        for position, destination_id in enumerate(destinations):
            if destination_id not in destination_ids:
                self.problem(label, _unknown_destination(destination_id, destination_ids))
            elif destination_id in destinations[:position]:
                self.problem(label, f"destinations lists {_quote(destination_id)} twice: remove the repeat")

        severity = self.severity(label, table)
        title = self.jq_option(label, table, "title", "'\"Access key for \\(.requestParameters.userName)\"'")
        runbook = self.runbook(label, table)
        tags = self.tags(label, table)
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(label, f"enabled must be true or false, got {_kind(enabled)}: write enabled = false")
            enabled = True
        dedupe_window: float | None = None
        if "dedupe_window" in table:
            try:
                dedupe_window = parse_duration(table["dedupe_window"])
            except ValueError as error:
                self.problem(label, f"dedupe_window {error}")
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
            dedupe_window=dedupe_window,
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
        shown = _quote(value) if isinstance(value, str) else _kind(value)
        hint = _did_you_mean(value, SEVERITIES) if isinstance(value, str) else ""
        self.problem(label, f"severity {shown} is not one of {', '.join(SEVERITIES)}{hint}")
        return None

    def jq_option(self, label: str, table: Mapping[str, Any], key: str, example: str) -> str | None:
        """An optional jq program (title, group_by), checked like jq_match: it compiles and stays in the sandbox."""
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            got = "empty" if isinstance(value, str) else f"must be a jq program (a string), got {_kind(value)}"
            self.problem(label, f"{key} {'is ' if got == 'empty' else ''}{got}: write {key} = {example}")
            return None
        value = self.go_regex(label, key, value)
        compile_error = _jq_compile_error(value)
        if compile_error is not None:
            self.problem(label, f"{key} does not compile: {compile_error}: fix the jq program")
        for violation in _sandbox_violations(value):
            if compile_error is not None and violation.startswith("cannot be checked"):
                continue
            self.problem(label, f"{key} {violation} (refused in rules: rewrite the program without it)")
        return value if compile_error is None else None

    def go_regex(self, label: str, key: str, program: str) -> str:
        """`program` with Go (RE2) regex syntax read as tattletail read it (`go_regex`); what cannot be is a
        problem with its fix, what was translated a note."""
        from stream_processor.go_regex import translate_program

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
            self.problem(label, f"runbook must be a URL (a string), got {_kind(value)}: {how}")
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(label, f"runbook {_quote(value)} is not an http(s) URL: {how}")
            return None
        return value.strip()

    def tags(self, label: str, table: Mapping[str, Any]) -> tuple[str, ...]:
        value = table.get("tags", [])
        how = 'write tags = ["T1098", "persistence"]'
        if isinstance(value, str):
            self.problem(label, f"tags must be a list of strings, got a string: write tags = [{_quote(value)}]")
            return ()
        if not isinstance(value, list):
            self.problem(label, f"tags must be a list of strings, got {_kind(value)}: {how}")
            return ()
        tags: list[str] = []
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str) or not item.strip():
                got = "an empty string" if isinstance(item, str) else _kind(item)
                self.problem(label, f"tags[{position}] must be a non-empty string, got {got}: {how}")
            elif item in tags:
                self.problem(label, f"tags lists {_quote(item)} twice: remove the repeat")
            else:
                tags.append(item)
        return tuple(tags)

    def texts(self, label: str, table: Mapping[str, Any], key: str, how: str) -> tuple[str, ...]:
        """An optional list of non-empty strings (`references`, `false_positives`: kept for readers)."""
        value = table.get(key, [])
        if isinstance(value, str):
            self.problem(label, f"{key} must be a list of strings, got a string: write {key} = [{_quote(value)}]")
            return ()
        if not isinstance(value, list):
            self.problem(label, f"{key} must be a list of strings, got {_kind(value)}: {how}")
            return ()
        texts: list[str] = []
        for position, item in enumerate(value, start=1):
            if isinstance(item, str) and item.strip():
                texts.append(item)
            else:
                got = "an empty string" if isinstance(item, str) else _kind(item)
                self.problem(label, f"{key}[{position}] must be a non-empty string, got {got}: {how}")
        return tuple(texts)

    def rule_tests(self, label: str, table: Mapping[str, Any]) -> tuple[RuleTest, ...]:
        """The rule's `[[rule.test]]` examples, each checked for shape (running them is `test-rules`' job)."""
        value = table.get("test", [])
        if isinstance(value, dict):
            self.problem(label, "test must be an array of tables: write [[rule.test]] (double brackets)")
            return ()
        if not isinstance(value, list):
            self.problem(label, f"test must be an array of tables written [[rule.test]], got {_kind(value)}")
            return ()
        tests: list[RuleTest] = []
        for index, item in enumerate(value, start=1):
            where = f"{label}: test #{index}"
            if not isinstance(item, dict):
                self.problem(where, f"must be a table written [[rule.test]], got {_kind(item)}")
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
            shown = _quote(expect) if isinstance(expect, str) else _kind(expect)
            hint = _did_you_mean(expect, TEST_EXPECTATIONS) if isinstance(expect, str) else ""
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
                got = "is empty" if isinstance(value, str) else f"must be a path (a string), got {_kind(value)}"
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
                    self.problem(where, f"{key} must be the expected text (a string), got {_kind(value)}")
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
            self.problem(where, f"event_ids must be a non-empty list of eventIDs, got {_kind(value)}: {how}")
            return ()
        ids: list[str] = []
        for position, item in enumerate(value, start=1):
            if not isinstance(item, str) or not item.strip():
                self.problem(where, f"event_ids[{position}] must be an eventID (a non-empty string): {how}")
            elif item in ids:
                self.problem(where, f"event_ids lists {_quote(item)} twice: remove the repeat")
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
                self.problem(where, f"event must be a JSON object, got {_json_kind(parsed)}: {how}")
                return None
            return json.dumps(parsed, ensure_ascii=False)
        if isinstance(value, dict):
            bad = _non_json_path(value, "event")
            if bad is not None:
                self.problem(
                    where,
                    f"{bad} is a TOML date/time, which JSON has no type for: quote it (CloudTrail times are strings)",
                )
                return None
            return json.dumps(value, ensure_ascii=False)
        self.problem(where, f"event must be a table or a JSON string, got {_kind(value)}: {how}")
        return None

    def destination_list(self, label: str, table: Mapping[str, Any]) -> tuple[str, ...]:
        value = table.get("destinations", [])
        example = 'write destinations = ["Slack Audit"] (a list of destination ids)'
        if isinstance(value, str):
            self.problem(
                label,
                f"destinations must be a list of destination ids, got a string: write destinations = [{_quote(value)}]",
            )
            return (value,)  # still checked against the defined ids
        if not isinstance(value, list):
            self.problem(label, f"destinations must be a list of destination ids, got {_kind(value)}: {example}")
            return ()
        ids: list[str] = []
        for position, item in enumerate(value, start=1):
            if isinstance(item, str):
                ids.append(item)
            else:
                self.problem(
                    label,
                    f"destinations[{position}] must be a destination id (a string), got {_kind(item)}: {example}",
                )
        return tuple(ids)

    # ------------------------------------------------------------------ destinations

    def destination(self, index: int, table: Mapping[str, Any]) -> DestinationConfig | None:
        from stream_processor.alerts.destinations.base import known_types

        raw_id = table.get("id")
        label = _destination_label(index, raw_id if isinstance(raw_id, str) and raw_id else None)
        before = len(self.problems)

        misspelled = {_closest(key, DESTINATION_KEYS) for key in table if key not in DESTINATION_KEYS}
        how_id = 'add id = "..." (the name rules use in destinations)'
        destination_id = self.string(label, table, "id", how_id, misspelled)
        how_type = f'add type = "..." (one of: {", ".join(known_types())})'
        type_name = self.string(label, table, "type", how_type, misspelled)
        options = {key: value for key, value in table.items() if key not in DESTINATION_KEYS}
        if type_name is None:
            for key in options:  # without a type the valid keys are unknown: report only what no type accepts
                if not _is_any_type_key(key):
                    self.problem(label, _unknown_key(key, DESTINATION_KEYS))
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
                self.problem(label, f"missing {key} (required for type {type_name}): add {key} = {_example(key)}")
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
        from stream_processor.secrets import SecretReferenceError, is_reference

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
        from stream_processor.alerts.destinations.base import destination_class, known_types

        try:
            return destination_class(type_name)
        except KeyError:
            types = known_types()
            self.problem(
                label,
                f"unknown destination type {_quote(type_name)}{_did_you_mean(type_name, types)}"
                f" (known types: {', '.join(types) or 'none installed'})",
            )
        except Exception as error:  # a broken destination module must not hide the file's other problems
            self.problem(
                label,
                f"destination type {_quote(type_name)} failed to load ({type(error).__name__}): "
                "this is a bug in stream-processor, not in your file",
            )
        return None

    def option_value(self, label: str, key: str, value: Any) -> Any:
        """A checked option value; values are never echoed (they may be secrets)."""
        if key in TABLE_OPTION_KEYS:
            how = f'write {key} = {{ "X-Team" = "security", Authorization = "env:HOOK_TOKEN" }}'
            if not isinstance(value, dict):
                self.problem(label, f"{key} must be a table of strings, got {_kind(value)}: {how}")
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
                self.problem(label, f"{key} must be a non-empty list of non-empty strings, got {_kind(value)}")
            return None
        if not isinstance(value, str):
            self.problem(label, f"{key} must be a string, got {_kind(value)}: write {key} = {_example(key)}")
            return None
        if not value.strip():
            self.problem(label, f"{key} is empty: set it to {_example(key)}")
            return None
        return value

    # ------------------------------------------------------------------ shared

    def unknown_keys(self, label: str, table: Mapping[str, Any], valid: Sequence[str]) -> set[str | None]:
        """Report keys outside `valid`; returns the valid keys they look like misspellings of."""
        misspelled: set[str | None] = set()
        for key in table:
            if key not in valid:
                self.problem(label, _unknown_key(key, valid))
                misspelled.add(_closest(key, valid))
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
            self.problem(label, f"{key} must be a string, got {_kind(value)}: {how.removeprefix('add ')}")
            return None
        if not value.strip():
            self.problem(label, f"{key} is empty: {how.removeprefix('add ')}")
            return None
        return value


# --------------------------------------------------------------------------- hooks into other parts


def _jq_compile_error(program: str) -> str | None:
    """libjq's compile error for `program`, on one line, or None when it compiles."""
    try:
        compile_jq(program)
    except ValueError as error:
        lines = [line.strip() for line in str(error).splitlines()]
        errors = [line.rstrip(":") for line in lines if line.startswith("jq: error")]
        return "; ".join(errors) if errors else _one_line(str(error))
    return None


def _sandbox_violations(program: str) -> list[str]:
    """What `program` uses that rules may not ($ENV, input, halt, ...), from `matcher/sandbox.py`, and what
    could run or allocate without bound on one event (`repeat`, recursive `def`, ...), from `matcher/bounds.py`."""
    from stream_processor.matcher.bounds import bounds_violations  # late: matcher imports this module
    from stream_processor.matcher.sandbox import sandbox_violations

    found = sandbox_violations(program)
    unreadable = ("cannot be checked", "is nested too deeply")
    if any(message.startswith(unreadable) for message in found):  # the bounds check could not read it either
        return found + [m for m in bounds_violations(program) if not m.startswith(unreadable)]
    return found + bounds_violations(program)


def _is_any_type_key(key: str) -> bool:
    """Whether some shipped destination type accepts `key` (used when a destination has no type)."""
    from stream_processor.alerts.destinations.base import destination_class, known_types

    for type_name in known_types():
        try:
            cls = destination_class(type_name)
        except Exception:  # reported where the type is actually used
            continue
        if key in (*cls.REQUIRED_KEYS, *cls.OPTIONAL_KEYS):
            return True
    return False


# --------------------------------------------------------------------------- message helpers


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _distinct_names(values: Iterable[Any]) -> list[str]:
    """The usable names among `values`, each once, in file order."""
    return list(dict.fromkeys(value for value in values if _is_name(value)))


def _rule_label(index: int, name: str | None) -> str:
    return f"rule #{index} {_quote(name)}" if name is not None else f"rule #{index} (no name)"


def _destination_label(index: int, destination_id: str | None) -> str:
    return f"destination #{index} {_quote(destination_id)}" if destination_id is not None else f"destination #{index}"


def _quote(text: str) -> str:
    """A user's string in double quotes on one line, escaped and capped."""
    if len(text) > _LABEL_LIMIT:
        text = text[: _LABEL_LIMIT - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely misspells (same letters in another case first), or None."""
    options = list(candidates)
    folded = [c for c in options if c.casefold() == word.casefold()]
    close = folded or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = _closest(word, candidates)
    return f": did you mean {_quote(close)}?" if close is not None else ""


def _unknown_key(key: str, valid: Sequence[str]) -> str:
    hint = _did_you_mean(key, valid)
    if hint:
        return f"unknown key {_quote(key)}{hint}"
    return f"unknown key {_quote(key)}: remove it (valid keys: {', '.join(valid)})"


def _unknown_destination(destination_id: str, defined: Sequence[str]) -> str:
    message = f"destination {_quote(destination_id)} is not defined"
    hint = _did_you_mean(destination_id, defined)
    if hint:
        return message + hint
    if defined:
        return f"{message}: use one of {', '.join(_quote(d) for d in defined)} or add a [[destination]] with that id"
    return f"{message}: add a [[destination]] with that id"


def _example(key: str) -> str:
    examples = {
        "webhook_url": '"https://hooks.slack.com/services/..."',
        "sns_arn": '"arn:aws:sns:REGION:ACCOUNT:TOPIC"',
        "to_emails": '["security@example.com"]',
        "from_email": '"alerts@example.com"',
        "url": '"https://receiver.example.com/hooks/cloudtrail"',
        "hmac_secret": '"ssm:/stream-processor/webhook-hmac"',
        "routing_key": '"ssm:/stream-processor/pagerduty-routing-key"',
        "events_url": '"https://events.pagerduty.com/v2/enqueue"',
    }
    return examples.get(key, '"..."')


def _json_kind(value: Any) -> str:
    """A JSON type name for a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _non_json_path(value: Any, path: str) -> str | None:
    """The path of the first TOML date/time inside `value` (JSON cannot hold one), or None."""
    if isinstance(value, datetime | date | time):
        return path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_json_path(item, f"{path}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for position, item in enumerate(value):
            found = _non_json_path(item, f"{path}[{position}]")
            if found is not None:
                return found
    return None


def _kind(value: Any) -> str:
    """A TOML type name for a value, never the value itself."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    return type(value).__name__
