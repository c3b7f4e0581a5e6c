"""Soak (not a test): the local stack and the real KCL consumer at a steady rate; does each shard process stay flat?

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 500] [--shards 2]

Starts kinesis-local, moto and a Slack-compatible receiver on 127.0.0.1, runs `stream-processor consume` with
the seed rules and its defaults (dedupe ledger, dead letters and storm folding in its work dir), produces
realistic CloudTrail traffic (2 % of it matches) at `--rate` events/s, and samples the resident set size of
every record-processor process (the daemon's Python children, one per shard) and of the daemon itself every
`--sample-seconds`. Prints a row per sample and a table of first/last/peak RSS per process at the end;
writes benchmarks/results/soak.json. The first sample is taken once the first alert arrived (the processors
are up and have imported everything), so start-up growth is not counted as drift.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stream_processor.local.demo import (  # noqa: E402
    ConsumerProcess,
    check_prerequisites,
    consumer_command,
    write_demo_config,
)
from stream_processor.local.processes import cmdline, descendants  # noqa: E402
from stream_processor.local.producer import SubscriptionProducer  # noqa: E402
from stream_processor.local.receiver import ReceivedPost, SlackReceiver  # noqa: E402
from stream_processor.local.resources import SEED_CONFIG  # noqa: E402
from stream_processor.local.stack import LocalStack  # noqa: E402
from stream_processor.local.traffic import TrafficGenerator  # noqa: E402

PROCESSOR = "stream_processor.kcl.processor"
DAEMON = "MultiLangDaemon"




def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Sampled:
    """RSS samples (minute, MiB) of one process."""

    pid: int
    kind: str
    samples: list[tuple[float, float]] = field(default_factory=list)


def sample(consumer_pid: int, elapsed: float, seen: dict[int, Sampled]) -> dict[int, float]:
    now: dict[int, float] = {}
    for pid in descendants(consumer_pid):
        line = cmdline(pid)
        kind = "processor" if PROCESSOR in line else "daemon" if DAEMON in line else None
        if kind is None:
            continue
        rss = rss_mib(pid)
        if rss is None:
            continue
        seen.setdefault(pid, Sampled(pid, kind)).samples.append((elapsed / 60, rss))
        now[pid] = rss
    return now


class Traffic:
    """Endless realistic events as JSON bytes, until stopped."""

    def __init__(self, seed: int) -> None:
        self.generator = TrafficGenerator(seed=seed)
        self.stop = threading.Event()

    def events(self) -> Iterator[bytes]:
        while not self.stop.is_set():
            for event in self.generator.generate(1000):
                if self.stop.is_set():
                    return
                yield orjson.dumps(event)


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    check_prerequisites()
    work_dir: Path = args.work_dir / uuid.uuid4().hex[:8]
    work_dir.mkdir(parents=True)
    posts: list[ReceivedPost] = []
    stream = "soak"
    seen: dict[int, Sampled] = {}
    with LocalStack(work_dir / "logs") as stack, SlackReceiver(on_post=posts.append) as receiver:
        stack.create_stream(stream, args.shards)
        config = work_dir / "rules.toml"
        write_demo_config(args.config, receiver.url, config)
        consumer = ConsumerProcess(
            consumer_command(config, stream, f"soak-{uuid.uuid4().hex[:8]}", stack, work_dir),
            work_dir / "logs" / "consumer.log",
            stack.environment(),
        )
        traffic = Traffic(args.seed)
        producer = SubscriptionProducer(stack.kinesis_client(), stream, per_record=args.per_record, rate=args.rate)
        produced: list[Any] = []
        thread = threading.Thread(target=lambda: produced.append(producer.produce(traffic.events())), daemon=True)
        try:
            thread.start()
            with console.status("waiting for the consumer's first alert"):
                deadline = time.monotonic() + args.startup_timeout
                while not posts:
                    if consumer.exited() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the consumer did not deliver an alert:\n{consumer.log_tail()}")
                    time.sleep(0.5)
            started = time.monotonic()
            console.print(f"consumer up; soaking {args.minutes:g} min at {args.rate:,.0f} events/s")
            while True:
                elapsed = time.monotonic() - started
                now = sample(consumer.pid, elapsed, seen)
                row = "  ".join(f"{seen[pid].kind[:4]} {pid}: {rss:6.1f}" for pid, rss in sorted(now.items()))
                console.print(f"{elapsed / 60:5.1f} min  posts {len(posts):6d}  RSS MiB  {row}", highlight=False)
                if consumer.exited() is not None:
                    raise SystemExit(f"the consumer exited:\n{consumer.log_tail()}")
                if elapsed >= args.minutes * 60:
                    break
                time.sleep(min(args.sample_seconds, args.minutes * 60 - elapsed + 0.01))
        finally:
            traffic.stop.set()
            thread.join(30)
            consumer.stop()
    summary = produced[0] if produced else None
    return {
        "benchmark": "soak",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"minutes": args.minutes, "rate": args.rate, "shards": args.shards, "per_record": args.per_record},
        "events": getattr(summary, "events", None),
        "posts": len(posts),
        "processes": [
            {
                "pid": s.pid,
                "kind": s.kind,
                "first_min": round(s.samples[0][0], 2),
                "last_min": round(s.samples[-1][0], 2),
                "first_mib": round(s.samples[0][1], 1),
                "last_mib": round(s.samples[-1][1], 1),
                "peak_mib": round(max(rss for _, rss in s.samples), 1),
                "samples": [[round(t, 2), round(r, 1)] for t, r in s.samples],
            }
            for s in seen.values()
        ],
    }


def print_result(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"soak: RSS per process over {result['settings']['minutes']:g} min", title_justify="left")
    for column in ("process", "pid", "from (min)", "first MiB", "to (min)", "last MiB", "peak MiB", "change"):
        table.add_column(column, justify="left" if column == "process" else "right")
    for p in result["processes"]:
        change = p["last_mib"] - p["first_mib"]
        table.add_row(
            "record processor" if p["kind"] == "processor" else "KCL daemon (java)",
            str(p["pid"]),
            f"{p['first_min']:.1f}",
            f"{p['first_mib']:.1f}",
            f"{p['last_min']:.1f}",
            f"{p['last_mib']:.1f}",
            f"{p['peak_mib']:.1f}",
            f"{change:+.1f} MiB ({change / p['first_mib']:+.0%})",
        )
    console.print(table)
    console.print(f"{result['events'] or 0:,} events produced, {result['posts']:,} Slack posts")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to soak (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=2, help="stream shards (default: %(default)s)")
    parser.add_argument("--per-record", type=int, default=50, help="events per Kinesis record (default: %(default)s)")
    parser.add_argument("--sample-seconds", type=float, default=60.0, help="between RSS samples (default: %(default)s)")
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="for the first alert (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=SEED_CONFIG, help="rules (Slack webhooks are repointed)")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".local" / "soak")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args(argv)
    console = Console(width=200)
    result = run(args, console)
    print_result(result, console)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
