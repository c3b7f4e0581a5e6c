"""`stream-processor backtest`: parse, run `sources.backtest.run_backtest` with a progress bar, print the report.

This is how a rule is tried on last week before it is enabled: per rule, how often it would have fired, for
how many principals, over which time span, and one example of what the alert would have said.
"""

from __future__ import annotations

import argparse
import io
import sys
from datetime import date, datetime
from typing import IO, Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from stream_processor.aws_errors import describe_failure
from stream_processor.commands.common import (
    add_config_argument,
    load_config_from_args,
    message_console,
    settings_from_args,
)
from stream_processor.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from stream_processor.sources.backtest import DEFAULT_WORKERS, MATCHERS, BacktestReport, run_backtest
from stream_processor.sources.files import DateRange
from stream_processor.wiring import ONE_SHOT, add_aws_arguments, add_limit_arguments


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="run the rules over CloudTrail archives (s3:// prefixes, files, folders) and report per rule",
        description=(
            "Read CloudTrail log files from S3 prefixes (s3://bucket/AWSLogs/...) or local files and folders, "
            "concurrently, match every event against the rules and report per rule: matches, distinct "
            "principals, first and last eventTime and a sample. A dry run: nothing is ever sent, and the "
            "destinations' secret references are never resolved. Every object under the prefixes is read "
            "unless --since/--until limit the CloudTrail date path (YYYY/MM/DD) to a range of days."
        ),
        epilog=(
            "exit status: 0 when everything was read; 1 when a SOURCE does not exist or an object could not be "
            "listed or read; 2 usage or configuration; 3/4 AWS access or reachability."
        ),
    )
    add_config_argument(parser)
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="s3://bucket/prefix, a file or a folder")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help="report format")
    parser.add_argument(
        "--since", type=_day, metavar="DATE", help="first day (UTC, YYYY-MM-DD) of the CloudTrail date path to read"
    )
    parser.add_argument(
        "--until", type=_day, metavar="DATE", help="last day (UTC, inclusive) of the CloudTrail date path to read"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="processes reading and matching objects at once (default: every core, %(default)s here); "
        "for S3, more than the cores hides the time to first byte",
    )
    parser.add_argument("--matcher", choices=MATCHERS, default=MATCHERS[0], help=argparse.SUPPRESS)
    add_aws_arguments(parser)
    add_limit_arguments(parser)
    parser.set_defaults(run=run)


def _day(text: str) -> date:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


# --- printing --------------------------------------------------------------------------------------------


def print_table(report: BacktestReport, console: Console) -> None:
    table = Table(title="backtest: per rule (dry run, nothing sent)", title_justify="left")
    table.add_column("rule")
    table.add_column("matches", justify="right")
    table.add_column("principals", justify="right")
    table.add_column("first eventTime")
    table.add_column("last eventTime")
    table.add_column("errors", justify="right")
    table.add_column("sample (eventID: output)", overflow="fold")
    for stats in report.rules.values():
        sample = stats.sample_record()
        table.add_row(
            Text(stats.name),
            f"{stats.matches:,}",
            f"{len(stats.principals):,}",
            stats.first_time or "-",
            stats.last_time or "-",
            f"{stats.errors:,}" if stats.errors else "",
            Text(f"{sample['eventID'] or '-'}: {sample['output']}") if sample else "",
        )
    console.print(table)


def print_totals(report: BacktestReport, console: Console) -> None:
    for line in report.failures:
        console.print(f"unreadable: {line}", markup=False, soft_wrap=True)
    for line in report.malformed:
        console.print(f"malformed: {line}", markup=False, soft_wrap=True)
    if report.malformed_count > len(report.malformed):
        console.print(f"... and {report.malformed_count - len(report.malformed)} more malformed inputs", markup=False)
    parts = [
        f"{report.objects:,} objects ({report.bytes_read / 1e6:,.1f} MB)",
        f"{report.events:,} events",
        f"{report.malformed_count:,} malformed",
    ]
    if report.digest_files:
        parts.append(f"{report.digest_files:,} digest files skipped")
    if report.control_messages:
        parts.append(f"{report.control_messages:,} control messages skipped")
    if report.failures:
        parts.append(f"{len(report.failures):,} unreadable")
    parts.append(f"{report.seconds:,.1f} s, {report.events_per_second:,.0f} events/s")
    console.print(" · ".join(parts), markup=False, highlight=False)


class _RateColumn(ProgressColumn):
    """Events per second since the start (the task's `events` field)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        events = int(task.fields.get("events", 0))
        rate = events / elapsed if elapsed > 0 else 0.0
        return Text(f"{events:,} events · {rate:,.0f} events/s")


def run(args: argparse.Namespace) -> int:
    err = message_console()
    if args.since and args.until and args.since > args.until:
        err.print(f"--since {args.since} is after --until {args.until}", markup=False)
        return EXIT_USAGE
    settings = settings_from_args(args, ONE_SHOT)
    config = load_config_from_args(args, settings, dry_run=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("listing", total=None, events=0)

    def show(description: str, done: int, listed: int, events: int) -> None:
        progress.update(task, description=description, completed=done, total=listed, events=events)

    try:
        with progress:
            report = run_backtest(
                config,
                args.sources,
                dates=DateRange(args.since, args.until),
                aws=settings.aws,
                limits=settings.limits,
                workers=args.workers,
                matcher_kind=args.matcher,
                on_progress=show,
            )
    except FileNotFoundError as error:
        err.print(f"{error.filename}: no such file or folder", markup=False)
        return EXIT_FINDINGS
    except ValueError as error:  # a malformed s3:// URL
        if describe_failure(error) is not None:
            raise
        err.print(str(error), markup=False)
        return EXIT_USAGE
    _write(report, args.format, sys.stdout)
    print_totals(report, err)
    return EXIT_FINDINGS if report.failures else EXIT_OK


def _write(report: BacktestReport, fmt: str, stream: IO[str]) -> None:
    if fmt == "json":
        stream.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        report.write_csv(buffer)
        stream.write(buffer.getvalue())
    else:
        print_table(report, Console(file=stream, highlight=False, emoji=False, width=None if stream.isatty() else 200))


__all__ = ["add_parser", "print_table", "print_totals"]
