"""Garbage-collector settings for long-running workers.

Each batch allocates hundreds of thousands of short-lived dicts; with CPython's default thresholds the
collector walks them again and again (measured: decode + match 37 % faster with these settings).

The price of a lazy collector: CPython counts a young-generation collection by objects allocated *and not
yet freed*, and a quiet worker frees almost everything by reference counting, so the count grows only with
cyclic garbage (each tenacity `Retrying`, each requests session error, ...). At a few hundred events/s the
threshold took over half an hour to reach and a shard process grew 0.4 MiB a minute until then (measured in
`benchmarks/soak.py`). `collect_if_due` bounds that with a full collection at most once a minute; with the
start-up heap frozen it walks only what the last minute left, a few milliseconds.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

WORKER_THRESHOLDS = (100_000, 50, 100)
COLLECT_EVERY_SECONDS = 60.0


def tune_for_throughput() -> None:
    """Move everything loaded so far (modules, compiled rules) out of the collector's sight, and collect
    the young generation less often. Call once, after start-up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WORKER_THRESHOLDS)


class PeriodicCollector:
    """A full collection when the last one is older than `every` seconds; call it between batches."""

    def __init__(self, every: float = COLLECT_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._last = clock()
        self.collections = 0

    def collect_if_due(self) -> bool:
        now = self._clock()
        if now - self._last < self.every:
            return False
        gc.collect()
        self._last = self._clock()
        self.collections += 1
        return True
