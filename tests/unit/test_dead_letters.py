"""Dead letters: what failed for good is parked with its position, so the batch may be committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.dead_letters import ALERT, INPUT, DeadLetterStore, SQLiteDeadLetterStore
from stream_processor.dedupe import MemoryDedupeStore
from stream_processor.errors import DeadLetterStoreError
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import MalformedInput, Position, RawRecord
from stream_processor.pipeline import Pipeline
from tests.unit.test_pipeline import CONFIG, RULES, RecordingDestination, event, record


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
    def _add(self, letter: Any) -> None:
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
