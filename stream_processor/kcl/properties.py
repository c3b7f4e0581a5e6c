"""The MultiLangDaemon's properties: what the daemon is told (stream, application, endpoints, timing), and the file.

Without endpoints the daemon targets real AWS: the SDK's credentials and region, no endpoint keys, KCL's own
timing. With a Kinesis or DynamoDB endpoint (kinesis-local and moto) it uses short timings so a local worker
starts and fails over in seconds.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stream_processor.aws import AwsSettings
from stream_processor.errors import ConfigError

INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")
METRICS_LEVELS = ("NONE", "SUMMARY", "DETAILED")


@dataclass(frozen=True, slots=True)
class KclTimings:
    """The daemon's timing knobs (milliseconds). None leaves KCL's own default."""

    failover_ms: int | None = None
    lease_assignment_ms: int | None = None
    shard_sync_ms: int | None = None
    parent_poll_ms: int | None = None
    idle_between_reads_ms: int | None = None
    worker_metrics_report_ms: int | None = None
    shutdown_grace_ms: int = 30_000

    @classmethod
    def for_aws(cls) -> KclTimings:
        """KCL's defaults, with a shutdown grace period so processors checkpoint on SIGTERM."""
        return cls()

    @classmethod
    def for_local(cls) -> KclTimings:
        """Seconds instead of minutes on one machine: fast lease assignment, shard sync and failover.

        shard_sync_ms is also how long KCL idles after a shard sync (the first one included), so short
        helps start-up; failover stays well above the renewal period so a busy machine does not drop leases.
        A worker counts as alive for the lease assignment until its metrics are two report periods old, so
        a stopped worker's shards move after 10 s instead of a minute.
        """
        return cls(
            failover_ms=6_000,
            lease_assignment_ms=1_000,
            shard_sync_ms=1_000,
            parent_poll_ms=1_000,
            idle_between_reads_ms=250,
            worker_metrics_report_ms=5_000,
            shutdown_grace_ms=10_000,
        )

    def overridden(self, overrides: Mapping[str, int | None]) -> KclTimings:
        """These timings with every override that is not None (keys are field names)."""
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Everything the properties file says."""

    stream: str
    application: str
    executable: str
    region: str
    initial_position: str
    worker_id: str
    metrics_level: str
    timings: KclTimings
    kinesis_endpoint: str | None = None
    dynamodb_endpoint: str | None = None
    cloudwatch_endpoint: str | None = None
    max_records: int | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return bool(self.kinesis_endpoint or self.dynamodb_endpoint)


def default_worker_id() -> str:
    """The lease owner's name when none is given: unique per process on a host."""
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_extra_properties(items: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (`--kcl-property`) as properties.

    Raises:
        ConfigError: an item without `=` or without a key.
    """
    extra: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kcl-property {item!r}: expected KEY=VALUE")
        extra[key.strip()] = value.strip()
    return extra


def consumer_settings(
    *,
    stream: str,
    application: str,
    executable: str,
    aws: AwsSettings,
    worker_id: str,
    initial_position: str | None = None,
    metrics_level: str | None = None,
    timing_overrides: Mapping[str, int | None] | None = None,
    max_records: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> ConsumerSettings:
    """The daemon's settings: the endpoints of `aws` decide between AWS and local defaults, the rest overrides.

    Raises:
        AwsError: a missing region or an unknown profile.
    """
    kinesis_endpoint = aws.endpoint_for("kinesis")
    dynamodb_endpoint = aws.endpoint_for("dynamodb")
    cloudwatch_endpoint = aws.endpoint_for("cloudwatch")
    local = bool(kinesis_endpoint or dynamodb_endpoint)
    base = KclTimings.for_local() if local else KclTimings.for_aws()
    return ConsumerSettings(
        stream=stream,
        application=application,
        executable=executable,
        region=aws.require_region(),
        initial_position=initial_position or ("TRIM_HORIZON" if kinesis_endpoint else "LATEST"),
        worker_id=worker_id,
        metrics_level=metrics_level or ("NONE" if local and not cloudwatch_endpoint else "SUMMARY"),
        timings=base.overridden(timing_overrides or {}),
        kinesis_endpoint=kinesis_endpoint,
        dynamodb_endpoint=dynamodb_endpoint,
        cloudwatch_endpoint=cloudwatch_endpoint,
        max_records=max_records,
        extra=dict(extra or {}),
    )


def kcl_properties(settings: ConsumerSettings) -> dict[str, str]:
    """The MultiLangDaemon's properties, in the order written."""
    timings = settings.timings
    properties = {
        "executableName": settings.executable,
        "streamName": settings.stream,
        "applicationName": settings.application,
        "workerId": settings.worker_id,
        "regionName": settings.region,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "initialPositionInStream": settings.initial_position,
        "retrievalMode": "POLLING",
        "metricsLevel": settings.metrics_level,
        "shutdownGraceMillis": str(timings.shutdown_grace_ms),
        # idle polls reach the processors too, so storm digests go out when their window closes
        "callProcessRecordsEvenForEmptyRecordList": "true",
    }
    optional = {
        "kinesisEndpoint": settings.kinesis_endpoint,
        "dynamoDBEndpoint": settings.dynamodb_endpoint,
        "cloudWatchClient.endpointOverride": settings.cloudwatch_endpoint,
        "failoverTimeMillis": timings.failover_ms,
        "leaseAssignmentIntervalMillis": timings.lease_assignment_ms,
        "shardSyncIntervalMillis": timings.shard_sync_ms,
        "parentShardPollIntervalMillis": timings.parent_poll_ms,
        "idleTimeBetweenReadsInMillis": timings.idle_between_reads_ms,
        "workerMetricsReporterFreqInMillis": timings.worker_metrics_report_ms,
        "maxRecords": settings.max_records,
    }
    properties.update({key: str(value) for key, value in optional.items() if value is not None})
    properties.update(settings.extra)
    return properties


def render_properties(properties: Mapping[str, str]) -> str:
    lines = ["# Written by `stream-processor consume`; regenerated on every start."]
    lines += [f"{key} = {value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def daemon_aws(
    settings: ConsumerSettings, aws: AwsSettings, env: Mapping[str, str]
) -> tuple[AwsSettings, dict[str, Any]]:
    """What our own calls beside the daemon use: its region and endpoints, and its (possibly fake) credentials
    against emulators; on AWS the SDK's chain as usual (no explicit credentials)."""
    endpoints = dict(aws.service_endpoints)
    for service, url in (("kinesis", settings.kinesis_endpoint), ("dynamodb", settings.dynamodb_endpoint)):
        if url:
            endpoints[service] = url
    target = replace(aws, region=settings.region, service_endpoints=tuple(sorted(endpoints.items())))
    credentials: dict[str, Any] = {}
    if settings.local:
        credentials = {
            "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
            "aws_session_token": env.get("AWS_SESSION_TOKEN"),
        }
    return target, credentials
