"""The one way a SQLite file is opened: shared by the shard processes of one host, safe across threads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal


def open_sqlite(
    path: str | Path,
    *,
    busy_timeout_seconds: float,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
) -> sqlite3.Connection:
    """A connection to the SQLite file at `path`, created with its folder if need be.

    WAL lets readers go on while one process writes; a writer waits up to `busy_timeout_seconds` for another's
    lock instead of failing. Autocommit (`isolation_level=None`): a statement is its own transaction, and a
    store that must read and write in one step says `BEGIN IMMEDIATE` itself. One connection serves every thread of the
    store, which serialises its calls with its own lock. `synchronous="NORMAL"` trades the last commits before
    a power cut (never a crash of the process) for fewer fsyncs: for state that is safe to redo.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(
        str(path),
        timeout=busy_timeout_seconds,
        isolation_level=None,
        check_same_thread=False,
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    return connection


__all__ = ["open_sqlite"]
