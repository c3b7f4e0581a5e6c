"""`stream-processor consume`: run the KCL MultiLangDaemon on a stream with our record processor.

The daemon (Java) holds the shard leases in DynamoDB and starts one `stream_processor.sources.kcl` process
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
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

import stream_processor
from stream_processor.aws import AwsSettings
from stream_processor.commands.common import add_config_argument, config_location
from stream_processor.errors import ConfigError
from stream_processor.local.processes import LOOPBACK
from stream_processor.wiring import (
    HOST,
    Settings,
    add_aws_arguments,
    add_limit_arguments,
    add_metrics_arguments,
    add_state_arguments,
)

log = logging.getLogger(__name__)

# Relative to the current directory: where `make kcl` puts them in a checkout (never inside the installed package).
DEFAULT_JARS = Path("infra") / "kcl" / "jars"
JARS_ENV = "STREAM_PROCESSOR_KCL_JARS"
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
INITIAL_POSITIONS = ("TRIM_HORIZON", "LATEST")
METRICS_LEVELS = ("NONE", "SUMMARY", "DETAILED")
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
SETUP_HINT = (
    f"set ${JARS_ENV} (or --kcl-jars) to a folder of the KCL MultiLangDaemon's jars, or install amazon-kclpy "
    "built with its jars; in a checkout, `make kcl` (or `make setup`) fetches them into infra/kcl/jars"
)
# What a SIGTERM'd JVM exits with after its shutdown hook ran (128 + 15).
JVM_TERMINATED = 143


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


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """Everything the properties file says, from the flags."""

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


def find_kcl_jars(explicit: str | None = None) -> Path:
    """The folder of the daemon's jars: the flag, $STREAM_PROCESSOR_KCL_JARS, ./infra/kcl/jars, or amazon_kclpy's.

    Raises:
        ConfigError: none holds the multilang jar.
    """
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get(JARS_ENV):
        candidates.append(Path(os.environ[JARS_ENV]))
    else:
        candidates.append(DEFAULT_JARS)
        with contextlib.suppress(ImportError):
            import amazon_kclpy

            candidates.append(Path(amazon_kclpy.__file__).parent / "jars")
    for folder in candidates:
        if any(folder.glob("amazon-kinesis-client-multilang-*.jar")):
            return folder.resolve()
    tried = ", ".join(str(folder) for folder in candidates)
    raise ConfigError(f"no KCL multilang jar in {tried}: {SETUP_HINT}")


def import_root() -> Path:
    """The sys.path folder this package was imported from (site-packages, or a checkout): the processors
    started by the daemon import the same code even when it is not installed."""
    return Path(stream_processor.__path__[0]).resolve().parent


def write_wrapper(work_dir: Path, command: Sequence[str]) -> Path:
    """A script that execs `command`: the daemon splits `executableName` on whitespace, so it gets one path.

    Any path may contain spaces inside the script (it quotes them); the script's own path may not, so it
    goes to a temporary folder when the work dir has whitespace in its path.
    """
    folder = work_dir
    if re.search(r"\s", str(work_dir.resolve())):
        folder = Path(tempfile.mkdtemp(prefix="stream-processor-kcl-"))
    script = folder.resolve() / "record-processor.sh"
    package_root = shlex.quote(str(import_root()))
    script.write_text(
        "#!/bin/sh\n"
        "# Started by the KCL MultiLangDaemon, once per shard lease. Written by `stream-processor consume`.\n"
        f'PYTHONPATH={package_root}"${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        "export PYTHONPATH\n"
        f"exec {shlex.join(command)}\n"
    )
    script.chmod(0o755)
    return script


def daemon_command(java: str, jars: Path, properties_path: Path, *, local: bool) -> list[str]:
    command = [java]
    if local:
        command.append("-Daws.cborEnabled=false")  # SDK v2's switch; emulators are safer on JSON
    command += ["-cp", f"{jars}/*", DAEMON_CLASS, "--properties-file", str(properties_path)]
    return command


def daemon_environment(settings: ConsumerSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The daemon's (and so the processors') environment: fake credentials for emulators when none are set."""
    env = dict(environ)
    if settings.local and not env.get("AWS_ACCESS_KEY_ID"):
        env.update(FAKE_CREDENTIALS)
        env.pop("AWS_PROFILE", None)
    env.setdefault("AWS_REGION", settings.region)
    env.setdefault("AWS_DEFAULT_REGION", settings.region)
    if settings.local:
        env.setdefault("CBOR_ENABLED", "false")
    return env


# --- running the daemon ------------------------------------------------------------------------------------

_HOLDING = re.compile(r"holding shard (\S+)")
_RELEASED = re.compile(r"lost the lease on shard (\S+?):|shard (\S+) ended")
_CHILD_LINE = "Received error line from subprocess"  # the daemon's copy of a processor's stderr line


def _terminate_with_parent() -> None:
    """In the daemon's child, before exec: SIGTERM (a graceful stop) when this command dies, even by SIGKILL.

    The daemon runs in a session of its own, so nothing else would stop it; Linux only, a no-op elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class KclDaemon:
    """The MultiLangDaemon as a child process: its own session, output relayed, stopped gracefully."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        out: IO[str] | None = None,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_path
        self.out = out or sys.stderr
        self.process: subprocess.Popen[bytes] | None = None
        self.held: set[str] = set()
        self.stop_requested = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._log_file: IO[str] | None = None
        self.started_at = 0.0

    def start(self) -> KclDaemon:
        self.started_at = time.monotonic()
        # A session of its own: Ctrl-C in a terminal reaches us only, and we turn it into a graceful stop
        # (a SIGINT straight to the processors would kill them mid-batch and take the daemon down).
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        log_file = self._log_file = self.log_path.open("a", encoding="utf-8", errors="replace")
        self._threads = [
            threading.Thread(target=self._relay_daemon, args=(self.process.stdout, log_file), daemon=True),
            threading.Thread(target=self._relay_processors, args=(self.process.stderr, log_file), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        """Ask for a graceful shutdown: the daemon's hook gives every processor `shutdown_requested`."""
        self.stop_requested = True
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """Stop now: the daemon and the processors it started (its process group)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._log_file is not None:
            with self._lock:
                self._log_file.close()
        return code

    def _write(self, text: str) -> None:
        with self._lock:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def _relay_daemon(self, stream: IO[bytes], log_file: IO[str]) -> None:
        """The daemon's own log (stdout): all of it to the log file, warnings and errors to us."""
        relay = True  # lines before the first log record are start-up failures (usage, bad properties)
        for raw in stream:
            line = raw.decode("utf-8", errors="replace")
            with self._lock:
                if not log_file.closed:
                    log_file.write(line)
                    log_file.flush()
            if line[:1].isdigit():  # a new log record ("2026-... LEVEL ..."); other lines continue the last one
                relay = (" ERROR " in line or " WARN " in line) and _CHILD_LINE not in line
            if relay:
                self._write("kcl: " + line.rstrip("\n"))

    def _relay_processors(self, stream: IO[bytes], log_file: IO[str]) -> None:
        """The processors' stderr (the daemon copies it to its own stderr): to us, and shard bookkeeping."""
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self._lock:
                if not log_file.closed:
                    log_file.write(line + "\n")
            self._write(line)
            self._track_shards(line)

    def _track_shards(self, line: str) -> None:
        changed = False
        if match := _HOLDING.search(line):
            changed = match.group(1) not in self.held
            self.held.add(match.group(1))
            if len(self.held) == 1 and changed:
                log.info("first shard held %.1f s after the daemon started", time.monotonic() - self.started_at)
        elif match := _RELEASED.search(line):
            shard = match.group(1) or match.group(2)
            changed = shard in self.held
            self.held.discard(shard)
        if changed:
            log.info("holding %d shard(s): %s", len(self.held), ", ".join(sorted(self.held)) or "none")


class Heartbeat:
    """Touches a file every `interval` seconds while the daemon runs: the container health check reads its age
    (infra/cloudformation/consumer.yaml), so a task whose daemon died or hangs in start-up is replaced."""

    INTERVAL_SECONDS = 10.0

    def __init__(self, path: Path, daemon: KclDaemon, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.daemon = daemon
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            process = self.daemon.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(OSError):
                    self.path.touch()
            self._stop.wait(self.interval)


# --- the command -------------------------------------------------------------------------------------------


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
    observe.add_argument("--metrics-host", default=LOOPBACK, help="address for /metrics (default: loopback only)")
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


def settings_from_args(args: argparse.Namespace, executable: str, aws: AwsSettings) -> ConsumerSettings:
    """Raises: ConfigError for a bad --kcl-property; AwsError for a missing region or an unknown profile."""
    kinesis_endpoint = aws.endpoint_for("kinesis")
    dynamodb_endpoint = aws.endpoint_for("dynamodb")
    cloudwatch_endpoint = aws.endpoint_for("cloudwatch")
    local = bool(kinesis_endpoint or dynamodb_endpoint)
    base = KclTimings.for_local() if local else KclTimings.for_aws()
    overrides = {
        "failover_ms": args.failover_ms,
        "lease_assignment_ms": args.lease_assignment_ms,
        "shard_sync_ms": args.shard_sync_ms,
        "parent_poll_ms": args.parent_poll_ms,
        "idle_between_reads_ms": args.idle_between_reads_ms,
        "shutdown_grace_ms": args.shutdown_grace_ms,
    }
    timings = replace(base, **{key: value for key, value in overrides.items() if value is not None})
    extra: dict[str, str] = {}
    for item in args.kcl_property:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kcl-property {item!r}: expected KEY=VALUE")
        extra[key.strip()] = value.strip()
    return ConsumerSettings(
        stream=args.stream,
        application=args.application,
        executable=executable,
        region=aws.require_region(),
        initial_position=args.initial_position or ("TRIM_HORIZON" if kinesis_endpoint else "LATEST"),
        worker_id=args.worker_id or f"{socket.gethostname()}-{os.getpid()}",
        metrics_level=args.metrics_level or ("NONE" if local and not cloudwatch_endpoint else "SUMMARY"),
        timings=timings,
        kinesis_endpoint=kinesis_endpoint,
        dynamodb_endpoint=dynamodb_endpoint,
        cloudwatch_endpoint=cloudwatch_endpoint,
        max_records=args.max_records,
        extra=extra,
    )


def daemon_aws(
    settings: ConsumerSettings, aws: AwsSettings, env: Mapping[str, str]
) -> tuple[AwsSettings, dict[str, Any]]:
    """What this command's own calls use: the daemon's region and endpoints, and its (possibly fake) credentials
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


def check_stream(settings: ConsumerSettings, aws: AwsSettings, env: Mapping[str, str]) -> None:
    """Fail fast on a stream that does not exist or credentials that cannot read it (the daemon would retry
    forever); a throttled or unreachable check only warns.

    Raises:
        ConfigError: Kinesis says there is no such stream.
        AwsError: no credentials, expired ones, access denied.
    """
    from stream_processor.alerts.aws_errors import describe_failure, error_code
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


def _java(explicit: str | None) -> str:
    if explicit:
        return explicit
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ConfigError("java is not on PATH: the KCL daemon needs a Java runtime (17 or later)")
    return found


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ConfigError as error:  # AwsError included: one line each, the exit code of its kind
        for problem in error.problems:
            print(f"stream-processor consume: {problem}", file=sys.stderr)
        return error.exit_code


def processor_settings(args: argparse.Namespace, work_dir: Path) -> Settings:
    """What the processors use: the flags, then the environment (`STREAM_PROCESSOR_DEDUPE_TABLE`, ...), then SQLite
    files in the work dir; the region resolved now, so every processor and the daemon agree on it.

    Raises:
        ConfigError: a store flag or variable cannot be used; AwsError: no region, an unknown profile.
    """
    settings = Settings.from_args(args, os.environ, HOST, state_dir=work_dir)
    return replace(settings, aws=settings.aws.with_region(settings.aws.require_region()))


def _run(args: argparse.Namespace) -> int:
    from stream_processor.config import load_config
    from stream_processor.sources.kcl import command_line

    location = config_location(args)
    if "://" not in location:
        location = str(Path(location).resolve())
    work_dir = (args.work_dir or Path(".local") / "kcl" / args.application).resolve()
    args.worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    state = processor_settings(args, work_dir)
    load_config(location, state.aws)  # fail here, not once per shard
    work_dir.mkdir(parents=True, exist_ok=True)
    command = command_line(
        location,
        state,
        dry_run=args.dry_run,
        reload_interval=args.reload_interval,
        verbose=bool(getattr(args, "verbose", False)),
    )
    wrapper = write_wrapper(work_dir, command)
    settings = settings_from_args(args, str(wrapper), state.aws)
    properties_path = work_dir / f"{args.application}.properties"
    properties_path.write_text(render_properties(kcl_properties(settings)))
    if args.print_properties:
        sys.stdout.write(properties_path.read_text())
        return 0

    env = daemon_environment(settings, os.environ)
    check_stream(settings, state.aws, env)
    jars = find_kcl_jars(args.kcl_jars)
    metrics_server = None
    if args.metrics_port is not None:
        from stream_processor.metrics import MULTIPROC_ENV, MetricsServer, prepare_multiprocess_dir

        metrics_dir = prepare_multiprocess_dir(work_dir / "metrics")
        env[MULTIPROC_ENV] = str(metrics_dir)  # the processors write their values there; we serve the sum
        metrics_server = MetricsServer(metrics_dir, args.metrics_host, args.metrics_port).start()
        log.info("serving metrics of every shard process on %s", metrics_server.url)
    daemon = KclDaemon(
        daemon_command(_java(args.java), jars, properties_path, local=settings.local),
        env,
        work_dir / "daemon.log",
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
    heartbeat = Heartbeat(work_dir / "heartbeat", daemon)
    try:
        daemon.start()
        heartbeat.start()
        return _supervise(daemon, settings, state.aws, env)
    finally:
        heartbeat.stop()
        if metrics_server is not None:
            metrics_server.stop()


def _supervise(
    daemon: KclDaemon,
    settings: ConsumerSettings | None = None,
    aws: AwsSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Wait for the daemon; the first SIGTERM/SIGINT asks it to stop gracefully, a second one kills it."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if daemon.stop_requested:
            log.warning("second signal: killing the daemon and its record processors")
            daemon.kill()
            return
        log.info("%s: stopping the daemon (processors checkpoint first)", signal.Signals(signum).name)
        daemon.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = daemon.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if daemon.stop_requested and code in (0, JVM_TERMINATED):
        log.info("daemon stopped")
        return 0
    log.error(
        "daemon exited with code %d: a record processor stopped without checkpoint or the daemon failed "
        "(see above and %s); run again to resume from the last checkpoints",
        code,
        daemon.log_path,
    )
    if settings is not None:
        release_leader_lock(settings, aws, env)
    return code or 1


def release_leader_lock(
    settings: ConsumerSettings, aws: AwsSettings | None = None, env: Mapping[str, str] | None = None
) -> bool:
    """Give up the KCL 3 leader lock our dead daemon may still hold, so a restart need not wait ~2 minutes.

    Only the leader assigns leases, and its lock (an item in the coordinator state table, renewed every
    30 s, valid 2 min) is released on a graceful stop but not when the daemon exits because a processor
    stopped. The delete is conditional on the owner being this worker's id, which no live process uses
    now, so it never takes the lock from another worker. Best effort: any failure only costs the wait.
    """
    table = settings.extra.get("coordinatorStateTableName", f"{settings.application}-CoordinatorState")
    try:
        target, credentials = daemon_aws(settings, aws or AwsSettings(), env if env is not None else os.environ)
        target.client("dynamodb", credentials=credentials).delete_item(
            TableName=table,
            Key={"key": {"S": "Leader"}},
            ConditionExpression="ownerName = :me",
            ExpressionAttributeValues={":me": {"S": settings.worker_id}},
        )
    except Exception as error:  # ConditionalCheckFailed (not ours), no table, no access: nothing to do
        log.debug("leader lock not released: %s", error)
        return False
    log.info("released the KCL leader lock held by worker %s, so a restart starts at once", settings.worker_id)
    return True
