"""Backtest: the rules over archived CloudTrail (S3 prefixes, files, folders), reported per rule, never sending.

How a rule is tried on last week before it is enabled: per rule, how often it would have fired, for how many
principals, over which time span, and one example of what the alert would have said. Objects are read by a
pool of processes, each streaming one object at a time; `backtest` (the command) only parses and prints.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from stream_processor.alerts.render import cap, output_text, summarize
from stream_processor.aws import S3_SCHEME, AwsSettings, split_s3_url
from stream_processor.aws_errors import describe_failure
from stream_processor.decode import decode_file
from stream_processor.gc_tuning import tune_for_throughput
from stream_processor.model import Alert, Config, DecodeResult, MatchResult
from stream_processor.sources.files import (
    ALL_DATES,
    ArchiveObject,
    DateRange,
    failure_reason,
    list_local,
    list_s3,
    object_chunks,
)
from stream_processor.wiring import Limits, Settings, build_pipeline

SAMPLE_CHARS = 160
DEFAULT_WORKERS = os.cpu_count() or 1
MATCHERS = ("fast", "libjq")  # build_matcher's kinds; the fast path is the default
MALFORMED_SHOWN = 20

ProgressCallback = Callable[[str, int, int, int], None]
"""Called as objects finish: (what is happening, objects done, objects listed so far, events read)."""


# --- the report --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RuleStats:
    """What one rule would have done over the archive."""

    name: str
    matches: int = 0
    errors: int = 0
    principals: set[str] = field(default_factory=set)
    first_time: str | None = None
    last_time: str | None = None
    sample: Alert | None = None

    def add(self, alert: Alert) -> None:
        self.matches += 1
        data = alert.event.data
        principal = principal_of(data)
        if principal:
            self.principals.add(principal)
        event_time = data.get("eventTime")
        if isinstance(event_time, str):
            if self.first_time is None or event_time < self.first_time:
                self.first_time = event_time
            if self.last_time is None or event_time > self.last_time:
                self.last_time = event_time
        # The earliest event is the sample: the same whatever order the concurrent reads finish in.
        if self.sample is None or _sample_key(alert) < _sample_key(self.sample):
            self.sample = alert

    def merge(self, other: RuleStats) -> None:
        """Add another part of the archive's stats: the result does not depend on the order of the parts."""
        self.matches += other.matches
        self.errors += other.errors
        self.principals |= other.principals
        if other.first_time is not None and (self.first_time is None or other.first_time < self.first_time):
            self.first_time = other.first_time
        if other.last_time is not None and (self.last_time is None or other.last_time > self.last_time):
            self.last_time = other.last_time
        if other.sample is not None and (self.sample is None or _sample_key(other.sample) < _sample_key(self.sample)):
            self.sample = other.sample

    def sample_record(self) -> dict[str, Any] | None:
        if self.sample is None:
            return None
        return {
            "eventID": self.sample.event.event_id,
            "eventTime": self.sample.event.data.get("eventTime"),
            "position": str(self.sample.event.position),
            "output": sample_text(self.sample),
        }


def _sample_key(alert: Alert) -> tuple[str, str, str]:
    event_time = alert.event.data.get("eventTime")
    return (event_time if isinstance(event_time, str) else "~", alert.event.event_id, str(alert.event.position))


def principal_of(event: dict[str, Any]) -> str:
    """Who acted: userIdentity.arn, else principalId, else the AWS service that invoked the call."""
    identity = event.get("userIdentity")
    if not isinstance(identity, dict):
        return ""
    for key in ("arn", "principalId", "invokedBy"):
        value = identity.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def sample_text(alert: Alert) -> str:
    """The rule's output as the alert shows it, or the event's what/who when the output is the event."""
    shown = output_text(alert)
    if shown is None:
        facts = summarize(alert)
        shown = f"{facts.what} by {facts.who}"
    return cap(shown, SAMPLE_CHARS)


@dataclass(slots=True)
class BacktestReport:
    rules: dict[str, RuleStats]
    objects: int = 0
    bytes_read: int = 0
    events: int = 0
    control_messages: int = 0
    digest_files: int = 0
    malformed: list[str] = field(default_factory=list)
    """The first MALFORMED_SHOWN, in object-name order (whatever order the objects were read in)."""
    malformed_count: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def for_config(cls, config: Config) -> BacktestReport:
        return cls({rule.name: RuleStats(rule.name) for rule in config.rules})

    def add(self, decoded: DecodeResult, matched: MatchResult, alerts: Sequence[Alert]) -> None:
        """One part of one object: its counts, its malformed input, its rule errors and alerts."""
        self.events += decoded.event_count
        self.control_messages += decoded.control_messages
        self.digest_files += decoded.digest_files
        self.malformed_count += len(decoded.malformed)
        room = MALFORMED_SHOWN - len(self.malformed)
        self.malformed.extend(f"{item.position}: {item.kind}: {item.reason}" for item in decoded.malformed[:room])
        for error in matched.errors:
            self.rules[error.rule_name].errors += 1
        for alert in alerts:
            self.rules[alert.rule_name].add(alert)

    def merge(self, other: BacktestReport) -> None:
        """Add the report of other objects; merged in object-name order, the result is exactly a sequential run's."""
        self.objects += other.objects
        self.bytes_read += other.bytes_read
        self.events += other.events
        self.control_messages += other.control_messages
        self.digest_files += other.digest_files
        self.malformed_count += other.malformed_count
        self.malformed = sorted(self.malformed + other.malformed)[:MALFORMED_SHOWN]
        self.failures = sorted(self.failures + other.failures)
        for name, stats in other.rules.items():
            self.rules[name].merge(stats)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [
                {
                    "rule": stats.name,
                    "matches": stats.matches,
                    "distinct_principals": len(stats.principals),
                    "first_event_time": stats.first_time,
                    "last_event_time": stats.last_time,
                    "rule_errors": stats.errors,
                    "sample": stats.sample_record(),
                }
                for stats in self.rules.values()
            ],
            "totals": {
                "objects": self.objects,
                "bytes": self.bytes_read,
                "events": self.events,
                "malformed": self.malformed_count,
                "control_messages": self.control_messages,
                "digest_files": self.digest_files,
                "unreadable_objects": len(self.failures),
                "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events_per_second, 1),
            },
            "unreadable": self.failures,
            "malformed": self.malformed[:MALFORMED_SHOWN],
        }

    def write_csv(self, stream: IO[str]) -> None:
        writer = csv.writer(stream)
        writer.writerow(
            [
                "rule",
                "matches",
                "distinct_principals",
                "first_event_time",
                "last_event_time",
                "rule_errors",
                "sample_event_id",
                "sample_output",
            ]
        )
        for stats in self.rules.values():
            sample = stats.sample_record() or {}
            writer.writerow(
                [
                    stats.name,
                    stats.matches,
                    len(stats.principals),
                    stats.first_time or "",
                    stats.last_time or "",
                    stats.errors,
                    sample.get("eventID", ""),
                    sample.get("output", ""),
                ]
            )


# --- the run -----------------------------------------------------------------------------------------------


def _listing(sources: list[str], dates: DateRange, s3: Any | None, failures: list[str]) -> Iterator[ArchiveObject]:
    """Every object of every source, lazily; a prefix that cannot be listed is a failure, the others go on."""
    for source in sources:
        if source.startswith(S3_SCHEME):
            bucket, prefix = split_s3_url(source)
            try:
                yield from list_s3(s3, bucket, prefix, dates)
            except (ClientError, BotoCoreError) as error:
                failure = describe_failure(error)
                if failure is not None and failure.kind != "service":
                    raise  # no credentials, no region, access denied: no other prefix will do better
                failures.append(f"{source}: listing failed: {failure.message if failure else error}")
        else:
            yield from list_local(Path(source), dates)


class _Scanner:
    """Reads and matches whole objects: one per process of the pool (or the only one, with one worker)."""

    def __init__(
        self, config: Config, aws: AwsSettings | None, matcher_kind: str, s3_workers: int, limits: Limits
    ) -> None:
        self.config = config
        self.limits = limits
        self.pipeline = build_pipeline(config, Settings(limits=limits), send=False, matcher_kind=matcher_kind)
        self.aws = aws
        self.s3_workers = s3_workers
        self._s3: Any | None = None
        # Rule run-time errors are counted per rule in the report; a line each would bury it.
        logging.getLogger("stream_processor.pipeline").setLevel(logging.ERROR)

    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = _s3_client(self.aws, self.s3_workers)
        return self._s3

    def scan(self, source: ArchiveObject) -> BacktestReport:
        report = BacktestReport.for_config(self.config)
        report.objects, report.bytes_read = 1, source.size
        try:
            s3 = self.s3() if source.name.startswith(S3_SCHEME) else None
            for decoded in decode_file(object_chunks(source, s3), source.name, self.limits.decode):
                outcome = self.pipeline.process_decoded(decoded)
                report.add(decoded, outcome.matched, outcome.alerts)
        except Exception as error:  # unreadable (gone, denied, I/O): reported, the run goes on
            failed = BacktestReport.for_config(self.config)
            failed.failures.append(f"{source.name}: {failure_reason(error)}")
            return failed
        return report


def _s3_client(aws: AwsSettings | None, workers: int) -> Any:
    pool = BotoConfig(max_pool_connections=max(10, workers), retries={"mode": "standard"})
    return (aws or AwsSettings()).client("s3", config=pool)


_scanner: _Scanner | None = None


def _start_worker(config: Config, aws: AwsSettings | None, matcher_kind: str, s3_workers: int, limits: Limits) -> None:
    global _scanner
    tune_for_throughput()
    _scanner = _Scanner(config, aws, matcher_kind, s3_workers, limits)


def _scan_in_worker(source: ArchiveObject) -> BacktestReport:
    assert _scanner is not None, "the worker was not started"
    return _scanner.scan(source)


def run_backtest(
    config: Config,
    sources: list[str],
    *,
    dates: DateRange = ALL_DATES,
    aws: AwsSettings | None = None,
    workers: int = DEFAULT_WORKERS,
    matcher_kind: str = MATCHERS[0],
    on_progress: ProgressCallback | None = None,
    limits: Limits | None = None,
) -> BacktestReport:
    """Match every event of `sources` against `config`'s rules, never sending anything.

    Objects are read and matched by `workers` processes, each streaming one object at a time (memory does not
    grow with object size); their reports are merged in object-name order, so the result is exactly that of
    one worker whatever the order the objects finish in.

    Raises:
        FileNotFoundError: a local source does not exist (checked before anything is read).
    """
    limits = limits or Limits()
    for location in sources:
        if not location.startswith(S3_SCHEME) and not Path(location).exists():
            raise FileNotFoundError(2, "no such file or folder", location)
    report = BacktestReport.for_config(config)
    listed = 0
    parts: dict[str, BacktestReport] = {}

    def listing() -> Iterator[ArchiveObject]:
        nonlocal listed
        s3 = _s3_client(aws, workers) if any(location.startswith(S3_SCHEME) for location in sources) else None
        for found in _listing(sources, dates, s3, report.failures):
            listed += 1
            yield found

    def done(source: ArchiveObject, part: BacktestReport) -> None:
        parts[source.name] = part
        if on_progress is not None:
            on_progress("reading", len(parts), listed, sum(p.events for p in parts.values()))

    started = time.monotonic()
    if workers <= 1:
        tune_for_throughput()  # as the pool's workers and the consumer do
        scanner = _Scanner(config, aws, matcher_kind, 1, limits)
        try:
            for source in listing():
                done(source, scanner.scan(source))
        finally:
            scanner.pipeline.close()
    else:
        # spawn, not forkserver: a forkserver keeps the environment of its first use (credentials, profile)
        context = multiprocessing.get_context("spawn")
        initargs = (config, aws, matcher_kind, workers, limits)
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=initargs) as pool:
            running: dict[Future[BacktestReport], ArchiveObject] = {}
            sources_left = listing()
            exhausted = False
            while running or not exhausted:
                while not exhausted and len(running) < 2 * workers:
                    following = next(sources_left, None)
                    if following is None:
                        exhausted = True
                    else:
                        running[pool.submit(_scan_in_worker, following)] = following
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    done(running.pop(future), future.result())
    for name in sorted(parts):  # name order: the merged sample and malformed list are the same every run
        report.merge(parts[name])
    if on_progress is not None:
        on_progress("read", len(parts), listed, sum(p.events for p in parts.values()))
    report.seconds = time.monotonic() - started
    return report


__all__ = ["BacktestReport", "ProgressCallback", "RuleStats", "principal_of", "run_backtest"]
