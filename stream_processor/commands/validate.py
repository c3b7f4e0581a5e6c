"""`stream-processor validate CONFIG [CONFIG...]`: check rule files before they go live."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from stream_processor.commands.common import add_aws_arguments, aws_settings
from stream_processor.config import Config, Rule, config_location_from_env, load_config
from stream_processor.errors import ConfigError

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
exit status: 0 when every file is valid, 1 when any is not, 2 when there is nothing to check.
examples:
  stream-processor validate tattletail.toml
  stream-processor validate --explain examples/seed.toml s3://my-bucket/tattletail.toml
"""

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


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
        help="for a valid file, also print per rule which matcher path it takes (compiled fast path or libjq) "
        "and why, and its index key (the values of event fields it can match or fail on) or why it has none",
    )
    add_aws_arguments(parser)
    parser.set_defaults(run=run)


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

    aws = aws_settings(args)
    invalid = 0
    for location in locations:
        try:
            config = load_config(location, aws)
        except ConfigError as error:
            _print_problems(error)
            print(f"{location}: INVALID: {_count(len(error.problems), 'problem')}", file=sys.stderr)
            invalid += 1
            continue
        print(_summary(location, config))
        if args.explain:
            for line in _explain_lines(config.rules):
                print(line)
            print(_index_line(config.rules))
    return EXIT_INVALID if invalid else EXIT_OK


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
