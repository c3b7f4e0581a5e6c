"""`stream-processor consume`: run the KCL MultiLangDaemon on a stream with our record processor.

The daemon (Java) holds the shard leases in DynamoDB and starts one `stream_processor.kcl.processor` process
per shard it holds. This command writes the daemon's properties file from the flags, starts it, relays
what matters of its output, and turns SIGTERM/SIGINT into the daemon's graceful shutdown (the processors
get `shutdown_requested` and checkpoint) before exiting.

Without endpoints it targets real AWS: the SDK's credentials and region, no endpoint keys, KCL's own timing.
With a Kinesis or DynamoDB endpoint (`--endpoint-url`, `AWS_ENDPOINT_URL_KINESIS`, ...: kinesis-local and moto)
it uses short timings so a local worker starts and fails over in seconds, and fake credentials when none are set.

Where the processors keep state is `wiring.Settings`, read from the flags, then the environment
(`STREAM_PROCESSOR_DEDUPE_TABLE`, `STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL`, as the Lambda functions), then
SQLite files in the work dir; the processors get it on their command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from stream_processor.commands.common import add_config_argument, config_location
from stream_processor.errors import ConfigError
from stream_processor.kcl.consumer import ConsumerRequest, prepare_consumer, run_consumer
from stream_processor.kcl.daemon import JARS_ENV
from stream_processor.kcl.properties import INITIAL_POSITIONS, METRICS_LEVELS, default_worker_id
from stream_processor.metrics import DEFAULT_HOST
from stream_processor.wiring import (
    HOST,
    Settings,
    add_aws_arguments,
    add_limit_arguments,
    add_metrics_arguments,
    add_state_arguments,
)

EPILOG = """\
examples:
  # real AWS (default credential chain and region):
  stream-processor consume --config tattletail.toml --stream cloudtrail --application cloudtrail-alerts
  # the ECS task (state.yaml's table and queue in the environment, as the Lambda functions have them):
  STREAM_PROCESSOR_DEDUPE_TABLE=stream-processor-dedupe \\
  STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/sp-dead-letters \\
      stream-processor consume --config s3://bucket/tattletail.toml --stream cloudtrail --application alerts
  # the local stack (kinesis-local + moto):
  AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:4567 stream-processor consume --config tattletail.toml \\
      --stream demo --application demo --endpoint-url http://127.0.0.1:5000 --initial-position TRIM_HORIZON

exit status: 0 after a requested stop (SIGTERM, SIGINT); otherwise the daemon's, non-zero when a record
processor stopped without checkpoint (a delivery failed for good): start it again to resume from the
last checkpoint.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "consume",
        help="consume a Kinesis stream with the KCL (MultiLangDaemon) and deliver the alerts",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(parser)
    parser.add_argument("--stream", required=True, help="Kinesis stream name")
    parser.add_argument("--application", required=True, help="KCL application name (also the lease table's)")
    add_aws_arguments(parser, services=("kinesis", "dynamodb", "cloudwatch"))
    parser.add_argument(
        "--initial-position",
        choices=INITIAL_POSITIONS,
        help="where a shard without checkpoint starts (default: LATEST on AWS, TRIM_HORIZON with a Kinesis endpoint)",
    )
    parser.add_argument("--dry-run", action="store_true", help="log the alerts instead of delivering them")
    parser.add_argument(
        "--work-dir", type=Path, help="properties, wrapper, logs, and the default state dir (default: .local/kcl/APP)"
    )
    add_state_arguments(parser, HOST, storm=True, folder="WORK_DIR")
    parser.add_argument(
        "--reload-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the processors check the rule file (local or S3 ETag) for changes this often; 0: never (default 10)",
    )
    add_metrics_arguments(parser)
    add_limit_arguments(parser)
    observe = parser.add_argument_group("metrics server")
    observe.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus /metrics of every shard process on this port (0: a free one; default: off)",
    )
    observe.add_argument("--metrics-host", default=DEFAULT_HOST, help="address for /metrics (default: loopback only)")
    parser.add_argument("--metrics-level", choices=METRICS_LEVELS, help="KCL metrics (default: NONE locally, SUMMARY)")
    kcl = parser.add_argument_group("KCL")
    kcl.add_argument("--kcl-jars", metavar="DIR", help=f"the daemon's jars (default: ${JARS_ENV} or infra/kcl/jars)")
    kcl.add_argument("--java", default=None, help="java executable (default: $JAVA_HOME/bin/java or java)")
    kcl.add_argument("--failover-ms", type=int, help="lease expiry (failoverTimeMillis)")
    kcl.add_argument("--lease-assignment-ms", type=int, help="leaseAssignmentIntervalMillis")
    kcl.add_argument("--shard-sync-ms", type=int, help="shardSyncIntervalMillis")
    kcl.add_argument("--parent-poll-ms", type=int, help="parentShardPollIntervalMillis")
    kcl.add_argument("--idle-between-reads-ms", type=int, help="idleTimeBetweenReadsInMillis")
    kcl.add_argument("--shutdown-grace-ms", type=int, help="time the processors get to checkpoint on a stop")
    kcl.add_argument("--max-records", type=int, help="maxRecords per GetRecords")
    kcl.add_argument(
        "--kcl-property", action="append", default=[], metavar="KEY=VALUE", help="any other daemon property"
    )
    kcl.add_argument("--print-properties", action="store_true", help="write the properties file, print it and exit")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        args.worker_id = args.worker_id or default_worker_id()
        consumer = prepare_consumer(consumer_request(args))
        if args.print_properties:
            sys.stdout.write(consumer.properties_path.read_text())
            return 0
        return run_consumer(consumer)
    except ConfigError as error:  # AwsError included: one line each, the exit code of its kind
        for problem in error.problems:
            print(f"stream-processor consume: {problem}", file=sys.stderr)
        return error.exit_code


def consumer_request(args: argparse.Namespace) -> ConsumerRequest:
    """Raises: ConfigError for a store flag or variable that cannot be used; AwsError: no region, a bad profile."""
    work_dir = (args.work_dir or Path(".local") / "kcl" / args.application).resolve()
    return ConsumerRequest(
        config=config_location(args),
        stream=args.stream,
        application=args.application,
        work_dir=work_dir,
        processors=processor_settings(args, work_dir),
        dry_run=args.dry_run,
        reload_interval=args.reload_interval,
        verbose=bool(getattr(args, "verbose", False)),
        initial_position=args.initial_position,
        metrics_level=args.metrics_level,
        timing_overrides={
            "failover_ms": args.failover_ms,
            "lease_assignment_ms": args.lease_assignment_ms,
            "shard_sync_ms": args.shard_sync_ms,
            "parent_poll_ms": args.parent_poll_ms,
            "idle_between_reads_ms": args.idle_between_reads_ms,
            "shutdown_grace_ms": args.shutdown_grace_ms,
        },
        max_records=args.max_records,
        extra_properties=tuple(args.kcl_property),
        java=args.java,
        kcl_jars=args.kcl_jars,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


def processor_settings(args: argparse.Namespace, work_dir: Path) -> Settings:
    """What the processors use: the flags, then the environment (`STREAM_PROCESSOR_DEDUPE_TABLE`, ...), then SQLite
    files in the work dir; the region resolved now, so every processor and the daemon agree on it.

    Raises:
        ConfigError: a store flag or variable cannot be used; AwsError: no region, an unknown profile.
    """
    settings = Settings.from_args(args, os.environ, HOST, state_dir=work_dir)
    return replace(settings, aws=settings.aws.with_region(settings.aws.require_region()))
