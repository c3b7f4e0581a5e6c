"""End-to-end benchmark (not a test): a steady rate through the local stack and the real KCL consumer.

    .venv/bin/python benchmarks/e2e.py [--rate 2000] [--duration 60] [--shards 2]

Starts kinesis-local, moto and a Slack-compatible receiver on 127.0.0.1, runs `stream-processor consume`
(the KCL MultiLangDaemon with our record processor) with the seed rules plus one probe rule, waits until the
consumer is up, then produces realistic CloudTrail traffic at `--rate` events/s for `--duration` seconds.
About `--probes-per-second` events a second are probes, each carrying its own put time
(`additionalEventData.benchPutTime`, taken when the producer pulls it, at most the producer's 50 ms linger
before its PutRecords call); the probe rule outputs it, and the receiver reads it back on arrival:
put-to-alert latency. Probes are few because the Slack destination is rate-limited (about 1 post/s per shard
process, bursts of 5): more would measure that limit, not the pipeline. The run ends with a probe,
so the time its alert arrives bounds how long the consumer took to get through everything.

`--backlog N` measures the consumer's ceiling instead: N events are written before it starts and it drains
them with nothing else running (benchmarks/results/e2e-backlog.json). Against kinesis-local, pass
`--consumer-arg=--max-records --consumer-arg=500`: with KCL's default (10,000 records, i.e. 10 MB responses)
the first GetRecords calls on a large backlog time out for minutes.

Prints a table and writes benchmarks/results/e2e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

NO_STORM = "--no-storm"  # every probe must arrive on its own: storm folding would digest them
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stream_processor.local.demo import (  # noqa: E402
    AlertCollector,
    ConsumerProcess,
    DemoError,
    check_prerequisites,
    consumer_command,
    write_demo_config,
)
from stream_processor.local.producer import SubscriptionProducer  # noqa: E402
from stream_processor.local.receiver import SlackReceiver  # noqa: E402
from stream_processor.local.resources import SEED_CONFIG  # noqa: E402
from stream_processor.local.stack import LocalStack  # noqa: E402
from stream_processor.local.traffic import TrafficGenerator  # noqa: E402

PROBE_RULE = "Bench probe"
PROBE_FIELD = "benchPutTime"
_PUT_TIME = re.compile(r"put=(?P<t>[0-9.]+) run=(?P<run>\w+) n=(?P<n>\d+)")


def write_bench_config(seed_config: Path, webhook_url: str, work_dir: Path) -> Path:
    """The seed rules (pointed at the receiver) plus the probe rule, whose output is the probe's put time."""
    path = work_dir / "bench.toml"
    config = write_demo_config(seed_config, webhook_url, path)
    slack = next(d.id for d in config.destinations if d.type == "slack_webhook")
    probe = (
        "\n[[rule]]\n"
        f"name = {json.dumps(PROBE_RULE)}\n"
        "jq_match = 'select(.additionalEventData.benchPutTime != null) | "
        '"put=\\(.additionalEventData.benchPutTime) run=\\(.additionalEventData.benchRun) '
        "n=\\(.additionalEventData.benchProbe)\"'\n"
        'description = "end-to-end latency probe"\n'
        f"destinations = [{json.dumps(slack)}]\n"
    )
    path.write_text(path.read_text(encoding="utf-8") + probe, encoding="utf-8")
    return path


class ProbeTraffic:
    """Realistic traffic (no other rule matches) with a timestamped probe every `probe_every` events."""

    def __init__(self, run: str, probe_every: int, seed: int) -> None:
        self.run = run
        self.probe_every = probe_every
        self._generator = iter(TrafficGenerator(seed=seed, match_rate=0.0))
        self.probes_sent = 0

    def probe(self) -> bytes:
        event = next(self._generator)
        event["additionalEventData"] = {"benchPutTime": f"{time.time():.6f}", "benchRun": self.run,
                                        "benchProbe": self.probes_sent}  # fmt: skip
        self.probes_sent += 1
        return orjson.dumps(event)

    def events(self, count: int) -> Iterator[bytes]:
        """`count` events, made as the producer pulls them; the last one is always a probe."""
        for index in range(count):
            if (index + 1) % self.probe_every == 0 or index == count - 1:
                yield self.probe()
            else:
                yield orjson.dumps(next(self._generator))


def probe_arrivals(collector: AlertCollector, run: str) -> dict[int, tuple[float, float]]:
    """probe number -> (put time, arrival time) for this run's probes at the receiver (first arrival wins)."""
    found: dict[int, tuple[float, float]] = {}
    for alert in collector.alerts():
        if alert.rule != PROBE_RULE:
            continue
        match = _PUT_TIME.search(alert.output)
        if match is None or match.group("run") != run:
            continue
        number = int(match.group("n"))
        if number not in found:
            found[number] = (float(match.group("t")), alert.arrived)
    return found


def wait_for(collector: AlertCollector, run: str, count: int, consumer: ConsumerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(probe_arrivals(collector, run)) < count:
        if consumer.exited() is not None:
            raise DemoError(f"the consumer exited ({consumer.exited()}); log tail:\n{consumer.log_tail()}")
        if time.monotonic() > deadline:
            got = len(probe_arrivals(collector, run))
            raise DemoError(f"{got}/{count} probes of run {run} arrived within {timeout:.0f} s")
        collector.changed.wait(0.25)
        collector.changed.clear()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _settings(args: argparse.Namespace, probe_every: int | None) -> dict[str, Any]:
    rules = args.config.relative_to(REPO_ROOT) if args.config.is_relative_to(REPO_ROOT) else args.config
    settings: dict[str, Any] = {
        "shards": args.shards,
        "events_per_record": args.per_record,
        "rules": f"{rules} + probe rule",
        "consumer_args": list(args.consumer_arg),
    }
    if args.backlog:
        settings["backlog_events"] = args.backlog
    else:
        settings.update(rate_target_events_per_s=args.rate, duration_s=args.duration, probe_every_events=probe_every)
    return settings


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    check_prerequisites()
    work_dir: Path = args.work_dir
    if work_dir.exists():  # a dedupe ledger left from an earlier run would swallow this run's probes
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    collector = AlertCollector()
    stream = "bench-e2e"
    warmup_probes = args.shards * 4
    with LocalStack(work_dir / "logs") as stack, SlackReceiver(on_post=collector.on_post) as receiver:
        stack.create_stream(stream, args.shards)
        config = write_bench_config(args.config, receiver.url, work_dir)
        producer_client = stack.kinesis_client()
        if args.backlog:
            return _run_backlog(args, console, stack, stream, config, collector, producer_client)
        consumer = ConsumerProcess(
            consumer_command(
                config, stream, f"bench-{uuid.uuid4().hex[:8]}", stack, work_dir, [NO_STORM, *args.consumer_arg]
            ),
            work_dir / "logs" / "consumer.log",
            stack.environment(),
        )
        try:
            # warm-up: the consumer is up once a probe makes it through
            started = time.time()
            warm = ProbeTraffic("warmup", 1, seed=args.seed + 1)
            SubscriptionProducer(producer_client, stream, per_record=1, control_every=0).produce(
                warm.events(warmup_probes)
            )
            with console.status("waiting for the consumer to take its leases"):
                wait_for(collector, "warmup", warmup_probes, consumer, args.startup_timeout)
            startup = time.time() - started
            console.print(
                f"consumer up after {startup:.1f} s; producing {args.rate:,.0f} events/s for {args.duration:g} s"
            )

            # the measured run
            probe_every = max(1, round(args.rate / args.probes_per_second))
            traffic = ProbeTraffic("measured", probe_every, seed=args.seed)
            total = int(args.rate * args.duration)
            producer = SubscriptionProducer(
                producer_client, stream, per_record=args.per_record, rate=args.rate, seed=args.seed
            )
            put_started = time.time()
            with console.status("producing"):
                produced = producer.produce(traffic.events(total))
            put_ended = time.time()
            with console.status("draining: waiting for the last probe's alert"):
                wait_for(collector, "measured", traffic.probes_sent, consumer, args.drain_timeout)
        finally:
            consumer.stop()
    arrivals = probe_arrivals(collector, "measured")
    latencies_ms = [(arrived - put) * 1000 for put, arrived in arrivals.values()]
    last_arrival = max(arrived for _, arrived in arrivals.values())
    consumed_seconds = last_arrival - put_started
    duplicates = sum(1 for alert in collector.alerts() if alert.rule == PROBE_RULE) - len(arrivals) - warmup_probes
    return {
        "benchmark": "e2e",
        "mode": "steady",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": _settings(args, probe_every),
        "consumer_startup_s": round(startup, 2),
        "events": produced.events,
        "records": produced.records,
        "bytes": produced.bytes,
        "put_seconds": round(put_ended - put_started, 3),
        "put_events_per_s": round(produced.events / (put_ended - put_started), 1),
        "consumed_seconds": round(consumed_seconds, 3),
        "sustained_events_per_s": round(produced.events / consumed_seconds, 1),
        "probes": traffic.probes_sent,
        "probes_received": len(arrivals),
        "probe_duplicates": duplicates,
        "latency_ms": {
            "p50": round(percentile(latencies_ms, 0.50), 1),
            "p90": round(percentile(latencies_ms, 0.90), 1),
            "p99": round(percentile(latencies_ms, 0.99), 1),
            "max": round(max(latencies_ms), 1),
            "mean": round(statistics.fmean(latencies_ms), 1),
        },
    }


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _run_backlog(
    args: argparse.Namespace,
    console: Console,
    stack: LocalStack,
    stream: str,
    config: Path,
    collector: AlertCollector,
    producer_client: Any,
) -> dict[str, Any]:
    """The consumer's own ceiling: a backlog written before it starts, drained with nothing else running.

    Start probes, then the backlog, then end probes; the drain time runs from the first start probe's alert to
    the last end probe's alert, so KCL start-up is not in it.
    """
    probes = args.shards * 4
    start = ProbeTraffic("start", 1, seed=args.seed + 1)
    end = ProbeTraffic("end", 1, seed=args.seed + 2)
    backlog = ProbeTraffic("backlog", args.backlog + 1, seed=args.seed)  # no probe inside the backlog
    one_per_record = SubscriptionProducer(producer_client, stream, per_record=1, control_every=0)
    with console.status(f"writing a backlog of {args.backlog:,} events"):
        one_per_record.produce(start.events(probes))
        produced = SubscriptionProducer(producer_client, stream, per_record=args.per_record, seed=args.seed).produce(
            _without_last_probe(backlog, args.backlog)
        )
        one_per_record.produce(end.events(probes), control_first=False)
    console.print(f"backlog written: {produced.events:,} events at {produced.events_per_second:,.0f} events/s")
    consumer = ConsumerProcess(
        consumer_command(
            config, stream, f"bench-{uuid.uuid4().hex[:8]}", stack, args.work_dir, [NO_STORM, *args.consumer_arg]
        ),
        args.work_dir / "logs" / "consumer.log",
        stack.environment(),
    )
    try:
        with console.status("draining the backlog"):
            wait_for(collector, "end", probes, consumer, args.drain_timeout)
    finally:
        consumer.stop()
    first = min(arrived for _, arrived in probe_arrivals(collector, "start").values())
    last = max(arrived for _, arrived in probe_arrivals(collector, "end").values())
    return {
        "benchmark": "e2e",
        "mode": "backlog",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": _settings(args, None),
        "events": produced.events,
        "records": produced.records,
        "bytes": produced.bytes,
        "put_events_per_s": round(produced.events_per_second, 1),
        "consumed_seconds": round(last - first, 3),
        "sustained_events_per_s": round(produced.events / (last - first), 1),
    }


def _without_last_probe(traffic: ProbeTraffic, count: int) -> Iterator[bytes]:
    """`count` plain events: ProbeTraffic ends with a probe, so ask for one more and drop it."""
    for index, event in enumerate(traffic.events(count + 1)):
        if index < count:
            yield event


def print_result(result: dict[str, Any], console: Console) -> None:
    table = Table(title="end-to-end: produce → kinesis-local → KCL consumer → Slack receiver", title_justify="left")
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    settings = result["settings"]
    if result["mode"] == "backlog":
        table.add_row("backlog", f"{result['events']:,} events in {result['records']:,} records, written first")
        table.add_row("shards / events per record", f"{settings['shards']} / {settings['events_per_record']}")
        table.add_row("drain time (first → last probe alert)", f"{result['consumed_seconds']:.1f} s")
        table.add_row("consumer throughput", f"{result['sustained_events_per_s']:,.0f} events/s")
        console.print(table)
        return
    table.add_row("target rate", f"{settings['rate_target_events_per_s']:,.0f} events/s for {settings['duration_s']} s")
    table.add_row("shards / events per record", f"{settings['shards']} / {settings['events_per_record']}")
    table.add_row("events produced", f"{result['events']:,} in {result['records']:,} records")
    table.add_row("put rate achieved", f"{result['put_events_per_s']:,.0f} events/s")
    table.add_row("sustained (first put → last alert)", f"{result['sustained_events_per_s']:,.0f} events/s")
    latency = result["latency_ms"]
    table.add_row("put → alert latency p50", f"{latency['p50']:,.0f} ms")
    table.add_row("put → alert latency p90", f"{latency['p90']:,.0f} ms")
    table.add_row("put → alert latency p99", f"{latency['p99']:,.0f} ms")
    table.add_row("put → alert latency max", f"{latency['max']:,.0f} ms")
    table.add_row("probes received / sent", f"{result['probes_received']} / {result['probes']}")
    table.add_row("consumer start-up (leases taken)", f"{result['consumer_startup_s']:.1f} s")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second to produce (2000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of steady production (60)")
    parser.add_argument("--shards", type=int, default=2, help="stream shards (2)")
    parser.add_argument("--per-record", type=int, default=50, help="log events per Kinesis record (50)")
    parser.add_argument(
        "--probes-per-second",
        type=float,
        default=1.0,
        help="latency probes per second (1: Slack destinations are rate-limited to about 1 post/s per shard)",
    )
    parser.add_argument("--config", type=Path, default=SEED_CONFIG, help="rules besides the probe (the seed's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".local" / "bench-e2e")
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        metavar="N",
        help="instead of a steady rate: write N events first, then time the consumer draining them (its ceiling)",
    )
    parser.add_argument(
        "--consumer-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to `stream-processor consume` (repeat: --consumer-arg=--max-records --consumer-arg=500)",
    )
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/e2e.json (e2e-backlog.json)")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = REPO_ROOT / "benchmarks" / "results" / ("e2e-backlog.json" if args.backlog else "e2e.json")
    console = Console()
    try:
        result = run(args, console)
    except DemoError as error:
        console.print(f"[bold red]benchmark failed:[/] {error}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted; everything started is stopped")
        return 130
    print_result(result, console)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
