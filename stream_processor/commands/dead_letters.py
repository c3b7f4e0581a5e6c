"""`stream-processor dead-letters list|redrive`: see what was parked, and send the parked alerts again."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_processor.alerts.render import build_alert
from stream_processor.commands.common import (
    add_aws_arguments,
    add_config_argument,
    add_state_arguments,
    aws_settings,
    load_config_from_args,
    message_console,
    open_dead_letters,
    open_ledger,
)
from stream_processor.config import Rule
from stream_processor.dead_letters import ALERT, INPUT, DeadLetter, DeadLetterStore
from stream_processor.errors import ConfigError, DeadLetterStoreError
from stream_processor.json_out import dumps_text
from stream_processor.model import Match
from stream_processor.pipeline import Pipeline


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dead-letters",
        help="list parked alerts and malformed input; redrive parked alerts",
        description=(
            "Alerts that failed for good and input that is not CloudTrail are parked, with their shard and "
            "sequence number, so the shard can move on. 'list' shows them; 'redrive' sends the parked alerts "
            "again through the normal delivery (the dedupe ledger keeps already-sent ones from repeating)."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show parked items in a table")
    listing.add_argument("--kind", choices=(ALERT, INPUT), help="only alerts or only malformed input")
    listing.add_argument("--destination", metavar="ID", help="only alerts for this destination id")
    listing.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    add_state_arguments(listing)
    add_aws_arguments(listing)
    listing.set_defaults(run=run_list)
    redrive = actions.add_parser("redrive", help="deliver parked alerts again; those that fail stay parked")
    add_config_argument(redrive)
    redrive.add_argument("--destination", metavar="ID", help="only alerts for this destination id")
    add_state_arguments(redrive)
    add_aws_arguments(redrive)
    redrive.set_defaults(run=run_redrive)


def run_list(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    err = message_console()
    try:
        store = open_dead_letters(args)
        letters = store.list(kind=args.kind, destination_id=args.destination)
    except (ConfigError, DeadLetterStoreError) as error:
        err.print(str(error), markup=False)
        return 1
    store.close()
    if args.json:
        for letter in letters:
            print(dumps_text(_as_json(letter)))
        return 0
    if not letters:
        console.print("no dead letters")
        return 0
    table = Table(title=f"{len(letters)} dead letters", title_justify="left")
    for column in ("id", "kind", "parked", "position", "rule → destination", "attempts", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.id[:12],
            letter.kind,
            datetime.fromtimestamp(letter.parked_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(letter.position),
            f"{letter.rule_name} → {letter.destination_id}" if letter.kind == ALERT else "",
            str(letter.attempts),
            letter.reason,
        )
    console.print(table)
    return 0


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "kind": letter.kind,
        "parked_at": letter.parked_at,
        "position": str(letter.position),
        "rule": letter.rule_name,
        "destination": letter.destination_id,
        "attempts": letter.attempts,
        "reason": letter.reason,
    }


def run_redrive(args: argparse.Namespace) -> int:
    err = message_console()
    try:
        config = load_config_from_args(args)
        store = open_dead_letters(args)
        letters = store.list(kind=ALERT, destination_id=args.destination)
    except (ConfigError, DeadLetterStoreError) as error:
        for line in getattr(error, "problems", [str(error)]):
            err.print(line, markup=False)
        return 1
    pipeline = Pipeline.build(config, aws=aws_settings(args), send=True, ledger=open_ledger(args))
    known = {destination.id for destination in config.destinations}
    rules = {rule.name: rule for rule in config.rules}
    counts: Counter[str] = Counter()
    with Progress(
        TextColumn("redriving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("redrive", total=len(letters))
        for letter in letters:
            counts[_redrive_one(letter, store, pipeline, known, rules)] += 1
            progress.advance(task)
    pipeline.close()
    store.close()
    table = Table(title="redrive", title_justify="left")
    table.add_column("outcome")
    table.add_column("alerts", justify="right")
    for outcome in ("delivered", "already sent", "still failing", "unknown destination"):
        table.add_row(outcome, f"{counts[outcome]:,}")
    err.print(table)
    return 1 if counts["still failing"] or counts["unknown destination"] else 0


def _redrive_one(
    letter: DeadLetter, store: DeadLetterStore, pipeline: Pipeline, known: set[str], rules: dict[str, Rule]
) -> str:
    if letter.destination_id not in known:
        return "unknown destination"
    alert = letter.alert()
    rule = rules.get(letter.rule_name)
    if rule is not None:  # the rule's title, severity, runbook and tags as the config says now
        alert = build_alert(rule, Match(rule.name, alert.event, alert.output))
    result = pipeline.send(alert, letter.destination_id)
    if result is None:
        store.remove(letter)
        return "already sent"
    if result.delivered:
        store.remove(letter)
        return "delivered"
    store.record_attempt(letter, result.reason, letter.attempts + result.attempts)
    return "still failing"
