"""The storm store contract, run against every backend: memory, SQLite, and DynamoDB (moto in server mode).

What a user sees: at most N posts per rule, group, destination and window; one digest per closed window that
counts every folded alert; a digest handed to one worker only, and not lost until it is delivered or parked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from stream_processor.alerts.delivery import AlertDeliverer, DeliveryPolicy
from stream_processor.alerts.storm import (
    DynamoDBStormStore,
    MemoryStormStore,
    SQLiteStormStore,
    StormPolicy,
    StormStore,
)
from stream_processor.aws import AwsSettings
from stream_processor.config import Config, DestinationConfig, Rule
from stream_processor.dedupe import MemoryDedupeStore
from stream_processor.matcher import LibjqMatcher
from stream_processor.model import Alert, CloudTrailEvent, Position, RawRecord
from stream_processor.pipeline import Pipeline
from tests.support.fakes import FakeClock, RecordingDestination
from tests.support.state_tables import create_state_table

START = 1_800_000_000.0  # a minute boundary
Factory = Callable[..., StormStore]
"""A store of the backend under test: `factory(policy)`; every call opens the same windows (a second worker)."""


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def factory(backend: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    opened: list[StormStore] = []
    if backend == "memory":
        shared: dict[str, MemoryStormStore] = {}

        def make(policy: StormPolicy) -> StormStore:  # one process: its shard threads share one store
            return shared.setdefault("store", MemoryStormStore(policy, clock))

    elif backend == "sqlite":

        def make(policy: StormPolicy) -> StormStore:
            return SQLiteStormStore(tmp_path / "storm.sqlite3", policy, clock)

    else:
        moto: AwsSettings = request.getfixturevalue("moto_server")
        table = create_state_table(moto.client("dynamodb"), "storm")

        def make(policy: StormPolicy) -> StormStore:
            return DynamoDBStormStore(moto.client("dynamodb"), table, policy, clock, scan_every_seconds=0)

    def opening(policy: StormPolicy) -> StormStore:
        store = make(policy)
        opened.append(store)
        return store

    yield opening
    for store in opened:
        store.close()


@pytest.fixture
def shared_factory(backend: str, factory: Factory) -> Factory:
    """Backends whose windows two processes (SQLite: on one host) or hosts (DynamoDB) share."""
    if backend == "memory":
        pytest.skip("a memory store lives in one process")
    return factory


def alert(
    name: str = "GetObject", time: str = "2026-11-27T01:00:00Z", rule: str = "Access Denied", n: int = 0
) -> Alert:
    data = {"eventName": name, "eventTime": time, "eventID": f"e{n}", "errorCode": "AccessDenied"}
    return Alert(rule, "denied", True, CloudTrailEvent(orjson.dumps(data), data, Position("shardId-1", str(n))))


# --------------------------------------------------------------------------- one store


def test_a_window_admits_its_cap_and_its_digest_counts_every_folded_alert(factory: Factory, clock: FakeClock) -> None:
    store = factory(StormPolicy(max_alerts_per_window=3, window_seconds=60))
    times = ["2026-11-27T01:00:30Z", "2026-11-27T01:00:10Z", "2026-11-27T01:00:50Z", "", "2026-11-27T01:00:20Z"]
    names = ["GetObject", "PutObject", "GetObject", "ListBucket", "GetObject"]
    admitted = [store.admit(alert(n=i), "slack", now=clock.now) for i in range(3)]
    folded = [store.admit(alert(names[i], times[i], n=10 + i), "slack", now=clock.now) for i in range(5)]
    assert admitted == [True] * 3 and folded == [False] * 5
    assert store.due() == []  # the window is still open

    clock.now += 60
    [digest] = store.due()
    assert (digest.rule_name, digest.destination_id, digest.count) == ("Access Denied", "slack", 5)
    assert (digest.first_time, digest.last_time) == ("2026-11-27T01:00:10Z", "2026-11-27T01:00:50Z")
    assert digest.top_event_names[0] == ("GetObject", 3)
    assert sorted(digest.top_event_names[1:]) == [("ListBucket", 1), ("PutObject", 1)]
    assert digest.sample.event_id == "e10" and digest.sample.position == Position("shardId-1", "10")
    assert digest.alert().output.startswith("5 more Access Denied alerts in the 60 s window from 2027-01-15T08:00:00Z")
    store.done(digest)
    assert store.due(force=True) == []


def test_rules_groups_and_destinations_fold_in_windows_of_their_own(factory: Factory, clock: FakeClock) -> None:
    store = factory(StormPolicy(max_alerts_per_window=1, window_seconds=60))
    for rule, group, destination in [("A", "", "slack"), ("B", "", "slack"), ("A", "alice", "slack"), ("A", "", "sns")]:
        assert store.admit(alert(rule=rule), destination, group, now=clock.now)
        assert not store.admit(alert(rule=rule), destination, group, now=clock.now)
    # a rule's own window (its dedupe_window) is longer: not due with the others
    assert store.admit(alert(rule="Slow"), "slack", now=clock.now, window_seconds=600)
    assert not store.admit(alert(rule="Slow"), "slack", now=clock.now, window_seconds=600)
    clock.now += 60
    due = store.due()
    found = sorted((d.rule_name, d.group, d.destination_id, d.count) for d in due)
    assert found == [("A", "", "slack", 1), ("A", "", "sns", 1), ("A", "alice", "slack", 1), ("B", "", "slack", 1)]
    for digest in due:
        store.done(digest)
    clock.now += 540
    [slow] = store.due()
    assert (slow.rule_name, slow.window_seconds) == ("Slow", 600)


def test_a_claimed_digest_is_handed_out_again_only_once_released_or_its_claim_runs_out(
    factory: Factory, clock: FakeClock
) -> None:
    policy = StormPolicy(max_alerts_per_window=1, window_seconds=60, claim_seconds=120)
    store = factory(policy)
    store.admit(alert(), "slack", now=clock.now)
    store.admit(alert(n=1), "slack", now=clock.now)
    clock.now += 60
    [digest] = store.due()
    assert store.due() == [] and store.due(force=True) == []  # out for delivery
    store.release(digest)  # neither delivered nor parked
    [again] = store.due()
    assert again.count == 1
    clock.now += policy.claim_seconds  # the worker that claimed it died
    [third] = store.due()
    store.done(third)
    assert store.due(force=True) == []


def test_folds_made_while_a_digest_is_out_go_into_the_next_digest(factory: Factory, clock: FakeClock) -> None:
    store = factory(StormPolicy(max_alerts_per_window=1, window_seconds=60))
    arrived = clock.now
    assert store.admit(alert(), "slack", now=arrived)
    assert not store.admit(alert(n=1), "slack", now=arrived)
    clock.now += 61
    [digest] = store.due()
    # a slow batch that arrived in the closed window still folds into it while the digest is out
    assert not store.admit(alert("PutObject", n=2), "slack", now=arrived)
    store.done(digest)
    [later] = store.due(force=True)
    assert later.count == 1
    store.done(later)
    assert not store.admit(alert(n=3), "slack", now=arrived)  # still capped after its digests


def test_a_forced_flush_hands_out_open_windows_too(factory: Factory, clock: FakeClock) -> None:
    store = factory(StormPolicy(max_alerts_per_window=1, window_seconds=60))
    store.admit(alert(), "slack", now=clock.now)
    store.admit(alert(n=1), "slack", now=clock.now)
    [digest] = store.due(force=True)  # shutdown: the window is still open
    assert digest.count == 1


def test_an_empty_closed_window_is_dropped_once_no_batch_can_still_send_into_it(
    factory: Factory, clock: FakeClock
) -> None:
    policy = StormPolicy(max_alerts_per_window=1, window_seconds=60, keep_closed_seconds=900)
    store = factory(policy)
    arrived = clock.now
    store.admit(alert(), "slack", now=arrived)
    store.admit(alert(n=1), "slack", now=arrived)
    clock.now += 60
    [digest] = store.due()
    store.done(digest)
    clock.now += policy.keep_closed_seconds
    assert store.due() == []  # drops it
    # an alert dated in that long-gone window starts it afresh, as a window of its own
    assert store.admit(alert(n=2), "slack", now=arrived)


# --------------------------------------------------------------------------- shared by workers


def test_two_workers_folding_one_storm_share_its_cap_and_emit_one_digest(
    shared_factory: Factory, clock: FakeClock
) -> None:
    # GIVEN two workers (shard processes, hosts) on one store, 10 alerts per window
    policy = StormPolicy(max_alerts_per_window=10, window_seconds=60)
    worker_a, worker_b = shared_factory(policy), shared_factory(policy)
    # WHEN each sees half of a 60-alert storm
    sent = [
        (worker_a if i % 2 else worker_b).admit(alert(n=i), "slack", now=clock.now) for i in range(60)
    ]  # fmt: skip
    # THEN 10 are sent between them, and once the window closes exactly one of them gets the one digest
    assert sum(sent) == 10
    clock.now += 60
    digests = worker_a.due() + worker_b.due()
    assert [d.count for d in digests] == [50]
    worker_a.done(digests[0])
    assert worker_a.due(force=True) + worker_b.due(force=True) == []


def test_workers_racing_on_one_window_never_send_more_than_its_cap(
    shared_factory: Factory, clock: FakeClock, backend: str
) -> None:
    if backend == "dynamodb":
        pytest.skip("moto's threaded server does not serialise concurrent writes to one item (DynamoDB does)")
    policy = StormPolicy(max_alerts_per_window=7, window_seconds=60)
    workers = [shared_factory(policy) for _ in range(4)]
    results: list[bool] = []
    lock = threading.Lock()

    def storm(worker: StormStore, offset: int) -> None:
        for i in range(15):
            admitted = worker.admit(alert(n=offset + i), "slack", now=clock.now)
            with lock:
                results.append(admitted)

    threads = [threading.Thread(target=storm, args=(w, 100 * k)) for k, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 60 and sum(results) == 7
    clock.now += 60
    digests = [d for w in workers for d in w.due()]
    assert [d.count for d in digests] == [53]


def test_a_digest_survives_its_worker_and_is_sent_by_the_next(shared_factory: Factory, clock: FakeClock) -> None:
    policy = StormPolicy(max_alerts_per_window=1, window_seconds=60)
    first = shared_factory(policy)
    first.admit(alert(), "slack", now=clock.now)
    first.admit(alert(n=1), "slack", now=clock.now)
    first.close()  # the worker stops before the window closes
    clock.now += 60
    [digest] = shared_factory(policy).due()
    assert digest.count == 1


# --------------------------------------------------------------------------- through the pipeline

RULE = Rule("Access Denied", 'select(.errorCode == "AccessDenied")', "denied", ("slack",), 1)
CONFIG = Config((RULE,), (DestinationConfig("slack", "recording"),))


def storm_record(first: int, count: int) -> RawRecord:
    lines = [
        orjson.dumps(
            {
                "eventVersion": "1.08",
                "eventSource": "s3.amazonaws.com",
                "eventName": ("GetObject", "ListBucket")[i % 2],
                "eventID": f"evt-{i}",
                "eventTime": f"2026-11-27T01:00:{i % 60:02d}Z",
                "errorCode": "AccessDenied",
            }
        )
        for i in range(first, first + count)
    ]
    return RawRecord(b"\n".join(lines), Position(f"shardId-{first}", "1"))


def test_two_consumers_on_one_store_post_the_cap_and_one_digest_for_a_storm(
    shared_factory: Factory, clock: FakeClock
) -> None:
    # GIVEN two consumers (two shards, or two hosts) posting to one Slack channel, folding into one store
    slack = RecordingDestination(CONFIG.destinations[0])
    policy = StormPolicy(max_alerts_per_window=10, window_seconds=60)
    consumers = [
        Pipeline(
            CONFIG,
            LibjqMatcher((RULE,)),
            AlertDeliverer({"slack": slack}, DeliveryPolicy.immediate()),
            ledger=MemoryDedupeStore(),
            storm=shared_factory(policy),
        )
        for _ in range(2)
    ]
    # WHEN a 200-alert storm arrives, half on each
    for k, consumer in enumerate(consumers):
        assert consumer.process_records([storm_record(100 * k, 100)]).complete
    assert len(slack.sent) == 10
    # THEN after the window, both poll, and the channel gets one digest counting the other 190
    clock.now += 61
    flushed = [consumer.process_records([]) for consumer in consumers]
    assert all(outcome.complete for outcome in flushed)
    assert len(slack.sent) == 11
    assert str(slack.sent[-1].output).startswith("190 more Access Denied alerts")
    for consumer in consumers:
        consumer.close()


# --------------------------------------------------------------------------- DynamoDB's own limits


@pytest.fixture
def dynamodb_store(moto_server: AwsSettings, clock: FakeClock) -> DynamoDBStormStore:
    client = moto_server.client("dynamodb")
    policy = StormPolicy(max_alerts_per_window=1, window_seconds=60)
    return DynamoDBStormStore(client, create_state_table(client, "storm"), policy, clock, scan_every_seconds=0)


def test_dynamodb_keeps_a_storm_of_huge_events_within_its_item_limit(
    dynamodb_store: DynamoDBStormStore, clock: FakeClock
) -> None:
    # GIVEN events of 300 KB (within the decode budget, beyond a quarter of DynamoDB's 400 KB item)
    data = {"eventName": "PutObject", "eventID": "big", "eventTime": "2026-11-27T01:00:00Z", "padding": "x" * 300_000}
    big = Alert("Access Denied", "", True, CloudTrailEvent(orjson.dumps(data), data, Position("shardId-1", "7")))
    dynamodb_store.admit(big, "slack", "g" * 5000, now=clock.now)
    # WHEN they fold, each with a distinct eventName past the names kept
    for i in range(dynamodb_store.MAX_NAMES + 5):
        assert not dynamodb_store.admit(alert(f"Name{i:03}", n=i), "slack", "g" * 5000, now=clock.now)
    assert not dynamodb_store.admit(big, "slack", "g" * 5000, now=clock.now)
    assert not dynamodb_store.admit(alert("N" * 300_000, "2" * 300_000, n=999), "slack", "g" * 5000, now=clock.now)
    # THEN the digest still counts every one, names the most common, and shows the sample's summary
    clock.now += 60
    [digest] = dynamodb_store.due()
    assert digest.count == dynamodb_store.MAX_NAMES + 7
    assert dict(digest.top_event_names).get("(other)") == 7
    assert digest.sample.event_name == "Name000"
    assert digest.group == "g" * dynamodb_store.MAX_GROUP_CHARS
    dynamodb_store.done(digest)
    clock.now += dynamodb_store.policy.claim_seconds
    assert dynamodb_store.due(force=True) == []  # done took it off the window it came from: not sent again


def test_dynamodb_cuts_an_oversized_sample_to_its_summary(dynamodb_store: DynamoDBStormStore, clock: FakeClock) -> None:
    data = {"eventName": "PutObject", "eventID": "big", "eventTime": "2026-11-27T01:00:00Z", "padding": "x" * 300_000}
    big = Alert("Access Denied", "", True, CloudTrailEvent(orjson.dumps(data), data, Position("shardId-1", "7")))
    dynamodb_store.admit(big, "slack", now=clock.now)
    assert not dynamodb_store.admit(big, "slack", now=clock.now)
    clock.now += 60
    [digest] = dynamodb_store.due()
    assert digest.sample.data == {"eventName": "PutObject", "eventID": "big", "eventTime": "2026-11-27T01:00:00Z"}
    assert digest.sample.position == Position("shardId-1", "7")


def test_dynamodb_scans_for_due_digests_at_most_every_few_seconds(moto_server: AwsSettings, clock: FakeClock) -> None:
    """Every shard calls `due` after every batch; a scan per call would cost a scan per batch per shard."""
    client = moto_server.client("dynamodb")
    store = DynamoDBStormStore(
        client, create_state_table(client, "storm"), StormPolicy(max_alerts_per_window=1, window_seconds=60), clock
    )
    store.admit(alert(), "slack", now=clock.now)
    store.admit(alert(n=1), "slack", now=clock.now)
    clock.now += 58
    assert store.due() == []  # scanned: the window is still open
    clock.now += 2
    assert store.due() == []  # closed, but scanned two seconds ago
    assert [d.count for d in store.due(force=True)] == [1]  # a shutdown flush always scans
