"""`stream-processor demo` end to end, as `make demo` runs it: real emulators, real KCL daemon, real receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def demo_command(work_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stream_processor", "demo", "--work-dir", str(work_dir), *extra]


def demo_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "220", "NO_COLOR": "1"}


def started_pids(work_dir: Path) -> dict[str, int]:
    path = work_dir / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie no longer runs; its parent reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.timeout(240)
def test_demo_delivers_every_seed_alert_once_and_stops_everything(tmp_path: Path) -> None:
    # WHEN the demo runs with its defaults (3,000 events, 6 seed triggers, 2 shards)
    finished = subprocess.run(
        demo_command(tmp_path), capture_output=True, text=True, cwd=REPO_ROOT, env=demo_env(), timeout=220
    )
    output = finished.stdout + finished.stderr
    # THEN it reports every expected alert at the receiver exactly once, with both seed rules among them
    assert finished.returncode == 0, output
    assert "every expected alert arrived exactly once" in output
    assert "Create AccessKey" in output and "SSM Start Session" in output
    assert "username: " in output  # the StartSession rule's jq output is shown as text
    assert "duplicates" in output and "first alert" in output
    # AND nothing it started is still running
    pids = started_pids(tmp_path)
    assert set(pids) == {"kinesis-local", "moto", "consumer"}
    assert [name for name, pid in pids.items() if running(pid)] == []


@pytest.mark.timeout(120)
def test_an_interrupted_demo_stops_everything_it_started(tmp_path: Path) -> None:
    # GIVEN a demo whose consumer has started
    process = subprocess.Popen(
        demo_command(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env=demo_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while "consumer" not in started_pids(tmp_path) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "consumer" in started_pids(tmp_path), "the demo never started its consumer"
        # WHEN it gets Ctrl-C
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # THEN it says so, exits non-zero, and every process it started is gone
    assert process.returncode == 130, output
    assert "interrupted" in output
    pids = started_pids(tmp_path)
    assert [name for name, pid in pids.items() if running(pid)] == []
