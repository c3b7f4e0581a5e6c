"""Write CloudTrail events into a Kinesis stream as CloudWatch Logs would (`stream-processor produce`, the demo).

Each Kinesis record is what a CloudWatch Logs subscription filter delivers: a gzip DATA_MESSAGE carrying a
batch of log events (one CloudTrail event each), with the occasional CONTROL_MESSAGE health check, under
random partition keys so every shard gets traffic. Records go out with PutRecords (at most 500 records and
5 MiB per call); entries a call reports as failed (throttling) are sent again with backoff.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from stream_processor.aws import AwsSettings
from stream_processor.backoff import exponential_backoff
from stream_processor.decode import CONTROL_MESSAGE, DATA_MESSAGE, decode_bytes, encode_subscription_record
from stream_processor.errors import StreamProcessorError
from stream_processor.local.stack import DEFAULT_REGION, local_client
from stream_processor.local.traffic import TrafficGenerator, seed_triggers
from stream_processor.token_bucket import TokenBucket

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
                self._bucket.acquire(self.per_record)
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
        """PutRecords, re-sending only the entries that failed, with the shared exponential backoff."""
        remaining = entries

        def put_once() -> list[dict[str, Any]]:
            """One PutRecords of what is left; the entries still to send (none when all were taken)."""
            nonlocal remaining
            request = [{"Data": entry["Data"], "PartitionKey": entry["PartitionKey"]} for entry in remaining]
            self._calls += 1
            try:
                response = self.client.put_records(StreamName=self.stream, Records=request)
            except self.client.exceptions.ProvisionedThroughputExceededException:
                log.debug("PutRecords throttled as a whole; retrying %d entries", len(remaining))
                return remaining
            if not response.get("FailedRecordCount"):
                remaining = []
                return remaining
            results = response["Records"]
            failed = [entry for entry, result in zip(remaining, results, strict=True) if result.get("ErrorCode")]
            codes = {result["ErrorCode"] for result in results if result.get("ErrorCode")}
            log.debug("PutRecords: %d of %d entries failed (%s)", len(failed), len(remaining), ", ".join(codes))
            remaining = failed
            return remaining

        def count_retried(_: RetryCallState) -> None:
            self._retried += len(remaining)

        Retrying(
            stop=stop_after_attempt(self.MAX_ATTEMPTS),
            wait=exponential_backoff(self.BACKOFF_BASE, self.BACKOFF_CAP, proportional_jitter=True),
            retry=retry_if_result(bool),
            sleep=self._sleep,
            before_sleep=count_retried,
            retry_error_callback=lambda _: None,
        )(put_once)
        if remaining:
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
    return [orjson.dumps(event) for event in seed_triggers(count, seed=seed + TRIGGER_SEED_OFFSET)]


def kinesis_client(aws: AwsSettings) -> Any:
    """A local client with fake credentials when a Kinesis endpoint is configured, else the SDK's chain (AWS)."""
    endpoint = aws.endpoint_for("kinesis")
    if endpoint:
        return local_client("kinesis", endpoint, aws.region or aws.resolved_region or DEFAULT_REGION)
    return aws.client("kinesis")


def events_to_produce(
    files: Sequence[str], generate: int, seed_triggers: int, seed: int, match_rate: float
) -> tuple[Iterator[bytes], int]:
    """The events of `files`, then `generate` generated ones, with `seed_triggers` triggers mixed in, and their count.

    Raises:
        ProduceError: a file cannot be read.
    """
    from_files = read_event_files(files)
    triggers = trigger_events(seed_triggers, seed) if seed_triggers else []
    base: Iterator[bytes] = iter(from_files)
    if generate:
        base = itertools.chain(base, generated_events(generate, seed, match_rate))
    events = mix_in(base, len(from_files) + generate, triggers, seed)
    return events, len(from_files) + generate + len(triggers)
