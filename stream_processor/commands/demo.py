"""`stream-processor demo` (what `make demo` runs): the whole pipeline on this machine, end to end.

It starts the local AWS stack (kinesis-local, moto) and a Slack-compatible receiver on 127.0.0.1, creates a
2-shard stream, produces a few thousand realistic CloudTrail events (the seed rules' triggers among them) as
CloudWatch Logs subscription records, runs the real consumer (`stream-processor consume`: the KCL
MultiLangDaemon with our record processor) with the seed rules pointed at the receiver, waits until every
expected alert has arrived, prints them and a summary, and stops everything it started, by PID, also on
Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from stream_processor.commands.produce import (
    ProduceSummary,
    SubscriptionProducer,
    generated_events,
    mix_in,
    trigger_events,
)
from stream_processor.config import load_config
from stream_processor.decode import decode_bytes
from stream_processor.local.kinesis import REPO_ROOT
from stream_processor.local.receiver import ReceivedPost, SlackReceiver
from stream_processor.local.stack import LocalStack
from stream_processor.matcher import build_matcher
from stream_processor.model import Config

SEED_CONFIG = REPO_ROOT / "examples" / "seed.toml"
DEFAULT_WORK_DIR = REPO_ROOT / ".local" / "demo"
KCL_JARS = REPO_ROOT / "infra" / "kcl" / "jars"
SETUP_HINT = "run `make setup` first (or just `make demo`, which runs it)"
PIDS_FILE = "pids.json"
CONSUMER_STOP_SECONDS = 30.0

_WEBHOOK_LINE = re.compile(r'^(?P<key>\s*webhook_url\s*=\s*)(?P<value>"[^"\n]*"|\'[^\'\n]*\')', re.MULTILINE)
_EVENT_ID = re.compile(r'"eventID":"(?P<id>[^"]+)"')


class DemoError(Exception):
    """The demo cannot go on; the message says why and what to do."""


# --- what arrived at the receiver ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    """One Slack post as the receiver got it, read back into the facts a person looks at."""

    rule: str
    who: str
    what: str
    where: str
    when: str
    output: str
    event_id: str
    arrived: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.event_id)


def _mrkdwn_to_text(text: str) -> str:
    return html.unescape(text)


def parse_slack_post(payload: Any, arrived: float) -> ReceivedAlert | None:
    """Read an alert back from a Slack Block Kit post (header, Who/What/Where/When, Match, event JSON)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("blocks"), list):
        return None
    rule = ""
    facts: dict[str, str] = {}
    output = ""
    event_id = ""
    for block in payload["blocks"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "header":
            rule = str(block.get("text", {}).get("text", ""))
        for field in block.get("fields") or []:
            label, _, value = str(field.get("text", "")).partition("\n")
            facts[label.strip("*")] = _mrkdwn_to_text(value)
        text = str((block.get("text") or {}).get("text", "")) if block.get("type") == "section" else ""
        if text.startswith("*Match*\n"):
            output = _mrkdwn_to_text(text[len("*Match*\n") :])
        elif text.startswith("```"):
            body = _mrkdwn_to_text(text.strip("`"))
            try:
                event_id = str(json.loads(body).get("eventID", ""))
            except ValueError:  # truncated event JSON: the id is usually still there
                found = _EVENT_ID.search(body)
                event_id = found.group("id") if found else ""
    if not rule:
        return None
    return ReceivedAlert(
        rule=rule,
        who=facts.get("Who", ""),
        what=facts.get("What", ""),
        where=facts.get("Where", ""),
        when=facts.get("When", ""),
        output=output,
        event_id=event_id,
        arrived=arrived,
    )


class AlertCollector:
    """Records when each post reaches the receiver (its `on_post` hook) and reads the alerts back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[tuple[float, ReceivedPost]] = []
        self.changed = threading.Event()

    def on_post(self, post: ReceivedPost) -> None:
        with self._lock:
            self._posts.append((time.time(), post))
        self.changed.set()

    def alerts(self) -> list[ReceivedAlert]:
        with self._lock:
            posts = list(self._posts)
        alerts = []
        for arrived, post in posts:
            if post.status is not None and 200 <= post.status < 300:
                alert = parse_slack_post(post.payload, arrived)
                if alert is not None:
                    alerts.append(alert)
        return alerts


# --- set-up pieces -------------------------------------------------------------------------------------


def write_demo_config(seed_config: Path, webhook_url: str, destination: Path) -> Config:
    """A copy of the seed rules with every Slack webhook pointed at the local receiver; loaded back to check.

    Raises:
        DemoError: the seed config is missing or has no webhook_url to point.
    """
    if not seed_config.exists():
        raise DemoError(f"the seed rules are missing: {seed_config}")
    text = seed_config.read_text(encoding="utf-8")
    rewritten, count = _WEBHOOK_LINE.subn(lambda m: f"{m.group('key')}{json.dumps(webhook_url)}", text)
    if count == 0:
        raise DemoError(f"{seed_config} has no slack_webhook destination to point at the local receiver")
    destination.write_text(rewritten, encoding="utf-8")
    config = load_config(str(destination))
    for dest in config.destinations:
        if dest.type == "slack_webhook" and dest.options.get("webhook_url") != webhook_url:
            raise DemoError(f"could not point destination {dest.id!r} at the receiver")
    return config


def expected_alerts(config: Config, events: Sequence[bytes]) -> set[tuple[str, str]]:
    """(rule, eventID) of every alert the consumer should post to Slack: libjq (the reference) on the events."""
    decoded = decode_bytes(b"\n".join(events), "demo")
    slack = {d.id for d in config.destinations if d.type == "slack_webhook"}
    rules = {rule.name: rule for rule in config.rules}
    matches = build_matcher(config.rules, kind="libjq").match_batch(decoded.events).matches  # the reference
    return {
        (match.rule_name, match.event.event_id)
        for match in matches
        if slack.intersection(rules[match.rule_name].destinations)
    }


def check_prerequisites() -> None:
    """Everything `make setup` installs, checked up front with one clear message.

    Raises:
        DemoError: something is missing.
    """
    missing = []
    if shutil.which("java") is None:
        missing.append("java (Java 17 or later) is not on PATH")
    if shutil.which("node") is None:
        missing.append("node (Node.js 18 or later) is not on PATH")
    if not (REPO_ROOT / "infra" / "local" / "node_modules" / "kinesis-local" / "main.js").exists():
        missing.append("kinesis-local is not installed (infra/local/node_modules)")
    if not KCL_JARS.is_dir() or not any(KCL_JARS.glob("*.jar")):
        missing.append("the KCL jars are not fetched (infra/kcl/jars)")
    if missing:
        raise DemoError("; ".join(missing) + f": {SETUP_HINT}")


def consumer_command(
    config: Path, stream: str, application: str, stack: LocalStack, log_dir: Path, extra: Sequence[str] = ()
) -> list[str]:
    """`stream-processor consume` against the local stack, reading the stream from its start."""
    return [
        sys.executable,
        "-m",
        "stream_processor",
        "consume",
        "--config",
        str(config),
        "--stream",
        stream,
        "--application",
        application,
        "--region",
        stack.region,
        "--kinesis-endpoint",
        stack.kinesis_url,
        "--dynamodb-endpoint",
        stack.moto_url,
        "--aws-endpoint",
        stack.moto_url,
        "--initial-position",
        "TRIM_HORIZON",
        "--work-dir",
        str(log_dir / "consumer"),
        *extra,
    ]


class ConsumerProcess:
    """The consumer in its own process group, logging to a file; stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self, command: Sequence[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=REPO_ROOT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = CONSUMER_STOP_SECONDS) -> None:
        """SIGTERM (the daemon hands its processors `shutdown_requested`), then SIGKILL the group."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        # whatever is left of the group (the daemon's record-processor children)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so every `finally` below runs and everything started is stopped."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoResult:
    produced: ProduceSummary
    expected: set[tuple[str, str]]
    alerts: list[ReceivedAlert]
    consumer_started: float
    finished: float

    @property
    def received_keys(self) -> Counter[tuple[str, str]]:
        return Counter(alert.key for alert in self.alerts)

    @property
    def missing(self) -> set[tuple[str, str]]:
        return self.expected - set(self.received_keys)

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.received_keys.values() if count > 1)

    @property
    def unexpected(self) -> set[tuple[str, str]]:
        return set(self.received_keys) - self.expected

    @property
    def first_alert_seconds(self) -> float | None:
        if not self.alerts:
            return None
        return min(alert.arrived for alert in self.alerts) - self.consumer_started


def _write_pids(work_dir: Path, pids: dict[str, int]) -> None:
    (work_dir / PIDS_FILE).write_text(json.dumps(pids, indent=2) + "\n")


def run_demo(args: argparse.Namespace, console: Console) -> DemoResult:
    """Set up, produce, consume until every expected alert arrived (or time out), tear down.

    Raises:
        DemoError: a prerequisite is missing, the consumer died, or the alerts did not all arrive in time.
    """
    check_prerequisites()
    work_dir: Path = args.work_dir
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    collector = AlertCollector()
    stream = "cloudtrail-demo"
    application = f"stream-processor-demo-{uuid.uuid4().hex[:8]}"
    pids: dict[str, int] = {}
    with LocalStack(work_dir / "logs") as stack, SlackReceiver(on_post=collector.on_post) as receiver:
        pids.update({server.name: server.pid for server in stack.servers})
        _write_pids(work_dir, pids)
        console.print(f"[bold]local stack[/] kinesis-local {stack.kinesis_url}, moto {stack.moto_url}")
        console.print(f"[bold]Slack-compatible receiver[/] http://127.0.0.1:{receiver.port}/services/…")
        stack.create_stream(stream, args.shards)
        config_path = work_dir / "demo.toml"
        config = write_demo_config(args.config, receiver.url, config_path)
        console.print(
            f"[bold]rules[/] {len(config.rules)} from {args.config} "
            f"(Slack destination pointed at the receiver: {config_path})"
        )

        # the events, built up front so the expected alerts are known before anything is consumed
        triggers = trigger_events(args.triggers, args.seed)
        traffic = generated_events(args.events, args.seed, args.match_rate)
        events = list(mix_in(traffic, args.events, triggers, args.seed))
        expected = expected_alerts(config, events)
        console.print(
            f"[bold]events[/] {len(events):,} realistic CloudTrail events, {len(triggers)} seed triggers among "
            f"them; the rules should raise {len(expected)} alerts"
        )

        consumer = ConsumerProcess(
            consumer_command(config_path, stream, application, stack, work_dir),
            work_dir / "logs" / "consumer.log",
            stack.environment(),
        )
        consumer_started = time.time()
        try:
            pids["consumer"] = consumer.pid
            _write_pids(work_dir, pids)
            console.print(f"[bold]consumer[/] stream-processor consume (KCL MultiLangDaemon), pid {consumer.pid}")
            producer = SubscriptionProducer(
                stack.kinesis_client(), stream, per_record=args.per_record, control_every=20, seed=args.seed
            )
            produced = producer.produce(events)
            console.print(
                f"[bold]produced[/] {produced.events:,} events in {produced.records} records "
                f"(+{produced.control_records} control) into {stream} ({args.shards} shards)"
            )
            _wait_for_alerts(collector, expected, consumer, args.timeout, console)
            # a moment for a duplicate to show itself, if the consumer were to send one
            time.sleep(args.settle)
        finally:
            stopping = time.monotonic()
            with console.status("stopping the consumer (it checkpoints first)", spinner="dots"):
                consumer.stop()
            console.print(f"[bold]consumer stopped[/] in {time.monotonic() - stopping:.1f} s")
        finished = time.time()
        return DemoResult(produced, expected, collector.alerts(), consumer_started, finished)


def _wait_for_alerts(
    collector: AlertCollector,
    expected: set[tuple[str, str]],
    consumer: ConsumerProcess,
    timeout: float,
    console: Console,
) -> None:
    deadline = time.monotonic() + timeout
    with console.status("", spinner="dots") as status:
        while True:
            received = {alert.key for alert in collector.alerts()}
            done = len(expected & received)
            status.update(f"consuming: {done}/{len(expected)} expected alerts at the receiver")
            if expected <= received:
                return
            code = consumer.exited()
            if code is not None:
                raise DemoError(
                    f"the consumer exited with code {code} before every alert arrived "
                    f"({done}/{len(expected)}); its log ({consumer.log_path}) ends with:\n{consumer.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise DemoError(
                    f"only {done} of {len(expected)} expected alerts reached the receiver within {timeout:.0f} s; "
                    f"the consumer's log is {consumer.log_path}; it ends with:\n{consumer.log_tail()}"
                )
            collector.changed.wait(0.5)
            collector.changed.clear()


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
    parser.add_argument("--events", type=int, default=3000, help="generated events (3000)")
    parser.add_argument("--triggers", type=int, default=6, help="seed-rule triggers mixed in (6)")
    parser.add_argument("--match-rate", type=float, default=0.02, help="share of security-relevant events")
    parser.add_argument("--shards", type=int, default=2, help="shards of the demo stream (2)")
    parser.add_argument("--per-record", type=int, default=25, help="log events per Kinesis record (25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated traffic")
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for the alerts (150)")
    parser.add_argument("--settle", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="logs, the demo config and PIDs (.local/demo)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    console = Console()
    started = time.monotonic()
    try:
        with _interrupts_as_keyboard_interrupt():
            result = run_demo(args, console)
    except DemoError as error:
        console.print(f"[bold red]demo failed:[/] {error}")
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
