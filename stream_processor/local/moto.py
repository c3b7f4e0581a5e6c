"""moto in server mode: DynamoDB, CloudWatch, Logs, SNS, SES, S3 and SQS on loopback."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from stream_processor.local.processes import LOOPBACK, ManagedProcess, free_port, start_process


def start_moto(log_dir: Path, port: int | None = None) -> ManagedProcess:
    """Start `moto_server` on 127.0.0.1 and wait until it answers.

    Raises:
        RuntimeError: moto is not installed (`pip install 'moto[server]'`) or did not start.
    """
    port = port or free_port()
    executable = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(executable).exists():
        raise RuntimeError("moto_server not found: install the local extras (pip install 'moto[server]')")
    return start_process("moto", [executable, "-H", LOOPBACK, "-p", str(port)], port, log_dir)
