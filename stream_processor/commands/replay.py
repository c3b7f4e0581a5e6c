"""`stream-processor replay`: run the rules over what a stream already carried, shard by shard.

After a new rule lands, an outage or an incident: read one shard or all of them from the application's
checkpoint, a sequence number or a time, up to a sequence number, a time, the tip, or on and on (`--follow`).
A dry run by default (alerts printed); `--send` delivers through the normal pipeline, and the dedupe ledger
keeps alerts the live consumer already sent from going out twice. It never writes the lease table: the live
application keeps its leases and checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.config import Config as BotoConfig
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_processor.aws_errors import describe_failure
from stream_processor.commands.alert_printers import JsonlPrinter, TextPrinter
from stream_processor.commands.common import (
    add_config_argument,
    load_config_from_args,
    message_console,
    settings_from_args,
)
from stream_processor.commands.status import add_stream_arguments
from stream_processor.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, ConfigError, StreamProcessorError
from stream_processor.kcl.leases import LeaseTableError, checkpoint_start, read_leases
from stream_processor.model import Alert, Config
from stream_processor.pipeline import Pipeline
from stream_processor.sources.replay import (
    ReplayTotals,
    StartFor,
    StartPosition,
    StopCondition,
    StreamReplay,
    fixed_start,
    list_shards,
    parse_when,
    run_replay,
)
from stream_processor.wiring import HOST, NONE, Settings, add_limit_arguments, add_state_arguments, build_pipeline

MATCHERS = ("fast", "libjq")
REPLAY = replace(HOST, storm=NONE, storm_from_env=False)
"""A host's SQLite ledger and dead letters (the live consumer's, with --state-dir); storms are not folded unless
--storm names a store: a replay must not share the live consumer's storm windows by accident."""
FROM_CHECKPOINT = "checkpoint"
FROM_TRIM_HORIZON = "trim-horizon"


class ReplayUsageError(StreamProcessorError, ValueError):
    """The options do not describe a replay (e.g. a sequence number without its shard)."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="run the rules over a stream's past records (from a checkpoint, sequence or time); dry run unless --send",
        description=(
            "Read one shard (--shard) or all of them (--all) with GetShardIterator/GetRecords, from the KCL "
            "application's checkpoint, a sequence number or a time, up to a sequence number, a time, the tip "
            "(default) or forever (--follow), following resharding from parents to children. The alerts are "
            "printed (a dry run never resolves the destinations' secret references); --send delivers them, "
            "and the dedupe ledger keeps alerts already sent from repeating (point --state-dir or --dedupe at "
            "the live consumer's ledger: its work dir, or dynamodb:TABLE). The lease table is only ever read."
        ),
        epilog=(
            "exit status: 0 when the replay ran and every alert was delivered or parked; 1 when an alert was "
            "neither, or the lease table cannot be read; 2 usage or configuration; 3/4 AWS access or "
            "reachability."
        ),
    )
    add_config_argument(parser)
    add_stream_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--shard", action="append", metavar="ID", help="a shard to read (repeatable)")
    which.add_argument("--all", action="store_true", help="every shard of the stream")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--from",
        dest="from_",
        choices=(FROM_CHECKPOINT, FROM_TRIM_HORIZON),
        help="checkpoint: after each shard's checkpoint in the lease table of --application; trim-horizon: all",
    )
    start.add_argument("--from-sequence", metavar="SEQ", help="start at this sequence number (needs one --shard)")
    start.add_argument("--from-time", metavar="WHEN", help="start at this time: ISO 8601 or '2h ago'")
    parser.add_argument("--application", help="KCL application (lease table) for --from checkpoint")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--to-sequence", metavar="SEQ", help="stop after this sequence number (needs one --shard)")
    stop.add_argument("--to-time", metavar="WHEN", help="stop at records that arrived after this time")
    stop.add_argument(
        "--follow", action="store_true", help="do not stop at the tip: wait for new records (Ctrl-C ends)"
    )
    parser.add_argument(
        "--send", action="store_true", help="deliver the alerts (deduplicated) instead of printing them"
    )
    parser.add_argument("--format", choices=("text", "jsonl"), default="text", help="how printed alerts look")
    parser.add_argument("--workers", type=int, default=4, help="shards read at the same time (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=10_000, help="records per GetRecords (default: %(default)s)")
    parser.add_argument("--matcher", choices=MATCHERS, default=MATCHERS[0], help=argparse.SUPPRESS)
    add_state_arguments(parser, REPLAY, storm=True)
    add_limit_arguments(parser)
    parser.set_defaults(run=run)


def _progress_line(totals: ReplayTotals, replay: StreamReplay) -> str:
    active = sum(1 for p in replay.progress if not p.done)
    throttled = sum(p.throttled for p in replay.progress)
    parts = [
        f"{totals.records:,} records",
        f"{totals.events:,} events",
        f"{sum(totals.matches.values()):,} matches",
        f"lag {totals.millis_behind / 1000:,.1f} s",
        f"{active} shard(s) reading",
    ]
    if throttled:
        parts.append(f"{throttled} throttled")
    return " · ".join(parts)


def print_summary(totals: ReplayTotals, replay: StreamReplay, console: Console, *, sent: bool) -> None:
    for line in totals.failed[:20]:
        console.print(f"not delivered: {line}", markup=False)
    shards = Table(title="replay: per shard", title_justify="left")
    shards.add_column("shard", overflow="fold")
    shards.add_column("from", overflow="fold")
    shards.add_column("last sequence read", overflow="fold")
    for column in ("records", "events", "matches", "throttled"):
        shards.add_column(column, justify="right")
    shards.add_column("ended by")
    for progress in replay.progress:
        shards.add_row(
            progress.shard_id,
            str(progress.start),
            progress.last_sequence or "-",
            f"{progress.records:,}",
            f"{totals.per_shard_events[progress.shard_id]:,}",
            f"{totals.per_shard_matches[progress.shard_id]:,}",
            f"{progress.throttled:,}",
            progress.reason or "interrupted",
        )
    console.print(shards)
    table = Table(title="replay: summary", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("records read", f"{totals.records:,}")
    table.add_row("events", f"{totals.events:,}")
    table.add_row("malformed inputs", f"{totals.malformed:,}")
    if totals.control_messages:
        table.add_row("control messages skipped", f"{totals.control_messages:,}")
    for rule, count in sorted(totals.matches.items()):
        table.add_row(f"matched: {rule}", f"{count:,}")
    for rule, count in sorted(totals.rule_errors.items()):
        table.add_row(f"rule errors: {rule}", f"{count:,}")
    if sent:
        table.add_row("delivered", f"{totals.delivered:,}")
        table.add_row("already sent (dedupe ledger)", f"{totals.duplicates:,}")
        table.add_row("failed", f"{len(totals.failed):,}")
        if totals.parked:
            table.add_row("  of which parked as dead letters", f"{totals.parked:,}")
    else:
        table.add_row("alerts (dry run, not sent)", f"{sum(totals.matches.values()):,}")
    throttled = sum(p.throttled for p in replay.progress)
    if throttled:
        table.add_row("GetRecords throttled (backed off)", f"{throttled:,}")
    table.add_row("time", f"{totals.seconds:,.1f} s")
    table.add_row("events/s", f"{totals.events_per_second:,.0f}")
    if totals.seconds > 0:
        table.add_row("share of time in decode/match/deliver", f"{totals.pipeline_seconds / totals.seconds:.0%}")
    console.print(table)


# --- the command -------------------------------------------------------------------------------------------


def _kinesis_reader_client(args: argparse.Namespace, settings: Settings) -> Any:
    # Throttling is backed off by the reader itself (counted and shown); botocore retries one network blip.
    config = BotoConfig(
        retries={"mode": "standard", "total_max_attempts": 2}, max_pool_connections=max(10, args.workers)
    )
    return settings.aws.client("kinesis", config=config)


def _start_for(args: argparse.Namespace, kinesis: Any, roots: list[str], settings: Settings) -> StartFor:
    """Raises: ReplayUsageError, LeaseTableError."""
    if args.from_ == FROM_CHECKPOINT:
        if not args.application:
            raise ReplayUsageError("--from checkpoint needs --application (the KCL application's name)")
        dynamodb = settings.aws.client("dynamodb")
        leases = {lease.shard_id: lease for lease in read_leases(dynamodb, args.application, args.stream)}
        return checkpoint_start(leases, list_shards(kinesis, args.stream))
    if args.from_ == FROM_TRIM_HORIZON:
        return fixed_start(None, StartPosition.trim_horizon(), StartPosition.trim_horizon())
    if args.from_sequence:
        if len(roots) != 1 or args.all:
            raise ReplayUsageError("--from-sequence needs exactly one --shard: sequence numbers belong to a shard")
        return fixed_start(roots[0], StartPosition.at(args.from_sequence), StartPosition.trim_horizon())
    when = parse_when(args.from_time)
    return fixed_start(None, StartPosition.at_time(when), StartPosition.at_time(when))


def _stop(args: argparse.Namespace, roots: list[str]) -> StopCondition:
    if args.to_sequence and (len(roots) != 1 or args.all):
        raise ReplayUsageError("--to-sequence needs exactly one --shard: sequence numbers belong to a shard")
    to_time = parse_when(args.to_time) if args.to_time else None
    return StopCondition(to_sequence=args.to_sequence, to_time=to_time, follow=args.follow)


def replay_pipeline(
    config: Config, settings: Settings, *, send: bool, sink: Callable[[Alert], None] | None, matcher: str
) -> Pipeline:
    """A dry run printing into `sink`, or (--send) delivery with the ledger, dead letters and storm windows."""
    return build_pipeline(config, settings, send=send, alert_sink=None if send else sink, matcher_kind=matcher)


def run(args: argparse.Namespace) -> int:
    err = message_console()
    settings = settings_from_args(args, REPLAY)
    config = load_config_from_args(args, settings, dry_run=not args.send)
    kinesis = _kinesis_reader_client(args, settings)
    try:
        roots = [s.shard_id for s in list_shards(kinesis, args.stream)] if args.all else list(args.shard)
        start_for = _start_for(args, kinesis, roots, settings)
        stop = _stop(args, roots)
        pipeline = replay_pipeline(config, settings, send=args.send, sink=_printer(args), matcher=args.matcher)
    except kinesis.exceptions.ResourceNotFoundException:
        err.print(f"no stream {args.stream!r}", markup=False)
        return EXIT_USAGE
    except LeaseTableError as error:
        failure = describe_failure(error)
        if failure is not None and failure.kind != "service":
            raise
        err.print(str(error), markup=False)
        return EXIT_FINDINGS
    except (StreamProcessorError, ValueError) as error:
        if describe_failure(error) is not None or isinstance(error, ConfigError):
            raise
        err.print(str(error), markup=False)
        return EXIT_USAGE  # the options do not describe a replay
    replay = StreamReplay(kinesis, args.stream, roots, start_for, stop, workers=args.workers, limit=args.limit)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = progress.add_task("replaying", total=None, status="")
    try:
        with progress:
            totals = run_replay(
                pipeline, replay, on_batch=lambda totals: progress.update(task, status=_progress_line(totals, replay))
            )
    except ValueError as error:  # a --shard the stream does not have
        if describe_failure(error) is not None or isinstance(error, ConfigError):
            raise
        err.print(str(error), markup=False)
        return EXIT_USAGE
    finally:
        pipeline.close()
    summary = err if err.is_terminal else Console(stderr=True, highlight=False, emoji=False, width=200)
    print_summary(totals, replay, summary, sent=args.send)
    return EXIT_FINDINGS if totals.unparked_failures else EXIT_OK


def _printer(args: argparse.Namespace) -> Callable[[Alert], None] | None:
    if args.send:
        return None
    if args.format == "jsonl":
        return JsonlPrinter(sys.stdout)
    return TextPrinter(Console(highlight=False, emoji=False))
