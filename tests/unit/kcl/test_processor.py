"""The record processor process the daemon starts: what it does about its own life (no daemon, no Java)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def test_a_processor_ends_soon_after_its_daemon_dies(tmp_path: Path) -> None:
    # GIVEN a "daemon" process whose child processor is asleep (as in a rate-limit wait)
    pid_file = tmp_path / "child.pid"
    child = (
        "import os, time; from stream_processor.kcl.processor import die_with_parent; "
        f"die_with_parent(0.05); open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    parent = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    )
    daemon = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())
        # WHEN the daemon dies without telling it
        daemon.kill()
        daemon.wait()
        # THEN the processor is gone within a few polls
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child_pid}").exists() and "Z" not in _state(child_pid):
            assert time.monotonic() < deadline, "the processor outlived its daemon"
            time.sleep(0.05)
    finally:
        if daemon.poll() is None:
            daemon.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"
