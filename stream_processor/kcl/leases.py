"""The KCL's DynamoDB tables: the lease table (read-only) and the leader lock a dead worker of ours left.

The lease table says which worker holds which shard and where each shard's checkpoint is.

The table is named after the KCL application and holds one item per shard lease (KCL 2.x and 3.x write the
same core attributes): `leaseKey` (the shard id; `<account>:<stream>:<epoch>:<shard id>` in multi-stream mode),
`leaseOwner` (absent when nobody holds it), `leaseCounter` (bumped on every renewal), `checkpoint` (a sequence
number, or TRIM_HORIZON / LATEST / AT_TIMESTAMP before the first checkpoint, SHARD_END when a closed shard is
done) with `checkpointSubSequenceNumber`, `pendingCheckpoint`, `ownerSwitchesSinceCheckpoint`, and the
`parentShardId` / `childShardId` string sets.

Nothing here ever writes the lease table: `status` and `replay` read it while a live application owns it.
The one write is `release_leader_lock`, conditional on the lock's owner being our own (dead) worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from stream_processor.aws import AwsSettings
from stream_processor.errors import StreamProcessorError
from stream_processor.kcl.properties import ConsumerSettings, daemon_aws
from stream_processor.sources.replay import ShardInfo, StartFor, StartPosition

log = logging.getLogger(__name__)

TRIM_HORIZON: Final = "TRIM_HORIZON"
LATEST: Final = "LATEST"
AT_TIMESTAMP: Final = "AT_TIMESTAMP"
SHARD_END: Final = "SHARD_END"
SENTINELS: Final = frozenset({TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END})


class LeaseTableError(StreamProcessorError):
    """The lease table cannot be read (absent, denied, unreachable); the message says which and why."""


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease item as the KCL wrote it."""

    lease_key: str
    shard_id: str
    owner: str | None
    checkpoint: str | None
    checkpoint_sub_sequence: int = 0
    pending_checkpoint: str | None = None
    lease_counter: int = 0
    owner_switches_since_checkpoint: int = 0
    parent_shard_ids: tuple[str, ...] = ()
    child_shard_ids: tuple[str, ...] = ()
    stream_name: str | None = None

    @property
    def checkpointed_sequence(self) -> str | None:
        """The checkpoint when it is a sequence number (records up to it are done), else None."""
        if self.checkpoint is None or self.checkpoint in SENTINELS:
            return None
        return self.checkpoint

    @property
    def ended(self) -> bool:
        """The shard is closed and every record of it was processed."""
        return self.checkpoint == SHARD_END


def parse_lease(item: Mapping[str, Any]) -> Lease:
    """A lease from a DynamoDB item in the low-level attribute-value format (`{"S": ...}`, `{"N": ...}`)."""
    lease_key = _string(item, "leaseKey") or ""
    stream_name = _string(item, "streamName")
    shard_id = _string(item, "shardId") or lease_key.rsplit(":", 1)[-1]
    return Lease(
        lease_key=lease_key,
        shard_id=shard_id,
        owner=_string(item, "leaseOwner"),
        checkpoint=_string(item, "checkpoint"),
        checkpoint_sub_sequence=_number(item, "checkpointSubSequenceNumber"),
        pending_checkpoint=_string(item, "pendingCheckpoint"),
        lease_counter=_number(item, "leaseCounter"),
        owner_switches_since_checkpoint=_number(item, "ownerSwitchesSinceCheckpoint"),
        parent_shard_ids=_strings(item, "parentShardId"),
        child_shard_ids=_strings(item, "childShardIds") or _strings(item, "childShardId"),
        stream_name=stream_name,
    )


def lease_item(lease: Lease) -> dict[str, Any]:
    """The item the KCL would store for `lease` (for tests and fixtures that stand in for a live application)."""
    item: dict[str, Any] = {
        "leaseKey": {"S": lease.lease_key},
        "leaseCounter": {"N": str(lease.lease_counter)},
        "ownerSwitchesSinceCheckpoint": {"N": str(lease.owner_switches_since_checkpoint)},
        "checkpoint": {"S": lease.checkpoint or TRIM_HORIZON},
        "checkpointSubSequenceNumber": {"N": str(lease.checkpoint_sub_sequence)},
    }
    if lease.owner is not None:
        item["leaseOwner"] = {"S": lease.owner}
    if lease.parent_shard_ids:
        item["parentShardId"] = {"SS": list(lease.parent_shard_ids)}
    if lease.child_shard_ids:
        item["childShardId"] = {"SS": list(lease.child_shard_ids)}
    if lease.pending_checkpoint is not None:
        item["pendingCheckpoint"] = {"S": lease.pending_checkpoint}
    return item


def read_leases(dynamodb: Any, table: str, stream: str | None = None) -> list[Lease]:
    """Every lease of the table, sorted by shard id (a strongly consistent scan; nothing is written).

    `stream` keeps only that stream's leases of a multi-stream application (single-stream leases have no
    stream name and are always kept).

    Raises:
        LeaseTableError: the table does not exist or cannot be read.
    """
    leases: list[Lease] = []
    try:
        paginator = dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=table, ConsistentRead=True):
            leases.extend(parse_lease(item) for item in page.get("Items", []) if "leaseKey" in item)
    except dynamodb.exceptions.ResourceNotFoundException as error:
        raise LeaseTableError(
            f"no lease table {table!r}: has the KCL application {table!r} ever run against this DynamoDB?"
        ) from error
    except Exception as error:  # botocore's errors have no common base we can name without importing it
        if not _is_aws_error(error):
            raise
        raise LeaseTableError(f"cannot read the lease table {table!r}: {error}") from error
    if stream is not None:
        leases = [lease for lease in leases if lease.stream_name in (None, stream)]
    return sorted(leases, key=lambda lease: lease.shard_id)


def checkpoint_start(leases: dict[str, Lease], shards: list[ShardInfo]) -> StartFor:
    """Start each shard right after the application's checkpoint; None for shards it finished.

    A shard without a lease: if it is closed and one of its children has a lease, the KCL finished it and
    cleaned its lease up (nothing to read); otherwise the application never started it (read all of it).
    """
    with_lease = set(leases)

    def start_for(shard: ShardInfo) -> StartPosition | None:
        lease = leases.get(shard.shard_id)
        if lease is None:
            children = [s.shard_id for s in shards if shard.shard_id in s.parents]
            if shard.closed and any(child in with_lease for child in children):
                return None
            return StartPosition.trim_horizon()
        if lease.checkpoint == SHARD_END:
            return None
        if lease.checkpoint == LATEST:
            return StartPosition(LATEST)
        if lease.checkpointed_sequence is not None:
            return StartPosition.after(lease.checkpointed_sequence)
        return StartPosition.trim_horizon()  # TRIM_HORIZON, or AT_TIMESTAMP whose time the table does not keep

    return start_for


def release_leader_lock(
    settings: ConsumerSettings, aws: AwsSettings | None = None, env: Mapping[str, str] | None = None
) -> bool:
    """Give up the KCL 3 leader lock our dead daemon may still hold, so a restart need not wait ~2 minutes.

    Only the leader assigns leases, and its lock (an item in the coordinator state table, renewed every
    30 s, valid 2 min) is released on a graceful stop but not when the daemon exits because a processor
    stopped. The delete is conditional on the owner being this worker's id, which no live process uses
    now, so it never takes the lock from another worker. Best effort: any failure only costs the wait.
    """
    table = settings.extra.get("coordinatorStateTableName", f"{settings.application}-CoordinatorState")
    try:
        target, credentials = daemon_aws(settings, aws or AwsSettings(), env if env is not None else os.environ)
        target.client("dynamodb", credentials=credentials).delete_item(
            TableName=table,
            Key={"key": {"S": "Leader"}},
            ConditionExpression="ownerName = :me",
            ExpressionAttributeValues={":me": {"S": settings.worker_id}},
        )
    except Exception as error:  # ConditionalCheckFailed (not ours), no table, no access: nothing to do
        log.debug("leader lock not released: %s", error)
        return False
    log.info("released the KCL leader lock held by worker %s, so a restart starts at once", settings.worker_id)
    return True


def _is_aws_error(error: Exception) -> bool:
    module = type(error).__module__
    return module.startswith("botocore") or hasattr(error, "response")


def _string(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if isinstance(value, Mapping) and isinstance(value.get("S"), str):
        return str(value["S"])
    return None


def _number(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    if isinstance(value, Mapping) and "N" in value:
        try:
            return int(value["N"])
        except (TypeError, ValueError):
            return 0
    return 0


def _strings(item: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = item.get(key)
    if isinstance(value, Mapping):
        if isinstance(value.get("SS"), list):
            return tuple(sorted(str(v) for v in value["SS"]))
        if isinstance(value.get("S"), str):
            return (str(value["S"]),)
    return ()
