"""The ledger: an alert goes to a destination at most once per rule + eventID.

Claim before sending, complete after, release on failure. A claim is one conditional write that
succeeds when the key is absent, expired, in progress past its in-progress expiry, or in progress under
our own owner (the same shard, re-processed after a crash). A claim never completed is therefore sent
again on replay; a completed one never is. Stores: in memory (one process), SQLite (every shard process
on a host), DynamoDB (many hosts).
"""

from __future__ import annotations

import enum
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stream_processor.aws_errors import error_code
from stream_processor.errors import DedupeStoreError, call_backend
from stream_processor.sqlite_connection import open_sqlite

Clock = Callable[[], float]


class Status(enum.Enum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class ClaimOutcome(enum.Enum):
    """What a claim found: go ahead, skip (already sent), or wait (another worker is sending it now)."""

    CLAIMED = "claimed"
    ALREADY_DONE = "already_done"
    HELD_ELSEWHERE = "held_elsewhere"


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """One key's state; EXPIRED is computed from `expires_at`, never stored."""

    key: str
    status: Status
    owner: str
    expires_at: float
    in_progress_until: float

    def is_expired(self, now: float) -> bool:
        return self.expires_at <= now

    def claimable_by(self, owner: str, now: float) -> bool:
        if self.is_expired(now):
            return True
        if self.status is Status.COMPLETED:
            return False
        return self.in_progress_until <= now or self.owner == owner


def dedupe_key(rule_name: str, event_id: str, destination_id: str) -> str:
    """Per destination, so a retry after an SNS failure never sends Slack a second copy."""
    return f"{rule_name}\x1f{event_id}\x1f{destination_id}"


class DedupeStore(ABC):
    """Public claim/complete/release/get here; one private hook set per backend."""

    DEFAULT_TTL_SECONDS = 7 * 24 * 3600.0
    DEFAULT_IN_PROGRESS_SECONDS = 120.0

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        in_progress_seconds: float = DEFAULT_IN_PROGRESS_SECONDS,
        clock: Clock = time.time,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.in_progress_seconds = in_progress_seconds
        self.clock = clock

    def claim(self, key: str, owner: str) -> ClaimOutcome:
        """Take `key` for sending.

        Raises:
            DedupeStoreError: the backend failed (wrapped once, chained).
        """
        now = self.clock()
        record = LedgerRecord(key, Status.IN_PROGRESS, owner, now + self.ttl_seconds, now + self.in_progress_seconds)
        if self._wrap(self._put_if_claimable, record, now):
            return ClaimOutcome.CLAIMED
        existing: LedgerRecord | None = self._wrap(self._get, key)
        if existing is not None and existing.status is Status.COMPLETED and not existing.is_expired(now):
            return ClaimOutcome.ALREADY_DONE
        return ClaimOutcome.HELD_ELSEWHERE

    def complete(self, key: str, owner: str) -> None:
        """Mark `key` sent: it will never be sent again within the TTL."""
        now = self.clock()
        record = LedgerRecord(key, Status.COMPLETED, owner, now + self.ttl_seconds, now)
        self._wrap(self._put, record)

    def release(self, key: str) -> None:
        """Give a claim back (the send failed), so the next attempt can claim it at once."""
        self._wrap(self._delete, key)

    def get(self, key: str) -> LedgerRecord | None:
        record: LedgerRecord | None = self._wrap(self._get, key)
        if record is not None and record.is_expired(self.clock()):
            return None
        return record

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's connections."""

    @staticmethod
    def _wrap(function: Callable[..., Any], *args: Any) -> Any:
        return call_backend(DedupeStoreError, "ledger", function, *args)

    @abstractmethod
    def _put_if_claimable(self, record: LedgerRecord, now: float) -> bool:
        """Write `record` only if the stored one is absent or claimable by `record.owner` at `now`."""

    @abstractmethod
    def _put(self, record: LedgerRecord) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> LedgerRecord | None: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...


class MemoryDedupeStore(DedupeStore):
    """One process: an LRU bounded by `max_entries`, expiring by TTL."""

    DEFAULT_MAX_ENTRIES = 1_000_000

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_entries = max_entries
        self._records: OrderedDict[str, LedgerRecord] = OrderedDict()
        self._lock = threading.Lock()

    def _put_if_claimable(self, record: LedgerRecord, now: float) -> bool:
        with self._lock:
            existing = self._records.get(record.key)
            if existing is not None and not existing.claimable_by(record.owner, now):
                return False
            self._store(record)
            return True

    def _put(self, record: LedgerRecord) -> None:
        with self._lock:
            self._store(record)

    def _store(self, record: LedgerRecord) -> None:
        self._records[record.key] = record
        self._records.move_to_end(record.key)
        while len(self._records) > self.max_entries:
            self._records.popitem(last=False)

    def _get(self, key: str) -> LedgerRecord | None:
        with self._lock:
            return self._records.get(key)

    def _delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)


class SQLiteDedupeStore(DedupeStore):
    """Every shard process on one host shares one file; WAL and immediate transactions keep claims atomic."""

    BUSY_TIMEOUT_SECONDS = 30.0
    PURGE_EVERY_CLAIMS = 10_000

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self._connection = open_sqlite(self.path, busy_timeout_seconds=self.BUSY_TIMEOUT_SECONDS, synchronous="NORMAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, status TEXT NOT NULL, owner TEXT NOT NULL,"
            " expires_at REAL NOT NULL, in_progress_until REAL NOT NULL)"
        )
        self._lock = threading.Lock()
        self._claims = 0

    def _put_if_claimable(self, record: LedgerRecord, now: float) -> bool:
        with self._lock:
            self._claims += 1
            if self._claims % self.PURGE_EVERY_CLAIMS == 0:
                self._connection.execute("DELETE FROM ledger WHERE expires_at <= ?", (now,))
            cursor = self._connection.execute(
                "INSERT INTO ledger (key, status, owner, expires_at, in_progress_until)"
                " VALUES (:key, :status, :owner, :expires_at, :in_progress_until)"
                " ON CONFLICT(key) DO UPDATE SET status = excluded.status, owner = excluded.owner,"
                " expires_at = excluded.expires_at, in_progress_until = excluded.in_progress_until"
                " WHERE ledger.expires_at <= :now"
                " OR (ledger.status = 'IN_PROGRESS' AND (ledger.in_progress_until <= :now OR ledger.owner = :owner))",
                {**_named(record), "now": now},
            )
            return cursor.rowcount == 1

    def _put(self, record: LedgerRecord) -> None:
        with self._lock:
            self._connection.execute("INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?, ?)", _row(record))

    def _get(self, key: str) -> LedgerRecord | None:
        with self._lock:
            row = self._connection.execute("SELECT * FROM ledger WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return LedgerRecord(row[0], Status(row[1]), row[2], row[3], row[4])

    def _delete(self, key: str) -> None:
        with self._lock:
            self._connection.execute("DELETE FROM ledger WHERE key = ?", (key,))

    def close(self) -> None:
        self._connection.close()


def _named(record: LedgerRecord) -> dict[str, Any]:
    return dict(zip(("key", "status", "owner", "expires_at", "in_progress_until"), _row(record), strict=True))


def _row(record: LedgerRecord) -> tuple[str, str, str, float, float]:
    return (record.key, record.status.value, record.owner, record.expires_at, record.in_progress_until)


class DynamoDBClientProtocol(Protocol):
    def put_item(self, **kwargs: Any) -> Any: ...
    def get_item(self, **kwargs: Any) -> Any: ...
    def delete_item(self, **kwargs: Any) -> Any: ...


class DynamoDBDedupeStore(DedupeStore):
    """Many hosts: conditional puts; `expiration` (epoch seconds) is the table's TTL attribute."""

    def __init__(self, client: DynamoDBClientProtocol, table_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.table_name = table_name

    def _put_if_claimable(self, record: LedgerRecord, now: float) -> bool:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=self._item(record),
                ConditionExpression=(
                    "attribute_not_exists(#k) OR #e <= :now"
                    " OR (#s = :in_progress AND (#ip <= :now OR #o = :owner))"
                ),
                ExpressionAttributeNames={"#k": "id", "#e": "expiration", "#s": "status", "#ip": "in_progress_until",
                                          "#o": "owner"},
                ExpressionAttributeValues={
                    ":now": {"N": repr(now)},
                    ":in_progress": {"S": Status.IN_PROGRESS.value},
                    ":owner": {"S": record.owner},
                },
            )
        except Exception as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _put(self, record: LedgerRecord) -> None:
        self.client.put_item(TableName=self.table_name, Item=self._item(record))

    def _get(self, key: str) -> LedgerRecord | None:
        item = self.client.get_item(TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
        if not item:
            return None
        return LedgerRecord(
            key,
            Status(item["status"]["S"]),
            item["owner"]["S"],
            float(item["expiration"]["N"]),
            float(item["in_progress_until"]["N"]),
        )

    def _delete(self, key: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key={"id": {"S": key}})

    @staticmethod
    def _item(record: LedgerRecord) -> dict[str, Any]:
        return {
            "id": {"S": record.key},
            "status": {"S": record.status.value},
            "owner": {"S": record.owner},
            "expiration": {"N": str(int(record.expires_at))},
            "in_progress_until": {"N": repr(record.in_progress_until)},
        }


__all__ = [
    "ClaimOutcome",
    "DedupeStore",
    "DynamoDBDedupeStore",
    "LedgerRecord",
    "MemoryDedupeStore",
    "SQLiteDedupeStore",
    "Status",
    "dedupe_key",
]
