"""`stream-processor import-sigma PATH...`: SigmaHQ's AWS CloudTrail detections as a rule file."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from stream_processor.commands.common import message_console
from stream_processor.config import parse_config
from stream_processor.errors import ConfigError
from stream_processor.sigma import DEFAULT_LICENSE, INSTALL_HINT, STDOUT_DESTINATION

if TYPE_CHECKING:
    from stream_processor.sigma.importer import ImportOptions, ImportResult

DESCRIPTION = """\
Read Sigma rules (files, or folders searched for .yml/.yaml), keep those whose log source is AWS
CloudTrail (product: aws, service: cloudtrail) and write them as one rule file: name = the Sigma title,
jq_match = the detection as jq, description (with the rule's author), severity from level, tags from
the ATT&CK tags, references, false_positives, enabled = false for deprecated or unsupported rules.
Sigma's matching is kept exactly (case-insensitive values, wildcards, modifiers, null, conditions);
a rule that cannot be written exactly is not converted and is listed with its file and the reason.
docs/sigma.md describes what each modifier becomes and the licence of converted rules.

Destinations: without --destination, the file defines a stdout destination and every rule sends to it,
so it is valid and runs as is (stream-processor match -c FILE trail.json.gz). With --destination ID
(repeatable), rules send to those ids: add the rules to a rule file that defines them.
"""

EPILOG = """\
exit status: 0 when every CloudTrail rule was converted (rules for other log sources are counted and
skipped), 1 when one could not be (or none was found), 2 for a usage error (a path that does not exist).
examples:
  git clone https://github.com/SigmaHQ/sigma && cd sigma
  stream-processor import-sigma rules/cloud/aws/cloudtrail -o sigma-cloudtrail.toml
  stream-processor import-sigma rules/ --destination "Slack Audit" >> tattletail.toml
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import-sigma",
        help="convert Sigma rules for AWS CloudTrail (e.g. SigmaHQ's) into a rule file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a Sigma rule file, or a folder of them")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the rule file here (default: stdout)")
    parser.add_argument(
        "--destination",
        action="append",
        default=[],
        metavar="ID",
        help="send every rule to this destination id (repeatable; defined in the file you add the rules to); "
        f"default: a {STDOUT_DESTINATION} destination defined in the output",
    )
    parser.add_argument(
        "--source-url",
        metavar="URL",
        help="web address of the rule set (e.g. https://github.com/SigmaHQ/sigma/blob/COMMIT); each rule's link "
        "is URL/PATH, written beside it as the Detection Rule License asks",
    )
    parser.add_argument(
        "--license",
        default=DEFAULT_LICENSE,
        metavar="ID",
        help="licence of rules whose `license` field is empty (default: %(default)s, SigmaHQ's)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    err = message_console()
    try:  # pySigma is an optional extra: only this command needs it
        from stream_processor.sigma.importer import ImportOptions, SigmaPathError
        from stream_processor.sigma.rulefile import render_rule_file
    except ImportError as error:
        err.print(f"import-sigma: needs pySigma ({error}): {INSTALL_HINT}", markup=False)
        return EXIT_USAGE
    destinations: list[str] = args.destination
    for destination in destinations:
        if not destination.strip():
            err.print("import-sigma: --destination needs a destination id", markup=False)
            return EXIT_USAGE
    options = ImportOptions(source_url=args.source_url, license=args.license)
    try:
        result = _import(args.paths, options, err.is_terminal)
    except SigmaPathError as error:
        err.print(f"import-sigma: {error}", markup=False)
        return EXIT_USAGE

    _report(result)
    if not result.rules:
        err.print("import-sigma: no AWS CloudTrail rule was converted: nothing written", markup=False)
        return EXIT_FAILED
    text = render_rule_file(result, destinations)
    problems = _self_check(text, destinations, args.output or "<stdout>")
    if problems:  # our own output must load: anything else is a bug here, shown as such
        for problem in problems:
            err.print(f"import-sigma: the generated file does not load (a bug): {problem}", markup=False)
        return EXIT_FAILED
    if args.output:
        _write(Path(args.output), text)
        err.print(f"import-sigma: wrote {len(result.rules)} rule(s) to {args.output}", markup=False)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return EXIT_FAILED if result.failures else EXIT_OK


def _import(paths: list[str], options: ImportOptions, show_progress: bool) -> ImportResult:
    from stream_processor.sigma.importer import import_rules

    if not show_progress:
        return import_rules(paths, options)
    with Progress(
        TextColumn("reading Sigma rules"), BarColumn(), MofNCompleteColumn(), console=message_console(), transient=True
    ) as progress:
        task = progress.add_task("import", total=None)
        return import_rules(paths, options, lambda done, total: progress.update(task, completed=done, total=total))


def _report(result: ImportResult) -> None:
    err = message_console()
    cloudtrail = len(result.rules) + len(result.failures)
    err.print(
        f"import-sigma: {len(result.rules)} of {cloudtrail} AWS CloudTrail rule(s) converted "
        f"({result.files} file(s) read)",
        markup=False,
    )
    if result.skipped:
        sources = Counter(problem.reason.partition("(")[2].rstrip(")") for problem in result.skipped)
        shown = ", ".join(f"{source}: {count}" for source, count in sources.most_common(5))
        more = "" if len(sources) <= 5 else f", and {len(sources) - 5} other log source(s)"
        err.print(
            f"import-sigma: skipped {len(result.skipped)} rule(s) for other log sources ({shown}{more})", markup=False
        )
    for failure in result.failures:  # one line each: whole in CI logs, easy to grep
        title = f" ({failure.title})" if failure.title else ""
        err.print(f"import-sigma: not converted: {failure.source}{title}: {failure.reason}", markup=False)


def _self_check(text: str, destinations: list[str], source: str) -> list[str]:
    """Problems loading `text` as a rule file (the destinations it names defined as stdout ones)."""
    from stream_processor.sigma.rulefile import toml_string

    extra = "".join(f'\n[[destination]]\nid = {toml_string(d)}\ntype = "stdout"\n' for d in destinations)
    try:
        parse_config(text + extra, source)
    except ConfigError as error:
        return list(error.problems)
    return []


def _write(path: Path, text: str) -> None:
    """Write through a temporary file beside `path`, so a reader never sees half a rule file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
