"""The ledger's state machine, for every store: claim, complete, release, expiry, crash takeover."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_processor.dedupe import (
    ClaimOutcome,
    DedupeStore,
    MemoryDedupeStore,
    SQLiteDedupeStore,
    Status,
    dedupe_key,
)
from tests.support.fakes import FakeClock

StoreFactory = Callable[..., DedupeStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    stores: list[DedupeStore] = []

    def factory(**kwargs: object) -> DedupeStore:
        store: DedupeStore
        if request.param == "memory":
            store = MemoryDedupeStore(**kwargs)  # type: ignore[arg-type]
        else:
            store = SQLiteDedupeStore(tmp_path / "ledger.sqlite3", **kwargs)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()


KEY = dedupe_key("Create AccessKey", "0a1b2c3d", "Slack Audit")


def test_first_claim_wins_and_completed_key_is_never_claimed_again(make_store: StoreFactory) -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    assert store.claim(KEY, "shard-1") is ClaimOutcome.CLAIMED
    store.complete(KEY, "shard-1")
    assert store.claim(KEY, "shard-1") is ClaimOutcome.ALREADY_DONE
    assert store.claim(KEY, "shard-2") is ClaimOutcome.ALREADY_DONE
    record = store.get(KEY)
    assert record is not None and record.status is Status.COMPLETED


def test_claim_held_by_another_owner_waits_until_its_in_progress_expiry(make_store: StoreFactory) -> None:
    clock = FakeClock()
    store = make_store(clock=clock, in_progress_seconds=60)
    assert store.claim(KEY, "shard-1") is ClaimOutcome.CLAIMED
    assert store.claim(KEY, "shard-2") is ClaimOutcome.HELD_ELSEWHERE
    clock.now += 61  # shard-1's process died between claim and confirm
    assert store.claim(KEY, "shard-2") is ClaimOutcome.CLAIMED


def test_same_owner_retakes_its_own_unconfirmed_claim_after_a_crash(make_store: StoreFactory) -> None:
    store = make_store(clock=FakeClock())
    assert store.claim(KEY, "shard-1") is ClaimOutcome.CLAIMED
    # the process restarts and replays the shard from its checkpoint: the claim was never confirmed
    assert store.claim(KEY, "shard-1") is ClaimOutcome.CLAIMED


def test_released_claim_can_be_taken_at_once(make_store: StoreFactory) -> None:
    store = make_store(clock=FakeClock())
    store.claim(KEY, "shard-1")
    store.release(KEY)
    assert store.get(KEY) is None
    assert store.claim(KEY, "shard-2") is ClaimOutcome.CLAIMED


def test_completed_key_expires_after_its_ttl(make_store: StoreFactory) -> None:
    clock = FakeClock()
    store = make_store(clock=clock, ttl_seconds=3600)
    store.claim(KEY, "shard-1")
    store.complete(KEY, "shard-1")
    clock.now += 3601
    assert store.get(KEY) is None
    assert store.claim(KEY, "shard-2") is ClaimOutcome.CLAIMED


def test_keys_are_per_destination() -> None:
    assert dedupe_key("r", "e", "Slack") != dedupe_key("r", "e", "SNS")


def test_memory_store_is_bounded() -> None:
    store = MemoryDedupeStore(max_entries=3)
    for index in range(10):
        store.claim(f"k{index}", "o")
    assert store.get("k0") is None
    assert store.get("k9") is not None


def _claim_many(path: str, owner: str, keys: int, queue: multiprocessing.Queue[list[str]]) -> None:
    store = SQLiteDedupeStore(path)
    won = [f"k{i}" for i in range(keys) if store.claim(f"k{i}", owner) is ClaimOutcome.CLAIMED]
    store.close()
    queue.put(won)


def test_sqlite_store_gives_each_key_to_exactly_one_of_several_processes(tmp_path: Path) -> None:
    # GIVEN four shard processes claiming the same 300 keys at once on one host
    path = str(tmp_path / "ledger.sqlite3")
    SQLiteDedupeStore(path).close()
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    workers = [context.Process(target=_claim_many, args=(path, f"shard-{n}", 300, queue)) for n in range(4)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    # THEN every key was won exactly once
    won = [key for result in results for key in result]
    assert sorted(won) == sorted(f"k{i}" for i in range(300))
