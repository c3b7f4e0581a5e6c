"""Per worker and shard counters of what the pipeline did, for Prometheus and as JSON log lines.

The KCL runs one record-processor process per shard, so each process only counts its own batches. With
`PROMETHEUS_MULTIPROC_DIR` set (by `consume`, to a folder of its work dir) prometheus-client writes every
value to a file there, and `consume` serves the sum of all processes on one `/metrics` endpoint
(`MetricsServer`), dropping the live gauges of processes that are gone. Without it the values live in the
process and only the JSON lines show them.

Counting works from `BatchOutcome`s only, so delivery and the pipeline know nothing of Prometheus: a
delivery's retries are its attempts minus one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.registry import Collector

from stream_processor.model import BatchOutcome

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Where `/metrics` listens unless told otherwise: loopback only, the endpoint has no authentication."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "stream_processor"
# Batches take from a millisecond (idle) to tens of seconds (a full batch with slow destinations).
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
JSON_LOG_TYPE = "shard_metrics"


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """What one batch outcome adds to the counters (a `BatchOutcome` in, plain numbers out)."""

    records: int = 0
    events: int = 0
    malformed: int = 0
    control: int = 0
    matches: Counter[str] = field(default_factory=Counter)
    rule_errors: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    inputs_parked: int = 0
    duplicates: int = 0
    folded: int = 0

    @classmethod
    def of(cls, outcome: BatchOutcome, records: int = 0) -> BatchCounts:
        """Count a `BatchOutcome`; delivery counters are per destination id, matches per rule."""
        decoded = outcome.decoded
        matched = outcome.matched
        delivered: Counter[str] = Counter()
        retried: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for result in outcome.deliveries:
            if result.delivered:
                delivered[result.destination_id] += 1
            else:
                failed[result.destination_id] += 1
            if result.attempts > 1:
                retried[result.destination_id] += result.attempts - 1
        return cls(
            records=records,
            events=decoded.event_count,
            malformed=len(decoded.malformed),
            control=decoded.control_messages,
            matches=Counter(match.rule_name for match in matched.matches),
            rule_errors=Counter(error.rule_name for error in matched.errors),
            quarantined=Counter(rule.rule_name for rule in matched.quarantined),
            delivered=delivered,
            retried=retried,
            failed=failed,
            dead_lettered=Counter(result.destination_id for result in outcome.parked),
            inputs_parked=outcome.parked_inputs,
            duplicates=outcome.duplicates,
            folded=outcome.folded,
        )


class _Window:
    """The counters since the last JSON line."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.totals: Counter[str] = Counter()
        self.matches: Counter[str] = Counter()
        self.batch_seconds_max = 0.0

    def add(self, counts: BatchCounts, seconds: float | None) -> None:
        totals = self.totals
        totals.update(
            records=counts.records,
            events=counts.events,
            malformed=counts.malformed,
            control=counts.control,
            rule_errors=sum(counts.rule_errors.values()),
            rules_quarantined=sum(counts.quarantined.values()),
            delivered=sum(counts.delivered.values()),
            retried=sum(counts.retried.values()),
            failed=sum(counts.failed.values()),
            dead_lettered=sum(counts.dead_lettered.values()),
            inputs_parked=counts.inputs_parked,
            duplicates=counts.duplicates,
            folded=counts.folded,
        )
        self.matches.update(counts.matches)
        if seconds is not None:
            totals["batches"] += 1
            self.batch_seconds_max = max(self.batch_seconds_max, seconds)
            totals["batch_ms_sum"] += round(seconds * 1000)


class ShardMetrics:
    """One process's counters, labelled with the worker and the shard it holds.

    `registry` defaults to a private one: in multiprocess mode the values go to files whatever the registry,
    and a private registry lets tests make as many as they like. `log_interval_seconds` <= 0 writes no JSON.
    """

    def __init__(
        self,
        worker: str,
        *,
        registry: CollectorRegistry | None = None,
        log_interval_seconds: float = 60.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker = worker
        self.shard = "-"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.log_interval_seconds = log_interval_seconds
        self._stream = stream
        self._clock = clock
        self._window = _Window(clock())
        self.millis_behind_latest: int | None = None
        labels = ("worker", "shard")
        r = self.registry

        def counter(name: str, help_text: str, extra: tuple[str, ...] = ()) -> PromCounter:
            return PromCounter(f"{PREFIX}_{name}", help_text, (*labels, *extra), registry=r)

        self.records = counter("records", "Kinesis records read")
        self.events = counter("events", "CloudTrail events decoded")
        self.malformed = counter("malformed", "inputs that are not CloudTrail (parked when a dead-letter store is set)")
        self.control = counter("control_messages", "CloudWatch Logs CONTROL_MESSAGE records skipped")
        self.matches = counter("matches", "events a rule matched", ("rule",))
        self.rule_errors = counter(
            "rule_errors", "jq run-time errors, time budget overruns included (no match)", ("rule",)
        )
        self.quarantined = counter(
            "rules_quarantined",
            "rules disabled in a process for running over their time budget again and again",
            ("rule",),
        )
        self.delivered = counter("alerts_delivered", "alerts a destination took", ("destination",))
        self.retried = counter("alerts_retried", "delivery attempts after a first failed one", ("destination",))
        self.failed = counter("alerts_failed", "alerts that failed for good at a destination", ("destination",))
        self.dead_lettered = counter("alerts_dead_lettered", "failed alerts parked as dead letters", ("destination",))
        self.inputs_parked = counter("inputs_parked", "malformed inputs parked as dead letters")
        self.duplicates = counter("alerts_duplicate", "alerts skipped: already sent (ledger)")
        self.folded = counter("alerts_folded", "alerts folded into a digest")
        self.reloads = counter("config_reloads", "config reloads, by result (applied, rejected)", ("result",))
        self.behind = Gauge(
            f"{PREFIX}_millis_behind_latest",
            "how far the last batch was behind the tip of the shard (KCL's millisBehindLatest)",
            labels,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds",
            "time to decode, match and deliver one non-empty batch",
            labels,
            registry=r,
            buckets=BATCH_BUCKETS,
        )

    def observe(self, outcome: BatchOutcome, *, records: int, seconds: float | None, millis_behind: int | None) -> None:
        """Count one batch (an idle poll too: its digests are deliveries); `seconds` None leaves the histogram."""
        counts = BatchCounts.of(outcome, records)
        self.add(counts, seconds)
        if millis_behind is not None:
            self.millis_behind_latest = int(millis_behind)
            self.behind.labels(self.worker, self.shard).set(millis_behind)
        self.maybe_log()

    def add(self, counts: BatchCounts, seconds: float | None = None) -> None:
        ws = (self.worker, self.shard)
        for metric, value in (
            (self.records, counts.records),
            (self.events, counts.events),
            (self.malformed, counts.malformed),
            (self.control, counts.control),
            (self.inputs_parked, counts.inputs_parked),
            (self.duplicates, counts.duplicates),
            (self.folded, counts.folded),
        ):
            if value:
                metric.labels(*ws).inc(value)
        for metric, per_label in (
            (self.matches, counts.matches),
            (self.rule_errors, counts.rule_errors),
            (self.quarantined, counts.quarantined),
            (self.delivered, counts.delivered),
            (self.retried, counts.retried),
            (self.failed, counts.failed),
            (self.dead_lettered, counts.dead_lettered),
        ):
            for label, value in per_label.items():
                metric.labels(*ws, label).inc(value)
        if seconds is not None:
            self.batch_seconds.labels(*ws).observe(seconds)
        self._window.add(counts, seconds)

    def reload(self, applied: bool) -> None:
        self.reloads.labels(self.worker, self.shard, "applied" if applied else "rejected").inc()

    def hold(self, shard: str) -> None:
        """The shard this process holds from now on (known at `initialize`)."""
        self.shard = shard
        self.behind.labels(self.worker, shard).set(0)
        self.batch_seconds.labels(self.worker, shard)  # so a held but idle shard shows up with zeros
        self.events.labels(self.worker, shard)
        self.records.labels(self.worker, shard)

    # ------------------------------------------------------------------ JSON lines

    def maybe_log(self, force: bool = False) -> bool:
        """Write the window's JSON line when it is due (or `force`d); True when one was written."""
        if self.log_interval_seconds <= 0 and not force:
            return False
        now = self._clock()
        if not force and now - self._window.started < self.log_interval_seconds:
            return False
        line = self.summary(now)
        stream = self._stream or sys.stderr
        stream.write(json.dumps(line, separators=(",", ":"), sort_keys=False) + "\n")
        stream.flush()
        self._window = _Window(now)
        return True

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """The window's counters as one JSON-able object (the same names as the Prometheus metrics)."""
        now = self._clock() if now is None else now
        window = self._window
        totals = window.totals
        return {
            "type": JSON_LOG_TYPE,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "worker": self.worker,
            "shard": self.shard,
            "pid": os.getpid(),
            "window_seconds": round(now - window.started, 3),
            "records": totals["records"],
            "events": totals["events"],
            "malformed": totals["malformed"],
            "control_messages": totals["control"],
            "matches": dict(window.matches),
            "rule_errors": totals["rule_errors"],
            "rules_quarantined": totals["rules_quarantined"],
            "alerts_delivered": totals["delivered"],
            "alerts_retried": totals["retried"],
            "alerts_failed": totals["failed"],
            "alerts_dead_lettered": totals["dead_lettered"],
            "inputs_parked": totals["inputs_parked"],
            "alerts_duplicate": totals["duplicates"],
            "alerts_folded": totals["folded"],
            "millis_behind_latest": self.millis_behind_latest,
            "batches": totals["batches"],
            "batch_ms_sum": totals["batch_ms_sum"],
            "batch_ms_max": round(window.batch_seconds_max * 1000),
        }


# --------------------------------------------------------------------------- the scrape side (consume)


class _LiveMultiProcessCollector(Collector):
    """prometheus-client's MultiProcessCollector, after dropping the live gauges of processes that are gone."""

    def __init__(self, path: Path, alive: Callable[[int], bool]) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self.alive = alive
        self._inner = MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Any]:
        mark_dead_processes(self.path, self.alive)
        return list(self._inner.collect())  # type: ignore[no-untyped-call]


def process_ids(path: Path) -> set[int]:
    """The pids that wrote value files to a multiprocess folder (files end in `_<pid>.db`)."""
    pids: set[int] = set()
    for file in path.glob("*.db"):
        _, _, tail = file.stem.rpartition("_")
        if tail.isdigit():
            pids.add(int(tail))
    return pids


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead_processes(path: Path, alive: Callable[[int], bool] = pid_alive) -> list[int]:
    """`mark_process_dead` for every pid with files here that no longer runs; the pids marked.

    Counters of dead processes stay (they are totals); only their live gauges go.
    """
    from prometheus_client.multiprocess import mark_process_dead

    dead = [pid for pid in sorted(process_ids(path)) if not alive(pid)]
    for pid in dead:
        if any(path.glob(f"gauge_live*_{pid}.db")):
            mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return dead


def prepare_multiprocess_dir(path: Path) -> Path:
    """An empty folder for this run's value files (old files would add an earlier run's counts)."""
    path.mkdir(parents=True, exist_ok=True)
    for file in path.glob("*.db"):
        file.unlink()
    return path


class MetricsServer:
    """`/metrics` over HTTP for every process writing to `path` (consume's record processors)."""

    def __init__(self, path: Path, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.path = path
        self.host = host
        self.requested_port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LiveMultiProcessCollector(path, pid_alive))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> MetricsServer:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(self.requested_port, addr=self.host, registry=self.registry)
        self.port = int(self._server.server_address[1])
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
