"""`stream-processor produce`: write CloudTrail events into a Kinesis stream as CloudWatch Logs would.

Each Kinesis record is what a CloudWatch Logs subscription filter delivers: a gzip DATA_MESSAGE carrying a
batch of log events (one CloudTrail event each), with the occasional CONTROL_MESSAGE health check, under
random partition keys so every shard gets traffic. Records go out with PutRecords (at most 500 records and
5 MiB per call); entries a call reports as failed (throttling) are sent again with backoff.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from botocore.exceptions import ClientError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_processor.alerts.aws_errors import describe_failure
from stream_processor.aws import AwsSettings
from stream_processor.commands.common import settings_from_args
from stream_processor.decode import CONTROL_MESSAGE, DATA_MESSAGE, decode_bytes, encode_subscription_record
from stream_processor.errors import StreamProcessorError
from stream_processor.local.stack import DEFAULT_REGION, local_client
from stream_processor.wiring import ONE_SHOT, add_aws_arguments

log = logging.getLogger(__name__)


class ProduceError(StreamProcessorError):
    """Records could not be written to the stream (after every retry)."""


@dataclass(frozen=True, slots=True)
class ProduceSummary:
    """What a run wrote: events, data and control records, payload bytes, wall time, re-sent entries."""

    events: int
    records: int
    control_records: int
    bytes: int
    seconds: float
    retried_entries: int
    put_calls: int

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class TokenBucket:
    """Paces events to `rate` per second; at most `burst` saved-up events go at once (`initial` at the start)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        initial: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst if initial is None else min(initial, self.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` tokens are available (0 when they are now)."""
        self._refill()
        missing = min(amount, self.burst) - self._tokens
        return max(missing / self.rate, 0.0)

    def take(self, amount: float) -> None:
        """Block until `amount` tokens are available, then spend them (a debt beyond `burst` is carried)."""
        delay = self.wait_time(amount)
        if delay > 0:
            self._sleep(delay)
            self._refill()
        self._tokens -= amount


@dataclass(slots=True)
class _Pending:
    entries: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    since: float = 0.0


class SubscriptionProducer:
    """Packs events into subscription records and puts them on a stream, paced and retried.

    `client` is a boto3 Kinesis client. Events are JSON bytes (one CloudTrail event each), pulled lazily:
    an event is taken from the iterable only when the rate allows it, so a timestamp written into it by a
    generator is close to the time it is put (at most `linger` seconds earlier).
    """

    MAX_BATCH_RECORDS = 500
    MAX_BATCH_BYTES = 5 * 1024 * 1024
    MAX_RECORD_BYTES = 1024 * 1024
    MAX_ATTEMPTS = 12
    BACKOFF_BASE = 0.05
    BACKOFF_CAP = 2.0
    CATCH_UP_SECONDS = 1.0

    def __init__(
        self,
        client: Any,
        stream: str,
        *,
        per_record: int = 50,
        control_every: int = 100,
        rate: float | None = None,
        linger: float = 0.05,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_record < 1:
            raise ValueError(f"per_record must be at least 1, got {per_record}")
        self.client = client
        self.stream = stream
        self.per_record = per_record
        self.control_every = control_every
        self.linger = linger
        self._rng = random.Random(seed)
        self._clock = clock
        self._sleep = sleep
        # Up to CATCH_UP_SECONDS of events may go at once: time lost in a slow PutRecords call is made up, so
        # the average rate holds, without an unbounded burst after a long stall.
        self._bucket = (
            TokenBucket(
                rate, burst=max(rate * self.CATCH_UP_SECONDS, per_record), clock=clock, sleep=sleep, initial=per_record
            )
            if rate
            else None
        )
        self._pending = _Pending()
        self._events = 0
        self._records = 0
        self._control = 0
        self._bytes = 0
        self._retried = 0
        self._calls = 0
        self._on_progress: Callable[[int], None] | None = None

    # --- public -----------------------------------------------------------------------------------------

    def produce(
        self,
        events: Iterable[bytes],
        on_progress: Callable[[int], None] | None = None,
        control_first: bool = True,
    ) -> ProduceSummary:
        """Write every event; `on_progress(n)` is called with the number of events each put delivered.

        Raises:
            ProduceError: entries still failed after `MAX_ATTEMPTS` tries.
        """
        self._on_progress = on_progress
        started = self._clock()
        if control_first:
            self._add_control()
        iterator = iter(events)
        data_records = 0
        while True:
            if self._bucket is not None:
                delay = self._bucket.wait_time(self.per_record)
                if delay > 0 and self._pending.entries and self._clock() + delay - self._pending.since >= self.linger:
                    self._flush()  # do not hold records back while waiting for the rate
                self._bucket.take(self.per_record)
            chunk = _take(iterator, self.per_record)
            if not chunk:
                break
            self._add_events(chunk)
            data_records += 1
            if self.control_every and data_records % self.control_every == 0:
                self._add_control()
            if self._pending.entries and self._clock() - self._pending.since >= self.linger:
                self._flush()
        self._flush()
        return ProduceSummary(
            events=self._events,
            records=self._records,
            control_records=self._control,
            bytes=self._bytes,
            seconds=self._clock() - started,
            retried_entries=self._retried,
            put_calls=self._calls,
        )

    # --- records ----------------------------------------------------------------------------------------

    def _partition_key(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def _add_events(self, chunk: Sequence[bytes]) -> None:
        data = encode_subscription_record(chunk, message_type=DATA_MESSAGE)
        if len(data) + 32 > self.MAX_RECORD_BYTES and len(chunk) > 1:
            middle = len(chunk) // 2
            self._add_events(chunk[:middle])
            self._add_events(chunk[middle:])
            return
        if len(data) + 32 > self.MAX_RECORD_BYTES:
            raise ProduceError(f"one event compresses to {len(data)} bytes: more than a Kinesis record holds")
        self._add_entry(data, len(chunk))

    def _add_control(self) -> None:
        self._add_entry(encode_subscription_record([], message_type=CONTROL_MESSAGE), 0)

    def _add_entry(self, data: bytes, events: int) -> None:
        key = self._partition_key()
        size = len(data) + len(key)
        pending = self._pending
        if pending.entries and (
            len(pending.entries) >= self.MAX_BATCH_RECORDS or pending.size + size > self.MAX_BATCH_BYTES
        ):
            self._flush()
        if not pending.entries:
            pending.since = self._clock()
        pending.entries.append({"Data": data, "PartitionKey": key, "_events": events})
        pending.size += size

    # --- putting ----------------------------------------------------------------------------------------

    def _flush(self) -> None:
        entries = self._pending.entries
        if not entries:
            return
        self._pending = _Pending()
        self._put(entries)
        events = sum(entry["_events"] for entry in entries)
        self._events += events
        self._control += sum(1 for entry in entries if entry["_events"] == 0)
        self._records += sum(1 for entry in entries if entry["_events"] > 0)
        self._bytes += sum(len(entry["Data"]) for entry in entries)
        if self._on_progress is not None and events:
            self._on_progress(events)

    def _put(self, entries: list[dict[str, Any]]) -> None:
        """PutRecords, re-sending only the entries that failed, with exponential backoff and jitter."""
        remaining = entries
        for attempt in range(self.MAX_ATTEMPTS):
            if attempt:
                self._retried += len(remaining)
                delay = min(self.BACKOFF_CAP, self.BACKOFF_BASE * 2 ** (attempt - 1))
                self._sleep(delay * (0.5 + self._rng.random() / 2))
            request = [{"Data": entry["Data"], "PartitionKey": entry["PartitionKey"]} for entry in remaining]
            self._calls += 1
            try:
                response = self.client.put_records(StreamName=self.stream, Records=request)
            except self.client.exceptions.ProvisionedThroughputExceededException:
                log.debug("PutRecords throttled as a whole; retrying %d entries", len(remaining))
                continue
            if not response.get("FailedRecordCount"):
                return
            results = response["Records"]
            failed = [entry for entry, result in zip(remaining, results, strict=True) if result.get("ErrorCode")]
            codes = {result["ErrorCode"] for result in results if result.get("ErrorCode")}
            log.debug("PutRecords: %d of %d entries failed (%s)", len(failed), len(remaining), ", ".join(codes))
            remaining = failed
        raise ProduceError(f"{len(remaining)} records still failed after {self.MAX_ATTEMPTS} PutRecords attempts")


def _take(iterator: Iterator[bytes], count: int) -> list[bytes]:
    chunk: list[bytes] = []
    for item in iterator:
        chunk.append(item)
        if len(chunk) >= count:
            break
    return chunk


# --- event sources ------------------------------------------------------------------------------------


def read_event_files(paths: Sequence[str]) -> list[bytes]:
    """Every CloudTrail event in the files (any format decode reads; `-` is stdin), as JSON bytes.

    Raises:
        ProduceError: a file cannot be read.
    """
    events: list[bytes] = []
    for path in paths:
        try:
            data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as error:
            raise ProduceError(f"cannot read {path}: {error.strerror or error}") from error
        decoded = decode_bytes(data, path)
        if decoded.malformed:
            log.warning("%s: %d inputs are not CloudTrail events and are skipped", path, len(decoded.malformed))
        events.extend(event.raw for event in decoded.events)
    return events


def generated_events(count: int, seed: int, match_rate: float) -> Iterator[bytes]:
    """`count` realistic events from the traffic generator, made one at a time as they are pulled."""
    from stream_processor.traffic import TrafficGenerator

    generator = iter(TrafficGenerator(seed=seed, match_rate=match_rate))
    dumps = orjson.dumps
    for _ in range(count):
        yield dumps(next(generator))


def mix_in(base: Iterator[bytes], base_count: int, extra: Sequence[bytes], seed: int) -> Iterator[bytes]:
    """`base` with `extra` inserted at random (seeded) positions spread over the whole run."""
    rng = random.Random(seed)
    positions = sorted(rng.randint(0, base_count) for _ in extra)
    slot = 0
    for index, event in enumerate(base):
        while slot < len(positions) and positions[slot] <= index:
            yield extra[slot]
            slot += 1
        yield event
    yield from extra[slot:]


TRIGGER_SEED_OFFSET = 0x5EED_7216
"""Triggers come from their own generator seed: the same seed as the traffic would repeat its eventIDs."""


def trigger_events(count: int, seed: int) -> list[bytes]:
    """Events that trigger the seed config's two rules (CreateAccessKey, StartSession), as JSON bytes."""
    from stream_processor.traffic import seed_triggers

    return [orjson.dumps(event) for event in seed_triggers(count, seed=seed + TRIGGER_SEED_OFFSET)]


# --- the command ------------------------------------------------------------------------------------------


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


def kinesis_client(aws: AwsSettings) -> Any:
    """A local client with fake credentials when a Kinesis endpoint is configured, else the SDK's chain (AWS)."""
    endpoint = aws.endpoint_for("kinesis")
    if endpoint:
        return local_client("kinesis", endpoint, aws.region or aws.resolved_region or DEFAULT_REGION)
    return aws.client("kinesis")


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
        from_files = read_event_files(args.files)
        triggers = trigger_events(args.seed_triggers, args.seed) if args.seed_triggers else []
        base = iter(from_files)
        if args.generate:
            base = _chain(base, generated_events(args.generate, args.seed, args.match_rate))
        total = len(from_files) + args.generate + len(triggers)
        events = mix_in(base, len(from_files) + args.generate, triggers, args.seed)
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


def _chain(first: Iterator[bytes], second: Iterator[bytes]) -> Iterator[bytes]:
    yield from first
    yield from second
