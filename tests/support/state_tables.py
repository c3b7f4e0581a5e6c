"""DynamoDB tables shaped as infra/cloudformation/state.yaml makes the ledger's and the storm windows'."""

from __future__ import annotations

import uuid
from typing import Any


def create_state_table(client: Any, prefix: str) -> str:
    """A new uniquely named table: string key `id`, on demand, TTL on `expiration`; returns its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"})
    return name
