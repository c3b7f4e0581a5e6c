"""The real consumer: `stream-processor consume` running the KCL MultiLangDaemon on kinesis-local and moto.

Every test produces CloudWatch Logs subscription records (the decode module's encoder) with realistic
CloudTrail events, runs one or two workers as separate processes, and reads what the alerts reached. A
catch-all rule publishes every event to an SNS topic on moto (an SQS queue subscribed to it is read back),
so "every event exactly once" is checked by counting eventIDs there; the seed's two rules post their
triggers to a local Slack-compatible receiver (Slack's one-post-a-second limit rules it out for the
catch-all).

Start-up dominates the run time: KCL waits a random 1-30 s before the first shard sync of an empty lease
table (a restart on an existing table does not). The local timing knobs (`consume` sets them when the
endpoints are local) keep the rest to seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stream_processor.decode import encode_subscription_record
from stream_processor.local.receiver import SlackReceiver
from stream_processor.local.stack import LocalStack
from stream_processor.local.traffic import TrafficGenerator, seed_triggers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

REPO_ROOT = Path(__file__).resolve().parents[2]
KCL_JARS = REPO_ROOT / "infra" / "kcl" / "jars"
WAIT_SECONDS = 150.0
EVENT_ID = re.compile(r'eventID[\\"\s:]*([0-9a-fA-F-]{36})')

CONFIG = """\
[[rule]]
name = "Every event"
jq_match = '.eventID'
description = "catch-all: proves each event is matched exactly once"
destinations = ["All"]

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
id = "All"
type = "sns"
sns_arn = "{topic_arn}"

[[destination]]
id = "Slack Audit"
type = "slack_webhook"
webhook_url = "{base}/audit"
"""


@pytest.fixture(autouse=True)
def _kcl_jars() -> None:
    if not any(KCL_JARS.glob("amazon-kinesis-client-multilang-*.jar")):
        pytest.fail("the KCL jars are not fetched: run `make kcl` (part of `make setup`)", pytrace=False)


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    with SlackReceiver() as server:
        yield server


class Inbox:
    """An SQS queue subscribed (raw delivery) to an SNS topic on moto: what the catch-all rule published."""

    def __init__(self, stack: LocalStack, name: str) -> None:
        self.sns = stack.client("sns")
        self.sqs = stack.client("sqs")
        self.topic_arn: str = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue_url: str = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        self.sns.subscribe(
            TopicArn=self.topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        self._ids: Counter[str] = Counter()

    def ids(self) -> Counter[str]:
        """eventID of every message published so far, counted (messages are taken off the queue)."""
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                return Counter(self._ids)
            for message in messages:
                match = EVENT_ID.search(message["Body"])
                assert match, f"no eventID in a published alert: {message['Body'][:300]}"
                self._ids[match.group(1)] += 1
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def count(self) -> int:
        return sum(self.ids().values())


@pytest.fixture
def inbox(local_stack: LocalStack) -> Inbox:
    return Inbox(local_stack, unique("all-events"))


@pytest.fixture
def config_path(tmp_path: Path, receiver: SlackReceiver, inbox: Inbox) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(CONFIG.format(base=f"http://127.0.0.1:{receiver.port}", topic_arn=inbox.topic_arn))
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- producing ---------------------------------------------------------------------------------------------


@dataclass
class Produced:
    """What went into the stream: every eventID, the triggers' eventIDs, the last sequence number per shard."""

    event_ids: list[str] = field(default_factory=list)
    trigger_ids: list[str] = field(default_factory=list)
    last_sequence: dict[str, str] = field(default_factory=dict)

    def add(self, other: Produced) -> None:
        self.event_ids += other.event_ids
        self.trigger_ids += other.trigger_ids
        for shard, sequence in other.last_sequence.items():
            if shard not in self.last_sequence or int(sequence) > int(self.last_sequence[shard]):
                self.last_sequence[shard] = sequence


def produce(
    stack: LocalStack, stream: str, *, background: int, triggers: int, seed: int, per_record: int = 7
) -> Produced:
    """Put `background` benign events and `triggers` seed triggers, a few per subscription record, spread
    over the shards by random partition keys."""
    events: list[dict[str, Any]] = TrafficGenerator(seed=seed, match_rate=0.0).generate(background)
    trigger_events = seed_triggers(triggers, seed=seed + 1)
    mixed = events + trigger_events
    mixed.sort(key=lambda event: str(event["eventID"]))  # interleave triggers with the rest
    produced = Produced(
        event_ids=[str(event["eventID"]) for event in mixed],
        trigger_ids=[str(event["eventID"]) for event in trigger_events],
    )
    records = [
        {"Data": encode_subscription_record(mixed[i : i + per_record]), "PartitionKey": uuid.uuid4().hex}
        for i in range(0, len(mixed), per_record)
    ]
    kinesis = stack.kinesis_client()
    for i in range(0, len(records), 100):
        answer = kinesis.put_records(StreamName=stream, Records=records[i : i + 100])
        assert answer["FailedRecordCount"] == 0
        for entry in answer["Records"]:
            produced.add(Produced(last_sequence={entry["ShardId"]: entry["SequenceNumber"]}))
    return produced


# --- workers -----------------------------------------------------------------------------------------------


class Worker:
    """`stream-processor consume` as its own process, output in a file, stopped by its PID."""

    def __init__(self, name: str, log_path: Path, command: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_path
        self.started = time.monotonic()
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def held(self) -> set[str]:
        """The shards this worker's processors said they hold (and have not released since)."""
        held: set[str] = set()
        for line in self.log().splitlines():
            if match := re.search(r"holding shard (\S+)", line):
                held.add(match.group(1))
            elif match := re.search(r"lost the lease on shard (\S+?):|shard (\S+) ended", line):
                held.discard(match.group(1) or match.group(2))
        return held

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM: the daemon's processors get shutdown_requested and checkpoint; consume exits 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # its daemon gets SIGTERM from the kernel (parent-death signal)
            self.process.wait(10)
            raise

    def __repr__(self) -> str:
        return f"Worker({self.name}, pid={self.process.pid})"


@pytest.fixture
def start_worker(local_stack: LocalStack, config_path: Path, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(
        stream: str, application: str, name: str = "w1", *, dedupe_db: Path | None = None, extra: Sequence[str] = ()
    ) -> Worker:
        command = [
            sys.executable, "-m", "stream_processor", "consume",
            "--config", str(config_path),
            "--stream", stream,
            "--application", application,
            "--region", local_stack.region,
            "--kinesis-endpoint", local_stack.kinesis_url,
            "--dynamodb-endpoint", local_stack.moto_url,
            "--aws-endpoint", local_stack.moto_url,
            "--initial-position", "TRIM_HORIZON",
            "--work-dir", str(tmp_path / f"work-{name}"),
            "--worker-id", name,
        ]  # fmt: skip
        command += ["--dedupe-db", str(dedupe_db)] if dedupe_db else ["--no-dedupe"]
        command += [] if any(flag.startswith("--storm") for flag in extra) else ["--no-storm"]  # count every alert
        command += extra
        env = {**os.environ, **local_stack.environment()}
        worker = Worker(name, tmp_path / f"{name}-{len(workers)}.log", command, env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.stop()


def wait_for(
    what: str, condition: Callable[[], bool], workers: Sequence[Worker], timeout: float = WAIT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(
                    f"{worker} exited ({worker.process.returncode}) waiting for {what}:\n{worker.log()[-4000:]}"
                )
        time.sleep(0.25)
    logs = "\n".join(f"--- {w} ---\n{w.log()[-3000:]}" for w in workers)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def posted_ids(receiver: SlackReceiver, path: str) -> Counter[str]:
    """eventID of every post delivered to `path`, counted."""
    ids: Counter[str] = Counter()
    for post in receiver.received:
        if post.path == path and post.status == 200:
            match = EVENT_ID.search(json.dumps(post.payload))
            assert match, f"no eventID in a post to {path}"
            ids[match.group(1)] += 1
    return ids


def lease_checkpoints(stack: LocalStack, application: str) -> dict[str, str]:
    items = stack.client("dynamodb").scan(TableName=application)["Items"]
    return {item["leaseKey"]["S"]: item["checkpoint"]["S"] for item in items}


def first_alert_after(inbox: Inbox, worker: Worker, timeout: float) -> float:
    wait_for("the first alert", lambda: inbox.count() > 0, [worker], timeout)
    return time.monotonic() - worker.started


def report(message: str) -> None:
    print(f"[kcl timing] {message}", file=sys.stderr)


# --- the scenarios -----------------------------------------------------------------------------------------


def test_one_worker_delivers_every_event_exactly_once_and_checkpoints(
    local_stack: LocalStack, new_stream: Callable[[int], str], receiver: SlackReceiver, inbox: Inbox, start_worker: Any
) -> None:
    # GIVEN a 2-shard stream holding 300 events, 10 of them seed triggers
    stream, application = new_stream(2), unique("app")
    produced = produce(local_stack, stream, background=290, triggers=10, seed=11)
    assert len(produced.last_sequence) == 2

    # WHEN one worker consumes it
    worker = start_worker(stream, application)
    report(f"one worker: first alert {first_alert_after(inbox, worker, WAIT_SECONDS):.1f} s after start")
    wait_for("every event", lambda: inbox.count() >= len(produced.event_ids), [worker])
    wait_for(
        "checkpoints at the end of both shards",
        lambda: lease_checkpoints(local_stack, application) == produced.last_sequence,
        [worker],
    )
    assert worker.stop() == 0

    # THEN every event was matched and posted once, the triggers reached the audit channel once each,
    # and the lease table holds a checkpoint at the last record of each shard
    assert inbox.ids() == Counter(produced.event_ids)
    assert posted_ids(receiver, "/audit") == Counter(produced.trigger_ids)
    assert lease_checkpoints(local_stack, application) == produced.last_sequence
    assert worker.held() == set()  # it said which shards it held, and released them on the stop
    assert "holding shard shardId-000000000000" in worker.log()
    assert "holding shard shardId-000000000001" in worker.log()


def test_restarted_worker_resumes_from_its_checkpoints(
    local_stack: LocalStack, new_stream: Callable[[int], str], receiver: SlackReceiver, inbox: Inbox, start_worker: Any
) -> None:
    # GIVEN a worker that consumed a first batch and was stopped
    stream, application = new_stream(2), unique("app")
    first = produce(local_stack, stream, background=120, triggers=4, seed=21)
    worker = start_worker(stream, application)
    wait_for("the first batch", lambda: inbox.count() >= len(first.event_ids), [worker])
    assert worker.stop() == 0
    checkpoints = lease_checkpoints(local_stack, application)
    assert checkpoints == first.last_sequence

    # WHEN more events arrive and the worker starts again
    second = produce(local_stack, stream, background=120, triggers=4, seed=22)
    restarted = start_worker(stream, application, "w1-restarted")  # a new process is a new worker id
    everything = Produced()
    everything.add(first)
    everything.add(second)
    wait_for("the second batch", lambda: inbox.count() >= len(everything.event_ids), [restarted])
    report(f"restart: second batch delivered {time.monotonic() - restarted.started:.1f} s after the restart")
    wait_for(
        "checkpoints at the new ends",
        lambda: lease_checkpoints(local_stack, application) == everything.last_sequence,
        [restarted],
    )
    assert restarted.stop() == 0

    # THEN it resumed after the checkpoints (not from the start), and no alert was sent twice
    for shard, sequence in checkpoints.items():
        assert f"holding shard {shard} (resuming after {sequence})" in restarted.log()
    assert inbox.ids() == Counter(everything.event_ids)
    assert posted_ids(receiver, "/audit") == Counter(everything.trigger_ids)


def leader_of(worker_logs: dict[str, Path]) -> str | None:
    """The worker whose daemon log says it became the KCL 3 leader (it holds the DynamoDB lock)."""
    for name, path in worker_logs.items():
        if path.exists() and re.search(rf"Worker : {re.escape(name)} is (new|the current) leader", path.read_text()):
            return name
    return None


def test_two_workers_share_leases_and_the_survivor_takes_over(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: SlackReceiver,
    inbox: Inbox,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    # GIVEN two workers of one application on a 4-shard stream, sharing this host's dedupe ledger
    stream, application = new_stream(4), unique("app")
    first = produce(local_stack, stream, background=200, triggers=6, seed=31)
    ledger = tmp_path / "dedupe.db"
    # The leader assigns leases only to workers that have reported their metrics (about 2 s after start-up,
    # and one worker may start up to 3 s after the other); assigning every 6 s instead of every second
    # lets both report before the first assignment, which then shares the shards instead of racing.
    slower = ["--lease-assignment-ms", "6000"]
    workers = {name: start_worker(stream, application, name, dedupe_db=ledger, extra=slower) for name in ("w1", "w2")}
    both = list(workers.values())
    wait_for("the first batch", lambda: inbox.count() >= len(first.event_ids), both)
    wait_for("both workers holding shards", lambda: all(w.held() for w in both), both)
    shares = {name: sorted(worker.held()) for name, worker in workers.items()}
    assert set(shares["w1"]).isdisjoint(shares["w2"])
    assert len(shares["w1"]) + len(shares["w2"]) == 4

    # WHEN the worker that is not the KCL leader stops (the leader's DynamoDB lock would otherwise keep
    # lease assignment waiting for the lock to expire) and more events arrive
    logs = {name: tmp_path / f"work-{name}" / "daemon.log" for name in workers}
    wait_for("a leader", lambda: leader_of(logs) is not None, both)
    leader = leader_of(logs)
    assert leader is not None
    survivor, stopped = workers[leader], workers["w2" if leader == "w1" else "w1"]
    assert stopped.stop() == 0
    stopped_at = time.monotonic()
    second = produce(local_stack, stream, background=200, triggers=6, seed=32)
    everything = Produced()
    everything.add(first)
    everything.add(second)

    # THEN the survivor takes the stopped worker's shards and finishes the stream: nothing missing, no repeats
    wait_for("the survivor holding all four shards", lambda: len(survivor.held()) == 4, [survivor])
    report(f"failover: survivor held all shards {time.monotonic() - stopped_at:.1f} s after the stop")
    wait_for("the second batch", lambda: set(inbox.ids()) >= set(everything.event_ids), [survivor])
    wait_for(
        "checkpoints at the ends of all shards",
        lambda: lease_checkpoints(local_stack, application) == everything.last_sequence,
        [survivor],
    )
    assert survivor.stop() == 0
    assert inbox.ids() == Counter(everything.event_ids)
    assert posted_ids(receiver, "/audit") == Counter(everything.trigger_ids)


def test_merged_shards_end_and_their_child_is_consumed(
    local_stack: LocalStack, new_stream: Callable[[int], str], receiver: SlackReceiver, inbox: Inbox, start_worker: Any
) -> None:
    # GIVEN a worker consuming a 2-shard stream
    stream, application = new_stream(2), unique("app")
    first = produce(local_stack, stream, background=120, triggers=4, seed=41)
    worker = start_worker(stream, application)
    wait_for("the first batch", lambda: inbox.count() >= len(first.event_ids), [worker])

    # WHEN the two shards are merged mid-stream and more events arrive (all in the child)
    kinesis = local_stack.kinesis_client()
    parents = [shard["ShardId"] for shard in kinesis.list_shards(StreamName=stream)["Shards"]]
    kinesis.merge_shards(StreamName=stream, ShardToMerge=parents[0], AdjacentShardToMerge=parents[1])
    wait_for(
        "the stream ACTIVE after the merge",
        lambda: (
            kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        ),
        [worker],
    )
    merged_at = time.monotonic()
    second = produce(local_stack, stream, background=120, triggers=4, seed=42)
    [child] = second.last_sequence
    assert child not in parents
    everything = Produced()
    everything.add(first)
    everything.add(second)

    # THEN both parents end (checkpointed at SHARD_END), the child is consumed, nothing is missing or repeated
    wait_for("the child's events", lambda: inbox.count() >= len(everything.event_ids), [worker])
    report(f"merge: child consumed {time.monotonic() - merged_at:.1f} s after the merge")
    wait_for(
        "the child's checkpoint",
        lambda: lease_checkpoints(local_stack, application).get(child) == second.last_sequence[child],
        [worker],
    )
    assert worker.stop() == 0
    checkpoints = lease_checkpoints(local_stack, application)
    for parent in parents:
        assert f"shard {parent} ended" in worker.log()
        assert checkpoints.get(parent, "SHARD_END") == "SHARD_END"  # KCL may already have cleaned the lease up
    assert f"holding shard {child}" in worker.log()
    assert inbox.ids() == Counter(everything.event_ids)
    assert posted_ids(receiver, "/audit") == Counter(everything.trigger_ids)


def test_an_alert_neither_delivered_nor_parked_stops_the_worker_and_a_restart_delivers_it(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    receiver: SlackReceiver,
    inbox: Inbox,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    # GIVEN a 1-shard stream with seed triggers, and a Slack that refuses every post (404: no retry helps)
    stream, application = new_stream(1), unique("app")
    produced = produce(local_stack, stream, background=40, triggers=4, seed=51)
    receiver.fail_next(status=404, times=1000)
    ledger = tmp_path / "dedupe.db"
    # ... and a dead-letter queue that does not exist, so the failed alerts cannot be parked either
    missing_queue = ["--dead-letters-queue", f"{local_stack.moto_url}/123456789012/no-such-queue"]

    # WHEN a worker consumes it: the batch cannot be completed
    worker = start_worker(stream, application, "w1", dedupe_db=ledger, extra=missing_queue)
    code = worker.process.wait(WAIT_SECONDS)

    # THEN it stops with an error and without a checkpoint, so nothing is acknowledged
    assert code != 0
    assert "delivery failed for good" in worker.log()
    assert "released the KCL leader lock" in worker.log()  # else the restart waits ~2 min for the lock
    assert set(lease_checkpoints(local_stack, application).values()) <= {"TRIM_HORIZON"}

    # WHEN Slack is back and the worker starts again
    receiver.clear()
    restarted = start_worker(stream, application, "w1-restarted", dedupe_db=ledger)
    wait_for(
        "the triggers on Slack", lambda: len(posted_ids(receiver, "/audit")) >= len(produced.trigger_ids), [restarted]
    )
    report(f"restart after a failed delivery: triggers on Slack {time.monotonic() - restarted.started:.1f} s after")
    wait_for(
        "the checkpoint", lambda: lease_checkpoints(local_stack, application) == produced.last_sequence, [restarted]
    )
    assert restarted.stop() == 0

    # THEN the batch was replayed: every trigger reached Slack once, and what SNS already had was not sent again
    assert posted_ids(receiver, "/audit") == Counter(produced.trigger_ids)
    assert inbox.ids() == Counter(produced.event_ids)
