"""kinesis-local (npm, the JavaScript build of kinesis-mock): Kinesis on loopback, speaking h2c for the KCL.

kinesis-local hard-codes its listen address to the wildcard (every interface) and has no host setting. We
start it under node with `infra/local/loopback.cjs` preloaded, which forces every TCP listen in that process
onto 127.0.0.1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stream_processor.local.processes import ManagedProcess, free_port, start_process

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_INFRA = REPO_ROOT / "infra" / "local"
PACKAGE_DIR = LOCAL_INFRA / "node_modules" / "kinesis-local"
LOOPBACK_PRELOAD = LOCAL_INFRA / "loopback.cjs"
SETUP_HINT = "run `make setup` (it runs `npm ci --prefix infra/local`)"

# Operation delays near zero: a new stream is ACTIVE at once, reshards finish at once.
_DURATION_VARIABLES = (
    "CREATE_STREAM_DURATION",
    "DELETE_STREAM_DURATION",
    "REGISTER_STREAM_CONSUMER_DURATION",
    "DEREGISTER_STREAM_CONSUMER_DURATION",
    "START_STREAM_ENCRYPTION_DURATION",
    "STOP_STREAM_ENCRYPTION_DURATION",
    "MERGE_SHARDS_DURATION",
    "SPLIT_SHARD_DURATION",
    "UPDATE_SHARD_COUNT_DURATION",
    "UPDATE_STREAM_MODE_DURATION",
)
OPERATION_DURATION = "10ms"
SHARD_LIMIT = 200


def kinesis_local_main() -> Path:
    """The kinesis-local entry point installed under infra/local.

    Raises:
        RuntimeError: it is not installed, with the command that installs it.
    """
    main = PACKAGE_DIR / "main.js"
    if not main.exists():
        raise RuntimeError(f"kinesis-local is not installed ({main} is missing): {SETUP_HINT}")
    return main


def kinesis_local_env(plain_port: int, tls_port: int) -> dict[str, str]:
    """The environment kinesis-local reads its settings from."""
    env = {
        "KINESIS_MOCK_PLAIN_PORT": str(plain_port),
        "KINESIS_MOCK_TLS_PORT": str(tls_port),
        # Without it the JS build looks for server.json in the working directory and dies.
        "KINESIS_MOCK_CERT_PATH": str(PACKAGE_DIR / "server.json"),
        "SHOULD_PERSIST_DATA": "false",
        "LOAD_DATA_IF_EXISTS": "false",
        "SHARD_LIMIT": str(SHARD_LIMIT),
        "AWS_ACCOUNT_ID": "000000000000",
        "AWS_REGION": "us-east-1",
        "LOG_LEVEL": "WARN",
    }
    env.update(dict.fromkeys(_DURATION_VARIABLES, OPERATION_DURATION))
    return env


def start_kinesis_local(log_dir: Path, port: int | None = None) -> ManagedProcess:
    """Start kinesis-local on 127.0.0.1 (plain h2c port = `port`, TLS on another free port) and wait for it.

    Raises:
        RuntimeError: node or kinesis-local is missing, or it did not start.
    """
    main = kinesis_local_main()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: kinesis-local needs Node.js (18 or later)")
    plain_port = port or free_port()
    tls_port = free_port()
    while tls_port == plain_port:
        tls_port = free_port()
    command = [node, "--require", str(LOOPBACK_PRELOAD), str(main)]
    return start_process(
        "kinesis-local",
        command,
        plain_port,
        log_dir,
        env=kinesis_local_env(plain_port, tls_port),
        cwd=log_dir,
    )
