"""`stream-processor test-rules CONFIG [CONFIG...]`: run the examples the rules carry, like unit tests."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stream_processor.commands.common import message_console, settings_from_args
from stream_processor.config import load_config
from stream_processor.errors import AwsError, ConfigError
from stream_processor.rule_tests import TESTS_SUFFIX, RuleTestReport, run_rule_tests, tests_file_beside
from stream_processor.secrets import UnresolvedSecrets
from stream_processor.wiring import ONE_SHOT, add_aws_arguments

DESCRIPTION = f"""\
Run every rule test of each rule file with the real matcher and print a table: rule, test, expected,
got, pass/fail and why. A test is a [[rule.test]] under a rule, in the rule file or in a tests file
beside it: NAME{TESTS_SUFFIX} next to NAME.toml is read automatically (it keeps the rule file exactly
what tattletail reads); --tests names another. Secret references in destinations are checked for their
form, not resolved: no access to SSM or Secrets Manager is needed. docs/rules.md describes the format.
"""

EPILOG = """\
exit status: 0 when every test passes (also when there are none: it says so), 1 when a test fails or a
file is invalid, or with --require-tests when an enabled rule has no test; 2, 3 or 4 when a file in S3 could
not be read (AWS not set up, credentials or access refused, AWS unreachable).
examples:
  stream-processor test-rules examples/cis.toml examples/rules60.toml
  stream-processor test-rules tattletail.toml --tests ci/tattletail.tests.toml
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "test-rules",
        help="run the rules' [[rule.test]] examples and print a table (exit 1 on a failure)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="rule file: a local path or s3://bucket/key")
    parser.add_argument(
        "--tests",
        action="append",
        default=[],
        metavar="FILE",
        help=f"a tests file ([[rule]] name + [[rule.test]]) for the one CONFIG; repeatable; NAME{TESTS_SUFFIX} "
        "beside the CONFIG is read without it",
    )
    parser.add_argument("--no-tests-file", action="store_true", help=f"do not read NAME{TESTS_SUFFIX} automatically")
    parser.add_argument("--require-tests", action="store_true", help="fail when an enabled rule has no test (for CI)")
    parser.add_argument(
        "--junit",
        metavar="FILE",
        type=Path,
        help="also write the results as JUnit XML (one testsuite per CONFIG, one testcase per rule test) for CI",
    )
    parser.add_argument(
        "--matcher", metavar="KIND", default=None, help="matcher implementation (default: the engine's)"
    )
    add_aws_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # piped (CI logs): wide enough that details are not folded into narrow columns
    out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)
    err = message_console()
    if args.tests and len(args.configs) > 1:
        err.print("test-rules: --tests applies to one CONFIG: give one CONFIG per run", markup=False)
        return EXIT_USAGE
    aws = settings_from_args(args, ONE_SHOT).aws
    failed = False
    aws_failure = 0  # 2, 3 or 4: a rule file in S3 could not be read (region, credentials, access, network)
    total = passed = 0
    junit = JUnitReport()
    for location in args.configs:
        try:
            config = load_config(location, aws, resolver=UnresolvedSecrets())
            tests_files: list[str | Path] = list(args.tests)
            beside = None if args.no_tests_file else tests_file_beside(location)
            if beside is not None and str(beside) not in {str(t) for t in tests_files}:
                tests_files.insert(0, beside)
            report = run_rule_tests(config, tests_files, args.matcher)
        except AwsError as error:  # the file could not be read: nothing is known about it
            for problem in error.problems:
                err.print(problem if problem.startswith(location) else f"{location}: {problem}", markup=False)
            junit.invalid(location, error.problems)
            aws_failure = max(aws_failure, error.exit_code)
            continue
        except ConfigError as error:
            for problem in error.problems:
                err.print(problem, markup=False)
            err.print(f"{location}: INVALID: the tests were not run", markup=False)
            junit.invalid(location, error.problems)
            failed = True
            continue
        except ValueError as error:  # an unknown --matcher kind
            err.print(f"test-rules: {error}", markup=False)
            return EXIT_USAGE
        _print_report(out, report, [str(t) for t in tests_files])
        junit.add(report, require_tests=args.require_tests)
        total += len(report.results)
        passed += len(report.results) - len(report.failed)
        if report.failed or (args.require_tests and report.untested):
            failed = True
    if len(args.configs) > 1:
        out.print(f"all files: {passed} of {total} tests passed", markup=False, soft_wrap=True)
    if args.junit is not None:
        junit.write(args.junit)
    return aws_failure or (EXIT_FAILED if failed else EXIT_OK)


class JUnitReport:
    """The results as JUnit XML, the format CI systems (GitLab, Jenkins, GitHub test reporters) read: a testsuite
    per rule file, a testcase per rule test (classname: the rule), a failure with the detail; an invalid file is a
    testsuite with one error; with --require-tests an untested enabled rule is a failing testcase."""

    def __init__(self) -> None:
        self.root = ElementTree.Element("testsuites", name="stream-processor test-rules")

    def add(self, report: RuleTestReport, *, require_tests: bool) -> None:
        suite = ElementTree.SubElement(self.root, "testsuite", name=_xml(report.location))
        failures = 0
        for result in report.results:
            name = f"test #{result.index} ({Path(result.source).name})"
            case = ElementTree.SubElement(suite, "testcase", classname=_xml(result.rule), name=_xml(name))
            case.set("file", _xml(result.source))
            if not result.enabled:
                ElementTree.SubElement(case, "system-out").text = "the rule is disabled (enabled = false)"
            if not result.passed:
                failures += 1
                failure = ElementTree.SubElement(
                    case, "failure", message=f"expected {result.expected}, got {result.got}", type=result.got
                )
                failure.text = _xml(result.detail)
        if require_tests:
            for rule in report.untested:
                failures += 1
                case = ElementTree.SubElement(suite, "testcase", classname=_xml(rule), name="has a test")
                ElementTree.SubElement(case, "failure", message="enabled rule without a test", type="untested")
        tests = len(suite.findall("testcase"))
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", "0")

    def invalid(self, location: str, problems: list[str]) -> None:
        suite = ElementTree.SubElement(self.root, "testsuite", name=_xml(location), tests="1", failures="0", errors="1")
        case = ElementTree.SubElement(suite, "testcase", classname=_xml(location), name="the rule file loads")
        error = ElementTree.SubElement(case, "error", message="invalid rule file: the tests were not run")
        error.set("type", "config")
        error.text = _xml("\n".join(problems))

    def write(self, path: Path) -> None:
        for name in ("tests", "failures", "errors"):
            self.root.set(name, str(sum(int(suite.get(name, "0")) for suite in self.root)))
        ElementTree.indent(self.root)
        ElementTree.ElementTree(self.root).write(path, encoding="utf-8", xml_declaration=True)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    """Text XML 1.0 can carry: rule names and details come from users and events (control characters)."""
    return _NOT_XML.sub("\ufffd", text)


def _print_report(out: Console, report: RuleTestReport, tests_files: list[str]) -> None:
    location = report.location
    read = f" (+ {', '.join(tests_files)})" if tests_files else ""
    if not report.results:
        out.print(
            f"{location}{read}: no rule tests: add [[rule.test]] under a rule, or put them in a tests file "
            f"beside it (see docs/rules.md)",
            markup=False,
            soft_wrap=True,
        )
    else:
        several_sources = len({result.source for result in report.results}) > 1
        table = Table(title=escape(f"{location}{read}"), title_justify="left", show_lines=False)
        for column in ("rule", "test", "expected", "got", "result"):
            table.add_column(column, no_wrap=column != "rule")
        table.add_column("detail", overflow="fold")
        for result in report.results:
            name = result.rule + ("" if result.enabled else " (disabled)")
            test = f"#{result.index}" + (f" ({Path(result.source).name})" if several_sources else "")
            verdict = "[green]PASS[/green]" if result.passed else "[bold red]FAIL[/bold red]"
            table.add_row(escape(name), escape(test), result.expected, result.got, verdict, escape(result.detail))
        out.print(table)
        failures = len(report.failed)
        out.print(
            f"{location}: {len(report.results) - failures} of {len(report.results)} tests passed"
            + (f", {failures} FAILED" if failures else ""),
            markup=False,
            soft_wrap=True,
        )
    if report.untested:
        out.print(
            f"{location}: {len(report.untested)} enabled rule(s) without a test: {', '.join(report.untested)}",
            markup=False,
            soft_wrap=True,
        )
