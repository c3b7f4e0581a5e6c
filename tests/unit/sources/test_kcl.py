"""The KCL record processor, driven through kclpy's protocol on in-memory streams (no daemon, no Java).

Each test writes what the MultiLangDaemon would send (one JSON message a line, checkpoint answers included)
and reads what the processor answered: checkpoint requests and status lines, or nothing when it stopped.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import weakref
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import pytest
from amazon_kclpy import kcl

from stream_processor.config import Config, DestinationConfig, Rule
from stream_processor.decode import encode_subscription_record
from stream_processor.gc_tuning import PeriodicCollector, tune_for_throughput
from stream_processor.model import (
    Alert,
    CloudTrailEvent,
    DecodeResult,
    DeliveryResult,
    MatchResult,
    Position,
    RawRecord,
)
from stream_processor.pipeline import BatchOutcome, Pipeline
from stream_processor.sources.kcl import (
    EXIT_CHECKPOINT_FAILED,
    EXIT_DELIVERY_FAILED,
    EXIT_UNEXPECTED_ERROR,
    KclRecordProcessor,
    ShardLogTag,
)

SHARD = "shardId-000000000001"
ARRIVAL_MS = 1_722_502_800_123


class ProcessExited(SystemExit):
    """What the injected exit raises; kclpy lets SystemExit through, as os._exit would end the process."""


def fake_exit(code: int) -> NoReturn:
    raise ProcessExited(code)


class FakePipeline:
    def __init__(
        self,
        outcomes: Sequence[BatchOutcome] | None = None,
        error: Exception | None = None,
        flush_outcome: BatchOutcome | None = None,
    ) -> None:
        self.batches: list[list[RawRecord]] = []
        self.flushes = 0
        self._outcomes = list(outcomes or [])
        self._error = error
        self._flush_outcome = flush_outcome

    def process_records(self, records: Sequence[RawRecord]) -> BatchOutcome:
        self.batches.append(list(records))
        if self._error is not None:
            raise self._error
        if self._outcomes:
            return self._outcomes.pop(0)
        return BatchOutcome(DecodeResult(), MatchResult())

    def flush(self) -> BatchOutcome:
        self.flushes += 1
        return self._flush_outcome or BatchOutcome(DecodeResult(), MatchResult())


def failed_outcome() -> BatchOutcome:
    event = CloudTrailEvent(b"{}", {"eventID": "e-1", "eventName": "CreateAccessKey"}, Position(SHARD, "2"))
    alert = Alert("Create AccessKey", "", True, event)
    delivery = DeliveryResult(alert, "Slack Audit", delivered=False, attempts=5, reason="HTTP 500")
    return BatchOutcome(DecodeResult(), MatchResult(), alerts=[alert], deliveries=[delivery])


# --- what the daemon sends ---------------------------------------------------------------------------------


def initialize(sequence: str = "TRIM_HORIZON") -> dict[str, Any]:
    return {"action": "initialize", "shardId": SHARD, "sequenceNumber": sequence, "subSequenceNumber": 0}


def record(data: bytes, sequence: str, sub_sequence: int = 0) -> dict[str, Any]:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "partitionKey": f"pk-{sequence}",
        "sequenceNumber": sequence,
        "subSequenceNumber": sub_sequence,
        "approximateArrivalTimestamp": ARRIVAL_MS,
    }


def process_records(*records: dict[str, Any]) -> dict[str, Any]:
    return {"action": "processRecords", "records": list(records), "millisBehindLatest": 0}


def checkpoint_answer(sequence: str | None, error: str | None = None) -> dict[str, Any]:
    return {"action": "checkpoint", "sequenceNumber": sequence, "subSequenceNumber": 0, "error": error}


def action(name: str) -> dict[str, Any]:
    return {"action": name}


class Run:
    """One processor run over the given daemon messages."""

    def __init__(self, processor: KclRecordProcessor, messages: Sequence[dict[str, Any]]) -> None:
        self.output = io.StringIO()
        self.errors = io.StringIO()
        self.exit_code: int | None = None
        stdin = io.StringIO("".join(json.dumps(message) + "\n" for message in messages))
        try:
            kcl.KCLProcess(processor, stdin, self.output, self.errors).run()
        except ProcessExited as exited:
            self.exit_code = int(exited.code)  # type: ignore[arg-type]

    @property
    def answers(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output.getvalue().splitlines() if line.strip()]

    @property
    def checkpoints(self) -> list[tuple[str | None, int | None]]:
        return [(a["sequenceNumber"], a["subSequenceNumber"]) for a in self.answers if a["action"] == "checkpoint"]

    @property
    def statuses(self) -> list[str]:
        return [a["responseFor"] for a in self.answers if a["action"] == "status"]


def make_processor(pipeline: Any) -> KclRecordProcessor:
    return KclRecordProcessor(pipeline, exit_process=fake_exit, sleep=lambda _: None, shard_tag=ShardLogTag())


# --- batches -----------------------------------------------------------------------------------------------


def test_complete_batch_is_checkpointed_at_its_last_record_before_the_status() -> None:
    pipeline = FakePipeline()
    run = Run(
        make_processor(pipeline),
        [
            initialize(),
            process_records(record(b"first", "100"), record(b"second", "105", sub_sequence=3)),
            checkpoint_answer("105"),
        ],
    )
    assert run.exit_code is None
    assert run.checkpoints == [("105", 3)]
    assert [a["action"] for a in run.answers] == ["status", "checkpoint", "status"]
    assert run.statuses == ["initialize", "processRecords"]


def test_records_reach_the_pipeline_decoded_with_their_shard_position() -> None:
    pipeline = FakePipeline()
    Run(
        make_processor(pipeline),
        [initialize(), process_records(record(b"\x1f\x8b payload", "100", 2)), checkpoint_answer("100")],
    )
    [[raw]] = pipeline.batches
    assert raw.data == b"\x1f\x8b payload"
    assert raw.position == Position(SHARD, "100", 2)
    assert raw.partition_key == "pk-100"
    assert raw.arrival_time == datetime.fromtimestamp(ARRIVAL_MS / 1000, tz=UTC)


def test_empty_batch_sends_due_digests_but_is_not_checkpointed() -> None:
    pipeline = FakePipeline()
    run = Run(make_processor(pipeline), [initialize(), process_records()])
    assert pipeline.batches == [[]]  # the idle poll lets the pipeline send digests of closed storm windows
    assert run.checkpoints == []
    assert run.statuses == ["initialize", "processRecords"]


def test_a_digest_that_can_be_neither_sent_nor_parked_on_an_idle_poll_stops_the_process() -> None:
    pipeline = FakePipeline([failed_outcome()])
    run = Run(make_processor(pipeline), [initialize(), process_records()])
    assert run.exit_code == EXIT_DELIVERY_FAILED
    assert run.checkpoints == []


def test_pending_digests_are_flushed_before_a_shutdown_checkpoint() -> None:
    pipeline = FakePipeline()
    run = Run(
        make_processor(pipeline),
        [
            initialize(),
            process_records(record(b"x", "100")),
            checkpoint_answer("100"),
            action("shutdownRequested"),
            checkpoint_answer("100"),
        ],
    )
    assert pipeline.flushes == 1
    assert run.checkpoints == [("100", 0), ("100", 0)]


def test_failed_delivery_stops_the_process_without_checkpoint_or_status() -> None:
    pipeline = FakePipeline([failed_outcome()])
    run = Run(make_processor(pipeline), [initialize(), process_records(record(b"x", "100")), checkpoint_answer("100")])
    assert run.exit_code == EXIT_DELIVERY_FAILED
    assert run.checkpoints == []
    assert run.statuses == ["initialize"]  # never "processRecords": the daemon must not count the batch as done


def test_unexpected_error_in_the_pipeline_stops_the_process_without_checkpoint_or_status() -> None:
    pipeline = FakePipeline(error=RuntimeError("dedupe store unreachable"))
    run = Run(make_processor(pipeline), [initialize(), process_records(record(b"x", "100"))])
    assert run.exit_code == EXIT_UNEXPECTED_ERROR
    assert run.checkpoints == []
    assert run.statuses == ["initialize"]


def test_a_later_failure_keeps_the_earlier_checkpoint_only() -> None:
    pipeline = FakePipeline([BatchOutcome(DecodeResult(), MatchResult()), failed_outcome()])
    run = Run(
        make_processor(pipeline),
        [
            initialize(),
            process_records(record(b"a", "100")),
            checkpoint_answer("100"),
            process_records(record(b"b", "200")),
        ],
    )
    assert run.exit_code == EXIT_DELIVERY_FAILED
    assert run.checkpoints == [("100", 0)]


# --- checkpoint errors -------------------------------------------------------------------------------------


def test_throttled_checkpoint_is_retried_until_it_lands() -> None:
    run = Run(
        make_processor(FakePipeline()),
        [
            initialize(),
            process_records(record(b"a", "100")),
            checkpoint_answer(None, "ThrottlingException"),
            checkpoint_answer(None, "ThrottlingException"),
            checkpoint_answer("100"),
        ],
    )
    assert run.exit_code is None
    assert run.checkpoints == [("100", 0)] * 3
    assert run.statuses == ["initialize", "processRecords"]


def test_shutdown_exception_stops_checkpointing_without_stopping_the_process() -> None:
    run = Run(
        make_processor(FakePipeline()),
        [
            initialize(),
            process_records(record(b"a", "100")),
            checkpoint_answer(None, "ShutdownException"),
            action("shutdownRequested"),
        ],
    )
    assert run.exit_code is None
    assert run.checkpoints == [("100", 0)]  # one try, and none on the shutdown request
    assert run.statuses == ["initialize", "processRecords", "shutdownRequested"]


def test_invalid_state_exits_non_zero_at_once() -> None:
    run = Run(
        make_processor(FakePipeline()),
        [initialize(), process_records(record(b"a", "100")), checkpoint_answer(None, "InvalidStateException")],
    )
    assert run.exit_code == EXIT_CHECKPOINT_FAILED
    assert run.checkpoints == [("100", 0)]
    assert run.statuses == ["initialize"]


def test_other_checkpoint_errors_are_retried_a_few_times_then_exit_non_zero() -> None:
    attempts = KclRecordProcessor.CHECKPOINT_ATTEMPTS
    run = Run(
        make_processor(FakePipeline()),
        [initialize(), process_records(record(b"a", "100"))]
        + [checkpoint_answer(None, "KinesisClientLibDependencyException")] * attempts,
    )
    assert run.exit_code == EXIT_CHECKPOINT_FAILED
    assert len(run.checkpoints) == attempts
    assert run.statuses == ["initialize"]


# --- lease lifecycle ---------------------------------------------------------------------------------------


def test_lease_lost_does_not_checkpoint() -> None:
    run = Run(
        make_processor(FakePipeline()),
        [initialize(), process_records(record(b"a", "100")), checkpoint_answer("100"), action("leaseLost")],
    )
    assert run.checkpoints == [("100", 0)]  # the batch's, none for the lost lease
    assert run.statuses == ["initialize", "processRecords", "leaseLost"]


def test_shard_end_is_checkpointed_at_the_end_of_the_shard() -> None:
    run = Run(make_processor(FakePipeline()), [initialize(), action("shardEnded"), checkpoint_answer("SHARD_END")])
    assert run.exit_code is None
    assert run.checkpoints == [(None, None)]  # no sequence number: the daemon checkpoints at SHARD_END
    assert run.statuses == ["initialize", "shardEnded"]


def test_shutdown_request_checkpoints_the_last_complete_batch() -> None:
    run = Run(
        make_processor(FakePipeline()),
        [
            initialize(),
            process_records(record(b"a", "100"), record(b"b", "150")),
            checkpoint_answer("150"),
            action("shutdownRequested"),
            checkpoint_answer("150"),
        ],
    )
    assert run.checkpoints == [("150", 0), ("150", 0)]
    assert run.statuses == ["initialize", "processRecords", "shutdownRequested"]


def test_shard_end_is_not_checkpointed_after_a_digest_flush_that_failed() -> None:
    # The digest is the only copy of the alerts it folded: the shard's end waits until it is sent or parked.
    pipeline = FakePipeline(flush_outcome=failed_outcome())
    run = Run(make_processor(pipeline), [initialize(), action("shardEnded"), checkpoint_answer("SHARD_END")])
    assert run.exit_code == EXIT_DELIVERY_FAILED
    assert run.checkpoints == []


def test_shutdown_is_not_checkpointed_after_a_digest_flush_that_failed() -> None:
    pipeline = FakePipeline(flush_outcome=failed_outcome())
    run = Run(
        make_processor(pipeline),
        [initialize(), process_records(record(b"a", "100")), checkpoint_answer("100"), action("shutdownRequested")],
    )
    assert run.checkpoints == [("100", 0)]  # the batch's own, none at shutdown
    assert run.statuses == ["initialize", "processRecords", "shutdownRequested"]


def test_shutdown_request_before_any_batch_does_not_checkpoint() -> None:
    run = Run(make_processor(FakePipeline()), [initialize("49000"), action("shutdownRequested")])
    assert run.checkpoints == []
    assert run.statuses == ["initialize", "shutdownRequested"]


# --- with the real pipeline (dry run) ----------------------------------------------------------------------


def test_real_pipeline_matches_subscription_records_and_checkpoints() -> None:
    config = Config(
        rules=(Rule("Create AccessKey", 'select(.eventName == "CreateAccessKey")', "", ("Slack Audit",), 1),),
        destinations=(DestinationConfig("Slack Audit", "slack_webhook", {"webhook_url": "http://127.0.0.1:9/x"}),),
    )
    alerts: list[Alert] = []
    pipeline = Pipeline.build(config, send=False, alert_sink=alerts.append)
    events = [
        {
            "eventVersion": "1.08",
            "eventID": f"id-{n}",
            "eventName": name,
            "eventSource": "iam.amazonaws.com",
            "eventTime": "2024-08-01T09:00:00Z",
            "awsRegion": "us-east-1",
        }
        for n, name in enumerate(["CreateAccessKey", "ListUsers", "CreateAccessKey"])
    ]
    run = Run(
        make_processor(pipeline),
        [
            initialize(),
            process_records(
                record(encode_subscription_record(events[:2]), "100"),
                record(encode_subscription_record(events[2:]), "101"),
            ),
            checkpoint_answer("101"),
        ],
    )
    assert run.checkpoints == [("101", 0)]
    assert [alert.event.event_id for alert in alerts] == ["id-0", "id-2"]


# --- memory ------------------------------------------------------------------------------------------------


class Cycle:
    def __init__(self) -> None:
        self.me = self


class CycleLeavingPipeline(FakePipeline):
    """Each batch leaves one reference cycle behind, as a tenacity `Retrying` or a requests error does."""

    def __init__(self) -> None:
        super().__init__()
        self.left: list[weakref.ref[Cycle]] = []
        self.alive_at_each_batch: list[list[bool]] = []

    def process_records(self, records: Sequence[RawRecord]) -> BatchOutcome:
        self.alive_at_each_batch.append([ref() is not None for ref in self.left])
        self.left.append(weakref.ref(Cycle()))
        return super().process_records(records)


@pytest.fixture
def worker_gc() -> Iterator[None]:
    """The collector as a worker sets it (frozen start-up heap, lazy thresholds), restored afterwards."""
    thresholds = gc.get_threshold()
    tune_for_throughput()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_garbage_cycles_a_quiet_worker_leaves_are_freed_within_a_minute(worker_gc: None) -> None:
    pipeline = CycleLeavingPipeline()
    minute_passed = lambda: 61.0 if len(pipeline.batches) >= 3 else 0.0  # noqa: E731
    processor = KclRecordProcessor(
        pipeline,
        exit_process=fake_exit,
        sleep=lambda _: None,
        shard_tag=ShardLogTag(),
        collector=PeriodicCollector(every=60.0, clock=minute_passed),
    )
    messages = [initialize()]
    for sequence in ("100", "101", "102"):
        messages += [process_records(record(b"x", sequence)), checkpoint_answer(sequence)]
    run = Run(processor, messages)

    assert run.checkpoints == [("100", 0), ("101", 0), ("102", 0)]
    # With the worker's thresholds alone, cycles would stay for half an hour at a few hundred events/s ...
    assert pipeline.alive_at_each_batch == [[], [True], [True, True]]
    # ... and the batch after which a minute has passed frees them all.
    assert [ref() for ref in pipeline.left] == [None, None, None]
    assert processor.collector.collections == 1
