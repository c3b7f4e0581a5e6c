"""Dead letters: alerts that failed for good and input that is not CloudTrail, parked durably.

Parking is what lets a shard move on without losing anything: the checkpoint may pass a batch once each
of its alerts is delivered or parked here, and `redrive` sends parked alerts later. Stores: SQLite (the
embedded default) and SQS (in AWS).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from stream_processor.errors import DeadLetterStoreError, call_backend
from stream_processor.model import Alert, CloudTrailEvent, DeliveryResult, MalformedInput, Position

ALERT = "alert"
INPUT = "input"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One parked item: an alert for one destination, or a piece of malformed input."""

    id: str
    kind: str
    position: Position
    reason: str
    attempts: int
    parked_at: float
    rule_name: str = ""
    description: str = ""
    destination_id: str = ""
    output: Any = None
    data: bytes = b""

    def alert(self) -> Alert:
        """The parked alert, rebuilt for redelivery.

        Raises:
            ValueError: this letter is malformed input, not an alert.
        """
        if self.kind != ALERT:
            raise ValueError(f"dead letter {self.id} is {self.kind}, not an alert")
        event = CloudTrailEvent(self.data, orjson.loads(self.data), self.position)
        return Alert(self.rule_name, self.description, self.output, event)


def letter_from_delivery(result: DeliveryResult, letter_id: str = "", parked_at: float = 0.0) -> DeadLetter:
    alert = result.alert
    return DeadLetter(
        id=letter_id,
        kind=ALERT,
        position=alert.event.position,
        reason=result.reason,
        attempts=result.attempts,
        parked_at=parked_at,
        rule_name=alert.rule_name,
        description=alert.description,
        destination_id=result.destination_id,
        output=alert.output,
        data=alert.event.raw,
    )


def letter_from_input(item: MalformedInput, letter_id: str = "", parked_at: float = 0.0) -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        kind=INPUT,
        position=item.position,
        reason=f"{item.kind}: {item.reason}",
        attempts=0,
        parked_at=parked_at,
        data=item.data,
    )


class DeadLetterStore(ABC):
    """Public park/list/remove here; one private hook set per backend."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def park_alert(self, result: DeliveryResult) -> None:
        self._wrap(self._add, letter_from_delivery(result, parked_at=self.clock()))

    def park_input(self, item: MalformedInput) -> None:
        self._wrap(self._add, letter_from_input(item, parked_at=self.clock()))

    def list(self, kind: str | None = None, destination_id: str | None = None) -> list[DeadLetter]:
        letters: list[DeadLetter] = self._wrap(lambda: list(self._iterate()))
        return [
            letter
            for letter in letters
            if (kind is None or letter.kind == kind)
            and (destination_id is None or letter.destination_id == destination_id)
        ]

    def remove(self, letter: DeadLetter) -> None:
        self._wrap(self._remove, letter)

    def record_attempt(self, letter: DeadLetter, reason: str, attempts: int) -> None:
        self._wrap(self._update, letter, reason, attempts)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's connections."""

    @staticmethod
    def _wrap(function: Callable[..., Any], *args: Any) -> Any:
        return call_backend(DeadLetterStoreError, "dead-letter store", function, *args)

    @abstractmethod
    def _add(self, letter: DeadLetter) -> None: ...

    @abstractmethod
    def _iterate(self) -> Iterator[DeadLetter]: ...

    @abstractmethod
    def _remove(self, letter: DeadLetter) -> None: ...

    @abstractmethod
    def _update(self, letter: DeadLetter, reason: str, attempts: int) -> None: ...


_COLUMNS = (
    "kind, origin, sequence, sub_sequence, reason, attempts, parked_at, rule_name, description, destination_id, "
    "output, data"
)


class SQLiteDeadLetterStore(DeadLetterStore):
    """One file shared by every shard process on a host."""

    BUSY_TIMEOUT_SECONDS = 30.0

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            str(self.path), timeout=self.BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " origin TEXT NOT NULL, sequence TEXT, sub_sequence INTEGER, reason TEXT NOT NULL,"
            " attempts INTEGER NOT NULL, parked_at REAL NOT NULL, rule_name TEXT, description TEXT,"
            " destination_id TEXT, output BLOB, data BLOB)"
        )
        self._lock = threading.Lock()

    def _add(self, letter: DeadLetter) -> None:
        row = (
            letter.kind,
            letter.position.origin,
            letter.position.sequence,
            letter.position.sub_sequence,
            letter.reason,
            letter.attempts,
            letter.parked_at,
            letter.rule_name,
            letter.description,
            letter.destination_id,
            orjson.dumps(letter.output),
            letter.data,
        )
        with self._lock:
            self._connection.execute(f"INSERT INTO dead_letters ({_COLUMNS}) VALUES ({', '.join('?' * 12)})", row)

    def _iterate(self) -> Iterator[DeadLetter]:
        with self._lock:
            rows = self._connection.execute(f"SELECT id, {_COLUMNS} FROM dead_letters ORDER BY id").fetchall()
        for row in rows:
            yield DeadLetter(
                id=str(row[0]),
                kind=row[1],
                position=Position(row[2], row[3], row[4]),
                reason=row[5],
                attempts=row[6],
                parked_at=row[7],
                rule_name=row[8] or "",
                description=row[9] or "",
                destination_id=row[10] or "",
                output=orjson.loads(row[11]) if row[11] else None,
                data=row[12] or b"",
            )

    def _remove(self, letter: DeadLetter) -> None:
        with self._lock:
            self._connection.execute("DELETE FROM dead_letters WHERE id = ?", (int(letter.id),))

    def _update(self, letter: DeadLetter, reason: str, attempts: int) -> None:
        with self._lock:
            self._connection.execute(
                "UPDATE dead_letters SET reason = ?, attempts = ? WHERE id = ?", (reason, attempts, int(letter.id))
            )

    def close(self) -> None:
        self._connection.close()


class SQSClientProtocol(Protocol):
    def send_message(self, **kwargs: Any) -> Any: ...
    def receive_message(self, **kwargs: Any) -> Any: ...
    def delete_message(self, **kwargs: Any) -> Any: ...
    def change_message_visibility(self, **kwargs: Any) -> Any: ...


class SQSDeadLetterStore(DeadLetterStore):
    """In AWS: one message per letter; listing receives with a short visibility timeout."""

    MAX_MESSAGE_BYTES = 256 * 1024
    LIST_VISIBILITY_SECONDS = 30

    def __init__(self, client: SQSClientProtocol, queue_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.queue_url = queue_url

    def _add(self, letter: DeadLetter) -> None:
        body = {
            "kind": letter.kind,
            "position": [letter.position.origin, letter.position.sequence, letter.position.sub_sequence],
            "reason": letter.reason,
            "attempts": letter.attempts,
            "parked_at": letter.parked_at,
            "rule_name": letter.rule_name,
            "description": letter.description,
            "destination_id": letter.destination_id,
            "output": letter.output,
            "data": letter.data.decode("utf-8", errors="replace"),
        }
        text = orjson.dumps(body).decode()
        if len(text.encode()) > self.MAX_MESSAGE_BYTES:
            body["data"] = body["data"][: self.MAX_MESSAGE_BYTES // 2]
            body["reason"] = f"{letter.reason} (data truncated to fit SQS)"
            text = orjson.dumps(body).decode()
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=text)

    def _iterate(self) -> Iterator[DeadLetter]:
        seen: set[str] = set()
        while True:
            response = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=self.LIST_VISIBILITY_SECONDS,
                WaitTimeSeconds=0,
            )
            messages = response.get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                body = orjson.loads(message["Body"])
                origin, sequence, sub_sequence = body["position"]
                yield DeadLetter(
                    id=message["ReceiptHandle"],
                    kind=body["kind"],
                    position=Position(origin, sequence, sub_sequence),
                    reason=body["reason"],
                    attempts=body["attempts"],
                    parked_at=body["parked_at"],
                    rule_name=body["rule_name"],
                    description=body["description"],
                    destination_id=body["destination_id"],
                    output=body["output"],
                    data=body["data"].encode(),
                )

    def _remove(self, letter: DeadLetter) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=letter.id)

    def _update(self, letter: DeadLetter, reason: str, attempts: int) -> None:
        # SQS messages are immutable: re-park with the new count, then drop the old message
        self._add(DeadLetter(**{**_fields(letter), "reason": reason, "attempts": attempts}))
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=letter.id)


def _fields(letter: DeadLetter) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in DeadLetter.__slots__}


__all__ = [
    "ALERT",
    "INPUT",
    "DeadLetter",
    "DeadLetterStore",
    "DeadLetterStoreError",
    "SQLiteDeadLetterStore",
    "SQSDeadLetterStore",
    "letter_from_delivery",
    "letter_from_input",
]
