"""Where each shard of a KCL application stands, from its lease table and the stream (read-only).

Per shard: open or closed, the lease owner, the checkpoint, and how far the checkpoint is behind the tip
(Kinesis's MillisBehindLatest at the checkpoint, and the age of the oldest record not yet checkpointed).
The lag probe costs one GetShardIterator and one GetRecords(Limit=1) per shard.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from stream_processor.kcl.leases import LATEST, SHARD_END, TRIM_HORIZON, Lease, read_leases
from stream_processor.sources.replay import LagProbe, ShardInfo, StartPosition, list_shards, probe_lag


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One shard as `status` reports it."""

    shard_id: str
    state: str  # "open", "closed" (still has records to process) or "ended" (closed and done)
    parents: list[str]
    owner: str | None
    checkpoint: str | None
    lease_counter: int | None
    owner_switches: int | None
    millis_behind: int | None
    oldest_unprocessed_age_ms: int | None
    caught_up: bool | None
    lag_error: str = ""
    has_lease: bool = True
    renewed: bool | None = None  # with --renewal-window: did the owner renew the lease meanwhile?

    @property
    def needs_owner(self) -> bool:
        """Has records left to process and nobody holding it (no owner, or one that stopped renewing)."""
        return (self.owner is None or self.renewed is False) and self.state != "ended"


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream: str
    application: str
    checked_at: str
    shards: list[ShardStatus]
    stale_leases: list[str]  # leases of shards no longer in the stream (trimmed by retention)

    @property
    def unowned(self) -> list[str]:
        return [shard.shard_id for shard in self.shards if shard.needs_owner]

    @property
    def workers(self) -> dict[str, list[str]]:
        owners: dict[str, list[str]] = defaultdict(list)
        for shard in self.shards:
            if shard.owner is not None:
                owners[shard.owner].append(shard.shard_id)
        return dict(sorted(owners.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "application": self.application,
            "checked_at": self.checked_at,
            "shards": [{**asdict(shard), "needs_owner": shard.needs_owner} for shard in self.shards],
            "unowned": self.unowned,
            "workers": self.workers,
            "stale_leases": self.stale_leases,
        }


def _lag_start(lease: Lease | None) -> StartPosition | None:
    """Where unprocessed records begin for this lease; None when there are none by definition."""
    if lease is None or lease.checkpoint in (None, TRIM_HORIZON):
        return StartPosition.trim_horizon()
    if lease.checkpoint in (SHARD_END, LATEST):
        return None
    sequence = lease.checkpointed_sequence
    return StartPosition.after(sequence) if sequence else StartPosition.trim_horizon()


def shard_status(
    kinesis: Any, stream: str, shard: ShardInfo, lease: Lease | None, *, now: datetime, probe: bool
) -> ShardStatus:
    ended = lease is not None and lease.ended
    state = "ended" if ended else ("closed" if shard.closed else "open")
    lag: LagProbe | None = None
    if probe:
        start = _lag_start(lease)
        lag = LagProbe(0, None, None) if start is None else probe_lag(kinesis, stream, shard.shard_id, start, now)
    return ShardStatus(
        shard_id=shard.shard_id,
        state=state,
        parents=list(shard.parents),
        owner=lease.owner if lease else None,
        checkpoint=lease.checkpoint if lease else None,
        lease_counter=lease.lease_counter if lease else None,
        owner_switches=lease.owner_switches_since_checkpoint if lease else None,
        millis_behind=lag.millis_behind if lag else None,
        oldest_unprocessed_age_ms=lag.next_record_age_ms if lag else None,
        caught_up=lag.caught_up if lag and not lag.error else None,
        lag_error=lag.error if lag else "",
        has_lease=lease is not None,
    )


def collect_status(
    kinesis: Any,
    dynamodb: Any,
    stream: str,
    application: str,
    *,
    probe: bool = True,
    now: datetime | None = None,
    renewal_window: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> StreamStatus:
    """The status of every shard of `stream` for `application`.

    A worker that died (or stopped) leaves its name on its leases until another takes them over. With a
    `renewal_window` the table is read twice that many seconds apart: a live owner bumps `leaseCounter` every
    failoverTimeMillis/3, so an owned lease whose counter did not move is reported as not renewed.

    Raises:
        LeaseTableError: the lease table cannot be read.
    """
    first_read: dict[str, Lease] = {}
    if renewal_window > 0:
        first_read = {lease.shard_id: lease for lease in read_leases(dynamodb, application, stream)}
        sleep(renewal_window)
    now = now or datetime.now(UTC)
    leases = {lease.shard_id: lease for lease in read_leases(dynamodb, application, stream)}
    shards = list_shards(kinesis, stream)
    known = {shard.shard_id for shard in shards}
    statuses = [
        shard_status(kinesis, stream, shard, leases.get(shard.shard_id), now=now, probe=probe) for shard in shards
    ]
    # A closed shard without a lease whose children have leases was finished and cleaned up by the KCL.
    with_lease = {s.shard_id for s in statuses if s.has_lease}
    statuses = [
        _cleaned_up(status)
        if not status.has_lease and _children_started(status.shard_id, shards, with_lease)
        else status
        for status in statuses
    ]
    if renewal_window > 0:
        statuses = [
            _with_renewal(status, first_read.get(status.shard_id), leases.get(status.shard_id)) for status in statuses
        ]
    stale = sorted(shard_id for shard_id in leases if shard_id not in known)
    return StreamStatus(stream, application, now.isoformat(timespec="seconds"), statuses, stale)


def _with_renewal(status: ShardStatus, before: Lease | None, after: Lease | None) -> ShardStatus:
    if after is None or after.owner is None:
        return status
    renewed = before is None or before.lease_counter != after.lease_counter or before.owner != after.owner
    return replace(status, renewed=renewed)


def _children_started(shard_id: str, shards: list[ShardInfo], with_lease: set[str]) -> bool:
    children = [shard.shard_id for shard in shards if shard_id in shard.parents]
    return bool(children) and any(child in with_lease for child in children)


def _cleaned_up(status: ShardStatus) -> ShardStatus:
    return ShardStatus(
        status.shard_id,
        "ended",
        status.parents,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        has_lease=False,
    )
