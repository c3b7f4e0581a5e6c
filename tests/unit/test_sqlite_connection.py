"""The shared SQLite opening: WAL, the durability asked for, a busy timeout, usable from any thread."""

from __future__ import annotations

import threading
from pathlib import Path

from stream_processor.sqlite_connection import open_sqlite


def test_a_file_is_created_with_its_folder_in_wal_mode(tmp_path: Path) -> None:
    connection = open_sqlite(tmp_path / "deep" / "state.db", busy_timeout_seconds=2.5, synchronous="NORMAL")

    assert (tmp_path / "deep" / "state.db").exists()
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert connection.execute("PRAGMA busy_timeout").fetchone() == (2500,)
    assert connection.isolation_level is None


def test_full_durability_is_the_default_and_other_threads_may_use_the_connection(tmp_path: Path) -> None:
    connection = open_sqlite(tmp_path / "state.db", busy_timeout_seconds=1.0)
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(connection.execute("SELECT 1").fetchone()))
    thread.start()
    thread.join()
    assert results == [(1,)]
