"""Dead letters: alerts that failed for good and input that is not CloudTrail, parked durably.

Parking is what lets a shard move on without losing anything: the checkpoint may pass a batch once each
of its alerts is delivered or parked here, and `redrive` sends parked alerts later. Stores: SQLite (the
embedded default) and SQS (in AWS).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from stream_processor import json_out
from stream_processor.errors import DeadLetterStoreError, call_backend
from stream_processor.model import Alert, CloudTrailEvent, DeliveryResult, MalformedInput, Position
from stream_processor.sqlite_connection import open_sqlite

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
    event_summary: tuple[tuple[str, Any], ...] = ()
    """The event's identifying fields, kept when its text had to be cut (a queue message has a size limit)."""

    def alert(self) -> Alert:
        """The parked alert, rebuilt for redelivery.

        Raises:
            ValueError: this letter is malformed input, not an alert.
        """
        if self.kind != ALERT:
            raise ValueError(f"dead letter {self.id} is {self.kind}, not an alert")
        try:
            data = orjson.loads(self.data)
        except orjson.JSONDecodeError:
            data = None
        if type(data) is not dict:  # the event was cut to fit a queue message: its summary stands in for it
            data = dict(self.event_summary)
        event = CloudTrailEvent(self.data, data, self.position)
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


Letters = list[DeadLetter]  # `list` is also a method of the store: the alias keeps annotations unambiguous


class DeadLetterStore(ABC):
    """Public park/list/remove here; one private hook set per backend.

    Parking takes a whole batch's letters at once, so a backend writes them in one transaction or request
    rather than one per item.
    """

    PAGE_SIZE = 100

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def park_alert(self, result: DeliveryResult) -> None:
        self.park(alerts=[result])

    def park_input(self, item: MalformedInput) -> None:
        self.park(inputs=[item])

    def park(self, *, inputs: Sequence[MalformedInput] = (), alerts: Sequence[DeliveryResult] = ()) -> None:
        """Park a batch's malformed input and failed deliveries together.

        Raises:
            DeadLetterStoreError: nothing of the batch may be taken as parked.
        """
        now = self.clock()
        letters = [letter_from_input(item, parked_at=now) for item in inputs]
        letters.extend(letter_from_delivery(result, parked_at=now) for result in alerts)
        if letters:
            self._wrap(self._add_many, letters)

    def list(self, kind: str | None = None, destination_id: str | None = None) -> Letters:
        """Every letter (for small stores and tests); `pages` walks a large store a page at a time."""
        return [letter for page in self.pages(kind, destination_id) for letter in page]

    def pages(self, kind: str | None = None, destination_id: str | None = None) -> Iterator[Letters]:
        """The letters in parking order, a page at a time, so a large store is never loaded whole."""
        after: str | None = None
        while True:
            page: Letters = self._wrap(self._page, kind, destination_id, after, self.PAGE_SIZE)
            if page:
                yield page
            if len(page) < self.PAGE_SIZE:
                return
            after = page[-1].id

    def page(
        self, kind: str | None = None, destination_id: str | None = None, after: str | None = None, limit: int = 50
    ) -> Letters:
        """Up to `limit` letters parked after the letter `after` (an id from an earlier page)."""
        result: Letters = self._wrap(self._page, kind, destination_id, after, limit)
        return result

    def remove(self, letter: DeadLetter) -> None:
        self._wrap(self._remove, letter)

    def record_attempt(self, letter: DeadLetter, reason: str, attempts: int) -> None:
        self._wrap(self._update, letter, reason, attempts)

    def prune(self, older_than_seconds: float | None = None, keep: int | None = None) -> int:
        """Drop letters parked more than `older_than_seconds` ago, then all but the newest `keep`; the count.

        Raises:
            NotImplementedError: the backend expires letters itself (SQS: the queue's retention period).
        """
        removed: int = self._wrap(self._prune, older_than_seconds, keep)
        return removed

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's connections."""

    @staticmethod
    def _wrap(function: Callable[..., Any], *args: Any) -> Any:
        return call_backend(DeadLetterStoreError, "dead-letter store", function, *args)

    @abstractmethod
    def _add_many(self, letters: Sequence[DeadLetter]) -> None: ...

    def _page(self, kind: str | None, destination_id: str | None, after: str | None, limit: int) -> Letters:
        """The default: filter an iteration (backends that can query do better)."""
        found: Letters = []
        passed = after is None
        for letter in self._iterate():
            if not passed:
                passed = letter.id == after
                continue
            if kind in (None, letter.kind) and destination_id in (None, letter.destination_id):
                found.append(letter)
                if len(found) >= limit:
                    break
        return found

    @abstractmethod
    def _iterate(self) -> Iterator[DeadLetter]: ...

    @abstractmethod
    def _remove(self, letter: DeadLetter) -> None: ...

    @abstractmethod
    def _update(self, letter: DeadLetter, reason: str, attempts: int) -> None: ...

    def _prune(self, older_than_seconds: float | None, keep: int | None) -> int:
        raise NotImplementedError(f"{type(self).__name__} expires letters itself")


_COLUMNS = (
    "kind, origin, sequence, sub_sequence, reason, attempts, parked_at, rule_name, description, destination_id, "
    "output, data"
)


class SQLiteDeadLetterStore(DeadLetterStore):
    """One file shared by every shard process on a host, pruned by age and count as it is written to.

    Defaults: letters older than `max_age_seconds` (14 days, SQS's longest retention) or beyond the newest
    `max_letters` are dropped, checked at most once every `PRUNE_INTERVAL_SECONDS` while parking.
    """

    BUSY_TIMEOUT_SECONDS = 30.0
    MAX_AGE_SECONDS = 14 * 86400.0
    MAX_LETTERS = 100_000
    PRUNE_INTERVAL_SECONDS = 600.0

    def __init__(
        self,
        path: str | Path,
        *,
        max_age_seconds: float | None = MAX_AGE_SECONDS,
        max_letters: int | None = MAX_LETTERS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.max_age_seconds = max_age_seconds
        self.max_letters = max_letters
        self._pruned_at = float("-inf")
        self._connection = open_sqlite(self.path, busy_timeout_seconds=self.BUSY_TIMEOUT_SECONDS)
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " origin TEXT NOT NULL, sequence TEXT, sub_sequence INTEGER, reason TEXT NOT NULL,"
            " attempts INTEGER NOT NULL, parked_at REAL NOT NULL, rule_name TEXT, description TEXT,"
            " destination_id TEXT, output BLOB, data BLOB)"
        )
        self._lock = threading.Lock()

    def _add_many(self, letters: Sequence[DeadLetter]) -> None:
        rows = [
            (
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
                json_out.dumps(letter.output),
                letter.data,
            )
            for letter in letters
        ]
        with self._lock, self._transaction():
            self._connection.executemany(f"INSERT INTO dead_letters ({_COLUMNS}) VALUES ({', '.join('?' * 12)})", rows)
        if self.clock() - self._pruned_at >= self.PRUNE_INTERVAL_SECONDS:
            self._pruned_at = self.clock()
            self._prune(self.max_age_seconds, self.max_letters)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def _page(self, kind: str | None, destination_id: str | None, after: str | None, limit: int) -> Letters:
        query = f"SELECT id, {_COLUMNS} FROM dead_letters WHERE id > ?"
        parameters: list[Any] = [int(after) if after else 0]
        if kind is not None:
            query += " AND kind = ?"
            parameters.append(kind)
        if destination_id is not None:
            query += " AND destination_id = ?"
            parameters.append(destination_id)
        query += " ORDER BY id LIMIT ?"
        parameters.append(limit)
        with self._lock:
            rows = self._connection.execute(query, parameters).fetchall()
        return [_letter_from_row(row) for row in rows]

    def _iterate(self) -> Iterator[DeadLetter]:
        for page in self.pages():
            yield from page

    def _remove(self, letter: DeadLetter) -> None:
        with self._lock:
            self._connection.execute("DELETE FROM dead_letters WHERE id = ?", (int(letter.id),))

    def _update(self, letter: DeadLetter, reason: str, attempts: int) -> None:
        with self._lock:
            self._connection.execute(
                "UPDATE dead_letters SET reason = ?, attempts = ? WHERE id = ?", (reason, attempts, int(letter.id))
            )

    def _prune(self, older_than_seconds: float | None, keep: int | None) -> int:
        removed = 0
        with self._lock, self._transaction():
            if older_than_seconds is not None:
                cursor = self._connection.execute(
                    "DELETE FROM dead_letters WHERE parked_at < ?", (self.clock() - older_than_seconds,)
                )
                removed += cursor.rowcount
            if keep is not None:
                cursor = self._connection.execute(
                    "DELETE FROM dead_letters WHERE id NOT IN (SELECT id FROM dead_letters ORDER BY id DESC LIMIT ?)",
                    (max(keep, 0),),
                )
                removed += cursor.rowcount
        return removed

    def close(self) -> None:
        self._connection.close()


def _letter_from_row(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
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


class SQSClientProtocol(Protocol):
    def send_message_batch(self, **kwargs: Any) -> Any: ...
    def receive_message(self, **kwargs: Any) -> Any: ...
    def delete_message(self, **kwargs: Any) -> Any: ...


class SQSDeadLetterStore(DeadLetterStore):
    """In AWS: one message per letter; listing receives with a short visibility timeout."""

    MAX_MESSAGE_BYTES = 256 * 1024
    LIST_VISIBILITY_SECONDS = 30
    BATCH = 10  # SendMessageBatch's limit

    def __init__(self, client: SQSClientProtocol, queue_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.queue_url = queue_url

    def _add_many(self, letters: Sequence[DeadLetter]) -> None:
        for start in range(0, len(letters), self.BATCH):
            entries = [
                {"Id": str(index), "MessageBody": sqs_body(letter, self.MAX_MESSAGE_BYTES)}
                for index, letter in enumerate(letters[start : start + self.BATCH])
            ]
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            failed = response.get("Failed") or []
            if failed:
                first = failed[0]
                raise DeadLetterStoreError(
                    f"SQS refused {len(failed)} of {len(entries)} dead letters: {first.get('Code')}: "
                    f"{first.get('Message', '')}"
                )

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
                    event_summary=tuple(sorted((body.get("event_summary") or {}).items())),
                )

    def _remove(self, letter: DeadLetter) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=letter.id)

    def _update(self, letter: DeadLetter, reason: str, attempts: int) -> None:
        # SQS messages are immutable: re-park with the new count, then drop the old message
        self._add_many([DeadLetter(**{**_fields(letter), "reason": reason, "attempts": attempts})])
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=letter.id)


# Characters an SQS message may hold (XML 1.0's): anything else, U+FFFE and U+FFFF included, is refused.
_SQS_REFUSED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SUMMARY_FIELDS = ("eventID", "eventName", "eventSource", "eventTime", "awsRegion", "recipientAccountId")
_CUT = "…[cut: {} more bytes]"


def sqs_body(letter: DeadLetter, limit: int) -> str:
    """The letter as one SQS message body of at most `limit` UTF-8 bytes, in characters SQS accepts.

    Fields are cut largest first, each with a visible marker; an alert's event keeps its identifying fields
    (`event_summary`) so that redrive still knows the event when its text was cut.
    """
    texts = {
        "reason": letter.reason,
        "description": letter.description,
        "data": letter.data.decode("utf-8", errors="replace"),
    }
    output: Any = letter.output
    summary: dict[str, Any] = {}
    if letter.kind == ALERT:
        try:
            event = orjson.loads(letter.data)
        except orjson.JSONDecodeError:
            event = None
        if type(event) is dict:
            summary = {key: event[key] for key in _SUMMARY_FIELDS if isinstance(event.get(key), str | int)}
    cut = False
    for _ in range(8):
        body = {
            "kind": letter.kind,
            "position": [letter.position.origin, letter.position.sequence, letter.position.sub_sequence],
            "reason": texts["reason"],
            "attempts": letter.attempts,
            "parked_at": letter.parked_at,
            "rule_name": letter.rule_name,
            "description": texts["description"],
            "destination_id": letter.destination_id,
            "output": output,
            "data": texts["data"],
        }
        if cut and summary:
            body["event_summary"] = summary
        text = _sqs_safe(json_out.dumps_text(body))
        excess = len(text.encode()) - limit
        if excess <= 0:
            return text
        cut = True
        sizes = {name: len(value.encode()) for name, value in texts.items()}
        output_text = output if isinstance(output, str) else json_out.dumps_text(output)
        sizes["output"] = len(output_text.encode())
        largest = max(sizes, key=lambda name: sizes[name])
        keep = max(sizes[largest] - excess - 64, 0)  # room for the marker; escaping may need another round
        source = output_text if largest == "output" else texts[largest]
        shortened = _cut(source, keep)
        if largest == "output":
            output = shortened
        else:
            texts[largest] = shortened
    # Still too large after repeated cuts (many fields near the limit at once): keep only the small fields.
    texts = {name: _cut(value, 1024) for name, value in texts.items()}
    body = {**orjson.loads(text), **texts, "output": _cut(json_out.dumps_text(output), 1024)}
    return _sqs_safe(json_out.dumps_text(body))


def _cut(text: str, keep_bytes: int) -> str:
    encoded = text.encode()
    if len(encoded) <= keep_bytes:
        return text
    return encoded[:keep_bytes].decode("utf-8", errors="ignore") + _CUT.format(len(encoded) - keep_bytes)


def _sqs_safe(text: str) -> str:
    """JSON text in which every character SQS refuses is written as an escape (they only occur in strings)."""
    return _SQS_REFUSED.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


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
    "sqs_body",
]
