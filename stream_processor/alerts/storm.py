"""Storm folding: at most N alerts per rule, group and destination per window; the rest become one digest.

A rule's `storm_window` sets its window; the others use the policy's.

Thousands of AccessDenied in a minute must not become thousands of Slack posts, and must not vanish
either. Folded alerts are counted in a store, written before the batch is committed, so a digest survives a
restart; the digest is sent once its window closes, by the one worker that claims it. Stores: in memory (one
process), SQLite (every shard process on a host: the default with a disk), DynamoDB (every worker on every
host, and Lambda).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import orjson

from stream_processor.aws_errors import error_code
from stream_processor.model import Alert, CloudTrailEvent, Digest, Position
from stream_processor.sqlite_connection import open_sqlite

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class StormPolicy:
    """Defaults keep a Slack channel readable under a 10,000-alert storm: 10 posts and a digest a minute."""

    max_alerts_per_window: int = 10
    window_seconds: float = 60.0
    claim_seconds: float = 120.0
    keep_closed_seconds: float = 900.0
    """How long a closed window's count is kept after its digest: a batch that arrived in the window may
    still be sending (one Slack post a second) and must find the window full, not a fresh one."""


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One storm window: a rule, its `group_by` value, a destination, and when the window starts (epoch seconds)."""

    rule: str
    group: str
    destination: str
    start: float

    def as_row(self) -> tuple[str, str, str, float]:
        return (self.rule, self.group, self.destination, self.start)


def window_key(digest: Digest) -> WindowKey:
    """The window a digest came from (a digest is a model type and knows nothing of stores)."""
    return WindowKey(digest.rule_name, digest.group, digest.destination_id, digest.window_start)


@dataclass(frozen=True, slots=True)
class Fold:
    """What one folded alert adds to its window: its time and eventName, and itself as the sample when first."""

    event_time: str
    event_name: str
    description: str
    sample: bytes
    sample_origin: str
    sample_sequence: str | None

    @classmethod
    def of(cls, alert: Alert) -> Fold:
        position = alert.event.position
        return cls(
            str(alert.event.data.get("eventTime") or ""),
            alert.event.event_name or "?",
            alert.description,
            alert.event.raw,
            position.origin,
            position.sequence,
        )


@dataclass(frozen=True, slots=True)
class ClaimedWindow:
    """A closed window's folded alerts as its store holds them, claimed for one digest."""

    key: WindowKey
    window_seconds: float
    folded: int
    first_time: str
    last_time: str
    names: Mapping[str, int]
    description: str
    sample: bytes
    sample_origin: str
    sample_sequence: str | None


class StormStore(ABC):
    """Decides per alert whether it is sent or folded, and hands out digests of closed windows.

    Public admit/due/done/release here; one private hook set per backend, each atomic in its backend (a SQLite
    transaction, DynamoDB conditional updates), so shard processes and hosts sharing a store share its windows.
    """

    TOP_NAMES = 5

    def __init__(self, policy: StormPolicy | None = None, clock: Clock = time.time) -> None:
        self.policy = policy or StormPolicy()
        self.clock = clock

    def admit(
        self,
        alert: Alert,
        destination_id: str,
        group: str = "",
        now: float | None = None,
        window_seconds: float | None = None,
    ) -> bool:
        """True: send it now. False: it was folded into its window's digest (durably, in a durable store).

        `now` is when the batch arrived: a batch whose admitted alerts take long to send (Slack's one post a
        second) must not spill into later windows and be admitted again there. `window_seconds`: the rule's
        own window (its `storm_window`), else the policy's.
        """
        seconds = window_seconds or self.policy.window_seconds
        moment = self.clock() if now is None else now
        key = WindowKey(alert.rule_name, group, destination_id, moment - (moment % seconds))
        return self._admit_or_fold(key, seconds, Fold.of(alert))

    def due(self, force: bool = False) -> list[Digest]:
        """Claim the digests of closed windows (all windows when `force`, e.g. at shutdown).

        A claimed digest is handed to no other caller, in this process or another sharing the store, until it
        is `done`, `release`d, or its claim (`claim_seconds`) runs out.
        """
        now = self.clock()
        closes_by = float("inf") if force else now
        return [self._digest(window) for window in self._claim_closed(closes_by, now)]

    def done(self, digest: Digest) -> None:
        """The digest was delivered (or parked): take what it reported off its window.

        Alerts folded into the window while the digest was out stay counted for the next digest; the window
        itself stays (its `sent` count still caps it) until it has been empty and closed for the policy's
        `keep_closed_seconds`.
        """
        self._take_off(window_key(digest), digest.count)

    def release(self, digest: Digest) -> None:
        """The digest could be neither delivered nor parked: let the next flush try again."""
        self._unclaim(window_key(digest))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's connections."""

    def _digest(self, window: ClaimedWindow) -> Digest:
        names = Counter(window.names)
        position = Position(window.sample_origin, window.sample_sequence)
        return Digest(
            rule_name=window.key.rule,
            description=window.description,
            group=window.key.group,
            destination_id=window.key.destination,
            window_start=window.key.start,
            window_seconds=window.window_seconds,
            count=window.folded,
            first_time=window.first_time,
            last_time=window.last_time,
            top_event_names=tuple(names.most_common(self.TOP_NAMES)),
            sample=CloudTrailEvent(window.sample, orjson.loads(window.sample), position),
        )

    @abstractmethod
    def _admit_or_fold(self, key: WindowKey, seconds: float, fold: Fold) -> bool:
        """Count one more sent in `key`'s window when it has room (a new window always has), else add `fold` to
        it: True when counted as sent. `seconds`: the window's length, kept from its first alert."""

    @abstractmethod
    def _claim_closed(self, closes_by: float, now: float) -> list[ClaimedWindow]:
        """Claim until `now + claim_seconds` every window closed by `closes_by` that folded alerts and is not
        claimed at `now`; drop windows empty and closed for `keep_closed_seconds`."""

    @abstractmethod
    def _take_off(self, key: WindowKey, count: int) -> None:
        """Subtract a delivered digest's `count` and its claim; when nothing more was folded meanwhile, clear the
        window's names, times and sample for the next digest."""

    @abstractmethod
    def _unclaim(self, key: WindowKey) -> None: ...


# --------------------------------------------------------------------------- memory


@dataclass(slots=True)
class _Window:
    seconds: float
    sent: int = 0
    folded: int = 0
    first_time: str | None = None
    last_time: str | None = None
    names: Counter[str] = field(default_factory=Counter)
    sample: Fold | None = None
    claimed_until: float = 0.0


class MemoryStormStore(StormStore):
    """One process: what it folded is lost with it (pending digests are sent at shutdown, `due(force=True)`)."""

    def __init__(self, policy: StormPolicy | None = None, clock: Clock = time.time) -> None:
        super().__init__(policy, clock)
        self._windows: dict[WindowKey, _Window] = {}
        self._lock = threading.Lock()

    def _admit_or_fold(self, key: WindowKey, seconds: float, fold: Fold) -> bool:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                self._windows[key] = _Window(seconds, sent=1)
                return True
            if window.sent < self.policy.max_alerts_per_window:
                window.sent += 1
                return True
            if window.folded == 0:
                window.sample = fold
            window.folded += 1
            window.names[fold.event_name] += 1
            window.first_time = min(filter(None, (window.first_time, fold.event_time)), default="")
            window.last_time = max(filter(None, (window.last_time, fold.event_time)), default="")
            return False

    def _claim_closed(self, closes_by: float, now: float) -> list[ClaimedWindow]:
        claimed = []
        with self._lock:
            for key, window in list(self._windows.items()):
                closes = key.start + window.seconds
                if closes <= closes_by and window.folded > 0 and window.claimed_until <= now:
                    window.claimed_until = now + self.policy.claim_seconds
                    assert window.sample is not None
                    claimed.append(
                        ClaimedWindow(
                            key,
                            window.seconds,
                            window.folded,
                            window.first_time or "",
                            window.last_time or "",
                            dict(window.names),
                            window.sample.description,
                            window.sample.sample,
                            window.sample.sample_origin,
                            window.sample.sample_sequence,
                        )
                    )
                elif window.folded == 0 and closes <= now - self.policy.keep_closed_seconds:
                    del self._windows[key]
        return claimed

    def _take_off(self, key: WindowKey, count: int) -> None:
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return
            window.folded -= count
            window.claimed_until = 0.0
            if window.folded == 0:
                window.names, window.first_time, window.last_time = Counter(), None, None

    def _unclaim(self, key: WindowKey) -> None:
        with self._lock:
            window = self._windows.get(key)
            if window is not None:
                window.claimed_until = 0.0


# --------------------------------------------------------------------------- SQLite


class SQLiteStormStore(StormStore):
    """Every shard process on one host shares one file; WAL and immediate transactions keep each step atomic."""

    BUSY_TIMEOUT_SECONDS = 30.0

    def __init__(self, path: str | Path, policy: StormPolicy | None = None, clock: Clock = time.time) -> None:
        super().__init__(policy, clock)
        self.path = Path(path)
        self._connection = open_sqlite(self.path, busy_timeout_seconds=self.BUSY_TIMEOUT_SECONDS)
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

    def _admit_or_fold(self, key: WindowKey, seconds: float, fold: Fold) -> bool:
        row_key = key.as_row()
        with self._lock:
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute(
                    "SELECT sent, folded, first_time, last_time, names FROM storm_windows"
                    " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                    row_key,
                ).fetchone()
                if row is None:
                    connection.execute(
                        "INSERT INTO storm_windows (rule, grp, destination, window_start, sent, window_seconds)"
                        " VALUES (?, ?, ?, ?, 1, ?)",
                        (*row_key, seconds),
                    )
                    connection.execute("COMMIT")
                    return True
                sent, folded, first_time, last_time, names = row
                if sent < self.policy.max_alerts_per_window:
                    connection.execute(
                        "UPDATE storm_windows SET sent = sent + 1"
                        " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                        row_key,
                    )
                    connection.execute("COMMIT")
                    return True
                self._fold(row_key, fold, folded, first_time, last_time, names)
                connection.execute("COMMIT")
                return False
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def _fold(
        self,
        row_key: tuple[str, str, str, float],
        fold: Fold,
        folded: int,
        first_time: str | None,
        last_time: str | None,
        names_blob: bytes | None,
    ) -> None:
        names: Counter[str] = Counter(orjson.loads(names_blob) if names_blob else {})
        names[fold.event_name] += 1
        first = min(filter(None, (first_time, fold.event_time)), default="")
        last = max(filter(None, (last_time, fold.event_time)), default="")
        sample_columns = ""
        parameters: list[object] = [folded + 1, first, last, orjson.dumps(dict(names))]
        if folded == 0:
            sample_columns = ", description = ?, sample = ?, sample_origin = ?, sample_sequence = ?"
            parameters += [fold.description, fold.sample, fold.sample_origin, fold.sample_sequence]
        self._connection.execute(
            f"UPDATE storm_windows SET folded = ?, first_time = ?, last_time = ?, names = ?{sample_columns}"
            " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
            (*parameters, *row_key),
        )

    def _claim_closed(self, closes_by: float, now: float) -> list[ClaimedWindow]:
        default = self.policy.window_seconds
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
        return [
            ClaimedWindow(
                key=WindowKey(row[0], row[1], row[2], row[3]),
                window_seconds=row[12],
                folded=row[4],
                first_time=row[5] or "",
                last_time=row[6] or "",
                names=orjson.loads(row[7]),
                description=row[8] or "",
                sample=row[9],
                sample_origin=row[10],
                sample_sequence=row[11],
            )
            for row in rows
        ]

    def _take_off(self, key: WindowKey, count: int) -> None:
        with self._lock:
            self._connection.execute(
                "UPDATE storm_windows SET folded = folded - ?, claimed_until = 0,"
                " names = CASE WHEN folded = ? THEN NULL ELSE names END,"
                " first_time = CASE WHEN folded = ? THEN NULL ELSE first_time END,"
                " last_time = CASE WHEN folded = ? THEN NULL ELSE last_time END"
                " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                (count, count, count, count, *key.as_row()),
            )

    def _unclaim(self, key: WindowKey) -> None:
        with self._lock:
            self._connection.execute(
                "UPDATE storm_windows SET claimed_until = 0"
                " WHERE rule = ? AND grp = ? AND destination = ? AND window_start = ?",
                key.as_row(),
            )

    def close(self) -> None:
        self._connection.close()


# --------------------------------------------------------------------------- DynamoDB


class DynamoDBClientProtocol(Protocol):
    def update_item(self, **kwargs: Any) -> Any: ...
    def get_item(self, **kwargs: Any) -> Any: ...
    def delete_item(self, **kwargs: Any) -> Any: ...
    def scan(self, **kwargs: Any) -> Any: ...


# Attribute names of a window item, as expression placeholders (`#name`).
_ATTRIBUTES = {
    "#id": "id",
    "#rule": "rule",
    "#grp": "grp",
    "#dest": "destination",
    "#start": "window_start",
    "#seconds": "window_seconds",
    "#end": "window_end",
    "#sent": "sent",
    "#folded": "folded",
    "#first": "first_time",
    "#last": "last_time",
    "#names": "names",
    "#desc": "description",
    "#sample": "sample",
    "#origin": "sample_origin",
    "#seq": "sample_sequence",
    "#claimed": "claimed_until",
    "#exp": "expiration",
}
_PLACEHOLDER = re.compile(r"[#:]\w+")


class DynamoDBStormStore(StormStore):
    """Every worker on every host, and every Lambda container, shares one table of windows.

    An alert is counted with one conditional atomic update (`sent < max`); once a window is seen full, its
    folds are one update each (`folded + 1`, its eventName's count, the sample if first). A closed window's
    digest is claimed with a condition (`claimed_until <= now`), so exactly one worker sends it. `due` scans the
    table, at most every `scan_every_seconds` (a forced flush always scans): it holds only open windows and
    those closed for `keep_closed_seconds`, so the scan stays small.

    Items: string key `id`; TTL on `expiration` (epoch seconds) is a backstop only: an empty closed window is
    deleted by `due`, and one whose digest could never be sent expires `TTL_SECONDS` after it closed. An item
    has DynamoDB's 400 KB limit and its key 2 KB: the sample is cut to its summary fields past
    `SAMPLE_MAX_BYTES`, eventNames past a window's first `MAX_NAMES` distinct ones are counted as `OTHER_NAMES`,
    eventName and eventTime are cut to `MAX_FIELD_CHARS`, and a `group_by` value to `MAX_GROUP_CHARS` (hashed
    into the key when long).
    """

    TTL_SECONDS = 7 * 24 * 3600.0
    SCAN_EVERY_SECONDS = 5.0
    MAX_NAMES = 100
    OTHER_NAMES = "(other)"
    SAMPLE_MAX_BYTES = 64 * 1024
    SAMPLE_FIELDS = (
        "eventVersion",
        "eventTime",
        "eventSource",
        "eventName",
        "eventID",
        "awsRegion",
        "sourceIPAddress",
        "errorCode",
        "errorMessage",
        "recipientAccountId",
    )
    SAMPLE_FIELD_CHARS = 1024
    MAX_FIELD_CHARS = 256
    MAX_KEY_BYTES = 1024
    MAX_GROUP_CHARS = 4096

    def __init__(
        self,
        client: DynamoDBClientProtocol,
        table_name: str,
        policy: StormPolicy | None = None,
        clock: Clock = time.time,
        scan_every_seconds: float = SCAN_EVERY_SECONDS,
    ) -> None:
        super().__init__(policy, clock)
        self.client = client
        self.table_name = table_name
        self.scan_every_seconds = scan_every_seconds
        self._seen_full: dict[WindowKey, float] = {}  # window -> until when it may be taken as full
        self._last_scan = float("-inf")

    # ---- admit

    def _admit_or_fold(self, key: WindowKey, seconds: float, fold: Fold) -> bool:
        # A `group_by` value is event data: cut here, so the digest's key names the same item.
        key = replace(key, group=key.group[: self.MAX_GROUP_CHARS])
        while True:
            if not self._known_full(key):
                if self._count_sent(key, seconds):
                    return True
                self._seen_full[key] = key.start + seconds + self.policy.keep_closed_seconds
            if self._fold(key, seconds, fold):
                return False
            self._seen_full.pop(key, None)  # the window was dropped meanwhile: it starts again

    def _known_full(self, key: WindowKey) -> bool:
        """A window's `sent` never goes down while it exists: once full, it is full until it can be dropped."""
        until = self._seen_full.get(key)
        if until is None:
            return False
        if until <= self.clock():
            del self._seen_full[key]
            return False
        return True

    def _count_sent(self, key: WindowKey, seconds: float) -> bool:
        counted = self._update(
            self._id(key),
            [
                "#sent = if_not_exists(#sent, :zero) + :one",
                "#rule = :rule",
                "#grp = :grp",
                "#dest = :dest",
                "#start = :start",
                "#seconds = if_not_exists(#seconds, :seconds)",
                "#end = if_not_exists(#end, :end)",
                "#folded = if_not_exists(#folded, :zero)",
                "#claimed = if_not_exists(#claimed, :zero)",
                "#names = if_not_exists(#names, :no_names)",
                "#exp = :exp",
            ],
            "attribute_not_exists(#sent) OR #sent < :max",
            {
                ":rule": {"S": key.rule},
                ":grp": {"S": key.group},
                ":dest": {"S": key.destination},
                ":start": {"N": repr(key.start)},
                ":seconds": {"N": repr(seconds)},
                ":end": {"N": repr(key.start + seconds)},
                ":no_names": {"M": {}},
                ":exp": self._expiration(key.start + seconds),
                ":max": {"N": str(self.policy.max_alerts_per_window)},
            },
        )
        return counted is not None

    def _fold(self, key: WindowKey, seconds: float, fold: Fold) -> bool:
        """Add `fold` to its (full) window; False when the window no longer exists."""
        item_id = self._id(key)
        # eventName and eventTime are event data too: bounded, so no event can push the item past 400 KB.
        fold = replace(
            fold, event_name=fold.event_name[: self.MAX_FIELD_CHARS], event_time=fold.event_time[: self.MAX_FIELD_CHARS]
        )
        values = {
            ":desc": {"S": fold.description},
            ":sample": {"B": self._sample(fold)},
            ":origin": {"S": fold.sample_origin},
            ":seq": {"NULL": True} if fold.sample_sequence is None else {"S": fold.sample_sequence},
            ":exp": self._expiration(key.start + seconds),
            ":t": {"S": fold.event_time},
            ":max_names": {"N": str(self.MAX_NAMES)},
        }
        for name in (fold.event_name, self.OTHER_NAMES):
            common = [
                "#folded = #folded + :one",
                "#names.#name = if_not_exists(#names.#name, :zero) + :one",
                "#desc = if_not_exists(#desc, :desc)",
                "#sample = if_not_exists(#sample, :sample)",
                "#origin = if_not_exists(#origin, :origin)",
                "#seq = if_not_exists(#seq, :seq)",
                "#exp = :exp",
            ]
            guard = "attribute_exists(#sent)"
            if name != self.OTHER_NAMES:
                guard += " AND (attribute_exists(#names.#name) OR size(#names) < :max_names)"
            for times, condition in self._time_updates(fold.event_time):
                if self._update(item_id, common + times, guard + condition, values, names={"#name": name}) is not None:
                    return True
            # Every form was refused: the window is gone, or its names are full (then count this one as other).
            if self._get(item_id) is None:
                return False
        return False

    @staticmethod
    def _time_updates(event_time: str) -> Sequence[tuple[list[str], str]]:
        """First and last event time without a read: a later time (the usual case, one call), an earlier one, or
        neither."""
        if not event_time:
            return [([], "")]
        return [
            (["#first = if_not_exists(#first, :t)", "#last = :t"], " AND (attribute_not_exists(#last) OR #last <= :t)"),
            (["#first = :t"], " AND #first > :t"),
            ([], ""),
        ]

    # ---- due, done, release

    def _claim_closed(self, closes_by: float, now: float) -> list[ClaimedWindow]:
        forced = closes_by == float("inf")
        if not forced and now - self._last_scan < self.scan_every_seconds:
            return []
        self._last_scan = now
        self._seen_full = {key: until for key, until in self._seen_full.items() if until > now}
        stale = now - self.policy.keep_closed_seconds
        closed = "" if forced else " AND #end <= :closes_by"
        values = {":zero": {"N": "0"}, ":now": {"N": repr(now)}, ":stale": {"N": repr(stale)}}
        if not forced:
            values[":closes_by"] = {"N": repr(closes_by)}
        claimed = []
        for item in self._scan(
            f"(#folded > :zero AND #claimed <= :now{closed}) OR (#folded = :zero AND #end <= :stale)", values
        ):
            item_id = item["id"]["S"]
            if int(item["folded"]["N"]) == 0:
                self._delete_if(item_id, "#folded = :zero AND #end <= :stale", {":stale": values[":stale"]})
                continue
            attributes = self._update(
                item_id,
                ["#claimed = :until"],
                "#folded > :zero AND #claimed <= :now",
                {":until": {"N": repr(now + self.policy.claim_seconds)}, ":now": values[":now"]},
                return_values=True,
            )
            if attributes is not None:
                claimed.append(self._window(attributes))
        return claimed

    def _take_off(self, key: WindowKey, count: int) -> None:
        item_id = self._id(key)
        values = {":count": {"N": str(count)}, ":no_names": {"M": {}}}
        cleared = self._update(
            item_id,
            ["#folded = #folded - :count", "#claimed = :zero", "#names = :no_names"],
            "#folded = :count",
            values,
            remove=["#first", "#last", "#desc", "#sample", "#origin", "#seq"],
        )
        if cleared is None:  # more was folded while the digest was out: it stays for the next digest
            self._update(item_id, ["#folded = #folded - :count", "#claimed = :zero"], "attribute_exists(#sent)", values)

    def _unclaim(self, key: WindowKey) -> None:
        self._update(self._id(key), ["#claimed = :zero"], "attribute_exists(#sent)", {})

    # ---- items

    def _id(self, key: WindowKey) -> str:
        """Readable when short; a long group (a `group_by` value is event data) is hashed into a bounded key."""
        readable = f"{key.rule}\x1f{key.group}\x1f{key.destination}\x1f{key.start!r}"
        if len(readable.encode()) <= self.MAX_KEY_BYTES:
            return readable
        digest = hashlib.sha256(orjson.dumps([key.rule, key.group, key.destination])).hexdigest()
        return f"{key.rule[:200]}\x1f#{digest}\x1f{key.destination[:200]}\x1f{key.start!r}"

    def _expiration(self, closes: float) -> dict[str, str]:
        return {"N": str(int(closes + self.policy.keep_closed_seconds + self.TTL_SECONDS))}

    def _sample(self, fold: Fold) -> bytes:
        if len(fold.sample) <= self.SAMPLE_MAX_BYTES:
            return fold.sample
        data = orjson.loads(fold.sample)
        summary = {name: str(data[name])[: self.SAMPLE_FIELD_CHARS] for name in self.SAMPLE_FIELDS if name in data}
        return orjson.dumps(summary)

    def _window(self, item: Mapping[str, Any]) -> ClaimedWindow:
        def text(name: str) -> str:
            return str(item.get(name, {}).get("S", ""))

        sequence = item.get("sample_sequence", {}).get("S")
        names = {name: int(value["N"]) for name, value in sorted(item.get("names", {}).get("M", {}).items())}
        return ClaimedWindow(
            key=WindowKey(text("rule"), text("grp"), text("destination"), float(item["window_start"]["N"])),
            window_seconds=float(item["window_seconds"]["N"]),
            folded=int(item["folded"]["N"]),
            first_time=text("first_time"),
            last_time=text("last_time"),
            names=names,
            description=text("description"),
            sample=bytes(item["sample"]["B"]),
            sample_origin=text("sample_origin"),
            sample_sequence=None if sequence is None else str(sequence),
        )

    # ---- calls

    def _update(
        self,
        item_id: str,
        set_parts: Sequence[str],
        condition: str,
        values: Mapping[str, Any],
        *,
        names: Mapping[str, str] | None = None,
        remove: Sequence[str] = (),
        return_values: bool = False,
    ) -> dict[str, Any] | None:
        """One conditional update: None when its condition does not hold, else the new attributes (when asked)."""
        expression = "SET " + ", ".join(set_parts) + (" REMOVE " + ", ".join(remove) if remove else "")
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"id": {"S": item_id}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            **self._placeholders(expression + " " + condition, values, names),
        }
        if return_values:
            arguments["ReturnValues"] = "ALL_NEW"
        try:
            response = self.client.update_item(**arguments)
        except Exception as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return None
            raise
        return dict(response["Attributes"]) if return_values else {}

    def _delete_if(self, item_id: str, condition: str, values: Mapping[str, Any]) -> None:
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"id": {"S": item_id}},
                ConditionExpression=condition,
                **self._placeholders(condition, values, None),
            )
        except Exception as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def _get(self, item_id: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table_name, Key={"id": {"S": item_id}}, ConsistentRead=True)
        found = item.get("Item")
        return dict(found) if found else None

    def _scan(self, condition: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        projection = "#id, #folded, #end"
        arguments: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": condition,
            "ProjectionExpression": projection,
            "ConsistentRead": True,
            **self._placeholders(condition + " " + projection, values, None),
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self.client.scan(**arguments)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def _placeholders(expressions: str, values: Mapping[str, Any], names: Mapping[str, str] | None) -> dict[str, Any]:
        """The placeholders `expressions` use, and only those (DynamoDB refuses unused ones)."""
        used = set(_PLACEHOLDER.findall(expressions))
        known_values = {":zero": {"N": "0"}, ":one": {"N": "1"}, **values}
        found: dict[str, Any] = {
            "ExpressionAttributeNames": {
                name: attribute for name, attribute in {**_ATTRIBUTES, **(names or {})}.items() if name in used
            }
        }
        attribute_values = {name: value for name, value in known_values.items() if name in used}
        if attribute_values:
            found["ExpressionAttributeValues"] = attribute_values
        return found
