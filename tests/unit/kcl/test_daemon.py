"""The MultiLangDaemon supervisor, on stand-in daemons (shell scripts): relaying, stopping, the heartbeat."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from stream_processor.kcl.daemon import Heartbeat, KclDaemon, write_wrapper


def test_wrapper_runs_the_processor_even_from_a_folder_with_spaces(tmp_path: Path) -> None:
    work_dir = tmp_path / "my work dir"
    work_dir.mkdir()
    marker = tmp_path / "ran it"
    script = write_wrapper(work_dir, ["/bin/sh", "-c", f"echo ok > {shlex.quote(str(marker))}"])
    assert not any(ch.isspace() for ch in str(script))  # the daemon splits executableName on whitespace
    subprocess.run([str(script)], check=True, timeout=10)
    assert marker.read_text() == "ok\n"


FAKE_DAEMON = r"""
echo '2026-11-27 01:00:00,000 [main] INFO  s.a.k.Scheduler [NONE] - Sleeping ...'
echo '2026-11-27 01:00:00,001 [main] WARN  s.a.k.LeaseAssignmentManager [NONE] - Not able to assign'
echo '2026-11-27 01:00:01,000 INFO [shardId-000000000001] kcl: holding shard shardId-000000000001 (after X)' >&2
echo '2026-11-27 01:00:01,000 INFO [shardId-000000000002] kcl: holding shard shardId-000000000002 (after Y)' >&2
echo '2026-11-27 01:00:02,000 INFO [shardId-000000000001] kcl: shard shardId-000000000001 ended: checkpointing' >&2
trap 'echo "2026-11-27 01:00:03,000 INFO [shardId-000000000002] kcl: shutdown requested" >&2; exit 143' TERM
echo ready > "$1"
while :; do sleep 0.05; done
"""


def test_daemon_output_is_relayed_and_a_stop_is_graceful(tmp_path: Path) -> None:
    import io
    import threading
    import time

    script = tmp_path / "daemon.sh"
    script.write_text(FAKE_DAEMON)
    ready = tmp_path / "ready"
    out = io.StringIO()
    daemon = KclDaemon(["/bin/sh", str(script), str(ready)], dict(os.environ), tmp_path / "daemon.log", out=out)
    daemon.start()
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    threading.Timer(0.2, daemon.stop).start()
    assert daemon.wait(timeout=10) == 143
    relayed = out.getvalue()
    assert "kcl: 2026-11-27 01:00:00,001 [main] WARN" in relayed  # the daemon's warnings reach the user
    assert "Sleeping" not in relayed  # its INFO chatter stays in the log file
    assert "holding shard shardId-000000000002" in relayed and "shutdown requested" in relayed
    assert daemon.held == {"shardId-000000000002"}  # 1 ended, 2 still held when it stopped
    assert "Sleeping" in (tmp_path / "daemon.log").read_text()


def test_the_heartbeat_is_touched_while_the_daemon_runs_and_not_after(tmp_path: Path) -> None:
    """What the ECS health check reads: a fresh file while the daemon lives, a stale one once it is gone."""
    import time

    daemon = KclDaemon(["sleep", "30"], dict(os.environ), tmp_path / "daemon.log").start()
    heartbeat = Heartbeat(tmp_path / "heartbeat", daemon, interval=0.05).start()
    try:
        time.sleep(0.3)
        first = (tmp_path / "heartbeat").stat().st_mtime
        time.sleep(0.3)
        assert (tmp_path / "heartbeat").stat().st_mtime > first
        daemon.kill()
        daemon.wait(timeout=5)
        time.sleep(0.2)
        stopped = (tmp_path / "heartbeat").stat().st_mtime
        time.sleep(0.3)
        assert (tmp_path / "heartbeat").stat().st_mtime == stopped
    finally:
        heartbeat.stop()
        daemon.kill()
