"""kinesis-local (npm, the JavaScript build of kinesis-mock): Kinesis on loopback, speaking h2c for the KCL.

kinesis-local hard-codes its listen address to the wildcard (every interface) and has no host setting. We
start it under node with the packaged `loopback.cjs` preloaded, which forces every TCP listen in that process
onto 127.0.0.1.

Its pinned npm manifest (package.json, package-lock.json) ships with this package; npm installs it into a
folder (an npm prefix) found by `find_kinesis_local`.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from stream_processor.local.processes import ManagedProcess, free_port, start_process
from stream_processor.local.resources import packaged_file, user_cache_dir

PREFIX_ENV = "STREAM_PROCESSOR_KINESIS_LOCAL"
CHECKOUT_PREFIX = Path("infra") / "local"  # relative to the current directory: where `make setup` installs it
MANIFEST_FILES = ("package.json", "package-lock.json")
ENTRY_POINT = Path("node_modules") / "kinesis-local" / "main.js"

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


def default_prefix(environ: Mapping[str, str] = os.environ) -> Path:
    """Where kinesis-local is installed when nobody says: the user cache (a checkout uses its infra/local)."""
    return user_cache_dir(environ) / "kinesis-local"


def install_command(prefix: Path) -> str:
    """The shell commands that install the pinned kinesis-local into `prefix` from the packaged manifest."""
    manifest = [shlex.quote(str(packaged_file("kinesis-local", name))) for name in MANIFEST_FILES]
    target = shlex.quote(str(prefix))
    return f"mkdir -p {target} && cp {' '.join(manifest)} {target}/ && npm ci --prefix {target} --no-audit --no-fund"


def find_kinesis_local(explicit: Path | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The npm prefix kinesis-local is installed in: `explicit`, $STREAM_PROCESSOR_KINESIS_LOCAL, or else the
    current directory's infra/local (a checkout after `make setup`) or the user cache folder.

    Raises:
        RuntimeError: it is not installed there, with the commands that install it.
    """
    if explicit is not None or environ.get(PREFIX_ENV):
        candidates = [Path(explicit if explicit is not None else environ[PREFIX_ENV])]
    else:
        candidates = [CHECKOUT_PREFIX, default_prefix(environ)]
    for prefix in candidates:
        if (prefix / ENTRY_POINT).is_file():
            return prefix.resolve()
    tried = ", ".join(str((prefix / ENTRY_POINT).absolute()) for prefix in candidates)
    raise RuntimeError(
        f"kinesis-local is not installed (no {tried}). Install the pinned version with npm (Node.js 18 or later):\n"
        f"  {install_command(candidates[-1].absolute())}\n"
        f"or set ${PREFIX_ENV} to the folder it is installed in (in a checkout, `make setup` installs it)"
    )


def kinesis_local_env(package_dir: Path, plain_port: int, tls_port: int) -> dict[str, str]:
    """The environment kinesis-local reads its settings from; `package_dir` is its node_modules/kinesis-local."""
    env = {
        "KINESIS_MOCK_PLAIN_PORT": str(plain_port),
        "KINESIS_MOCK_TLS_PORT": str(tls_port),
        # Without it the JS build looks for server.json in the working directory and dies.
        "KINESIS_MOCK_CERT_PATH": str(package_dir / "server.json"),
        "SHOULD_PERSIST_DATA": "false",
        "LOAD_DATA_IF_EXISTS": "false",
        "SHARD_LIMIT": str(SHARD_LIMIT),
        "AWS_ACCOUNT_ID": "000000000000",
        "AWS_REGION": "us-east-1",
        "LOG_LEVEL": "WARN",
    }
    env.update(dict.fromkeys(_DURATION_VARIABLES, OPERATION_DURATION))
    return env


def start_kinesis_local(log_dir: Path, port: int | None = None, prefix: Path | None = None) -> ManagedProcess:
    """Start kinesis-local on 127.0.0.1 (plain h2c port = `port`, TLS on another free port) and wait for it.

    `prefix` is the npm prefix it is installed in (default: see `find_kinesis_local`).

    Raises:
        RuntimeError: node or kinesis-local is missing, or it did not start.
    """
    main = find_kinesis_local(prefix) / ENTRY_POINT
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: kinesis-local needs Node.js (18 or later)")
    plain_port = port or free_port()
    tls_port = free_port()
    while tls_port == plain_port:
        tls_port = free_port()
    command = [node, "--require", str(packaged_file("kinesis-local", "loopback.cjs")), str(main)]
    return start_process(
        "kinesis-local",
        command,
        plain_port,
        log_dir,
        env=kinesis_local_env(main.parent, plain_port, tls_port),
        cwd=log_dir,
    )
