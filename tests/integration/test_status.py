"""`stream-processor status` on the local stack: a KCL-format lease table in moto, a stream on kinesis-local."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from stream_processor.cli import main
from stream_processor.kcl.leases import SHARD_END, TRIM_HORIZON, Lease, lease_item, read_leases
from stream_processor.kcl.status import collect_status
from stream_processor.local.stack import LocalStack
from stream_processor.sources.replay import list_shards
from tests.conftest import REPO_ROOT

# The KCL consumer's own fixtures and helpers: workers run `consume` as separate processes.
from tests.integration.test_kcl_consumer import (  # noqa: F401 - fixtures are used by name
    KCL_JARS,
    config_path,
    inbox,
    lease_checkpoints,
    produce,
    receiver,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

SEED = REPO_ROOT / "examples" / "seed.toml"


# --- helpers shared with test_replay ---------------------------------------------------------------------


def put_to_shard(stack: LocalStack, stream: str, shard_id: str, payloads: Sequence[bytes]) -> list[str]:
    """Put records on one shard (by its starting hash key); their sequence numbers, in order."""
    kinesis = stack.kinesis_client()
    shard = next(s for s in kinesis.list_shards(StreamName=stream)["Shards"] if s["ShardId"] == shard_id)
    hash_key = shard["HashKeyRange"]["StartingHashKey"]
    sequences = []
    for payload in payloads:
        response = kinesis.put_record(StreamName=stream, Data=payload, PartitionKey="p", ExplicitHashKey=hash_key)
        assert response["ShardId"] == shard_id
        sequences.append(response["SequenceNumber"])
    return sequences


def create_lease_table(stack: LocalStack, application: str, leases: Sequence[Lease]) -> None:
    """The lease table as the KCL creates and fills it: hash key leaseKey (S), one item per shard."""
    dynamodb = stack.client("dynamodb")
    dynamodb.create_table(
        TableName=application,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for lease in leases:
        dynamodb.put_item(TableName=application, Item=lease_item(lease))


def lease(shard_id: str, checkpoint: str, owner: str | None = None, **more: Any) -> Lease:
    return Lease(lease_key=shard_id, shard_id=shard_id, owner=owner, checkpoint=checkpoint, lease_counter=7, **more)


def merge(stack: LocalStack, stream: str, shard: str, adjacent: str) -> str:
    """MergeShards on kinesis-local, wait until ACTIVE again; the child's shard id."""
    kinesis = stack.kinesis_client()
    kinesis.merge_shards(StreamName=stream, ShardToMerge=shard, AdjacentShardToMerge=adjacent)
    deadline = time.monotonic() + 30
    while kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.monotonic() < deadline, "the stream did not become ACTIVE after the merge"
        time.sleep(0.05)
    return next(s.shard_id for s in list_shards(kinesis, stream) if shard in s.parents)


def status_args(stack: LocalStack, stream: str, application: str) -> list[str]:
    return [
        "--stream",
        stream,
        "--application",
        application,
        "--kinesis-endpoint",
        stack.kinesis_url,
        "--dynamodb-endpoint",
        stack.moto_url,
        "--region",
        stack.region,
    ]


def unique_application() -> str:
    return f"app-{uuid.uuid4().hex[:10]}"


# --- tests -------------------------------------------------------------------------------------------------


def run_status_json(
    stack: LocalStack, stream: str, application: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    assert main(["status", "--json", *status_args(stack, stream, application)]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_owners_checkpoints_lag_and_unowned_shards(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three shards: one behind its checkpoint, one caught up, one that nobody holds
    stream = new_stream(3)
    shard_ids = [shard.shard_id for shard in list_shards(local_stack.kinesis_client(), stream)]
    behind = put_to_shard(local_stack, stream, shard_ids[0], [b"a", b"b", b"c", b"d"])
    caught_up = put_to_shard(local_stack, stream, shard_ids[1], [b"e", b"f"])
    put_to_shard(local_stack, stream, shard_ids[2], [b"g"])
    application = unique_application()
    create_lease_table(
        local_stack,
        application,
        [
            lease(shard_ids[0], behind[1], owner="worker-a"),
            lease(shard_ids[1], caught_up[-1], owner="worker-b", owner_switches_since_checkpoint=1),
            lease(shard_ids[2], TRIM_HORIZON),
        ],
    )

    # WHEN status reads the lease table and the stream
    report = run_status_json(local_stack, stream, application, capsys)

    # THEN each shard shows its owner, checkpoint and lag, and the unowned shard is called out
    shards = {shard["shard_id"]: shard for shard in report["shards"]}
    first, second, third = (shards[shard_id] for shard_id in shard_ids)
    assert (first["owner"], first["checkpoint"], first["state"]) == ("worker-a", behind[1], "open")
    assert first["caught_up"] is False and first["oldest_unprocessed_age_ms"] is not None
    assert first["millis_behind"] is not None
    assert (second["owner"], second["checkpoint"], second["caught_up"]) == ("worker-b", caught_up[-1], True)
    assert second["owner_switches"] == 1 and second["lease_counter"] == 7
    assert (third["owner"], third["checkpoint"], third["caught_up"]) == (None, TRIM_HORIZON, False)
    assert report["unowned"] == [shard_ids[2]]
    assert report["workers"] == {"worker-a": [shard_ids[0]], "worker-b": [shard_ids[1]]}


def test_a_merge_shows_ended_parents_and_the_child(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(2)
    left, right = (shard.shard_id for shard in list_shards(local_stack.kinesis_client(), stream))
    left_sequences = put_to_shard(local_stack, stream, left, [b"1", b"2"])
    put_to_shard(local_stack, stream, right, [b"3"])
    child = merge(local_stack, stream, left, right)
    application = unique_application()
    create_lease_table(
        local_stack,
        application,
        [
            lease(left, SHARD_END, owner="worker-a", child_shard_ids=(child,)),
            lease(right, TRIM_HORIZON, owner="worker-b", child_shard_ids=(child,)),
            lease(child, TRIM_HORIZON, parent_shard_ids=(left, right)),
        ],
    )
    assert left_sequences

    report = run_status_json(local_stack, stream, application, capsys)

    shards = {shard["shard_id"]: shard for shard in report["shards"]}
    assert shards[left]["state"] == "ended" and shards[left]["caught_up"] is True
    assert shards[right]["state"] == "closed" and shards[right]["caught_up"] is False
    assert shards[child]["state"] == "open" and sorted(shards[child]["parents"]) == sorted([left, right])
    assert report["unowned"] == [child]


def test_readable_table_names_owners_and_unowned(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(2)
    first, second = (shard.shard_id for shard in list_shards(local_stack.kinesis_client(), stream))
    application = unique_application()
    create_lease_table(local_stack, application, [lease(first, TRIM_HORIZON, owner="host-1:1234")])

    assert main(["status", *status_args(local_stack, stream, application)]) == 0

    out = capsys.readouterr().out
    assert "host-1:1234" in out and "UNOWNED" in out and "(no lease)" in out
    assert f"unowned: {second}" in out


def test_a_renewal_window_tells_a_live_owner_from_one_that_stopped_renewing(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN two owned leases, and a "worker" that keeps renewing only the first one
    stream = new_stream(2)
    live, dead = (shard.shard_id for shard in list_shards(local_stack.kinesis_client(), stream))
    application = unique_application()
    create_lease_table(
        local_stack, application, [lease(live, TRIM_HORIZON, owner="alive"), lease(dead, TRIM_HORIZON, owner="gone")]
    )
    stop = threading.Event()

    def renew() -> None:
        dynamodb = local_stack.client("dynamodb")
        while not stop.wait(0.1):
            dynamodb.update_item(
                TableName=application,
                Key={"leaseKey": {"S": live}},
                UpdateExpression="ADD leaseCounter :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        # WHEN status watches the table for a second
        assert main(["status", "--json", "--renewal-window", "1", *status_args(local_stack, stream, application)]) == 0
    finally:
        stop.set()
        renewer.join()

    # THEN the lease nobody renews counts as unowned, with its stale owner still named
    report = json.loads(capsys.readouterr().out)
    shards = {shard["shard_id"]: shard for shard in report["shards"]}
    assert (shards[live]["owner"], shards[live]["renewed"]) == ("alive", True)
    assert (shards[dead]["owner"], shards[dead]["renewed"]) == ("gone", False)
    assert report["unowned"] == [dead]


def test_status_never_writes_the_lease_table(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(1)
    (shard_id,) = (shard.shard_id for shard in list_shards(local_stack.kinesis_client(), stream))
    application = unique_application()
    create_lease_table(local_stack, application, [lease(shard_id, TRIM_HORIZON, owner="w")])
    before = read_leases(local_stack.client("dynamodb"), application)

    run_status_json(local_stack, stream, application, capsys)

    assert read_leases(local_stack.client("dynamodb"), application) == before


def test_a_missing_lease_table_is_a_clear_error(
    local_stack: LocalStack, new_stream: Callable[[int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    stream = new_stream(1)

    assert main(["status", *status_args(local_stack, stream, "never-ran")]) == 1

    assert "no lease table 'never-ran'" in capsys.readouterr().err


# --- with the real KCL: two workers of one application -----------------------------------------------------


@pytest.mark.timeout(400)
def test_two_real_kcl_workers_status_shows_owners_and_lag_and_replay_resumes_after_their_checkpoints(
    local_stack: LocalStack,
    new_stream: Callable[[int], str],
    start_worker: Any,  # noqa: F811 - the fixture imported above
    inbox: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not any(KCL_JARS.glob("amazon-kinesis-client-multilang-*.jar")):
        pytest.fail("the KCL jars are not fetched: run `make kcl` (part of `make setup`)", pytrace=False)
    # GIVEN two consume workers of one application that consumed a first batch
    stream, application = new_stream(4), unique_application()
    first = produce(local_stack, stream, background=120, triggers=6, seed=41)
    workers = {name: start_worker(stream, application, name) for name in ("w1", "w2")}
    both = list(workers.values())
    wait_for("the first batch", lambda: inbox.count() >= len(first.event_ids), both)
    wait_for("both workers holding shards", lambda: all(w.held() for w in both), both)
    wait_for(
        "checkpoints at the ends", lambda: lease_checkpoints(local_stack, application) == first.last_sequence, both
    )

    def owners_agree() -> bool:
        status = collect_status(local_stack.kinesis_client(), local_stack.client("dynamodb"), stream, application)
        return {name: set(ids) for name, ids in status.workers.items()} == {n: w.held() for n, w in workers.items()}

    wait_for("the lease table's owners to match what the workers hold", owners_agree, both)

    # WHEN status runs while they work (KCL 3 may still move a lease to balance the two: compare each
    # report with what the workers say at that moment, until one matches)
    reports: list[dict[str, Any]] = []

    def status_names_each_workers_shards() -> bool:
        reports.append(run_status_json(local_stack, stream, application, capsys))
        named = {name: set(ids) for name, ids in reports[-1]["workers"].items()}
        return named == {n: w.held() for n, w in workers.items()}

    # THEN it names each worker's shards, shows every shard caught up, and none unowned
    wait_for("status to name each worker's shards", status_names_each_workers_shards, both)
    report = reports[-1]
    assert all(shard["caught_up"] for shard in report["shards"]) and report["unowned"] == []

    # WHEN the application stops and more events arrive
    for worker in both:
        assert worker.stop() == 0
    checkpoints = lease_checkpoints(local_stack, application)
    second = produce(local_stack, stream, background=120, triggers=6, seed=42)
    leases_before = read_leases(local_stack.client("dynamodb"), application)

    # THEN status shows the shards that got records behind their checkpoints
    report = run_status_json(local_stack, stream, application, capsys)
    behind = {shard["shard_id"] for shard in report["shards"] if not shard["caught_up"]}
    assert behind == set(second.last_sequence)
    assert all(shard["oldest_unprocessed_age_ms"] is not None for shard in report["shards"] if not shard["caught_up"])
    assert {shard["shard_id"]: shard["checkpoint"] for shard in report["shards"]} == checkpoints

    # AND a replay from their checkpoints alerts on exactly the second batch's triggers, touching no lease
    arguments = ["replay", "-c", str(SEED), "--format", "jsonl", "--all", "--from", "checkpoint"]
    arguments += status_args(local_stack, stream, application)
    assert main(arguments) == 0
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert Counter(alert["eventID"] for alert in alerts) == Counter(second.trigger_ids)
    assert read_leases(local_stack.client("dynamodb"), application) == leases_before
