"""Reading a stream's shards directly (GetShardIterator/GetRecords), for `replay` and `status`.

A replay reads what already went by without touching the live application: no lease, no checkpoint, nothing
written. Each shard is read from a start position (a sequence number, a time, the trim horizon) to a stop
(a sequence number, a time, the tip as of the start, or never with `follow`). When a shard closes
(resharding), its children are read next: a child starts only once every parent in the replay has been read
to its end, so records of one partition key still come out in order.

GetRecords is limited per shard (5 calls/s, 2 MB/s on AWS): ProvisionedThroughputExceededException is waited
out with exponential backoff and jitter, and an iterator that expired (after 5 minutes) is renewed after the
last record read. Reads of different shards overlap on a small thread pool; the caller's pipeline runs on
the calling thread, one batch at a time, so memory holds at most one batch per shard being read
(`run_replay` feeds it and counts what came out).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_never

from stream_processor.aws_errors import error_code
from stream_processor.backoff import exponential_backoff
from stream_processor.model import BatchOutcome, Position, RawRecord

if TYPE_CHECKING:
    from stream_processor.pipeline import Pipeline

log = logging.getLogger(__name__)

TRIM_HORIZON: Final = "TRIM_HORIZON"
LATEST: Final = "LATEST"
AT_SEQUENCE_NUMBER: Final = "AT_SEQUENCE_NUMBER"
AFTER_SEQUENCE_NUMBER: Final = "AFTER_SEQUENCE_NUMBER"
AT_TIMESTAMP: Final = "AT_TIMESTAMP"

THROTTLED: Final = "ProvisionedThroughputExceededException"
EXPIRED_ITERATOR: Final = "ExpiredIteratorException"


# --- shards ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """A shard as ListShards describes it."""

    shard_id: str
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None
    starting_sequence: str = ""
    ending_sequence: str | None = None

    @property
    def closed(self) -> bool:
        """Closed by a split or merge: it takes no more records, and its children carry its hash range on."""
        return self.ending_sequence is not None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)


def list_shards(kinesis: Any, stream: str) -> list[ShardInfo]:
    """Every shard of the stream still within retention (open and closed), in shard id order."""
    shards: list[ShardInfo] = []
    request: dict[str, Any] = {"StreamName": stream}
    while True:
        page = kinesis.list_shards(**request)
        for shard in page.get("Shards", []):
            numbers = shard.get("SequenceNumberRange", {})
            shards.append(
                ShardInfo(
                    shard_id=shard["ShardId"],
                    parent_shard_id=shard.get("ParentShardId"),
                    adjacent_parent_shard_id=shard.get("AdjacentParentShardId"),
                    starting_sequence=numbers.get("StartingSequenceNumber", ""),
                    ending_sequence=numbers.get("EndingSequenceNumber"),
                )
            )
        token = page.get("NextToken")
        if not token:
            break
        request = {"NextToken": token}
    return sorted(shards, key=lambda shard: shard.shard_id)


def children_of(shards: Sequence[ShardInfo], shard_id: str) -> list[ShardInfo]:
    return [shard for shard in shards if shard_id in shard.parents]


# --- positions ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartPosition:
    """Where a shard's reading starts: an iterator type and its argument."""

    kind: str
    sequence: str | None = None
    timestamp: datetime | None = None

    @classmethod
    def trim_horizon(cls) -> StartPosition:
        return cls(TRIM_HORIZON)

    @classmethod
    def after(cls, sequence: str) -> StartPosition:
        return cls(AFTER_SEQUENCE_NUMBER, sequence=sequence)

    @classmethod
    def at(cls, sequence: str) -> StartPosition:
        return cls(AT_SEQUENCE_NUMBER, sequence=sequence)

    @classmethod
    def at_time(cls, timestamp: datetime) -> StartPosition:
        return cls(AT_TIMESTAMP, timestamp=timestamp)

    def iterator_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"ShardIteratorType": self.kind}
        if self.sequence is not None:
            arguments["StartingSequenceNumber"] = self.sequence
        if self.timestamp is not None:
            arguments["Timestamp"] = self.timestamp
        return arguments

    def __str__(self) -> str:
        if self.sequence is not None:
            return f"{self.kind} {self.sequence}"
        if self.timestamp is not None:
            return f"{self.kind} {self.timestamp.isoformat()}"
        return self.kind


@dataclass(frozen=True, slots=True)
class StopCondition:
    """Where reading stops. With none of these set it stops at the tip (caught up, or past `started_at`)."""

    to_sequence: str | None = None  # inclusive, on the shard it belongs to
    to_time: datetime | None = None  # records that arrived after it are not read
    follow: bool = False  # never stop at the tip: wait for new records until interrupted


# --- reading one shard -------------------------------------------------------------------------------------


@dataclass(slots=True)
class ShardProgress:
    """What was read of one shard so far, for the progress bar and the summary."""

    shard_id: str
    start: StartPosition
    records: int = 0
    first_sequence: str | None = None
    last_sequence: str | None = None
    millis_behind: int | None = None
    throttled: int = 0
    expired_iterators: int = 0
    done: bool = False
    reason: str = ""  # why it stopped: "shard end", "tip", "to-sequence", "to-time", "nothing to read"


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """One GetRecords worth of a shard, as pipeline records."""

    shard_id: str
    records: list[RawRecord]
    millis_behind: int


class ShardReader:
    """Reads one shard from its start position until its stop condition, one GetRecords per `next_batch`."""

    LIMIT = 10_000  # records per GetRecords (the API's maximum)
    BACKOFF_INITIAL_SECONDS = 0.2
    BACKOFF_MAX_SECONDS = 10.0
    IDLE_SECONDS = 1.0  # at the tip with `follow`: wait this long between polls
    MIN_INTERVAL_SECONDS = 0.2  # 5 GetRecords per second per shard

    def __init__(
        self,
        kinesis: Any,
        stream: str,
        shard_id: str,
        start: StartPosition,
        stop: StopCondition,
        *,
        started_at: datetime | None = None,
        limit: int = LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.stop = stop
        self.limit = limit
        self.started_at = started_at or datetime.now(UTC)
        self.progress = ShardProgress(shard_id, start)
        self.ended = False  # reached the end of a closed shard (its children may be read next)
        self._sleep = sleep
        self._monotonic = monotonic
        self._iterator: str | None = None
        self._last_call = float("-inf")

    @property
    def shard_id(self) -> str:
        return self.progress.shard_id

    def _get_iterator(self) -> str | None:
        """A fresh iterator: after the last record read, else at the start position."""
        if self.progress.last_sequence is not None:
            position = StartPosition.after(self.progress.last_sequence)
        else:
            position = self.progress.start
        response = self._call(
            "get_shard_iterator", StreamName=self.stream, ShardId=self.shard_id, **position.iterator_arguments()
        )
        iterator = response.get("ShardIterator")
        return str(iterator) if iterator else None

    def _call(self, operation: str, **arguments: Any) -> Any:
        """One API call, throttling waited out with the shared exponential backoff, never given up on."""

        def count_throttled(state: RetryCallState) -> None:
            self.progress.throttled += 1
            log.info("%s on %s throttled; retrying in %.2f s", operation, self.shard_id, state.upcoming_sleep)

        retrying = Retrying(
            stop=stop_never,
            wait=exponential_backoff(self.BACKOFF_INITIAL_SECONDS, self.BACKOFF_MAX_SECONDS, proportional_jitter=True),
            retry=retry_if_exception(lambda error: error_code(error) == THROTTLED),
            sleep=self._sleep,
            before_sleep=count_throttled,
            reraise=True,
        )
        return retrying(getattr(self.kinesis, operation), **arguments)

    def _pace(self) -> None:
        wait_for = self._last_call + self.MIN_INTERVAL_SECONDS - self._monotonic()
        if wait_for > 0:
            self._sleep(wait_for)
        self._last_call = self._monotonic()

    def _finish(self, reason: str) -> None:
        self.progress.done = True
        self.progress.reason = reason

    def next_batch(self) -> ShardBatch | None:
        """The next batch of records (possibly empty), or None once the shard is done."""
        if self.progress.done:
            return None
        if self._iterator is None:
            self._iterator = self._get_iterator()
            if self._iterator is None:
                self.ended = True
                self._finish("shard end")
                return None
        self._pace()
        try:
            response = self._call("get_records", ShardIterator=self._iterator, Limit=self.limit)
        except Exception as error:
            if error_code(error) != EXPIRED_ITERATOR:
                raise
            self.progress.expired_iterators += 1
            self._iterator = None
            return ShardBatch(self.shard_id, [], self.progress.millis_behind or 0)
        millis_behind = int(response.get("MillisBehindLatest", 0))
        self.progress.millis_behind = millis_behind
        records = self._take(response.get("Records", []))
        next_iterator = response.get("NextShardIterator")
        if self.progress.done:
            pass
        elif not next_iterator:
            self.ended = True
            self._finish("shard end")
        else:
            self._iterator = str(next_iterator)
            if not response.get("Records") and millis_behind == 0:
                self._at_tip()
        return ShardBatch(self.shard_id, records, millis_behind)

    def _at_tip(self) -> None:
        """Caught up: stop, or wait for more when following (or when `to_time` is still to come)."""
        waiting_for_time = self.stop.to_time is not None and self.stop.to_time > datetime.now(UTC)
        if not self.stop.follow and not waiting_for_time:
            self._finish("tip")
            return
        self._sleep(self.IDLE_SECONDS)

    def _take(self, records: Sequence[Mapping[str, Any]]) -> list[RawRecord]:
        """The records within the stop condition, as pipeline records; ends the shard past it."""
        taken: list[RawRecord] = []
        to_time = self.stop.to_time
        if to_time is None and not self.stop.follow:
            to_time = self.started_at  # "up to the tip" is the tip as of the replay's start
        to_sequence = int(self.stop.to_sequence) if self.stop.to_sequence is not None else None
        for record in records:
            sequence = str(record["SequenceNumber"])
            arrival = record.get("ApproximateArrivalTimestamp")
            if to_time is not None and isinstance(arrival, datetime) and arrival > to_time:
                self._finish("to-time" if self.stop.to_time is not None else "tip")
                break
            if to_sequence is not None and int(sequence) > to_sequence:
                self._finish("to-sequence")
                break
            taken.append(
                RawRecord(
                    data=bytes(record["Data"]),
                    position=Position(self.shard_id, sequence),
                    partition_key=record.get("PartitionKey"),
                    arrival_time=arrival if isinstance(arrival, datetime) else None,
                )
            )
            if to_sequence is not None and int(sequence) == to_sequence:
                self._finish("to-sequence")
                break
        if taken:
            self.progress.records += len(taken)
            self.progress.first_sequence = self.progress.first_sequence or taken[0].position.sequence
            self.progress.last_sequence = taken[-1].position.sequence
        return taken


# --- reading a stream --------------------------------------------------------------------------------------


StartFor = Callable[[ShardInfo], StartPosition | None]
"""The start position of a shard, or None when there is nothing of it to read (its checkpoint is SHARD_END)."""


def fixed_start(root: str | None, first: StartPosition, others: StartPosition) -> StartFor:
    """`first` for the shard `root` (or for every shard when root is None), `others` for its descendants."""

    def start_for(shard: ShardInfo) -> StartPosition:
        return first if root is None or shard.shard_id == root else others

    return start_for


@dataclass(slots=True)
class StreamReplay:
    """Reads a set of shards and their descendants, each from `start_for(shard)`, in parent-before-child order.

    `roots` are the shards asked for; a child of a shard that ended is added when all of its parents that are
    part of the replay have ended. Iterating yields batches as the shard reads complete.
    """

    kinesis: Any
    stream: str
    roots: Sequence[str]
    start_for: StartFor
    stop: StopCondition = field(default_factory=StopCondition)
    workers: int = 4
    limit: int = ShardReader.LIMIT
    sleep: Callable[[float], None] = time.sleep
    follow_children: bool = True
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    readers: dict[str, ShardReader] = field(default_factory=dict)

    def _reader(self, shard: ShardInfo) -> ShardReader | None:
        start = self.start_for(shard)
        reader = ShardReader(
            self.kinesis,
            self.stream,
            shard.shard_id,
            start or StartPosition("SHARD_END"),
            self.stop,
            started_at=self.started_at,
            limit=self.limit,
            sleep=self.sleep,
        )
        self.readers[shard.shard_id] = reader
        if start is None:  # already read to its end by the application: go on with its children
            reader.ended = True
            reader.progress.done = True
            reader.progress.reason = "nothing to read"
            return None
        return reader

    def __iter__(self) -> Iterator[ShardBatch]:
        shards = {shard.shard_id: shard for shard in list_shards(self.kinesis, self.stream)}
        missing = [shard_id for shard_id in self.roots if shard_id not in shards]
        if missing:
            raise ValueError(f"stream {self.stream!r} has no shard {', '.join(missing)}")
        in_replay = set(self.roots)
        ready = [shards[shard_id] for shard_id in self.roots if not (set(shards[shard_id].parents) & in_replay)]
        waiting = [shard_id for shard_id in self.roots if shards[shard_id] not in ready]
        with ThreadPoolExecutor(max(1, self.workers), thread_name_prefix="replay") as pool:
            running: dict[Future[ShardBatch | None], ShardReader] = {}

            def launch(shard: ShardInfo) -> None:
                reader = self._reader(shard)
                if reader is None:
                    finished.append(shard.shard_id)
                else:
                    running[pool.submit(reader.next_batch)] = reader

            finished: list[str] = []
            for shard in ready:
                launch(shard)
            while running or finished:
                while finished:  # a shard ended: start whatever was only waiting for it
                    ended_id = finished.pop()
                    ended_reader = self.readers[ended_id]
                    if self.follow_children and ended_reader.ended:
                        shards = self._refresh(shards, ended_id)
                        for child in children_of(list(shards.values()), ended_id):
                            if child.shard_id not in in_replay:
                                in_replay.add(child.shard_id)
                                waiting.append(child.shard_id)
                    for shard_id in list(waiting):
                        parents = set(shards[shard_id].parents) & in_replay
                        if all(p in self.readers and self.readers[p].progress.done for p in parents):
                            waiting.remove(shard_id)
                            launch(shards[shard_id])
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    reader = running.pop(future)
                    batch = future.result()  # an unexpected AWS error ends the replay, loudly
                    if batch is not None:
                        yield batch
                    if reader.progress.done:
                        finished.append(reader.shard_id)
                    else:
                        running[pool.submit(reader.next_batch)] = reader
            for shard_id in waiting:  # parents never ended (a stop condition came first)
                log.info("not reading %s: its parents were not read to their end", shard_id)

    def _refresh(self, shards: dict[str, ShardInfo], ended_id: str) -> dict[str, ShardInfo]:
        """Children appear in ListShards when the reshard happens; list again if we know of none yet."""
        if children_of(list(shards.values()), ended_id):
            return shards
        return {shard.shard_id: shard for shard in list_shards(self.kinesis, self.stream)}

    @property
    def progress(self) -> list[ShardProgress]:
        return [reader.progress for reader in self.readers.values()]


# --- lag of a checkpoint -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LagProbe:
    """How far a position is behind the tip: Kinesis's MillisBehindLatest, and the age of the next record."""

    millis_behind: int | None
    next_record_age_ms: int | None  # None: no record after the position (caught up)
    next_sequence: str | None
    error: str = ""

    @property
    def caught_up(self) -> bool:
        return not self.error and self.next_sequence is None


def probe_lag(
    kinesis: Any, stream: str, shard_id: str, start: StartPosition, now: datetime | None = None, tries: int = 3
) -> LagProbe:
    """One GetShardIterator and GetRecords(Limit=1) (a few more if the shard is sparse), never a write.

    A throttled or failed call gives a probe with `error` set rather than raising: status shows the rest.
    """
    now = now or datetime.now(UTC)
    try:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **start.iterator_arguments()).get(
            "ShardIterator"
        )
        millis_behind: int | None = None
        for _ in range(tries):
            if not iterator:
                break
            response = kinesis.get_records(ShardIterator=iterator, Limit=1)
            millis_behind = int(response.get("MillisBehindLatest", 0))
            records = response.get("Records", [])
            if records:
                arrival = records[0].get("ApproximateArrivalTimestamp")
                age = int((now - arrival).total_seconds() * 1000) if isinstance(arrival, datetime) else None
                return LagProbe(millis_behind, max(age, 0) if age is not None else None, records[0]["SequenceNumber"])
            if millis_behind == 0:
                break
            iterator = response.get("NextShardIterator")
        return LagProbe(millis_behind, None, None)
    except Exception as error:
        code = error_code(error)
        if not code:
            raise
        return LagProbe(None, None, None, error=code)


# --- times as people write them ----------------------------------------------------------------------------

_UNITS: Final = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hour|d|day)s?\s+ago\s*$", re.IGNORECASE)


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """'2h ago', '30 min ago', '1d ago', or ISO 8601 (a time without an offset is UTC), as an aware datetime.

    Raises:
        ValueError: neither form.
    """
    found = _AGO.match(text)
    if found:
        seconds = float(found.group(1)) * _UNITS[found.group(2).lower()]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2026-11-27T01:00:00Z) or 'N[s|m|h|d] ago'") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- feeding the pipeline ----------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplayTotals:
    """Counts for the progress bar and the summary."""

    records: int = 0
    events: int = 0
    malformed: int = 0
    control_messages: int = 0
    matches: Counter[str] = field(default_factory=Counter)
    rule_errors: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    duplicates: int = 0
    failed: list[str] = field(default_factory=list)
    parked: int = 0
    millis_behind: int = 0
    seconds: float = 0.0
    pipeline_seconds: float = 0.0
    per_shard_matches: Counter[str] = field(default_factory=Counter)
    per_shard_events: Counter[str] = field(default_factory=Counter)

    def add(self, shard_id: str, records: int, outcome: BatchOutcome) -> None:
        self.records += records
        decoded, matched = outcome.decoded, outcome.matched
        self.events += decoded.event_count
        self.per_shard_events[shard_id] += decoded.event_count
        self.malformed += len(decoded.malformed)
        self.control_messages += decoded.control_messages
        self.matches.update(match.rule_name for match in matched.matches)
        self.per_shard_matches[shard_id] += len(matched.matches)
        self.rule_errors.update(error.rule_name for error in matched.errors)
        self.duplicates += outcome.duplicates
        self.parked += len(outcome.parked)
        for result in outcome.deliveries:
            if result.delivered:
                self.delivered += 1
        parked = {id(result) for result in outcome.parked}
        for result in outcome.failed:
            note = " (parked as a dead letter)" if id(result) in parked else ""
            self.failed.append(f"{result.alert.rule_name} → {result.destination_id}: {result.reason}{note}")

    @property
    def unparked_failures(self) -> int:
        return len(self.failed) - self.parked

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def run_replay(
    pipeline: Pipeline,
    replay: StreamReplay,
    *,
    on_batch: Callable[[ReplayTotals], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ReplayTotals:
    """Feed every batch of `replay` through `pipeline`, calling `on_batch` with the totals after each;
    Ctrl-C ends a replay cleanly (the totals so far)."""
    totals = ReplayTotals()
    started = clock()
    try:
        for batch in replay:
            if batch.records:
                before = clock()
                outcome = pipeline.process_records(batch.records)
                totals.pipeline_seconds += clock() - before
                totals.add(batch.shard_id, len(batch.records), outcome)
            totals.millis_behind = max(
                (p.millis_behind or 0 for p in replay.progress if not p.done), default=batch.millis_behind
            )
            if on_batch is not None:
                on_batch(totals)
        flushed = pipeline.flush()
        totals.add("-", 0, flushed)
    except KeyboardInterrupt:
        pass
    totals.seconds = clock() - started
    return totals
