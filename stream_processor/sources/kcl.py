"""The KCL record processor: the adapter between amazon_kclpy's callbacks and the pipeline, for one shard.

The daemon speaks JSON lines on the process's stdin/stdout (amazon_kclpy handles the protocol), so stdout is
never ours to print on: every log line goes to stderr, tagged with the shard. The processor is a thin adapter:
kclpy records become RawRecords, the pipeline does decode → match → deliver, and the shard is checkpointed
at the batch's last record only when the outcome is complete.

What must never happen is that kclpy answers "status" for a batch we did not finish: the daemon would treat
it as done and the records would be lost. kclpy does exactly that when `process_records` raises (it prints
the traceback and carries on), so nothing may escape it: a failure we cannot handle ends this process
without a checkpoint, and the KCL replays from the last checkpoint.

The process the daemon starts, which builds the pipeline and runs this processor, is `kcl.processor`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3.processor import RecordProcessorBase
from tenacity import RetryCallState, Retrying, retry_if_exception

from stream_processor.backoff import exponential_backoff
from stream_processor.gc_tuning import PeriodicCollector
from stream_processor.model import BatchOutcome, Config, Position, RawRecord

if TYPE_CHECKING:
    from stream_processor.metrics import ShardMetrics
    from stream_processor.reload import ConfigWatcher

log = logging.getLogger(__name__)

THROTTLING = "ThrottlingException"
SHUTDOWN = "ShutdownException"
INVALID_STATE = "InvalidStateException"

# Exit codes of a processor that stops on purpose (the daemon then exits too; see `consume`).
EXIT_UNEXPECTED_ERROR = 70
EXIT_DELIVERY_FAILED = 75
EXIT_CHECKPOINT_FAILED = 76

ExitFunction = Callable[[int], NoReturn]


class BatchPipeline(Protocol):
    """What the processor needs of `stream_processor.pipeline.Pipeline` (a fake in unit tests)."""

    def process_records(self, records: Sequence[RawRecord]) -> BatchOutcome: ...

    def flush(self) -> BatchOutcome: ...

    def reconfigure(self, config: Config) -> None: ...


class Checkpointer(Protocol):
    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None: ...


class ShardLogTag(logging.Filter):
    """Adds the shard id to every log record of this process (the pipeline's loggers included)."""

    def __init__(self) -> None:
        super().__init__()
        self.shard_id = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.shard = self.shard_id
        return True


SHARD_TAG = ShardLogTag()
LOG_FORMAT = "%(asctime)s %(levelname)s [%(shard)s] %(name)s: %(message)s"


def exit_now(code: int) -> NoReturn:
    """End the process at once, without answering the daemon.

    os._exit, not sys.exit: SystemExit can be caught on its way up (by code under the pipeline, or by a
    thread pool that then waits for its workers), and interpreter shutdown runs atexit hooks and joins
    non-daemon threads (an HTTP retry loop could keep us alive while the daemon waits). What must not happen
    is any further write on stdout; logs are flushed first so the reason reaches the daemon's log.
    """
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


def to_raw_record(record: Any, shard_id: str) -> RawRecord:
    """A kclpy `messages.Record` as the pipeline's RawRecord (`binary_data` is the base64-decoded payload)."""
    arrival = datetime.fromtimestamp(record.timestamp_millis / 1000.0, tz=UTC)
    return RawRecord(
        data=record.binary_data,
        position=Position(shard_id, record.sequence_number, record.sub_sequence_number),
        partition_key=record.partition_key,
        arrival_time=arrival,
    )


def _checkpoint_error_name(error: BaseException | None) -> str | None:
    return str(error.value) if isinstance(error, CheckpointError) else None


def _retryable_checkpoint_error(error: BaseException) -> bool:
    name = _checkpoint_error_name(error)
    return name is not None and name not in (SHUTDOWN, INVALID_STATE)


class KclRecordProcessor(RecordProcessorBase):  # type: ignore[misc]  # kclpy has no type hints
    """One shard's processor: decode → match → deliver per batch, checkpoint only what is complete."""

    # Throttling is DynamoDB pushing back: wait it out for longer. Other errors get a few tries, then we stop.
    THROTTLED_CHECKPOINT_ATTEMPTS = 12
    CHECKPOINT_ATTEMPTS = 4
    CHECKPOINT_BACKOFF_INITIAL_SECONDS = 0.2
    CHECKPOINT_BACKOFF_MAX_SECONDS = 10.0
    FAILURES_LOGGED = 5
    SUMMARY_SECONDS = 60.0

    def __init__(
        self,
        pipeline: BatchPipeline,
        *,
        exit_process: ExitFunction = exit_now,
        sleep: Callable[[float], None] = time.sleep,
        shard_tag: ShardLogTag = SHARD_TAG,
        watcher: ConfigWatcher | None = None,
        metrics: ShardMetrics | None = None,
        collector: PeriodicCollector | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.collector = collector or PeriodicCollector()
        self.watcher = watcher
        self.metrics = metrics
        self.shard_id = "-"
        self._exit = exit_process
        self._sleep = sleep
        self._shard_tag = shard_tag
        self._processed: Position | None = None  # the last record of the last complete batch
        self._stopped = False  # the daemon said ShutdownException: no more checkpoints
        self._clock = time.monotonic
        self._summary_at = self._clock()
        self._totals: Counter[str] = Counter()

    # --- the KCL's calls --------------------------------------------------------------------------------

    def initialize(self, initialize_input: Any) -> None:
        try:
            self.shard_id = str(initialize_input.shard_id)
            self._shard_tag.shard_id = self.shard_id
            if self.metrics is not None:
                self.metrics.hold(self.shard_id)
            log.info("holding shard %s (resuming after %s)", self.shard_id, initialize_input.sequence_number)
        except Exception:
            self._fail("initialize failed", EXIT_UNEXPECTED_ERROR)

    def process_records(self, process_records_input: Any) -> None:
        try:
            self._reload_config()
            self._process_batch(
                process_records_input.records,
                process_records_input.checkpointer,
                getattr(process_records_input, "millis_behind_latest", None),
            )
            self.collector.collect_if_due()  # the worker's GC is lazy: see gc_tuning
        except Exception:
            # Returning normally would make kclpy acknowledge the batch: records lost. Stop instead.
            self._fail("unexpected error while processing a batch", EXIT_UNEXPECTED_ERROR)

    def lease_lost(self, lease_lost_input: Any) -> None:
        # Another worker holds the shard now; a checkpoint from us would be refused (and would be wrong).
        self._stopped = True
        log.info("lost the lease on shard %s: not checkpointing", self.shard_id)
        self._final_metrics()

    def shard_ended(self, shard_ended_input: Any) -> None:
        # Required: until the parent is checkpointed at SHARD_END the KCL does not start its children.
        try:
            flushed = self._flush_digests()
            self._final_metrics()
        except Exception:
            self._fail("unexpected error at shard end", EXIT_UNEXPECTED_ERROR)
        if not flushed:
            # The KCL calls shard_ended again after a restart: until then, the shard's end stays unrecorded.
            self._fail("pending storm digests could be neither delivered nor parked at shard end", EXIT_DELIVERY_FAILED)
        try:
            log.info("shard %s ended: checkpointing at its end", self.shard_id)
            self._checkpoint(shard_ended_input.checkpointer, None, None)
        except Exception:
            self._fail("unexpected error at shard end", EXIT_UNEXPECTED_ERROR)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        try:
            flushed = self._flush_digests()
            self._final_metrics()
            if not flushed:
                log.error("shutdown requested on shard %s: no checkpoint after a failed digest flush", self.shard_id)
                return
            if self._processed is None:
                log.info("shutdown requested on shard %s: nothing processed, nothing to checkpoint", self.shard_id)
                return
            log.info("shutdown requested on shard %s: checkpointing at %s", self.shard_id, self._processed)
            self._checkpoint(
                shutdown_requested_input.checkpointer, self._processed.sequence, self._processed.sub_sequence
            )
        except Exception:
            self._fail("unexpected error on shutdown request", EXIT_UNEXPECTED_ERROR)

    # --- one batch ---------------------------------------------------------------------------------------

    def _reload_config(self) -> None:
        """Between batches: swap in a changed rule file (a bad one is refused and logged by the watcher)."""
        if self.watcher is None:
            return
        rejected = self.watcher.rejections
        applied = self.watcher.apply(self.pipeline)
        if self.metrics is not None and (applied or self.watcher.rejections != rejected):
            self.metrics.reload(applied)

    def _final_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.maybe_log(force=True)

    def _process_batch(
        self, kcl_records: Sequence[Any], checkpointer: Checkpointer, millis_behind: int | None = None
    ) -> None:
        records = [to_raw_record(record, self.shard_id) for record in kcl_records]
        started = time.perf_counter()
        outcome = self.pipeline.process_records(records)
        if self.metrics is not None:
            seconds = time.perf_counter() - started if records else None
            self.metrics.observe(outcome, records=len(records), seconds=seconds, millis_behind=millis_behind)
        if not records:  # an idle poll: the pipeline sent the digests of storm windows that closed
            if not outcome.complete:
                self.on_incomplete_batch(outcome)
            return
        self._log_outcome(records, outcome)
        if not outcome.complete:
            self.on_incomplete_batch(outcome)
            return
        last = records[-1].position
        self._processed = last
        self._checkpoint(checkpointer, last.sequence, last.sub_sequence)

    def _flush_digests(self) -> bool:
        """Before the shard is let go: send the digests still pending (or park them); False if some are neither."""
        outcome = self.pipeline.flush()
        if not outcome.complete:
            log.error("pending storm digests could be neither delivered nor parked on shard %s", self.shard_id)
        return outcome.complete

    def on_incomplete_batch(self, outcome: BatchOutcome) -> None:
        """Something of the batch is neither delivered nor parked as a dead letter: do not checkpoint.

        With a dead-letter store this happens only when parking itself failed (or, without one, when a
        delivery failed for good). The process stops, so the KCL replays from the last checkpoint (on this
        worker after a restart, or on another). Alerts already delivered are not sent twice when a dedupe
        ledger is configured.
        """
        failed = list(outcome.failed)
        for result in failed[: self.FAILURES_LOGGED]:
            log.error(
                "delivery failed for good: rule %r, event %s, destination %r after %d attempt(s): %s",
                result.alert.rule_name,
                result.alert.event.event_id or result.alert.event.position,
                result.destination_id,
                result.attempts,
                result.reason,
            )
        if len(failed) > self.FAILURES_LOGGED:
            log.error("... and %d more failed deliveries", len(failed) - self.FAILURES_LOGGED)
        log.error("stopping without checkpoint on shard %s: the KCL replays from the last checkpoint", self.shard_id)
        self._exit(EXIT_DELIVERY_FAILED)

    def _log_outcome(self, records: Sequence[RawRecord], outcome: BatchOutcome) -> None:
        decoded = outcome.decoded
        for malformed in decoded.malformed[: self.FAILURES_LOGGED]:
            log.warning("malformed input at %s (%s): %s", malformed.position, malformed.kind, malformed.reason)
        alerts = len(outcome.alerts)
        # A shard delivers a batch every fraction of a second: one line each only when it says something.
        log.log(
            logging.INFO if alerts or decoded.malformed else logging.DEBUG,
            "batch of %d record(s) up to %s: %d event(s), %d malformed, %d control, %d alert(s)",
            len(records),
            records[-1].position.sequence,
            decoded.event_count,
            len(decoded.malformed),
            decoded.control_messages,
            alerts,
        )
        totals = self._totals
        totals.update(records=len(records), events=decoded.event_count, malformed=len(decoded.malformed), alerts=alerts)
        now = self._clock()
        if now - self._summary_at >= self.SUMMARY_SECONDS:
            log.info(
                "shard %s, last %.0f s: %d record(s), %d event(s), %d malformed, %d alert(s)",
                self.shard_id,
                now - self._summary_at,
                totals["records"],
                totals["events"],
                totals["malformed"],
                totals["alerts"],
            )
            totals.clear()
            self._summary_at = now

    # --- checkpoints ---------------------------------------------------------------------------------------

    def _checkpoint(self, checkpointer: Checkpointer, sequence: str | None, sub_sequence: int | None) -> bool:
        """Checkpoint, retrying what is worth it; False when the daemon is shutting this processor down.

        Stops the process on InvalidStateException or when retries run out.
        """
        if self._stopped:
            log.info("not checkpointing shard %s at %s: shutting down", self.shard_id, sequence or "SHARD_END")
            return False
        retrying = Retrying(
            retry=retry_if_exception(_retryable_checkpoint_error),
            stop=self._checkpoint_attempts_exhausted,
            wait=exponential_backoff(
                self.CHECKPOINT_BACKOFF_INITIAL_SECONDS,
                self.CHECKPOINT_BACKOFF_MAX_SECONDS,
                jitter=self.CHECKPOINT_BACKOFF_INITIAL_SECONDS,
            ),
            sleep=self._sleep,
            before_sleep=self._log_checkpoint_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    checkpointer.checkpoint(sequence, sub_sequence)
        except CheckpointError as error:
            if error.value == SHUTDOWN:
                self._stopped = True
                log.info("checkpoint on shard %s refused: shutting down (ShutdownException)", self.shard_id)
                return False
            log.error("checkpoint on shard %s at %s failed: %s", self.shard_id, sequence or "SHARD_END", error.value)
            self._exit(EXIT_CHECKPOINT_FAILED)
        log.debug("checkpointed shard %s at %s", self.shard_id, sequence or "SHARD_END")
        return True

    def _checkpoint_attempts_exhausted(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome is not None else None
        limit = (
            self.THROTTLED_CHECKPOINT_ATTEMPTS
            if _checkpoint_error_name(error) == THROTTLING
            else (self.CHECKPOINT_ATTEMPTS)
        )
        return state.attempt_number >= limit

    def _log_checkpoint_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "checkpoint on shard %s failed (%s), attempt %d: retrying",
            self.shard_id,
            _checkpoint_error_name(error) or error,
            state.attempt_number,
        )

    def _fail(self, what: str, code: int) -> NoReturn:
        log.exception("%s on shard %s: stopping without checkpoint, the KCL will replay", what, self.shard_id)
        self._exit(code)
