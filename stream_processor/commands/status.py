"""`stream-processor status`: where each shard of a KCL application stands, from its lease table and the stream.

Per shard: open or closed, the lease owner, the checkpoint, and how far the checkpoint is behind the tip
(Kinesis's MillisBehindLatest at the checkpoint, and the age of the oldest record not yet checkpointed).
Shards that nobody holds are listed apart: those are the ones not being read. Everything is read-only; the
lag probe costs one GetShardIterator and one GetRecords(Limit=1) per shard.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from stream_processor.aws_errors import describe_failure
from stream_processor.commands.common import message_console, settings_from_args
from stream_processor.errors import EXIT_FINDINGS, EXIT_USAGE
from stream_processor.kcl.leases import LeaseTableError
from stream_processor.kcl.status import StreamStatus, collect_status
from stream_processor.wiring import ONE_SHOT, add_aws_arguments


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    """--stream and the AWS flags (the same names as `consume`)."""
    parser.add_argument("--stream", required=True, help="Kinesis stream name")
    add_aws_arguments(parser, services=("kinesis", "dynamodb"))


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="each shard's owner, checkpoint and lag, from the KCL lease table and the stream",
        description=(
            "Read the KCL application's lease table (named after the application) and the stream, and show "
            "per shard: open or closed, its lease owner, its checkpoint and how far that is behind the tip; "
            "then which shards nobody holds. Read-only."
        ),
    )
    add_stream_arguments(parser)
    parser.add_argument("--application", required=True, help="KCL application name (= the lease table's name)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-lag", action="store_true", help="skip the per-shard GetRecords lag probe")
    parser.add_argument(
        "--renewal-window",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=(
            "read the lease table twice this far apart and report owned leases that were not renewed "
            "(a dead or stopped worker); more than failoverTimeMillis/3, e.g. 5 for the KCL's 10 s default"
        ),
    )
    parser.set_defaults(run=run)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_status(status: StreamStatus, console: Console) -> None:
    table = Table(
        title=f"{status.stream} · application {status.application} · {status.checked_at}", title_justify="left"
    )
    for column, justify in (
        ("shard", "left"),
        ("state", "left"),
        ("owner", "left"),
        ("checkpoint", "left"),
        ("behind tip", "right"),
        ("oldest unprocessed", "right"),
        ("lease counter", "right"),
        ("owner switches", "right"),
        ("parents", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for shard in status.shards:
        if shard.lag_error:
            behind = Text(shard.lag_error, style="yellow")
            oldest = Text("?")
        elif shard.caught_up:
            behind, oldest = Text("caught up", style="green"), Text("-")
        else:
            behind = Text(_duration(shard.millis_behind))
            oldest = Text(_duration(shard.oldest_unprocessed_age_ms))
        if shard.owner and shard.renewed is False:
            owner = Text(f"{shard.owner} (not renewed)", style="red")
        elif shard.owner:
            owner = Text(shard.owner)
        else:
            owner = Text("UNOWNED" if shard.needs_owner else "-", style="red" if shard.needs_owner else "")
        table.add_row(
            shard.shard_id,
            shard.state,
            owner,
            Text(shard.checkpoint or "-" if shard.has_lease else "(no lease)", overflow="fold"),
            behind,
            oldest,
            "-" if shard.lease_counter is None else str(shard.lease_counter),
            "-" if shard.owner_switches is None else str(shard.owner_switches),
            ", ".join(shard.parents),
        )
    console.print(table)
    workers = status.workers
    if workers:
        for worker, shard_ids in workers.items():
            console.print(f"worker {worker}: {len(shard_ids)} shard(s): {', '.join(shard_ids)}", markup=False)
    unowned = status.unowned
    if unowned:
        console.print(f"unowned: {', '.join(unowned)} (nobody is reading these)", markup=False, style="red")
    elif any(shard.renewed is not None for shard in status.shards):
        console.print("every shard with records left has an owner that renews its lease", markup=False)
    else:
        console.print("every shard with records left has an owner", markup=False)
    if status.stale_leases:
        console.print(f"leases of shards no longer in the stream: {', '.join(status.stale_leases)}", markup=False)


def run(args: argparse.Namespace) -> int:
    err = message_console()
    aws = settings_from_args(args, ONE_SHOT).aws
    kinesis = aws.client("kinesis")
    try:
        status = collect_status(
            kinesis,
            aws.client("dynamodb"),
            args.stream,
            args.application,
            probe=not args.no_lag,
            renewal_window=args.renewal_window,
        )
    except LeaseTableError as error:
        failure = describe_failure(error)
        if failure is not None and failure.kind != "service":
            raise  # credentials, access, region, network: the CLI's one line and exit code
        err.print(str(error), markup=False)
        return EXIT_FINDINGS
    except kinesis.exceptions.ResourceNotFoundException:
        err.print(f"no stream {args.stream!r}", markup=False)
        return EXIT_USAGE
    if args.json:
        sys.stdout.write(orjson.dumps(status.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out = Console(highlight=False, emoji=False)
        print_status(status, out if out.is_terminal else Console(highlight=False, emoji=False, width=200))
    return 0
