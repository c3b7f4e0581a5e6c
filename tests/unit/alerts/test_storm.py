"""Storm folding: a 10,000-alert storm gives a bounded number of posts, and digests account for every event."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.storm import SQLiteStormStore, StormPolicy
from stream_processor.config import Config, DestinationConfig, Rule
from stream_processor.dead_letters import SQLiteDeadLetterStore
from stream_processor.dedupe import MemoryDedupeStore
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import Alert, CloudTrailEvent, Position, RawRecord
from stream_processor.pipeline import Pipeline
from tests.support.fakes import FakeClock, RecordingDestination

RULE = Rule("Access Denied", 'select(.errorCode == "AccessDenied")', "denied", ("slack",), 1)
CONFIG = Config((RULE,), (DestinationConfig("slack", "recording"),))


def storm_records(count: int, per_record: int = 500) -> list[RawRecord]:
    records = []
    for start in range(0, count, per_record):
        lines = [
            orjson.dumps(
                {
                    "eventVersion": "1.08",
                    "eventSource": "s3.amazonaws.com",
                    "eventName": ("GetObject", "ListBucket", "PutObject")[i % 3],
                    "eventID": f"evt-{i}",
                    "eventTime": f"2026-11-27T01:00:{i % 60:02d}Z",
                    "errorCode": "AccessDenied",
                }
            )
            for i in range(start, min(start + per_record, count))
        ]
        records.append(RawRecord(b"\n".join(lines), Position("shardId-000000000000", str(start))))
    return records


def build(tmp_path: Path, clock: FakeClock) -> tuple[Pipeline, RecordingDestination]:
    slack = RecordingDestination(CONFIG.destinations[0])
    folder = SQLiteStormStore(
        tmp_path / "storm.sqlite3", StormPolicy(max_alerts_per_window=10, window_seconds=60), clock
    )
    deliverer = AlertDeliverer({"slack": slack}, DeliveryPolicy.immediate())
    return Pipeline(CONFIG, LibjqMatcher((RULE,)), deliverer, ledger=MemoryDedupeStore(), storm=folder), slack


def digest_count(text: str) -> int:
    match = re.match(r"([\d,]+) more ", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


def test_a_storm_of_10000_alerts_posts_a_bounded_number_and_the_digest_counts_the_rest(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    pipeline, slack = build(tmp_path, clock)
    for batch in storm_records(10_000):
        assert pipeline.process_records([batch]).complete
    assert len(slack.sent) == 10
    clock.now += 61  # the window closes; the next batch (even an empty one) sends its digest
    outcome = pipeline.process_records([])
    assert outcome.complete and len(outcome.digests) == 1
    assert len(slack.sent) == 11
    digest = slack.sent[-1]
    assert isinstance(digest.output, str)
    assert digest_count(digest.output) + 10 == 10_000
    assert "GetObject (3,330)" in digest.output and "ListBucket (3,330)" in digest.output


def test_folded_alerts_survive_a_restart_and_are_digested_by_the_next_process(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    pipeline, _ = build(tmp_path, clock)
    pipeline.process_records(storm_records(100))
    pipeline.close()  # the process stops before the window closes
    clock.now += 61
    restarted, slack = build(tmp_path, clock)
    flushed = restarted.flush()
    assert flushed.complete
    assert [digest_count(str(a.output)) for a in slack.sent] == [90]


def test_a_replayed_storm_is_neither_resent_nor_counted_twice(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    pipeline, slack = build(tmp_path, clock)
    records = storm_records(50)
    pipeline.process_records(records)
    replay = pipeline.process_records(records)
    assert replay.duplicates == 50 and replay.folded == 0
    clock.now += 61
    pipeline.flush()
    assert len(slack.sent) == 11
    assert digest_count(str(slack.sent[-1].output)) == 40


def test_group_by_folds_each_principal_separately(tmp_path: Path) -> None:
    rule = Rule(
        "Access Denied", 'select(.errorCode == "AccessDenied")', "denied", ("slack",), 1, group_by=".userIdentity.arn"
    )
    config = Config((rule,), (DestinationConfig("slack", "recording"),))
    slack = RecordingDestination(config.destinations[0])
    clock = FakeClock(1_800_000_000.0)
    folder = SQLiteStormStore(
        tmp_path / "storm.sqlite3", StormPolicy(max_alerts_per_window=2, window_seconds=60), clock
    )
    pipeline = Pipeline(
        config, LibjqMatcher((rule,)), AlertDeliverer({"slack": slack}, DeliveryPolicy.immediate()), storm=folder
    )
    lines = [
        orjson.dumps(
            {
                "eventVersion": "1.08",
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
                "eventID": f"e{i}",
                "errorCode": "AccessDenied",
                "userIdentity": {"arn": f"arn:aws:iam::1:user/{'alice' if i % 2 else 'bob'}"},
            }
        )
        for i in range(20)
    ]
    pipeline.process_records([RawRecord(b"\n".join(lines), Position("shardId-000000000000", "1"))])
    assert len(slack.sent) == 4  # two per principal
    clock.now += 61
    pipeline.flush()
    digests = sorted(str(a.output) for a in slack.sent[4:])
    assert len(digests) == 2
    assert digests[0].startswith("8 more Access Denied alerts by arn:aws:iam::1:user/alice")
    assert digests[1].startswith("8 more Access Denied alerts by arn:aws:iam::1:user/bob")


class SlowDestination(RecordingDestination):
    """Each send takes two seconds of the fake clock (Slack's rate limit, a slow webhook)."""

    clock: FakeClock

    def _send(self, alert: Alert) -> None:
        self.clock.now += 2.0
        super()._send(alert)


def test_a_batch_that_takes_longer_than_a_window_to_send_still_folds(tmp_path: Path) -> None:
    # GIVEN a 5 s window, 5 alerts per window, and sends that take 2 s each
    clock = FakeClock(1_800_000_000.0)
    slack = SlowDestination(CONFIG.destinations[0])
    slack.clock = clock
    folder = SQLiteStormStore(tmp_path / "storm.sqlite3", StormPolicy(max_alerts_per_window=5, window_seconds=5), clock)
    pipeline = Pipeline(
        CONFIG, LibjqMatcher((RULE,)), AlertDeliverer({"slack": slack}, DeliveryPolicy.immediate()), storm=folder
    )
    # WHEN one batch of 1,000 matching events arrives
    outcome = pipeline.process_records(storm_records(1_000, per_record=1_000))
    # THEN only the batch's window admits alerts: 5 posts, not 5 more in every window the sending spans,
    # and the window (closed by the time the batch is done) is digested at the batch's end
    assert outcome.complete and outcome.folded == 995
    assert len(slack.sent) == 6 and digest_count(str(slack.sent[-1].output)) == 995


def test_folds_made_while_a_digest_is_out_go_into_the_next_digest(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    folder = SQLiteStormStore(
        tmp_path / "storm.sqlite3", StormPolicy(max_alerts_per_window=1, window_seconds=60), clock
    )
    alerts = [Alert("Access Denied", "", True, CloudTrailEvent(b"{}", {"eventName": "GetObject"}, Position("s")))] * 4
    assert folder.admit(alerts[0], "slack", now=clock.now)
    assert not folder.admit(alerts[1], "slack", now=clock.now)
    clock.now += 61
    [digest] = folder.due()
    assert digest.count == 1
    # a slow shard still folds into the closed window while the digest is being delivered
    assert not folder.admit(alerts[2], "slack", now=clock.now - 61)
    folder.done(digest)
    [later] = folder.due(force=True)
    assert later.count == 1


def test_a_rules_storm_window_sets_its_own_storm_window(tmp_path: Path) -> None:
    # GIVEN two rules on the same storm, one with a 10-minute storm_window, the other on the 60 s default
    slow = Rule("Access Denied, slow", 'select(.errorCode == "AccessDenied")', "", ("slack",), 2, storm_window=600)
    config = Config((RULE, slow), (DestinationConfig("slack", "recording"),))
    slack = RecordingDestination(config.destinations[0])
    clock = FakeClock(1_800_000_000.0)
    clock.now = 1_800_000_000.0 - (1_800_000_000.0 % 600)  # both windows start now
    folder = SQLiteStormStore(
        tmp_path / "storm.sqlite3", StormPolicy(max_alerts_per_window=10, window_seconds=60), clock
    )
    pipeline = Pipeline(
        config, LibjqMatcher(config.rules), AlertDeliverer({"slack": slack}, DeliveryPolicy.immediate()), storm=folder
    )
    pipeline.process_records(storm_records(100))
    assert len(slack.sent) == 20

    # WHEN a minute passes, only the default window closes; a second minute's storm still folds into the long one
    clock.now += 61
    pipeline.process_records(storm_records(30))
    digests = [(a.rule_name, digest_count(str(a.output))) for a in slack.sent if a.description.startswith("Digest")]
    assert digests == [("Access Denied", 90)]
    assert len(slack.sent) == 20 + 1 + 10  # the default rule's digest, and its new window admits 10

    # THEN the long window's digest comes when its 10 minutes are over, and names its length
    clock.now += 540
    pipeline.flush()
    [long_digest] = [a for a in slack.sent[31:] if a.rule_name == "Access Denied, slow"]
    assert len(slack.sent) == 33  # and the default rule's second digest (20 more)
    assert digest_count(str(long_digest.output)) == 90 + 30
    assert "in the 600 s window" in str(long_digest.output)


def test_a_storm_file_from_before_per_rule_windows_still_opens_and_digests(tmp_path: Path) -> None:
    path = tmp_path / "storm.sqlite3"
    clock = FakeClock(1_800_000_000.0)
    folder = SQLiteStormStore(path, StormPolicy(max_alerts_per_window=1, window_seconds=60), clock)
    folder._connection.execute("ALTER TABLE storm_windows DROP COLUMN window_seconds")  # the old schema
    folder.close()
    reopened = SQLiteStormStore(path, StormPolicy(max_alerts_per_window=1, window_seconds=60), clock)
    alert = Alert("Access Denied", "", True, CloudTrailEvent(b"{}", {"eventName": "GetObject"}, Position("s")))
    assert reopened.admit(alert, "slack", now=clock.now)
    assert not reopened.admit(alert, "slack", now=clock.now)
    clock.now += 61
    [digest] = reopened.due()
    assert digest.count == 1 and digest.window_seconds == 60


def test_a_window_stays_capped_while_a_slow_batch_still_folds_into_it_after_its_digest(tmp_path: Path) -> None:
    # GIVEN two shard processes sharing the storm file; a batch on shard A arrived in a window that then closed
    clock = FakeClock(1_800_000_000.0)
    policy = StormPolicy(max_alerts_per_window=2, window_seconds=5)
    shard_a = SQLiteStormStore(tmp_path / "storm.sqlite3", policy, clock)
    shard_b = SQLiteStormStore(tmp_path / "storm.sqlite3", policy, clock)
    alert = Alert("Access Denied", "", True, CloudTrailEvent(b"{}", {"eventName": "GetObject"}, Position("s")))
    arrived = clock.now
    assert [shard_a.admit(alert, "slack", now=arrived) for _ in range(3)] == [True, True, False]
    # WHEN shard B sends the closed window's digest, and keeps polling while A is still sending its batch
    clock.now += 30
    [digest] = shard_b.due()
    shard_b.done(digest)
    assert shard_b.due() == []
    # THEN A's later alerts of that batch still fold: the window does not admit two more
    assert [shard_a.admit(alert, "slack", now=arrived) for _ in range(3)] == [False, False, False]
    [late] = shard_b.due()
    assert late.count == 3
    shard_b.done(late)
    # ... and once no batch can still be sending into it, the empty window is dropped: the file stays small
    clock.now += policy.keep_closed_seconds
    assert shard_b.due() == []
    assert shard_b._connection.execute("SELECT COUNT(*) FROM storm_windows").fetchone() == (0,)


class Unparkable(SQLiteDeadLetterStore):
    """A dead-letter store whose disk is full until `working` is set."""

    working = False

    def _add_many(self, letters: Any) -> None:
        if not self.working:
            raise OSError("disk full")
        super()._add_many(letters)


def test_a_digest_neither_delivered_nor_parked_stays_pending_and_is_sent_later(tmp_path: Path) -> None:
    # GIVEN a storm whose 90 folded alerts exist only in the pending digest (they are complete in the ledger)
    clock = FakeClock(1_800_000_000.0)
    slack = RecordingDestination(CONFIG.destinations[0])
    store = Unparkable(tmp_path / "dead.sqlite3")
    folder = SQLiteStormStore(
        tmp_path / "storm.sqlite3", StormPolicy(max_alerts_per_window=10, window_seconds=60), clock
    )
    deliverer = AlertDeliverer({"slack": slack}, DeliveryPolicy.immediate())
    pipeline = Pipeline(
        CONFIG, LibjqMatcher((RULE,)), deliverer, ledger=MemoryDedupeStore(), dead_letters=store, storm=folder
    )
    assert pipeline.process_records(storm_records(100)).complete
    clock.now += 61

    # WHEN the digest can be neither delivered nor parked
    slack.fail = True
    failed = pipeline.flush()

    # THEN the flush is not complete, and the digest is still there for the next flush
    assert not failed.complete
    slack.fail, store.working = False, True
    again = pipeline.flush()
    assert again.complete
    assert [digest_count(str(alert.output)) for alert in slack.sent[10:]] == [90]
