"""`stream-processor demo` (what `make demo` runs): the whole pipeline on this machine, end to end.

It starts the local AWS stack (kinesis-local, moto) and a Slack-compatible receiver on 127.0.0.1, creates a
2-shard stream, produces a few thousand realistic CloudTrail events (the seed rules' triggers among them),
runs the real consumer with the seed rules pointed at the receiver, waits until every expected alert has
arrived, prints them and a summary, and stops everything it started, also on Ctrl-C or failure. The work is
`stream_processor.local.demo`'s.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stream_processor.kcl.daemon import JARS_ENV
from stream_processor.local.demo import DEFAULT_WORK_DIR, DemoError, DemoOptions, DemoResult, ReceivedAlert, run_demo
from stream_processor.local.kinesis import PREFIX_ENV
from stream_processor.local.resources import SEED_CONFIG

DEFAULTS = DemoOptions()


@contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so every `finally` of the demo runs and everything started is stopped."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def short_who(who: str) -> str:
    """The caller without the role/session detail, and an ARN shown from its resource part (`user/alice`)."""
    text = who.split(" (", 1)[0]
    if text.startswith("arn:") and text.count(":") >= 5:
        return text.split(":", 5)[5]
    return text


def print_alerts(alerts: Sequence[ReceivedAlert], console: Console) -> None:
    table = Table(title=f"{len(alerts)} alerts received by the Slack-compatible receiver", title_justify="left")
    table.add_column("rule", style="bold", no_wrap=True)
    table.add_column("who", overflow="fold", max_width=40)
    table.add_column("what", overflow="fold")
    table.add_column("where", overflow="fold")
    table.add_column("output", overflow="fold", max_width=60)
    for alert in sorted(alerts, key=lambda a: a.arrived):
        table.add_row(alert.rule, short_who(alert.who), alert.what, alert.where, alert.output)
    console.print(table)


def print_summary(result: DemoResult, console: Console) -> None:
    table = Table(title="summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    produced = result.produced
    table.add_row("events produced", f"{produced.events:,}")
    table.add_row("Kinesis records", f"{produced.records:,} data + {produced.control_records} control")
    table.add_row("alerts expected", f"{len(result.expected)}")
    table.add_row("alerts received", f"{len(result.alerts)}")
    table.add_row("missing", f"{len(result.missing)}")
    table.add_row("duplicates", f"{result.duplicates}")
    first = result.first_alert_seconds
    table.add_row("first alert", "-" if first is None else f"{first:.1f} s after the consumer started")
    if result.alerts:
        last = max(alert.arrived for alert in result.alerts) - result.consumer_started
        table.add_row("last alert", f"{last:.1f} s after the consumer started")
    console.print(table)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline locally: emulators, producer, KCL consumer, Slack-compatible receiver",
        description=(
            "Start kinesis-local, moto and a Slack-compatible receiver on 127.0.0.1, create a 2-shard stream, "
            "produce realistic CloudTrail events (the seed rules' triggers among them), run the real KCL "
            "consumer with the seed rules until every alert has arrived, print the alerts and a summary, and "
            "stop everything it started."
        ),
    )
    parser.add_argument("--config", type=Path, default=SEED_CONFIG, help="rule file to demo (the seed rules)")
    parser.add_argument("--events", type=int, default=DEFAULTS.events, help="generated events (3000)")
    parser.add_argument("--triggers", type=int, default=DEFAULTS.triggers, help="seed-rule triggers mixed in (6)")
    parser.add_argument(
        "--match-rate", type=float, default=DEFAULTS.match_rate, help="share of security-relevant events"
    )
    parser.add_argument("--shards", type=int, default=DEFAULTS.shards, help="shards of the demo stream (2)")
    parser.add_argument("--per-record", type=int, default=DEFAULTS.per_record, help="log events per Kinesis record")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed of the generated traffic")
    parser.add_argument("--timeout", type=float, default=DEFAULTS.timeout, help="seconds to wait for the alerts")
    parser.add_argument("--settle", type=float, default=DEFAULTS.settle, help=argparse.SUPPRESS)
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="logs, the demo config and PIDs (./.local/demo)"
    )
    parser.add_argument(
        "--kinesis-local",
        type=Path,
        metavar="DIR",
        help=f"npm prefix kinesis-local is installed in (default: ${PREFIX_ENV}, ./infra/local or the user cache)",
    )
    parser.add_argument(
        "--kcl-jars", type=Path, metavar="DIR", help=f"the KCL daemon's jars (default: ${JARS_ENV}, as consume)"
    )
    parser.set_defaults(run=run)


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    return DemoOptions(
        config=args.config,
        events=args.events,
        triggers=args.triggers,
        match_rate=args.match_rate,
        shards=args.shards,
        per_record=args.per_record,
        seed=args.seed,
        timeout=args.timeout,
        settle=args.settle,
        work_dir=args.work_dir,
        kinesis_local=args.kinesis_local,
        kcl_jars=args.kcl_jars,
    )


def run(args: argparse.Namespace) -> int:
    console = Console()
    started = time.monotonic()
    try:
        with _interrupts_as_keyboard_interrupt():
            result = run_demo(options_from_args(args), console)
    except DemoError as error:
        # not wrapped, not read as markup: the message may hold commands to copy and paste
        console.print(f"[bold red]demo failed:[/] {escape(str(error))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("[bold yellow]interrupted[/]: everything the demo started is stopped")
        return 130
    print_alerts(result.alerts, console)
    print_summary(result, console)
    ok = not result.missing and not result.duplicates and not result.unexpected
    verdict = "[bold green]every expected alert arrived exactly once[/]" if ok else "[bold red]alerts do not match[/]"
    console.print(f"{verdict} ({time.monotonic() - started:.0f} s in all; everything started is stopped)")
    return 0 if ok else 1
