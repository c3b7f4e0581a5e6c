"""Parked alerts on real stores: SQS on moto, and `dead-letters list/redrive` against a local Slack."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from stream_processor.aws import AwsSettings
from stream_processor.cli import main
from stream_processor.dead_letters import ALERT, SQLiteDeadLetterStore, SQSDeadLetterStore
from stream_processor.local.receiver import SlackReceiver
from stream_processor.model import Alert, CloudTrailEvent, DeliveryResult, Position
from tests.integration.test_match_command import CREATE_ACCESS_KEY, seed_config_pointing_at

pytestmark = pytest.mark.integration


def parked_result() -> DeliveryResult:
    event = CloudTrailEvent(orjson.dumps(CREATE_ACCESS_KEY), CREATE_ACCESS_KEY, Position("shardId-000000000003", "42"))
    alert = Alert("Create AccessKey", "A new Access Key has been created", CREATE_ACCESS_KEY, event)
    return DeliveryResult(alert, "Slack Audit", delivered=False, attempts=5, reason="Slack answered 500")


def test_sqs_store_round_trips_a_parked_alert(moto_server: AwsSettings) -> None:
    sqs = moto_server.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"dead-letters-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    store = SQSDeadLetterStore(sqs, queue_url)
    store.park_alert(parked_result())
    [letter] = store.list()
    assert (letter.kind, letter.destination_id, letter.attempts) == (ALERT, "Slack Audit", 5)
    assert letter.position == Position("shardId-000000000003", "42", None)
    assert letter.alert().event.data == CREATE_ACCESS_KEY
    store.remove(letter)
    assert store.list() == []


def test_redrive_delivers_parked_alerts_once_the_destination_recovers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(CREATE_ACCESS_KEY) + b"\n")
    with SlackReceiver() as receiver:
        config = seed_config_pointing_at(receiver.url, tmp_path)
        # GIVEN an alert parked after Slack failed for good
        store = SQLiteDeadLetterStore(state / "dead-letters.sqlite3")
        store.park_alert(parked_result())
        store.close()
        assert main(["dead-letters", "list", "--json", "--state-dir", str(state)]) == 0
        [listed] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert (listed["rule"], listed["destination"]) == ("Create AccessKey", "Slack Audit")
        assert listed["position"] == "shardId-000000000003@42"
        # WHEN Slack answers again and the parked alerts are redriven
        assert main(["dead-letters", "redrive", "-c", str(config), "--state-dir", str(state)]) == 0
        assert len(receiver.delivered) == 1
        # THEN the letter is gone, and a second redrive sends nothing
        assert main(["dead-letters", "redrive", "-c", str(config), "--state-dir", str(state)]) == 0
        assert len(receiver.delivered) == 1
    assert main(["dead-letters", "list", "--state-dir", str(state)]) == 0
    assert "no dead letters" in capsys.readouterr().out


def test_redrive_keeps_what_still_fails(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with SlackReceiver() as receiver:
        receiver.fail_next(status=403, times=20)
        config = seed_config_pointing_at(receiver.url, tmp_path)
        store = SQLiteDeadLetterStore(state / "dead-letters.sqlite3")
        store.park_alert(parked_result())
        assert main(["dead-letters", "redrive", "-c", str(config), "--state-dir", str(state)]) == 1
        [letter] = store.list()
        assert letter.attempts == 6 and "403" in letter.reason


def test_a_big_sqs_dead_letter_fits_the_real_queue_and_still_redrives(moto_server: AwsSettings) -> None:
    sqs = moto_server.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"dead-letters-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    store = SQSDeadLetterStore(sqs, queue_url)
    huge = {**CREATE_ACCESS_KEY, "userAgent": "\uffff" + "ü" * 400_000}
    event = CloudTrailEvent(orjson.dumps(huge), huge, Position("shardId-000000000003", "43"))
    alert = Alert("Create AccessKey", "d", {"n": 2**70, "text": "x" * 300_000}, event)

    store.park(alerts=[DeliveryResult(alert, "Slack Audit", delivered=False, attempts=5, reason="500")])

    [letter] = store.list()
    assert letter.alert().event.event_id == CREATE_ACCESS_KEY["eventID"]
    assert "[cut: " in str(letter.output) or "[cut: " in letter.data.decode()


def test_list_pages_and_prune_on_a_host_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    store = SQLiteDeadLetterStore(state / "dead-letters.sqlite3")
    store.park(alerts=[parked_result() for _ in range(7)])
    store.close()

    assert main(["dead-letters", "list", "--json", "--limit", "3", "--state-dir", str(state)]) == 0
    first = [orjson.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert (
        main(["dead-letters", "list", "--json", "--limit", "3", "--after", first[-1], "--state-dir", str(state)]) == 0
    )
    second = [orjson.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert len(first) == len(second) == 3 and not set(first) & set(second)

    assert main(["dead-letters", "prune", "--keep", "2", "--state-dir", str(state)]) == 0
    assert main(["dead-letters", "list", "--all", "--json", "--state-dir", str(state)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
