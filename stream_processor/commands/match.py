"""`stream-processor match`: run the rules over files or stdin, print the alerts, optionally send them."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_processor.commands.alert_printers import JsonlPrinter, TextPrinter
from stream_processor.commands.common import (
    add_config_argument,
    load_config_from_args,
    message_console,
    settings_from_args,
)
from stream_processor.decode import decode_file
from stream_processor.errors import EXIT_FINDINGS, EXIT_OK
from stream_processor.gc_tuning import tune_for_throughput
from stream_processor.model import DecodeResult
from stream_processor.sources.files import read_chunks
from stream_processor.wiring import (
    ONE_SHOT,
    add_aws_arguments,
    add_limit_arguments,
    add_state_arguments,
    build_pipeline,
)

log = logging.getLogger(__name__)
STDIN = "-"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "match",
        help="match rules over CloudTrail files or stdin and print (or --send) the alerts",
        description=(
            "Decode the inputs (CloudWatch Logs subscription records, CloudTrail log files, gzipped or not, "
            "JSON lines, JSON arrays; detected per file), match every event against the rules and print "
            "the alerts. Nothing is sent unless --send is given (a dry run never resolves the destinations' "
            "secret references). Ends with a summary on stderr."
        ),
        epilog=(
            "exit status: 0 when the inputs were read (alerts or not; malformed parts are listed) and every alert "
            "sent; 1 when an input does not exist, when no input could be read (all malformed or empty), or an "
            "alert could not be delivered; 2 usage or configuration; 3/4 AWS access or reachability."
        ),
    )
    add_config_argument(parser)
    parser.add_argument("inputs", nargs="*", metavar="FILE", help="files or folders to read; '-' or none: stdin")
    parser.add_argument("--send", action="store_true", help="deliver the alerts to the rules' destinations")
    parser.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text: readable alerts; jsonl: one JSON object per alert (rule, eventID, output, ...)",
    )
    parser.add_argument(
        "--matcher",
        choices=("fast", "libjq"),
        default="fast",
        help="fast: rules compiled to native predicates (default); libjq: the reference, per event per rule",
    )
    add_aws_arguments(parser)
    add_state_arguments(parser, ONE_SHOT)
    add_limit_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    err = message_console()
    try:
        sources = list(_expand(args.inputs or [STDIN]))
    except FileNotFoundError as error:
        err.print(f"{error.filename}: no such file or folder", markup=False)
        return EXIT_FINDINGS
    settings = settings_from_args(args, ONE_SHOT)
    config = load_config_from_args(args, settings, dry_run=not args.send)
    tune_for_throughput()  # as the consumer does: each part of a file is hundreds of short-lived dicts
    out = sys.stdout
    printer = JsonlPrinter(out) if args.format == "jsonl" else TextPrinter(Console(highlight=False))
    pipeline = build_pipeline(config, settings, send=args.send, matcher_kind=args.matcher, alert_sink=printer)
    totals = _Totals()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=len(sources) < 2 or not err.is_terminal,
    ) as progress:
        task = progress.add_task("matching", total=len(sources))
        for source in sources:
            # Read as a stream: memory stays that of one part of a file, however large the file (or /dev/zero).
            read_something = False
            with _open(source) as stream:
                for decoded in decode_file(read_chunks(stream), "stdin" if source == STDIN else source):
                    totals.add_decoded(decoded)
                    read_something |= bool(decoded.event_count or decoded.control_messages + decoded.digest_files)
                    outcome = pipeline.process_decoded(decoded)
                    totals.add_outcome(outcome.matched.matches, outcome.matched.errors, outcome.deliveries)
            if not read_something:
                totals.unreadable += 1  # malformed or empty: nothing in it was matched
            progress.advance(task)
    pipeline.close()
    totals.print(err, sent=args.send)
    # Every input unreadable must not look like "no alerts"; some malformed input beside good input is listed
    # in the summary and is not a failure (a trail's folder holds other files too).
    unread = bool(sources) and totals.unreadable == len(sources)
    return EXIT_FINDINGS if totals.failed or unread else EXIT_OK


def _open(source: str) -> contextlib.AbstractContextManager[BinaryIO]:
    if source == STDIN:
        return contextlib.nullcontext(sys.stdin.buffer)
    return Path(source).open("rb")


def _expand(inputs: list[str]) -> Iterator[str]:
    for item in inputs:
        if item == STDIN:
            yield item
            continue
        path = Path(item)
        if path.is_dir():
            yield from (str(p) for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith("."))
        elif path.exists():
            yield item
        else:
            raise FileNotFoundError(2, "no such file", item)


class _Totals:
    MALFORMED_SHOWN = 20

    def __init__(self) -> None:
        self.events = 0
        self.malformed: list[str] = []  # the first MALFORMED_SHOWN, for the summary
        self.malformed_count = 0
        self.control = 0
        self.digests = 0
        self.matches: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.delivered = 0
        self.failed: list[str] = []
        self.unreadable = 0
        """Inputs that gave no event, digest file or health check: malformed or empty."""

    def add_decoded(self, decoded: DecodeResult) -> None:
        self.events += len(decoded.events)
        self.control += decoded.control_messages
        self.digests += decoded.digest_files
        self.malformed_count += len(decoded.malformed)
        room = self.MALFORMED_SHOWN - len(self.malformed)
        self.malformed.extend(f"{item.position}: {item.kind}: {item.reason}" for item in decoded.malformed[:room])

    def add_outcome(self, matches: list[Any], errors: list[Any], deliveries: list[Any]) -> None:
        self.matches.update(match.rule_name for match in matches)
        self.errors.update(error.rule_name for error in errors)
        for result in deliveries:
            if result.delivered:
                self.delivered += 1
            else:
                self.failed.append(
                    f"{result.alert.rule_name} → {result.destination_id}: {result.reason} ({result.attempts} attempts)"
                )

    def print(self, console: Console, sent: bool) -> None:
        for line in self.malformed:
            console.print(f"malformed: {line}", markup=False)
        if self.malformed_count > len(self.malformed):
            console.print(f"... and {self.malformed_count - len(self.malformed)} more malformed inputs", markup=False)
        for line in self.failed:
            console.print(f"not delivered: {line}", markup=False)
        table = Table(title="summary", show_header=True, title_justify="left")
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("events read", f"{self.events:,}")
        table.add_row("malformed inputs", f"{self.malformed_count:,}")
        if self.control:
            table.add_row("control messages skipped", f"{self.control:,}")
        if self.digests:
            table.add_row("digest files skipped", f"{self.digests:,}")
        for rule, count in sorted(self.matches.items()):
            table.add_row(f"matched: {rule}", f"{count:,}")
        for rule, count in sorted(self.errors.items()):
            table.add_row(f"rule errors: {rule}", f"{count:,}")
        if sent:
            table.add_row("delivered", f"{self.delivered:,}")
            table.add_row("failed", f"{len(self.failed):,}")
        else:
            table.add_row("alerts (dry run, not sent)", f"{sum(self.matches.values()):,}")
        console.print(table)
