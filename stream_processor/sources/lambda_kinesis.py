"""Lambda front end for a Kinesis event source mapping: CloudWatch Logs subscription records → pipeline.

Partial batch responses (the mapping has `FunctionResponseTypes: [ReportBatchItemFailures]`): records are
processed in order, one at a time, and the handler stops at the first record whose alerts were not all
delivered (or parked as dead letters). It returns that record's sequence number in `batchItemFailures`;
Lambda then counts the records before it as done and retries from it, so nothing after it is lost and
nothing before it is sent again. When the invocation is about to run out of time, the handler stops the same
way at the next unprocessed record instead of being killed mid-batch (a timeout would retry the whole batch).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from stream_processor.model import Position, RawRecord
from stream_processor.pipeline import Pipeline
from stream_processor.sources.lambda_runtime import ContainerRuntime, LambdaContext

log = logging.getLogger(__name__)

# Stop starting records when less than this much of the invocation is left: one record's deliveries,
# with their retries and backoff, must fit in it.
TIME_RESERVE_MILLIS = 30_000

RUNTIME = ContainerRuntime()


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, list[dict[str, str]]]:
    """Lambda's entry point: the container's pipeline over one Kinesis batch; the partial batch response.

    Raises:
        ConfigError: the rule file cannot be loaded (the whole batch is retried, nothing is lost).
    """
    pipeline = RUNTIME.pipeline(os.environ)
    return process_kinesis_event(event, pipeline, context)


def process_kinesis_event(
    event: Mapping[str, Any], pipeline: Pipeline, context: LambdaContext | None = None
) -> dict[str, list[dict[str, str]]]:
    """Process the batch record by record; report the first record that did not finish, if any."""
    records = kinesis_records(event)
    for index, record in enumerate(records):
        sequence = record.position.sequence or ""
        if index and context is not None and context.get_remaining_time_in_millis() < TIME_RESERVE_MILLIS:
            log.warning(
                "%s: stopping before %s with %d of %d records left, to finish within the invocation's time",
                record.position.origin,
                sequence,
                len(records) - index,
                len(records),
            )
            return _failure(sequence)
        if not _process_one(pipeline, record):
            return _failure(sequence)
    return {"batchItemFailures": []}


def _process_one(pipeline: Pipeline, record: RawRecord) -> bool:
    """True when every alert of the record reached its destinations or was parked."""
    try:
        outcome = pipeline.process_records([record])
    except Exception:
        # Not acknowledged: the record is reported failed and retried, so logging it here loses nothing.
        log.exception("%s: processing failed; Lambda retries from this record", record.position)
        return False
    if outcome.decoded.malformed:
        log.warning(
            "%s: %d malformed items (%s)",
            record.position,
            len(outcome.decoded.malformed),
            ", ".join(sorted({m.kind for m in outcome.decoded.malformed})),
        )
    if outcome.complete:
        return True
    for result in outcome.unfinished:
        log.error(
            "%s: alert %r for event %s not delivered to %r after %d attempts: %s",
            record.position,
            result.alert.rule_name,
            result.alert.event.event_id,
            result.destination_id,
            result.attempts,
            result.reason,
        )
    for problem in outcome.parking_errors:
        log.error("%s: could not park a dead letter: %s", record.position, problem)
    return False


def _failure(sequence: str) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": sequence}]}


def kinesis_records(event: Mapping[str, Any]) -> list[RawRecord]:
    """The event's records as RawRecords: data base64-decoded, origin = shard id, sequence = sequence number.

    Raises:
        ValueError: the event is not a Kinesis event (no `Records`, or a record without `kinesis`).
    """
    raw_records = event.get("Records")
    if not isinstance(raw_records, Sequence):
        raise ValueError("not a Kinesis event: no Records list")
    records: list[RawRecord] = []
    for raw in raw_records:
        kinesis = raw.get("kinesis") if isinstance(raw, Mapping) else None
        if not isinstance(kinesis, Mapping) or "sequenceNumber" not in kinesis:
            raise ValueError("not a Kinesis event: a record without kinesis.sequenceNumber")
        sequence = str(kinesis["sequenceNumber"])
        records.append(
            RawRecord(
                data=_payload(kinesis.get("data", "")),
                position=Position(shard_id(raw), sequence),
                partition_key=kinesis.get("partitionKey"),
                arrival_time=_arrival(kinesis.get("approximateArrivalTimestamp")),
            )
        )
    return records


def shard_id(record: Mapping[str, Any]) -> str:
    """The shard of a Lambda Kinesis record: `eventID` is `shardId-000000000000:<sequence number>`."""
    event_id = str(record.get("eventID", ""))
    shard, separator, _ = event_id.partition(":")
    if separator and shard:
        return shard
    return str(record.get("eventSourceARN", "kinesis"))


def _payload(data: Any) -> bytes:
    """Base64-decoded record data; undecodable text is handed on as is, for decode to report as malformed."""
    text = data if isinstance(data, str) else str(data)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode("utf-8", errors="replace")


def _arrival(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    return None
