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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote_plus

from stream_processor.alerts.aws_errors import error_code
from stream_processor.decode import decode_bytes
from stream_processor.errors import StreamProcessorError
from stream_processor.pipeline import Pipeline
from stream_processor.sources.lambda_runtime import ContainerRuntime, LambdaContext

log = logging.getLogger(__name__)

DIGEST_MARKER = "CloudTrail-Digest"
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
        data = _read(s3, item)
        if data is None:
            summary.missing += 1
            continue
        decoded = decode_bytes(data, str(item))
        outcome = pipeline.process_decoded(decoded)
        summary.digest_files += decoded.digest_files
        summary.events += len(decoded.events)
        summary.malformed += len(decoded.malformed)
        summary.alerts += len(outcome.alerts)
        summary.delivered += sum(1 for result in outcome.deliveries if result.delivered)
        summary.parked += len(outcome.parked)
        for malformed in decoded.malformed:
            log.warning("%s: malformed input (%s): %s", malformed.position, malformed.kind, malformed.reason)
        for result in outcome.unfinished:
            log.error(
                "%s: alert %r for event %s not delivered to %r after %d attempts: %s",
                item, result.alert.rule_name, result.alert.event.event_id, result.destination_id,
                result.attempts, result.reason,
            )
        if not outcome.complete:
            unfinished.append(f"{item} ({len(outcome.unfinished)} deliveries unfinished)")
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


def _read(s3: S3ClientProtocol, item: S3Object) -> bytes | None:
    """The object's bytes; None when it is gone (deleted or expired since the notification)."""
    try:
        body = s3.get_object(Bucket=item.bucket, Key=item.key)["Body"]
        data: bytes = body.read()
        return data
    except Exception as error:
        code = error_code(error)
        if code in ("NoSuchKey", "404"):
            log.warning("%s: no longer exists, skipped", item)
            return None
        raise
