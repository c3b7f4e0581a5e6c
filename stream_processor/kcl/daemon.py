"""The MultiLangDaemon (Java) as a child process: its command line and environment, output relayed, stopped
gracefully, and a heartbeat file while it runs.

The daemon holds the shard leases in DynamoDB and starts one record processor process per shard it holds
(`stream_processor.kcl.processor`, through the wrapper script `write_wrapper` writes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

import stream_processor
from stream_processor.errors import ConfigError
from stream_processor.kcl.properties import ConsumerSettings

log = logging.getLogger(__name__)

# Relative to the current directory: where `make kcl` puts them in a checkout (never inside the installed package).
DEFAULT_JARS = Path("infra") / "kcl" / "jars"
JARS_ENV = "STREAM_PROCESSOR_KCL_JARS"
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
SETUP_HINT = (
    f"set ${JARS_ENV} (or --kcl-jars) to a folder of the KCL MultiLangDaemon's jars, or install amazon-kclpy "
    "built with its jars; in a checkout, `make kcl` (or `make setup`) fetches them into infra/kcl/jars"
)
# What a SIGTERM'd JVM exits with after its shutdown hook ran (128 + 15).
JVM_TERMINATED = 143


def import_root() -> Path:
    """The sys.path folder this package was imported from (site-packages, or a checkout): the processors
    started by the daemon import the same code even when it is not installed."""
    return Path(stream_processor.__path__[0]).resolve().parent


def find_kcl_jars(explicit: str | None = None) -> Path:
    """The folder of the daemon's jars: the flag, $STREAM_PROCESSOR_KCL_JARS, infra/kcl/jars, or amazon_kclpy's.

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


def find_java(explicit: str | None = None) -> str:
    """The flag, $JAVA_HOME/bin/java, or java on PATH.

    Raises:
        ConfigError: no Java runtime.
    """
    if explicit:
        return explicit
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ConfigError("java is not on PATH: the KCL daemon needs a Java runtime (17 or later)")
    return found


def supervise(daemon: KclDaemon, after_failure: Callable[[], object] | None = None) -> int:
    """Wait for the daemon; the first SIGTERM/SIGINT asks it to stop gracefully, a second one kills it.

    Returns 0 after a requested stop, else the daemon's exit code (1 if it was 0), once `after_failure` ran.
    """

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
    if after_failure is not None:
        after_failure()
    return code or 1
