"""`stream-processor validate CONFIG [CONFIG...]`: check rule files before they go live."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_processor.aws import AwsSettings
from stream_processor.commands.common import settings_from_args
from stream_processor.config import config_location_from_env, load_config, sending_problems
from stream_processor.errors import EXIT_AWS_ACCESS, EXIT_AWS_UNAVAILABLE, AwsError, ConfigError
from stream_processor.model import Config, Rule
from stream_processor.wiring import ONE_SHOT, add_aws_arguments

DESCRIPTION = """\
Load each rule file (tattletail.toml format) and check it: TOML syntax, unknown or misspelled keys,
missing name or jq_match, jq programs that do not compile or use what rules may not ($ENV, input, ...),
destinations that are unknown, repeated or missing their keys. Every problem is printed to stderr, one per
line, naming the file, the rule (#index and name) or destination, and what to change. A valid file gets a
one-line OK summary on stdout.

CONFIG is a local path or s3://bucket/key. Without CONFIG, the file named by S3_CONFIG_BUCKET and
S3_CONFIG_PATH (tattletail's variables) is checked.
"""

EPILOG = """\
exit status: 0 when every file is valid, 1 when any is not, 2 when there is nothing to check (or AWS is not
set up: no region, unknown profile), 3 when AWS refused the credentials or access (reading s3://, resolving a
secret), 4 when AWS could not be reached or throttled.
examples:
  stream-processor validate tattletail.toml
  stream-processor validate --explain examples/seed.toml s3://my-bucket/tattletail.toml
"""

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
OK, INVALID, NOT_CHECKED = "ok", "invalid", "not_checked"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check rule files and print every problem (exit 1 if any file is invalid)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "configs",
        nargs="*",
        metavar="CONFIG",
        help="rule file: a local path or s3://bucket/key (default: s3://$S3_CONFIG_BUCKET/$S3_CONFIG_PATH)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="for a valid file, also print per rule which matcher path it takes (the compiled path or libjq) "
        "and why, and its index key (the values of event fields it can match or fail on) or why it has none",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: one document on stdout with every file's status, problems, warnings, notes (and --explain), for CI",
    )
    add_aws_arguments(parser)
    parser.set_defaults(run=run)


@dataclass(slots=True)
class FileResult:
    """One file's verdict: `status` ok, invalid (the file is wrong) or not_checked (AWS could not be used)."""

    location: str
    status: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: Config | None = None
    exit_code: int = EXIT_OK
    warnings: list[str] = field(default_factory=list)
    """What the file should change although it loads (a deprecated key): file, rule and what to write."""

    def to_json(self, explain: bool) -> dict[str, Any]:
        document: dict[str, Any] = {"location": self.location, "status": self.status, "problems": self.problems}
        if self.config is not None:
            document["rules"] = len(self.config.rules)
            document["enabled_rules"] = len(self.config.enabled_rules)
            document["destinations"] = len(self.config.destinations)
        document["warnings"] = self.warnings
        document["notes"] = self.notes
        if explain and self.config is not None:
            index = {rule.name: rule.index for rule in self.config.rules}
            document["explain"] = [
                {"rule": name, "index": index.get(name), "path": path, "reason": reason}
                for name, path, reason in explain_rules(self.config.rules)
            ]
        return document


def check_file(location: str, aws: AwsSettings) -> FileResult:
    """Load and check one file as a worker would load it, and as it would have to be to send."""
    try:
        config = load_config(location, aws)
    except AwsError as error:  # the file was not read: nothing is known about it
        problems = [problem if problem.startswith(location) else f"{location}: {problem}" for problem in error.problems]
        return FileResult(location, NOT_CHECKED, problems, exit_code=error.exit_code)
    except ConfigError as error:
        aws_code = error.exit_code if error.exit_code in (EXIT_AWS_ACCESS, EXIT_AWS_UNAVAILABLE) else EXIT_INVALID
        return FileResult(location, INVALID, list(error.problems), exit_code=aws_code)  # 3/4: a secret AWS withheld
    refused = sending_problems(config)  # loads, but could not go live
    notes = [note.removeprefix(f"{location}: ") for note in config.notes]
    warnings = list(config.warnings)
    if refused:
        return FileResult(location, INVALID, refused, notes, config, EXIT_INVALID, warnings)
    return FileResult(location, OK, [], notes, config, warnings=warnings)


def run(args: argparse.Namespace) -> int:
    locations: list[str] = list(args.configs)
    if not locations:
        try:
            from_env = config_location_from_env(os.environ)
        except ConfigError as error:
            _print_problems(error)
            return EXIT_INVALID
        if from_env is None:
            print(
                "validate: no CONFIG given and S3_CONFIG_BUCKET / S3_CONFIG_PATH are not set: "
                "give a path or s3://bucket/key",
                file=sys.stderr,
            )
            return EXIT_USAGE
        locations = [from_env]

    aws = settings_from_args(args, ONE_SHOT).aws
    results = [check_file(location, aws) for location in locations]
    # AWS set-up problems (2, 3, 4) say more than "invalid": the file may well be fine
    code = max((r.exit_code for r in results if r.exit_code != EXIT_INVALID), default=EXIT_OK) or (
        EXIT_INVALID if any(r.status == INVALID for r in results) else EXIT_OK
    )
    if args.format == "json":
        document = {
            "ok": code == EXIT_OK,
            "exit_code": code,
            "files": [result.to_json(args.explain) for result in results],
        }
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        return code
    for result in results:
        _print_text(result, args.explain)
    return code


def _print_text(result: FileResult, explain: bool) -> None:
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.status == NOT_CHECKED:
        for problem in result.problems:
            print(problem, file=sys.stderr)
        return
    if result.status == INVALID:
        for problem in result.problems:
            print(problem, file=sys.stderr)
        print(f"{result.location}: INVALID: {_count(len(result.problems), 'problem')}", file=sys.stderr)
        return
    assert result.config is not None
    print(_summary(result.location, result.config))
    for note in result.notes:
        print(f"  note: {note}")
    if explain:
        for line in _explain_lines(result.config.rules):
            print(line)
        print(_index_line(result.config.rules))


def _print_problems(error: ConfigError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def _summary(location: str, config: Config) -> str:
    return f"{location}: OK: {_count(len(config.rules), 'rule')}, {_count(len(config.destinations), 'destination')}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _explain_lines(rules: Sequence[Rule]) -> list[str]:
    index_by_name = {rule.name: rule.index for rule in rules}
    lines = []
    for name, path, reason in explain_rules(rules):
        index = index_by_name.get(name)
        label = f'rule #{index} "{name}"' if index is not None else f'rule "{name}"'
        detail = reason.removeprefix(path).lstrip(" ,:")
        lines.append(f"  {label}: {path}" + (f" ({detail})" if detail else ""))
    return lines


def _index_line(rules: Sequence[Rule]) -> str:
    from stream_processor.matcher import index_fields

    fields = index_fields(rules)
    if not fields:
        return "  index: reads no field, every event visits every rule"
    return f"  index: reads {', '.join(fields)} of each event; a rule runs only where its condition on them holds"


def explain_rules(rules: Sequence[Rule]) -> list[tuple[str, str, str]]:
    """Which path each rule takes in the matcher: compiled (and how it is indexed) or libjq (and why)."""
    from stream_processor.matcher import explain

    return [(str(name), str(path), str(reason)) for name, path, reason in explain(rules)]
