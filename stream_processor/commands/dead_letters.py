"""`stream-processor dead-letters list|redrive`: see what was parked, and send the parked alerts again."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_processor.alerts.render import build_alert
from stream_processor.aws_errors import describe_failure
from stream_processor.commands.common import (
    add_config_argument,
    load_config_from_args,
    message_console,
    settings_from_args,
)
from stream_processor.config import parse_duration
from stream_processor.dead_letters import ALERT, INPUT, DeadLetter, DeadLetterStore
from stream_processor.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, ConfigError, DeadLetterStoreError
from stream_processor.json_out import dumps_text
from stream_processor.model import Match, Rule
from stream_processor.pipeline import Pipeline
from stream_processor.wiring import (
    HOST,
    NONE,
    Settings,
    add_aws_arguments,
    add_state_arguments,
    build_pipeline,
    open_dead_letters,
)

REDRIVE = replace(HOST, storm=NONE, storm_from_env=False)
"""Redrive sends each parked alert on its own: no storm folding; the ledger keeps sent ones from repeating."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dead-letters",
        help="list parked alerts and malformed input; redrive parked alerts",
        description=(
            "Alerts that failed for good and input that is not CloudTrail are parked, with their shard and "
            "sequence number, so the shard can move on. 'list' shows them; 'redrive' sends the parked alerts "
            "again through the normal delivery (the dedupe ledger keeps already-sent ones from repeating). "
            "The store is --dead-letters, else $STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL, else the SQLite file in "
            "--state-dir (which must exist)."
        ),
        epilog="exit status: 0 ok; 1 when redrive leaves alerts parked; 2 usage or configuration (a state dir "
        "that does not exist included); 3/4 AWS access or reachability.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show parked items in a table, a page at a time")
    listing.add_argument("--kind", choices=(ALERT, INPUT), help="only alerts or only malformed input")
    listing.add_argument("--destination", metavar="ID", help="only alerts for this destination id")
    listing.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    listing.add_argument(
        "--limit", type=_positive, metavar="N", help=f"letters per page (default {PAGE}; with --json: every letter)"
    )
    listing.add_argument("--after", metavar="ID", help="start after this letter id (the next page's hint gives it)")
    listing.add_argument("--all", action="store_true", help="every letter, page after page (--json's default)")
    add_state_arguments(listing)
    add_aws_arguments(listing)
    listing.set_defaults(run=run_list)
    redrive = actions.add_parser("redrive", help="deliver parked alerts again; those that fail stay parked")
    add_config_argument(redrive)
    redrive.add_argument("--destination", metavar="ID", help="only alerts for this destination id")
    add_state_arguments(redrive)
    add_aws_arguments(redrive)
    redrive.set_defaults(run=run_redrive)
    prune = actions.add_parser(
        "prune",
        help="drop old letters (a host's SQLite store; SQS expires them by its retention period)",
        description=(
            "The SQLite store also prunes itself while parking (letters older than 14 days, or beyond the newest "
            "100,000). Prune by hand to free room sooner or to keep less."
        ),
    )
    prune.add_argument(
        "--older-than", type=parse_duration_arg, metavar="AGE", help="drop letters parked more than AGE ago (7d, 12h)"
    )
    prune.add_argument("--keep", type=_non_negative, metavar="N", help="keep only the newest N letters")
    add_state_arguments(prune)
    add_aws_arguments(prune)
    prune.set_defaults(run=run_prune)


PAGE = 50


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def parse_duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_prune(args: argparse.Namespace) -> int:
    err = message_console()
    if args.older_than is None and args.keep is None:
        err.print("say what to drop: --older-than AGE, --keep N, or both", markup=False)
        return EXIT_USAGE
    store = open_store(settings_from_args(args, HOST))
    try:
        removed = store.prune(older_than_seconds=args.older_than, keep=args.keep)
    except NotImplementedError:
        err.print("this dead-letter store expires letters itself (SQS: the queue's retention period)", markup=False)
        return EXIT_USAGE
    except DeadLetterStoreError as error:
        if describe_failure(error) is not None:
            raise
        err.print(str(error), markup=False)
        return EXIT_FINDINGS
    finally:
        store.close()
    err.print(f"pruned {removed:,} dead letter(s)", markup=False)
    return EXIT_OK


def open_store(settings: Settings) -> DeadLetterStore:
    """The dead-letter store the settings name; one that does not exist is refused, never created empty.

    Raises:
        ConfigError: no store is configured, or its SQLite folder does not exist.
    """
    settings.require_existing(settings.dead_letters)
    store = open_dead_letters(settings)
    if store is None:
        raise ConfigError("--dead-letters none: name a store to read (sqlite[:PATH] or sqs:QUEUE_URL)")
    return store


def run_list(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    err = message_console()
    store = open_store(settings_from_args(args, HOST))
    try:
        every = args.all or (args.json and args.limit is None and args.after is None)  # scripts get everything
        limit = args.limit or PAGE
        if every:
            pages: Iterable[list[DeadLetter]] = store.pages(kind=args.kind, destination_id=args.destination)
        else:
            pages = [store.page(kind=args.kind, destination_id=args.destination, after=args.after, limit=limit)]
        if args.json:
            for page in pages:
                for letter in page:
                    print(dumps_text(_as_json(letter)))
            return EXIT_OK
        letters = [letter for page in pages for letter in page]
    except DeadLetterStoreError as error:
        if describe_failure(error) is not None:
            raise
        err.print(str(error), markup=False)
        return EXIT_FINDINGS
    finally:
        store.close()
    if not letters:
        console.print("no dead letters" + (" after that id" if args.after else ""))
        return 0
    full_page = not every and len(letters) == limit
    title = f"{len(letters)} dead letters" + (" (one page)" if full_page else "")
    table = Table(title=title, title_justify="left")
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
    if full_page:
        err.print(f"next page: stream-processor dead-letters list --after {letters[-1].id} ...", markup=False)
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
    settings = settings_from_args(args, REDRIVE)
    config = load_config_from_args(args, settings)
    store = open_store(settings)
    try:
        letters = store.list(kind=ALERT, destination_id=args.destination)
    except DeadLetterStoreError as error:
        store.close()
        if describe_failure(error) is not None:
            raise
        err.print(str(error), markup=False)
        return EXIT_FINDINGS
    settings.require_existing(settings.ledger)
    pipeline = build_pipeline(config, settings, send=True, park=False)
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
    return EXIT_FINDINGS if counts["still failing"] or counts["unknown destination"] else EXIT_OK


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
