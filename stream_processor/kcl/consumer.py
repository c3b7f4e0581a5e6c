"""Run a KCL consumer: write the processors' wrapper and the daemon's properties, check the stream, start the
daemon, and supervise it until it stops.

Where the processors keep state is `wiring.Settings` (the command reads it from its flags and the
environment); the processors get it on their command line, through the wrapper script.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream_processor.aws import AwsSettings
from stream_processor.errors import ConfigError
from stream_processor.kcl.daemon import (
    Heartbeat,
    KclDaemon,
    daemon_command,
    daemon_environment,
    find_java,
    find_kcl_jars,
    supervise,
    write_wrapper,
)
from stream_processor.kcl.leases import release_leader_lock
from stream_processor.kcl.properties import (
    ConsumerSettings,
    consumer_settings,
    daemon_aws,
    kcl_properties,
    parse_extra_properties,
    render_properties,
)
from stream_processor.metrics import DEFAULT_HOST
from stream_processor.wiring import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerRequest:
    """What to consume and how: the rule file, the stream and application, the processors' settings, the
    daemon's options (None leaves the AWS or local default)."""

    config: str
    stream: str
    application: str
    work_dir: Path
    processors: Settings
    dry_run: bool = False
    reload_interval: float = 10.0
    verbose: bool = False
    initial_position: str | None = None
    metrics_level: str | None = None
    timing_overrides: Mapping[str, int | None] = field(default_factory=dict)
    max_records: int | None = None
    extra_properties: Sequence[str] = ()
    java: str | None = None
    kcl_jars: str | None = None
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_HOST


@dataclass(frozen=True, slots=True)
class PreparedConsumer:
    """A consumer whose wrapper and properties file are written: ready to start."""

    request: ConsumerRequest
    settings: ConsumerSettings
    properties_path: Path


def prepare_consumer(request: ConsumerRequest) -> PreparedConsumer:
    """Check the rule file (here, not once per shard), then write the wrapper and the properties in the work dir.

    Raises:
        ConfigError: the rule file or a property is unusable; AwsError: no region, an unknown profile.
    """
    from stream_processor.config import load_config
    from stream_processor.kcl.processor import command_line

    location = request.config
    if "://" not in location:
        location = str(Path(location).resolve())
    state = request.processors
    load_config(location, state.aws)
    request.work_dir.mkdir(parents=True, exist_ok=True)
    command = command_line(
        location, state, dry_run=request.dry_run, reload_interval=request.reload_interval, verbose=request.verbose
    )
    wrapper = write_wrapper(request.work_dir, command)
    settings = consumer_settings(
        stream=request.stream,
        application=request.application,
        executable=str(wrapper),
        aws=state.aws,
        worker_id=state.metrics.worker_id,
        initial_position=request.initial_position,
        metrics_level=request.metrics_level,
        timing_overrides=request.timing_overrides,
        max_records=request.max_records,
        extra=parse_extra_properties(request.extra_properties),
    )
    properties_path = request.work_dir / f"{request.application}.properties"
    properties_path.write_text(render_properties(kcl_properties(settings)))
    return PreparedConsumer(request, settings, properties_path)


def run_consumer(consumer: PreparedConsumer, environ: Mapping[str, str] = os.environ) -> int:
    """Start the daemon and wait for it: 0 after a requested stop (SIGTERM, SIGINT), else the daemon's code.

    Raises:
        ConfigError: no such stream, no jars, no Java; AwsError: credentials that cannot read the stream.
    """
    request, settings = consumer.request, consumer.settings
    state = request.processors
    env = daemon_environment(settings, environ)
    check_stream(settings, state.aws, env)
    jars = find_kcl_jars(request.kcl_jars)
    metrics_server = None
    if request.metrics_port is not None:
        from stream_processor.metrics import MULTIPROC_ENV, MetricsServer, prepare_multiprocess_dir

        metrics_dir = prepare_multiprocess_dir(request.work_dir / "metrics")
        env[MULTIPROC_ENV] = str(metrics_dir)  # the processors write their values there; we serve the sum
        metrics_server = MetricsServer(metrics_dir, request.metrics_host, request.metrics_port).start()
        log.info("serving metrics of every shard process on %s", metrics_server.url)
    daemon = KclDaemon(
        daemon_command(find_java(request.java), jars, consumer.properties_path, local=settings.local),
        env,
        request.work_dir / "daemon.log",
    )
    target = f"kinesis {settings.kinesis_endpoint}" if settings.kinesis_endpoint else f"AWS {settings.region}"
    log.info(
        "consuming stream %s as %s (worker %s, %s); %s; daemon log: %s",
        settings.stream,
        settings.application,
        settings.worker_id,
        target,
        state.describe(),
        daemon.log_path,
    )
    release_leader_lock(settings, state.aws, env)  # left by a killed run of this worker id (kill -9, a lost host)
    heartbeat = Heartbeat(request.work_dir / "heartbeat", daemon)
    try:
        daemon.start()
        heartbeat.start()
        return supervise(daemon, after_failure=lambda: release_leader_lock(settings, state.aws, env))
    finally:
        heartbeat.stop()
        if metrics_server is not None:
            metrics_server.stop()


def check_stream(settings: ConsumerSettings, aws: AwsSettings, env: Mapping[str, str]) -> None:
    """Fail fast on a stream that does not exist or credentials that cannot read it (the daemon would retry
    forever); a throttled or unreachable check only warns.

    Raises:
        ConfigError: Kinesis says there is no such stream.
        AwsError: no credentials, expired ones, access denied.
    """
    from stream_processor.aws_errors import describe_failure, error_code
    from stream_processor.errors import AwsError

    target, credentials = daemon_aws(settings, aws, env)
    where = settings.kinesis_endpoint or settings.region
    try:
        target.client("kinesis", credentials=credentials).describe_stream_summary(StreamName=settings.stream)
    except AwsError:
        raise
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            raise ConfigError(f"no Kinesis stream {settings.stream!r} in {where}") from None
        failure = describe_failure(error)
        if failure is not None and failure.kind in ("credentials", "expired", "access", "region", "profile"):
            raise AwsError(f"stream {settings.stream!r}: {failure.message}", failure.exit_code) from None
        reason = failure.message if failure is not None else f"{type(error).__name__}: {error}"
        log.warning("could not check stream %s in %s (%s); starting the daemon anyway", settings.stream, where, reason)
