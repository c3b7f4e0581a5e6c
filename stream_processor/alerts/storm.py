"""Storm folding: at most N alerts per rule, group and destination per window; the rest become one digest.

A rule's `storm_window` sets its window; the others use the policy's.

Thousands of AccessDenied in a minute must not become thousands of Slack posts, and must not vanish
either. Folded alerts are counted in a SQLite file shared by the shard processes of a host, written
before the batch is committed, so a digest survives a restart; the digest is sent once its window closes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream_processor.model import Alert, CloudTrailEvent, Digest, Position


@dataclass(frozen=True, slots=True)
class StormPolicy:
    """Defaults keep a Slack channel readable under a 10,000-alert storm: 10 posts and a digest a minute."""

    max_alerts_per_window: int = 10
    window_seconds: float = 60.0
    claim_seconds: float = 120.0
    keep_closed_seconds: float = 900.0
    """How long a closed window's count is kept after its digest: a batch that arrived in the window may
    still be sending (one Slack post a second) and must find the window full, not a fresh one."""


class StormFolder:
    """Decides per alert whether it is sent or folded, and hands out digests of closed windows."""

    TOP_NAMES = 5
    BUSY_TIMEOUT_SECONDS = 30.0

    def __init__(
        self, path: str | Path | None = None, policy: StormPolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy or StormPolicy()
        self.clock = clock
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            ":memory:" if path is None else str(path),
            timeout=self.BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.executescript(
            "CREATE TABLE IF NOT EXISTS storm_windows (rule TEXT, grp TEXT, destination TEXT, window_start REAL,"
            " sent INTEGER NOT NULL DEFAULT 0, folded INTEGER NOT NULL DEFAULT 0, first_time TEXT, last_time TEXT,"
            " names BLOB, description TEXT, sample BLOB, sample_origin TEXT, sample_sequence TEXT,"
            " claimed_until REAL NOT NULL DEFAULT 0, window_seconds REAL,"
            " PRIMARY KEY (rule, grp, destination, window_start))"
        )
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(storm_windows)")}
        if "window_seconds" not in columns:  # a file written before per-rule windows: its rows use the policy's
            self._connection.execute("ALTER TABLE storm_windows ADD COLUMN window_seconds REAL")
        self._lock = threading.Lock()

    def admit(
        self,
        alert: Alert,
        destination_id: str,
        group: str = "",
        now: float | None = None,
        window_seconds: float | None = None,
    ) -> bool:
        """True: send it now. False: it was folded into its window's digest (durably).

        `now` is when the batch arrived: a batch whose admitted alerts take long to send (Slack's one post a
        second) must not spill into later windows and be admitted again there. `window_seconds`: the rule's
        own window (its `storm_window`), else the policy's.
        """
        seconds = window_seconds or self.policy.window_seconds
        moment = self.clock() if now is None else now
        window = moment - (moment % seconds)
        key = (alert.rule_name, group, destination_id, window)
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute(
                    "SELECT sent, folded, first_time, last_time, names FROM storm_windows"
                    " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                    key,
                ).fetchone()
                if row is None:
                    connection.execute(
                        "INSERT INTO storm_windows (rule, grp, destination, window_start, sent, window_seconds)"
                        " VALUES (?, ?, ?, ?, 1, ?)",
                        (*key, seconds),
                    )
                    connection.execute("COMMIT")
                    return True
                sent, folded, first_time, last_time, names = row
                if sent < self.policy.max_alerts_per_window:
                    connection.execute(
                        "UPDATE storm_windows SET sent = sent + 1"
                        " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                        key,
                    )
                    connection.execute("COMMIT")
                    return True
                self._fold(key, alert, folded, first_time, last_time, names)
                connection.execute("COMMIT")
                return False
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def _fold(
        self,
        key: tuple[str, str, str, float],
        alert: Alert,
        folded: int,
        first_time: str | None,
        last_time: str | None,
        names_blob: bytes | None,
    ) -> None:
        event_time = str(alert.event.data.get("eventTime") or "")
        names: Counter[str] = Counter(orjson.loads(names_blob) if names_blob else {})
        names[alert.event.event_name or "?"] += 1
        first = min(filter(None, (first_time, event_time)), default="")
        last = max(filter(None, (last_time, event_time)), default="")
        sample_columns = ""
        parameters: list[object] = [folded + 1, first, last, orjson.dumps(dict(names))]
        if folded == 0:
            sample_columns = ", description = ?, sample = ?, sample_origin = ?, sample_sequence = ?"
            position = alert.event.position
            parameters += [alert.description, alert.event.raw, position.origin, position.sequence]
        self._connection.execute(
            f"UPDATE storm_windows SET folded = ?, first_time = ?, last_time = ?, names = ?{sample_columns}"
            " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
            (*parameters, *key),
        )

    def due(self, force: bool = False) -> list[Digest]:
        """Claim the digests of closed windows (all windows when `force`, e.g. at shutdown)."""
        now = self.clock()
        default = self.policy.window_seconds
        closes_by = float("inf") if force else now
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                rows = connection.execute(
                    "SELECT rule, grp, destination, window_start, folded, first_time, last_time, names, description,"
                    " sample, sample_origin, sample_sequence, COALESCE(window_seconds, ?) FROM storm_windows"
                    " WHERE window_start + COALESCE(window_seconds, ?) <= ? AND folded > 0 AND claimed_until <= ?",
                    (default, default, closes_by, now),
                ).fetchall()
                connection.executemany(
                    "UPDATE storm_windows SET claimed_until = ?"
                    " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                    [(now + self.policy.claim_seconds, *row[:4]) for row in rows],
                )
                connection.execute(
                    "DELETE FROM storm_windows WHERE folded = 0 AND window_start + COALESCE(window_seconds, ?) <= ?",
                    (default, now - self.policy.keep_closed_seconds),
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        digests = []
        for row in rows:
            names = Counter(orjson.loads(row[7]))
            sample = CloudTrailEvent(row[9], orjson.loads(row[9]), Position(row[10], row[11]))
            digests.append(
                Digest(
                    rule_name=row[0],
                    description=row[8] or "",
                    group=row[1],
                    destination_id=row[2],
                    window_start=row[3],
                    window_seconds=row[12],
                    count=row[4],
                    first_time=row[5] or "",
                    last_time=row[6] or "",
                    top_event_names=tuple(names.most_common(self.TOP_NAMES)),
                    sample=sample,
                )
            )
        return digests

    def done(self, digest: Digest) -> None:
        """The digest was delivered (or parked): take what it reported off its window.

        Alerts folded into the window while the digest was out stay counted for the next digest; the row
        itself stays (its `sent` count still caps the window) until it has been empty and closed for the
        policy's `keep_closed_seconds`.
        """
        with self._lock:
            self._connection.execute(
                "UPDATE storm_windows SET folded = folded - ?, claimed_until = 0,"
                " names = CASE WHEN folded = ? THEN NULL ELSE names END,"
                " first_time = CASE WHEN folded = ? THEN NULL ELSE first_time END,"
                " last_time = CASE WHEN folded = ? THEN NULL ELSE last_time END"
                " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                (
                    digest.count,
                    digest.count,
                    digest.count,
                    digest.count,
                    digest.rule_name,
                    digest.group,
                    digest.destination_id,
                    digest.window_start,
                ),
            )

    def release(self, digest: Digest) -> None:
        """The digest could be neither delivered nor parked: let the next flush try again."""
        with self._lock:
            self._connection.execute(
                "UPDATE storm_windows SET claimed_until = 0"
                " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                (digest.rule_name, digest.group, digest.destination_id, digest.window_start),
            )

    def close(self) -> None:
        self._connection.close()
