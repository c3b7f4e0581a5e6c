"""The local AWS stack: kinesis-local for Kinesis and moto_server for everything else, both on 127.0.0.1.

Used two ways: as a context manager (tests, the demo, the benchmark), and detached (`stream-processor stack
start` and `... stop`), keeping the servers' PIDs and ports in a state file (under `.local/` in the current
directory by default) so that stop kills exactly what start started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from stream_processor.aws import AwsSettings
from stream_processor.local.kinesis import start_kinesis_local
from stream_processor.local.moto import start_moto
from stream_processor.local.processes import LOOPBACK, ManagedProcess

DEFAULT_REGION = "us-east-1"
DEFAULT_STATE_DIR = Path(".local")  # in the current directory (a checkout's is gitignored), never the package
STATE_FILE_NAME = "stack.json"

# Emulators accept any signature; these keep boto3 and the KCL's Java SDK from looking for real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def local_client(service: str, endpoint_url: str, region: str = DEFAULT_REGION) -> Any:
    """A boto3 client for an emulator: explicit fake credentials, so no real credential is ever looked up."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def create_stream(client: Any, name: str, shards: int, timeout: float = 30.0) -> None:
    """Create a provisioned stream (if absent) and wait until it is ACTIVE.

    Raises:
        TimeoutError: it did not become ACTIVE within `timeout` seconds.
    """
    with contextlib.suppress(client.exceptions.ResourceInUseException):  # already there: just wait for it
        client.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.05)
    raise TimeoutError(f"stream {name!r} is still {status} after {timeout:.0f} s")


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """One server of a running stack, as written to the state file: enough to address it and to stop it."""

    name: str
    pid: int
    port: int
    started: str  # /proc/<pid>/stat start time: guards against killing a recycled PID

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


@dataclass(frozen=True, slots=True)
class StackState:
    """The state file's content."""

    region: str
    kinesis: ServerRecord
    moto: ServerRecord
    log_dir: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        return cls(
            region=data["region"],
            kinesis=ServerRecord(**data["kinesis"]),
            moto=ServerRecord(**data["moto"]),
            log_dir=data["log_dir"],
        )


def _process_start_time(pid: int) -> str:
    """The kernel's start time of `pid` (empty when it is gone or /proc is unavailable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Fields after the command name (which may hold spaces) start after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else ""


def is_alive(record: ServerRecord) -> bool:
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not record.started or _process_start_time(record.pid) == record.started


def _stop_recorded(record: ServerRecord, timeout: float = 10.0) -> bool:
    """Stop a server from the state file by its PID (its process group); False when it was already gone."""
    if not is_alive(record):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not is_alive(record) or _is_zombie(record.pid):
                return True
            time.sleep(0.05)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _record(server: ManagedProcess) -> ServerRecord:
    return ServerRecord(server.name, server.pid, server.port, _process_start_time(server.pid))


class LocalStack:
    """kinesis-local and moto_server on loopback, started together and stopped together by PID."""

    def __init__(self, log_dir: Path, region: str = DEFAULT_REGION, kinesis_local: Path | None = None) -> None:
        """`kinesis_local`: the npm prefix kinesis-local is installed in (default: `find_kinesis_local`'s)."""
        self.log_dir = log_dir
        self.region = region
        self.kinesis_local = kinesis_local
        self._kinesis: ManagedProcess | None = None
        self._moto: ManagedProcess | None = None

    def start(self) -> LocalStack:
        """Start both servers and wait until they answer; on any failure stop what did start.

        Raises:
            RuntimeError: a server is not installed or did not start (the message says how to fix it).
        """
        try:
            self._kinesis = start_kinesis_local(self.log_dir, prefix=self.kinesis_local)
            self._moto = start_moto(self.log_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self._moto, self._kinesis):
            if server is not None:
                server.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _server(self, server: ManagedProcess | None) -> ManagedProcess:
        if server is None:
            raise RuntimeError("the local stack is not started")
        return server

    @property
    def kinesis_url(self) -> str:
        return self._server(self._kinesis).url

    @property
    def moto_url(self) -> str:
        return self._server(self._moto).url

    @property
    def servers(self) -> tuple[ManagedProcess, ManagedProcess]:
        return self._server(self._kinesis), self._server(self._moto)

    def aws_settings(self) -> AwsSettings:
        """Settings for DynamoDB, CloudWatch, Logs, SNS, SES, S3 and SQS (all on moto)."""
        return AwsSettings(region=self.region, endpoint_url=self.moto_url)

    def environment(self) -> dict[str, str]:
        """Variables for a child process (the KCL daemon, the consumer) that talks to this stack."""
        return {**FAKE_CREDENTIALS, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    def kinesis_client(self) -> Any:
        return local_client("kinesis", self.kinesis_url, self.region)

    def client(self, service: str) -> Any:
        """A client for a moto-served service (dynamodb, sns, ...)."""
        return local_client(service, self.moto_url, self.region)

    def create_stream(self, name: str, shards: int, timeout: float = 30.0) -> None:
        """Create a stream on kinesis-local and wait until it is ACTIVE."""
        create_stream(self.kinesis_client(), name, shards, timeout)

    def state(self) -> StackState:
        kinesis, moto = self.servers
        return StackState(self.region, _record(kinesis), _record(moto), str(self.log_dir))


# --- the start/stop/status commands -------------------------------------------------------------------


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE_NAME


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> StackState | None:
    """The running stack recorded by `start`, or None."""
    path = state_path(state_dir)
    if not path.exists():
        return None
    return StackState.from_json(path.read_text())


def start_detached(
    state_dir: Path = DEFAULT_STATE_DIR, region: str = DEFAULT_REGION, kinesis_local: Path | None = None
) -> StackState:
    """Start a stack that outlives this process and record it in the state file.

    Raises:
        RuntimeError: a stack recorded there is still running, or a server did not start.
    """
    existing = read_state(state_dir)
    if existing is not None and (is_alive(existing.kinesis) or is_alive(existing.moto)):
        raise RuntimeError(f"a local stack is already running (see {state_path(state_dir)}); stop it first")
    stack = LocalStack(state_dir.resolve() / "logs", region, kinesis_local).start()
    state = stack.state()
    state_dir.mkdir(parents=True, exist_ok=True)
    state_path(state_dir).write_text(state.to_json() + "\n")
    return state


def stop_detached(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Stop the servers recorded in the state file (by PID) and remove it; returns the names stopped."""
    state = read_state(state_dir)
    if state is None:
        return []
    stopped = [record.name for record in (state.moto, state.kinesis) if _stop_recorded(record)]
    state_path(state_dir).unlink(missing_ok=True)
    return stopped
