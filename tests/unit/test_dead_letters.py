"""Dead letters: what failed for good is parked with its position, so the batch may be committed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.dead_letters import (
    ALERT,
    INPUT,
    DeadLetter,
    DeadLetterStore,
    SQLiteDeadLetterStore,
    SQSDeadLetterStore,
)
from stream_processor.dedupe import MemoryDedupeStore
from stream_processor.errors import DeadLetterStoreError
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import Alert, CloudTrailEvent, DeliveryResult, MalformedInput, Position, RawRecord
from stream_processor.pipeline import Pipeline
from tests.support.fakes import RecordingDestination
from tests.unit.test_pipeline import CONFIG, RULES, event, record


def pipeline_with(store: DeadLetterStore, sns_fails: bool) -> tuple[Pipeline, dict[str, RecordingDestination]]:
    destinations = {d.id: RecordingDestination(d, fail=(d.id == "sns" and sns_fails)) for d in CONFIG.destinations}
    deliverer = AlertDeliverer(dict(destinations), DeliveryPolicy.immediate())
    pipeline = Pipeline(CONFIG, LibjqMatcher(RULES), deliverer, ledger=MemoryDedupeStore(), dead_letters=store)
    return pipeline, destinations


def test_a_failed_alert_is_parked_and_the_batch_may_be_committed(tmp_path: Path) -> None:
    store = SQLiteDeadLetterStore(tmp_path / "dl.sqlite3")
    pipeline, _ = pipeline_with(store, sns_fails=True)
    outcome = pipeline.process_records([record(event("CreateAccessKey", "e1"), sequence="49590")])
    assert outcome.failed and outcome.complete
    [letter] = store.list()
    assert (letter.kind, letter.rule_name, letter.destination_id) == (ALERT, "Create AccessKey", "sns")
    assert letter.position == Position("shardId-000000000000", "49590")
    assert letter.alert().event.event_id == "e1"
    assert "rejected" in letter.reason and letter.attempts >= 1


def test_malformed_input_is_parked_with_shard_and_sequence(tmp_path: Path) -> None:
    store = SQLiteDeadLetterStore(tmp_path / "dl.sqlite3")
    pipeline, _ = pipeline_with(store, sns_fails=False)
    outcome = pipeline.process_records([RawRecord(b"garbage", Position("shardId-000000000001", "777"))])
    assert outcome.complete and outcome.parked_inputs == 1
    [letter] = store.list(kind=INPUT)
    assert letter.position.origin == "shardId-000000000001" and letter.position.sequence == "777"
    assert letter.data == b"garbage"


class BrokenStore(SQLiteDeadLetterStore):
    def _add_many(self, letters: Any) -> None:
        raise OSError("disk full")


def test_a_batch_whose_failure_cannot_be_parked_is_not_complete(tmp_path: Path) -> None:
    pipeline, _ = pipeline_with(BrokenStore(tmp_path / "dl.sqlite3"), sns_fails=True)
    outcome = pipeline.process_records([record(event("CreateAccessKey", "e1"))])
    assert not outcome.complete
    assert "disk full" in outcome.parking_errors[0]


def test_store_errors_are_wrapped_once(tmp_path: Path) -> None:
    store = BrokenStore(tmp_path / "dl.sqlite3")
    with pytest.raises(DeadLetterStoreError, match="disk full"):
        store.park_input(MalformedInput(Position("s"), "not_json", "x"))


def test_letters_survive_a_restart_and_keep_the_output(tmp_path: Path) -> None:
    path = tmp_path / "dl.sqlite3"
    pipeline, _ = pipeline_with(SQLiteDeadLetterStore(path), sns_fails=True)
    pipeline.process_records([record(event("CreateAccessKey", "e1"))])
    pipeline.close()
    [letter] = SQLiteDeadLetterStore(path).list()
    assert orjson.loads(letter.data)["eventID"] == "e1"
    assert letter.output == orjson.loads(letter.data)


# --- hostile sizes and counts ------------------------------------------------------------------------------


class FakeSQS:
    """Keeps what SendMessageBatch was given, refusing what SQS refuses (size and characters)."""

    LIMIT = 256 * 1024
    REFUSED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.calls = 0

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        entries = kwargs["Entries"]
        assert len(entries) <= 10
        for entry in entries:
            body = entry["MessageBody"]
            assert len(body.encode()) <= self.LIMIT, len(body.encode())
            assert not self.REFUSED.search(body)
            self.bodies.append(body)
        return {"Successful": [{"Id": entry["Id"]} for entry in entries], "Failed": []}


def huge_failed_delivery(event_bytes: int, output: Any, reason: str = "HTTP 500") -> DeliveryResult:
    data = {**event("CreateAccessKey", "e-huge"), "userAgent": "\uffff" + "ü" * event_bytes}
    alert = Alert(
        "Create AccessKey", "d" * 300_000, output, CloudTrailEvent(orjson.dumps(data), data, Position("s", "1"))
    )
    return DeliveryResult(alert, "sns", delivered=False, attempts=5, reason=reason)


@pytest.mark.parametrize(
    ("event_bytes", "output"),
    [
        pytest.param(300_000, True, id="huge-event"),
        pytest.param(10, "x" * 700_000, id="huge-output"),
        pytest.param(200_000, {"a": ["\ufffe" * 100_000, 2**70]}, id="everything-large"),
    ],
)
def test_sqs_dead_letters_fit_in_one_message_and_keep_what_identifies_the_alert(event_bytes: int, output: Any) -> None:
    sqs = FakeSQS()
    store = SQSDeadLetterStore(sqs, "https://sqs.us-east-1.amazonaws.com/1/dl")

    store.park(alerts=[huge_failed_delivery(event_bytes, output)])

    [body] = sqs.bodies
    assert "[cut: " in body
    letter = store_letter(body)
    alert = letter.alert()
    assert (alert.rule_name, alert.event.event_id, letter.destination_id) == ("Create AccessKey", "e-huge", "sns")


def store_letter(body: str) -> DeadLetter:
    class OneMessage(FakeSQS):
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            messages, self.pending = self.pending, []
            return {"Messages": messages}

    sqs = OneMessage()
    sqs.pending = [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": body}]
    [letter] = SQSDeadLetterStore(sqs, "q").list()  # type: ignore[arg-type]
    return letter


def test_a_batch_is_parked_in_one_transaction_not_one_per_item(tmp_path: Path) -> None:
    store = SQLiteDeadLetterStore(tmp_path / "dl.sqlite3")
    items = [MalformedInput(Position("shard", "1", index), "not_json", "bad", b"x") for index in range(20_000)]

    store.park(inputs=items)  # one BEGIN ... COMMIT: well under a second, where one commit per row took ~10 s

    assert sum(len(page) for page in store.pages()) == 20_000


def test_listing_walks_pages_in_parking_order(tmp_path: Path) -> None:
    store = SQLiteDeadLetterStore(tmp_path / "dl.sqlite3")
    store.park(inputs=[MalformedInput(Position("shard", str(i)), "not_json", "bad", b"") for i in range(250)])

    first = store.page(limit=100)
    second = store.page(after=first[-1].id, limit=100)

    assert [letter.position.sequence for letter in first + second] == [str(i) for i in range(200)]
    assert [len(page) for page in store.pages()] == [100, 100, 50]


def test_the_store_is_pruned_by_age_and_by_count(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    store = SQLiteDeadLetterStore(tmp_path / "dl.sqlite3", max_age_seconds=None, max_letters=None, clock=lambda: now[0])
    store.park(inputs=[MalformedInput(Position("old", str(i)), "not_json", "bad", b"") for i in range(10)])
    now[0] += 3 * 86400
    store.park(inputs=[MalformedInput(Position("new", str(i)), "not_json", "bad", b"") for i in range(10)])

    assert store.prune(older_than_seconds=86400) == 10
    assert store.prune(keep=4) == 6
    assert [letter.position.sequence for letter in store.list()] == ["6", "7", "8", "9"]


def test_parking_prunes_a_full_store_by_itself(tmp_path: Path) -> None:
    store = SQLiteDeadLetterStore(tmp_path / "dl.sqlite3", max_letters=100)
    for start in range(0, 1_000, 100):
        store._pruned_at = float("-inf")  # as if the prune interval had passed between batches
        store.park(
            inputs=[MalformedInput(Position("s", str(i)), "not_json", "bad", b"") for i in range(start, start + 100)]
        )
    assert len(store.list()) == 100
