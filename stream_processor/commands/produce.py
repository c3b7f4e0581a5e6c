"""`stream-processor produce`: write CloudTrail events into a Kinesis stream as CloudWatch Logs would.

Each Kinesis record is what a CloudWatch Logs subscription filter delivers: a gzip DATA_MESSAGE carrying a
batch of log events (one CloudTrail event each), with the occasional CONTROL_MESSAGE health check, under
random partition keys so every shard gets traffic (the work is `stream_processor.local.producer`'s).
"""

from __future__ import annotations

import argparse

from botocore.exceptions import ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_processor.aws_errors import describe_failure
from stream_processor.commands.common import settings_from_args
from stream_processor.local.producer import (
    ProduceError,
    ProduceSummary,
    SubscriptionProducer,
    events_to_produce,
    kinesis_client,
)
from stream_processor.wiring import ONE_SHOT, add_aws_arguments


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "produce",
        help="write CloudTrail events into a Kinesis stream as CloudWatch Logs subscription records",
        description=(
            "Write CloudTrail events (from files, or the built-in generator of realistic traffic) into a "
            "Kinesis stream as CloudWatch Logs subscription records: gzip DATA_MESSAGE batches, an occasional "
            "CONTROL_MESSAGE, random partition keys, PutRecords batches with failed entries retried. With a "
            "Kinesis endpoint (--endpoint-url or AWS_ENDPOINT_URL_KINESIS: a local emulator) fake credentials "
            "are used."
        ),
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="event files (any format decode reads; - = stdin)")
    parser.add_argument("--stream", required=True, help="the Kinesis stream name")
    add_aws_arguments(parser, services=("kinesis",))
    parser.add_argument("--generate", type=int, default=0, metavar="N", help="also write N generated events")
    parser.add_argument(
        "--match-rate", type=float, default=0.02, help="share of generated events that are security-relevant"
    )
    parser.add_argument(
        "--seed-triggers", type=int, default=0, metavar="N", help="mix in N events that trigger the seed rules"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generator and the mixing")
    parser.add_argument("--rate", type=float, metavar="EVENTS_PER_S", help="events per second (default: flat out)")
    parser.add_argument("--per-record", type=int, default=50, metavar="K", help="log events per record (50)")
    parser.add_argument(
        "--control-every",
        type=int,
        default=100,
        metavar="M",
        help="a CONTROL_MESSAGE after every M data records, and one first (0: none at all)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def print_summary(summary: ProduceSummary, stream: str, console: Console) -> None:
    table = Table(title=f"produced into {stream}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("events", f"{summary.events:,}")
    table.add_row("data records", f"{summary.records:,}")
    table.add_row("control records", f"{summary.control_records:,}")
    table.add_row("bytes (gzip)", f"{summary.bytes:,}")
    table.add_row("PutRecords calls", f"{summary.put_calls:,}")
    table.add_row("entries re-sent", f"{summary.retried_entries:,}")
    table.add_row("seconds", f"{summary.seconds:.2f}")
    table.add_row("events/s", f"{summary.events_per_second:,.0f}")
    console.print(table)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.per_record < 1 or args.generate < 0 or args.seed_triggers < 0 or args.control_every < 0:
        console.print("error: --per-record must be >= 1; --generate, --seed-triggers, --control-every >= 0")
        return 2
    if args.rate is not None and args.rate <= 0:
        console.print("error: --rate must be positive")
        return 2
    if not (args.files or args.generate or args.seed_triggers):
        console.print("error: nothing to write: give event FILEs, --generate N or --seed-triggers N")
        return 2
    try:
        events, total = events_to_produce(args.files, args.generate, args.seed_triggers, args.seed, args.match_rate)
        producer = SubscriptionProducer(
            kinesis_client(settings_from_args(args, ONE_SHOT).aws),
            args.stream,
            per_record=args.per_record,
            control_every=args.control_every,
            rate=args.rate,
            seed=args.seed,
        )
        show = not args.no_progress and console.is_terminal
        with Progress(
            TextColumn("[bold]producing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeElapsedColumn(),
            console=console,
            disable=not show,
            transient=True,
        ) as progress:
            task = progress.add_task("produce", total=total)
            summary = producer.produce(events, on_progress=lambda n: progress.advance(task, n))
    except ProduceError as error:
        console.print(f"error: {error}")
        return 1
    except ClientError as error:  # no such stream; credentials, access and throttling are the CLI's to report
        failure = describe_failure(error)
        if failure is not None and failure.kind != "service":
            raise
        console.print(f"error: {failure.message if failure else error}", markup=False)
        return 1
    print_summary(summary, args.stream, console)
    return 0
