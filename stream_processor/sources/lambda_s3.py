"""Lambda front end for S3 event notifications on a CloudTrail bucket (cloudtrail-tattletail's deployment shape).

Each notified object is a CloudTrail log file (gzip of `{"Records": [...]}`); digest files are skipped.
S3 invokes the function asynchronously, so there is no partial response: when an alert was neither delivered
nor parked, the handler raises after processing every object of the event; Lambda retries the event (twice
by default) and then sends it to the function's on-failure destination. A retry reads the file again, so
alerts that did go out the first time are sent again unless the dedupe ledger is on (the templates turn it on).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_plus

from stream_processor.aws_errors import error_code
from stream_processor.decode import decode_file
from stream_processor.errors import StreamProcessorError
from stream_processor.pipeline import Pipeline
from stream_processor.sources.files import CHUNK_BYTES
from stream_processor.sources.lambda_runtime import ContainerRuntime, LambdaContext

log = logging.getLogger(__name__)

DIGEST_MARKER = "CloudTrail-Digest"
MALFORMED_LOGGED = 20  # per object: a file of bad lines is one line each for the first ones, then counted
RUNTIME = ContainerRuntime()


class S3ClientProtocol(Protocol):
    def get_object(self, **kwargs: Any) -> Any: ...


class IncompleteDeliveryError(StreamProcessorError):
    """Some alerts of the event's files were neither delivered nor parked: raised so Lambda retries."""


@dataclass(frozen=True, slots=True)
class S3Object:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(slots=True)
class S3EventSummary:
    """What one invocation did; returned to Lambda (visible in test invocations and destinations)."""

    objects: int = 0
    digest_files: int = 0
    missing: int = 0
    events: int = 0
    malformed: int = 0
    alerts: int = 0
    delivered: int = 0
    parked: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def handler(event: Mapping[str, Any], context: LambdaContext | None) -> dict[str, int]:
    """Lambda's entry point: every CloudTrail file the notification names, through the container's pipeline.

    Raises:
        ConfigError: the rule file cannot be loaded.
        IncompleteDeliveryError: an alert was not delivered or parked (Lambda retries the event).
    """
    pipeline = RUNTIME.pipeline(os.environ)
    return process_s3_event(event, pipeline, RUNTIME.client(os.environ, "s3"))


def process_s3_event(event: Mapping[str, Any], pipeline: Pipeline, s3: S3ClientProtocol) -> dict[str, int]:
    """Read, decode and match each notified object; raise at the end if any alert is unfinished.

    Raises:
        IncompleteDeliveryError: see `handler`.
    """
    summary = S3EventSummary()
    unfinished: list[str] = []
    for item in s3_objects(event):
        summary.objects += 1
        if DIGEST_MARKER in item.key:
            summary.digest_files += 1
            log.debug("%s: digest file, skipped", item)
            continue
        chunks = _chunks(s3, item)
        if chunks is None:
            summary.missing += 1
            continue
        not_done = 0
        logged = 0
        # Streamed part by part: a Lambda's memory does not have to hold the whole file.
        for decoded in decode_file(chunks, str(item)):
            outcome = pipeline.process_decoded(decoded)
            summary.digest_files += decoded.digest_files
            summary.events += decoded.event_count
            summary.malformed += len(decoded.malformed)
            summary.alerts += len(outcome.alerts)
            summary.delivered += sum(1 for result in outcome.deliveries if result.delivered)
            summary.parked += len(outcome.parked)
            for malformed in decoded.malformed[: max(MALFORMED_LOGGED - logged, 0)]:
                log.warning("%s: malformed input (%s): %s", malformed.position, malformed.kind, malformed.reason)
            logged += len(decoded.malformed)
            for result in outcome.unfinished:
                log.error(
                    "%s: alert %r for event %s not delivered to %r after %d attempts: %s",
                    item, result.alert.rule_name, result.alert.event.event_id, result.destination_id,
                    result.attempts, result.reason,
                )  # fmt: skip
            not_done += len(outcome.unfinished) + len(outcome.parking_errors)
        if not_done:
            unfinished.append(f"{item} ({not_done} deliveries or dead letters unfinished)")
    log.info("S3 event done: %s", summary.as_dict())
    if unfinished:
        raise IncompleteDeliveryError("alerts not delivered, Lambda will retry: " + "; ".join(unfinished))
    return summary.as_dict()


def s3_objects(event: Mapping[str, Any]) -> list[S3Object]:
    """The created objects an S3 notification names, keys URL-decoded (`+` is a space, `%xx` a byte).

    S3's test event (`"Event": "s3:TestEvent"`, sent when a notification is configured) names none.
    """
    objects: list[S3Object] = []
    for record in event.get("Records", []) or []:
        if not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3", {})
        bucket = s3.get("bucket", {}).get("name")
        key = s3.get("object", {}).get("key")
        if isinstance(bucket, str) and isinstance(key, str):
            objects.append(S3Object(bucket, unquote_plus(key)))
    return objects


def _chunks(s3: S3ClientProtocol, item: S3Object) -> Iterator[bytes] | None:
    """The object's bytes as they arrive; None when it is gone (deleted or expired since the notification)."""
    try:
        body = s3.get_object(Bucket=item.bucket, Key=item.key)["Body"]
    except Exception as error:
        code = error_code(error)
        if code in ("NoSuchKey", "404"):
            log.warning("%s: no longer exists, skipped", item)
            return None
        raise
    return _body_chunks(body)


def _body_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    finally:
        body.close()
