"""The DynamoDB ledger against moto in server mode: conditional writes and TTL."""

from __future__ import annotations

import pytest

from stream_processor.aws import AwsSettings
from stream_processor.dedupe import ClaimOutcome, DynamoDBDedupeStore, Status
from tests.support.state_tables import create_state_table

pytestmark = pytest.mark.integration


@pytest.fixture
def table(moto_server: AwsSettings) -> str:
    return create_state_table(moto_server.client("dynamodb"), "dedupe")


def test_dynamodb_ledger_claims_once_and_remembers_completion(moto_server: AwsSettings, table: str) -> None:
    now = [1_700_000_000.0]
    store = DynamoDBDedupeStore(moto_server.client("dynamodb"), table, clock=lambda: now[0], in_progress_seconds=60)
    assert store.claim("rule\x1fevent\x1fslack", "shard-1") is ClaimOutcome.CLAIMED
    assert store.claim("rule\x1fevent\x1fslack", "shard-2") is ClaimOutcome.HELD_ELSEWHERE
    store.complete("rule\x1fevent\x1fslack", "shard-1")
    assert store.claim("rule\x1fevent\x1fslack", "shard-2") is ClaimOutcome.ALREADY_DONE
    record = store.get("rule\x1fevent\x1fslack")
    assert record is not None and record.status is Status.COMPLETED


def test_dynamodb_ledger_lets_another_host_take_an_abandoned_claim(moto_server: AwsSettings, table: str) -> None:
    now = [1_700_000_000.0]
    store = DynamoDBDedupeStore(moto_server.client("dynamodb"), table, clock=lambda: now[0], in_progress_seconds=60)
    assert store.claim("k", "host-a") is ClaimOutcome.CLAIMED
    now[0] += 61
    assert store.claim("k", "host-b") is ClaimOutcome.CLAIMED
    item = moto_server.client("dynamodb").get_item(TableName=table, Key={"id": {"S": "k"}})["Item"]
    assert item["owner"]["S"] == "host-b"
    assert int(item["expiration"]["N"]) > now[0]
