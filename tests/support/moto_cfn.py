"""moto in server mode with the CloudFormation models of `moto_cfn_models` (resource types moto's CloudFormation
lacks), so the templates in infra/cloudformation deploy whole: `python -m tests.support.moto_cfn -H HOST -p PORT`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stream_processor.local.processes import LOOPBACK, ManagedProcess, free_port, start_process

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_moto_with_cfn(log_dir: Path) -> ManagedProcess:
    """This module's server on a free loopback port, waited for; stopped by the caller through its PID."""
    port = free_port()
    command = [sys.executable, "-m", "tests.support.moto_cfn", "-H", LOOPBACK, "-p", str(port)]
    return start_process("moto-cfn", command, port, log_dir, cwd=REPO_ROOT)


if __name__ == "__main__":
    from moto.server import main

    import tests.support.moto_cfn_models  # noqa: F401  (registers the models before the first stack)

    main(sys.argv[1:])
