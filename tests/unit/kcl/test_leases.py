"""The KCL's DynamoDB tables: the leader lock a dead worker of ours left (moto)."""

from __future__ import annotations

from stream_processor.aws import AwsSettings
from stream_processor.kcl.leases import release_leader_lock
from stream_processor.kcl.properties import ConsumerSettings, KclTimings


def _settings(endpoint: str, worker_id: str) -> ConsumerSettings:
    return ConsumerSettings(
        stream="s",
        application="app",
        executable="/bin/true",
        region="us-east-1",
        initial_position="TRIM_HORIZON",
        worker_id=worker_id,
        metrics_level="NONE",
        timings=KclTimings.for_local(),
        kinesis_endpoint=None,
        dynamodb_endpoint=endpoint,
    )


def test_only_our_own_stale_leader_lock_is_released(moto_server: AwsSettings) -> None:
    # GIVEN KCL's coordinator state table with the leader lock held by worker "w1"
    assert moto_server.endpoint_url is not None
    dynamodb = moto_server.client("dynamodb")
    dynamodb.create_table(
        TableName="app-CoordinatorState",
        KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="app-CoordinatorState", Item={"key": {"S": "Leader"}, "ownerName": {"S": "w1"}})

    # WHEN another worker's consume cleans up, THEN the lock stays; when w1's does, it goes
    assert not release_leader_lock(_settings(moto_server.endpoint_url, "w2"))
    assert "Item" in dynamodb.get_item(TableName="app-CoordinatorState", Key={"key": {"S": "Leader"}})
    assert release_leader_lock(_settings(moto_server.endpoint_url, "w1"))
    assert "Item" not in dynamodb.get_item(TableName="app-CoordinatorState", Key={"key": {"S": "Leader"}})
