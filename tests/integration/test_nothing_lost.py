"""Nothing lost, nothing twice: the real consumer (KCL daemon on kinesis-local and moto) under failures.

Every alert is counted at the local Slack receiver by rule + eventID. Only the seed's two Slack rules are
configured here (no catch-all), so every post is a trigger we produced, a digest, or a bug.

Environment knobs (defaults keep CI within budget): FAULT_OUTAGE_SECONDS (60), how long Slack misbehaves;
FAULT_RUNS (2), kill -9 runs per kind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stream_processor.dead_letters import SQLiteDeadLetterStore
from stream_processor.decode import encode_subscription_record
from stream_processor.local.receiver import ReceivedPost, SlackReceiver
from stream_processor.local.stack import LocalStack
from stream_processor.local.traffic import TrafficGenerator, seed_triggers

# The KCL consumer's fixtures and helpers; `receiver` and `config_path` are redefined below (timed posts,
# Slack rules only), and start_worker picks them up by name.
from tests.integration.test_kcl_consumer import (  # noqa: F401 - fixtures are used by name
    EVENT_ID,
    WAIT_SECONDS,
    Worker,
    _kcl_jars,
    lease_checkpoints,
    start_worker,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OUTAGE_SECONDS = float(os.environ.get("FAULT_OUTAGE_SECONDS", "60"))
FAULT_RUNS = int(os.environ.get("FAULT_RUNS", "2"))
RULES = ("Create AccessKey", "SSM Start Session")
DIGEST = re.compile(r"([\d,]+) more (.+?) alerts")

CONFIG = """\
[[rule]]
name = "Create AccessKey"
jq_match = 'select(.eventName == "CreateAccessKey")'
description = "A new Access Key has been created"
destinations = ["Slack Audit"]

[[rule]]
name = "SSM Start Session"
jq_match = '''select(.eventName == "StartSession")
  | "username: \\(.responseElements.sessionId) target: \\(.requestParameters.target)"'''
description = "SSM start session"
destinations = ["Slack Audit"]

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhook_url = "{base}/audit"
"""

Key = tuple[str, str]  # (rule, eventID)


class TimedReceiver(SlackReceiver):
    """The Slack receiver, also noting when each post arrived (monotonic clock of this process)."""

    def __init__(self) -> None:
        super().__init__(on_post=self._arrived)
        self.arrivals: list[tuple[float, ReceivedPost]] = []
        self._arrivals_lock = threading.Lock()

    def _arrived(self, post: ReceivedPost) -> None:
        with self._arrivals_lock:
            self.arrivals.append((time.monotonic(), post))

    def timed(self) -> list[tuple[float, ReceivedPost]]:
        with self._arrivals_lock:
            return list(self.arrivals)


@pytest.fixture
def receiver() -> Iterator[TimedReceiver]:
    with TimedReceiver() as server:
        yield server


@pytest.fixture
def config_path(tmp_path: Path, receiver: TimedReceiver) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(CONFIG.format(base=f"http://127.0.0.1:{receiver.port}"))
    return path


# --- what went in, what came out ----------------------------------------------------------------------------


def rule_of(event: dict[str, Any]) -> str:
    return RULES[0] if event["eventName"] == "CreateAccessKey" else RULES[1]


@dataclass
class Put:
    """Events put into a stream: the expected alerts with the position of their record, and each shard's end."""

    positions: dict[Key, str] = field(default_factory=dict)  # "shard@sequence"
    last_sequence: dict[str, str] = field(default_factory=dict)

    @property
    def expected(self) -> Counter[Key]:
        return Counter(self.positions.keys())


def put_events(
    stack: LocalStack,
    stream: str,
    events: Sequence[dict[str, Any]],
    into: Put | None = None,
    *,
    per_record: int = 5,
    hash_key: str | None = None,
) -> Put:
    """Put events a few per subscription record (random partition keys, or one explicit hash key)."""
    put = into or Put()
    chunks = [list(events[i : i + per_record]) for i in range(0, len(events), per_record)]
    kinesis = stack.kinesis_client()
    for start in range(0, len(chunks), 100):
        batch = chunks[start : start + 100]
        entries: list[dict[str, Any]] = []
        for chunk in batch:
            entry: dict[str, Any] = {"Data": encode_subscription_record(chunk), "PartitionKey": uuid.uuid4().hex}
            if hash_key is not None:
                entry["ExplicitHashKey"] = hash_key
            entries.append(entry)
        answer = kinesis.put_records(StreamName=stream, Records=entries)
        assert answer["FailedRecordCount"] == 0
        for chunk, result in zip(batch, answer["Records"], strict=True):
            shard, sequence = result["ShardId"], result["SequenceNumber"]
            if shard not in put.last_sequence or int(sequence) > int(put.last_sequence[shard]):
                put.last_sequence[shard] = sequence
            for event in chunk:
                if event["eventName"] in ("CreateAccessKey", "StartSession"):
                    put.positions.setdefault((rule_of(event), str(event["eventID"])), f"{shard}@{sequence}")
    return put


def triggers_and_noise(triggers: int, noise: int, seed: int) -> list[dict[str, Any]]:
    events = seed_triggers(triggers, seed=seed) + TrafficGenerator(seed=seed + 1, match_rate=0.0).generate(noise)
    events.sort(key=lambda event: str(event["eventID"]))  # interleave
    return events


def post_key(post: ReceivedPost) -> Key | None:
    """(rule, eventID) of an alert post; None for a digest."""
    text = str(post.payload.get("text", "")) if isinstance(post.payload, dict) else ""
    if DIGEST.search(text):
        return None
    rule = next((name for name in RULES if text.startswith(name)), None)
    match = EVENT_ID.search(json.dumps(post.payload))
    assert rule and match, f"a post that is neither a known alert nor a digest: {text[:300]}"
    return rule, match.group(1)


def delivered(posts: Sequence[ReceivedPost]) -> Counter[Key]:
    """Alerts the receiver answered 2xx, counted by (rule, eventID); digests left out."""
    keys = (post_key(p) for p in posts if p.status is not None and 200 <= p.status < 300)
    return Counter(key for key in keys if key is not None)


def cli(*args: str, stack: LocalStack, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.environment()}
    return subprocess.run(
        [sys.executable, "-m", "stream_processor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def parked(work_dir: Path, stack: LocalStack) -> list[dict[str, Any]]:
    """`dead-letters list --json` of a worker's work dir."""
    listing = cli("dead-letters", "list", "--json", "--state-dir", str(work_dir), stack=stack)
    assert listing.returncode == 0, listing.stderr
    return [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]


def redrive(config: Path, work_dir: Path, stack: LocalStack) -> subprocess.CompletedProcess[str]:
    return cli("dead-letters", "redrive", "-c", str(config), "--state-dir", str(work_dir), stack=stack)


def checkpoints(stack: LocalStack, application: str) -> dict[str, str]:
    """The lease table's checkpoints; empty until the daemon has created the table."""
    try:
        return lease_checkpoints(stack, application)
    except stack.client("dynamodb").exceptions.ResourceNotFoundException:
        return {}


def ledger_of(tmp_path: Path, name: str) -> Path:
    """The ledger where `consume` keeps it by default (its work dir), so state-dir commands find it."""
    return tmp_path / f"work-{name}" / "ledger.sqlite3"


# --- 1. failed for good: parked, checkpointed, redriven once ----------------------------------------------


def test_alerts_that_fail_for_good_are_parked_checkpointed_past_and_redriven_once(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: TimedReceiver,
    start_worker: Any,  # noqa: F811 - the fixture imported above
    config_path: Path,
    tmp_path: Path,
) -> None:
    # GIVEN a Slack that answers 404 to everything (no retry helps), and a stream with 6 triggers
    stream, application = new_stream(1), unique("app")
    receiver.fail_next(status=404, times=10_000)
    put = put_events(local_stack, stream, triggers_and_noise(6, 24, seed=101), per_record=3)

    # WHEN a worker with the default dead-letter store (its work dir) consumes it
    worker = start_worker(stream, application, dedupe_db=ledger_of(tmp_path, "w1"))
    wait_for("the checkpoint at the end", lambda: checkpoints(local_stack, application) == put.last_sequence,
             [worker])  # fmt: skip
    assert worker.stop() == 0

    # THEN the shard moved on, and every alert is parked with its shard and sequence number
    work_dir = tmp_path / "work-w1"
    letters = parked(work_dir, local_stack)
    assert all(letter["kind"] == "alert" and "404" in letter["reason"] for letter in letters)
    assert Counter((letter["rule"], letter["position"].split("/")[0]) for letter in letters) == Counter(
        (rule, position) for (rule, _), position in put.positions.items()
    )
    assert delivered(receiver.received) == Counter()

    # WHEN Slack is back and the dead letters are redriven, twice
    receiver.clear()
    first = redrive(config_path, work_dir, local_stack)
    second = redrive(config_path, work_dir, local_stack)

    # THEN each alert arrived exactly once, and nothing is left parked
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert delivered(receiver.received) == put.expected
    assert parked(work_dir, local_stack) == []


# --- 2. an outage of 429, 500, resets and timeouts ----------------------------------------------------------


class Outage:
    """Keeps Slack misbehaving for `seconds` from its first post: 429 + Retry-After, 500, reset, timeout.

    The receiver answers from a queue of planned responses; this thread keeps a few failures queued ahead
    of the posts, then stops topping up (the last few queued still fail: the delivery policy copes).
    """

    CYCLE = (
        {"status": 429, "retry_after": "2"},
        {"status": 500},
        {"status": 500, "reset": True},
        {"status": 500, "delay": 12.0},  # longer than the delivery timeout (10 s): the client gives up
    )
    AHEAD = 4

    def __init__(self, receiver: SlackReceiver, seconds: float) -> None:
        self.receiver = receiver
        self.seconds = seconds
        self.started: float | None = None
        self.ended = threading.Event()
        self._queued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outage", daemon=True)

    def __enter__(self) -> Outage:
        self._top_up()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _top_up(self) -> None:
        while self._queued - len(self.receiver.received) < self.AHEAD:
            self.receiver.fail_next(**self.CYCLE[self._queued % len(self.CYCLE)])  # type: ignore[arg-type]
            self._queued += 1

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.started is None and self.receiver.received:
                self.started = time.monotonic()
            if self.started is not None and time.monotonic() - self.started >= self.seconds:
                self.ended.set()
                return
            self._top_up()


def test_an_outage_of_429_500_resets_and_timeouts_loses_nothing_and_repeats_nothing(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: TimedReceiver,
    start_worker: Any,  # noqa: F811 - the fixture imported above
    config_path: Path,
    tmp_path: Path,
) -> None:
    # GIVEN a Slack that fails every post in turn (429 with Retry-After, 500, reset, timeout) for
    # FAULT_OUTAGE_SECONDS from the first post, and a stream with triggers before and during the outage
    stream, application = new_stream(1), unique("app")
    put = put_events(local_stack, stream, triggers_and_noise(10, 30, seed=201), per_record=2)
    work_dir = tmp_path / "work-w1"
    letters = SQLiteDeadLetterStore(work_dir / "dead-letters.sqlite3")
    violations: list[str] = []

    def checkpoint_covers_only_finished_alerts() -> None:
        """Checkpoint first, then what is delivered or parked (both only grow): a sound snapshot."""
        checkpoint = checkpoints(local_stack, application).get("shardId-000000000000", "")
        if not checkpoint.isdigit():
            return
        done = set(delivered(receiver.received)) | {
            (letter.rule_name, letter.alert().event.event_id) for letter in letters.list(kind="alert")
        }
        for key, position in put.positions.items():
            if int(position.split("@")[1]) <= int(checkpoint) and key not in done:
                violations.append(f"checkpoint {checkpoint} passed {key} at {position}, neither delivered nor parked")

    with Outage(receiver, OUTAGE_SECONDS) as outage:
        worker = start_worker(stream, application, dedupe_db=ledger_of(tmp_path, "w1"))
        wait_for("the outage to start", lambda: outage.started is not None, [worker])
        put_events(local_stack, stream, triggers_and_noise(10, 30, seed=202), put, per_record=2)

        # WHEN the worker keeps consuming through the outage (the checkpoint is watched all along)
        def outage_over() -> bool:
            checkpoint_covers_only_finished_alerts()
            return outage.ended.is_set()

        wait_for("the end of the outage", outage_over, [worker], timeout=OUTAGE_SECONDS + WAIT_SECONDS)
    put_events(local_stack, stream, triggers_and_noise(6, 10, seed=203), put, per_record=2)  # after recovery

    def at_the_end() -> bool:
        checkpoint_covers_only_finished_alerts()
        return checkpoints(local_stack, application) == put.last_sequence

    wait_for("the checkpoint at the end", at_the_end, [worker])
    assert worker.stop() == 0
    failed = [post for post in receiver.received if post.status is None or post.status >= 300]
    during = delivered(receiver.received)

    # ... and what was parked during the outage is redriven once Slack is healthy
    letters_before = letters.list(kind="alert")
    redriven = redrive(config_path, work_dir, local_stack)
    letters.close()

    # THEN the checkpoint never passed an alert that was neither delivered nor parked, every alert arrived
    # (delivered during the run, or parked and redriven), and none twice
    assert violations == []
    assert redriven.returncode == 0, redriven.stderr
    assert len(failed) >= 4, "the outage never happened"
    assert delivered(receiver.received) == put.expected
    print(
        f"[outage {OUTAGE_SECONDS:.0f} s] {len(put.expected)} alerts: {sum(during.values())} delivered live, "
        f"{len(letters_before)} parked and redriven; {len(failed)} failed answers",
        file=sys.stderr,
    )


# --- 3. one eventID on two shards, and a replay ------------------------------------------------------------


def test_one_event_on_two_shards_and_a_replay_of_the_checkpointed_range_give_one_alert(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: TimedReceiver,
    start_worker: Any,  # noqa: F811 - the fixture imported above
    config_path: Path,
    tmp_path: Path,
) -> None:
    # GIVEN a 2-shard stream with the same CreateAccessKey event put into each shard (explicit hash keys)
    stream, application = new_stream(2), unique("app")
    shards = local_stack.kinesis_client().list_shards(StreamName=stream)["Shards"]
    [event] = seed_triggers(1, seed=301)
    put = Put()
    for shard in shards:
        put_events(local_stack, stream, [event], put, hash_key=shard["HashKeyRange"]["StartingHashKey"])
    assert len(put.last_sequence) == 2  # it is on both shards

    # WHEN a worker consumes both shards, with its ledger, to the end
    ledger = ledger_of(tmp_path, "w1")
    worker = start_worker(stream, application, dedupe_db=ledger)
    wait_for("both checkpoints", lambda: checkpoints(local_stack, application) == put.last_sequence, [worker])
    assert worker.stop() == 0

    # ... and the checkpointed range is replayed with --send against the consumer's ledger
    replay = cli(
        "replay", "-c", str(config_path), "--stream", stream, "--region", local_stack.region,
        "--kinesis-endpoint", local_stack.kinesis_url, "--aws-endpoint", local_stack.moto_url,
        "--all", "--from", "trim-horizon", "--send", "--dedupe-db", str(ledger),
        stack=local_stack,
    )  # fmt: skip

    # THEN Slack got exactly one alert
    assert replay.returncode == 0, replay.stderr
    assert delivered(receiver.received) == put.expected == Counter({(RULES[0], str(event["eventID"])): 1})
    assert len(receiver.received) == 1


# --- 4. a storm of 10,000 ------------------------------------------------------------------------------------


def test_a_storm_of_10000_alerts_gives_a_bounded_number_of_posts_and_digests_account_for_every_event(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: TimedReceiver,
    start_worker: Any,  # noqa: F811 - the fixture imported above
) -> None:
    # GIVEN 10,000 matching events (half CreateAccessKey, half StartSession) on a 2-shard stream
    stream, application = new_stream(2), unique("app")
    put = put_events(local_stack, stream, seed_triggers(10_000, seed=401), per_record=50)
    assert len(put.expected) == 10_000
    window, most = 5.0, 5

    # WHEN a worker folds storms: at most 5 alerts per rule and 5 s window, the rest into digests.
    # (batches of at most 20 records, 1,000 events: a storm that spans a few batches and windows; sending a
    # batch's admitted alerts at Slack's 1 post/s outlasts its window, which must stay capped meanwhile)
    storm = ["--storm-window", str(window), "--storm-max", str(most), "--max-records", "20"]
    worker = start_worker(stream, application, extra=storm)

    def accounted() -> int:
        return sum(delivered(receiver.received).values()) + sum(digest_counts(receiver.received).values())

    wait_for("every event in a post or a digest", lambda: accounted() >= 10_000, [worker], timeout=2 * WAIT_SECONDS)
    wait_for("the checkpoints", lambda: checkpoints(local_stack, application) == put.last_sequence, [worker])
    assert worker.stop() == 0

    # THEN every event is either posted on its own (once) or counted in its rule's digests, exactly
    posts = receiver.timed()
    alerts = delivered(receiver.received)
    assert max(alerts.values()) == 1
    assert set(alerts) <= set(put.expected)
    digests = digest_counts(receiver.received)
    for rule in RULES:
        expected = sum(1 for key in put.expected if key[0] == rule)
        assert sum(1 for key in alerts if key[0] == rule) + digests[rule] == expected, rule
    # ... and the number of posts is bounded: per rule and window, at most `most` alerts and one digest.
    # The storm spans at most span/window + 2 windows (a partial one at each end); a digest goes out after
    # its window closes, so one more window's worth of digests may trail the last alert.
    span = posts[-1][0] - posts[0][0]
    windows = int(span / window) + 2
    bound = len(RULES) * (most + 1) * windows
    print(f"[storm] {len(posts)} posts for 10,000 events over {span:.0f} s (bound {bound})", file=sys.stderr)
    assert len(posts) <= bound
    assert all(post.status == 200 for _, post in posts)


def digest_counts(posts: Sequence[ReceivedPost]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for post in posts:
        text = str(post.payload.get("text", "")) if isinstance(post.payload, dict) else ""
        if post.status == 200 and (match := DIGEST.search(json.dumps(text))):
            counts[match.group(2)] += int(match.group(1).replace(",", ""))
    return counts
