"""Matcher throughput on realistic CloudTrail traffic, every path measured in one run on one core.

Paths, per ruleset (the seed's 2 rules, the 15 CIS alarms, the 60-rule set, and examples/untuned.toml: 67 rules
written the way users write jq, which nobody tuned for the index):

- decode:        gunzip + parse of CloudWatch Logs subscription records, nothing else (the ceiling).
- decode+fast:   the same, then FastMatcher (compiled rules, the rule index).
- decode+libjq:  the same, then LibjqMatcher (libjq per event per rule: the naive loop), on a subsample.
- jq-cli:        the `jq` command-line tool over the same events as JSON lines, all rules in one program.

And one rule forced onto libjq (rules60's "Root account used", which runs on every event), µs per event:
the old path (libjq called per event, the event re-serialized for the call) against the batched worker
(one request per record): fed the whole event (a rule the analysis cannot read), the part of the event the
rule reads, and that behind the rule's compiled `select` (what a rule gets when only its output needs libjq).

Run: `make bench` or `.venv/bin/python benchmarks/run.py --events 100000`. Writes benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stream_processor.config import Rule, load_config  # noqa: E402
from stream_processor.decode import decode_record, decode_records  # noqa: E402
from stream_processor.gc_tuning import WORKER_THRESHOLDS as GC_TUNED_THRESHOLDS  # noqa: E402
from stream_processor.gc_tuning import tune_for_throughput  # noqa: E402
from stream_processor.local.traffic import TrafficGenerator, pack_subscription_records  # noqa: E402
from stream_processor.matcher import FastMatcher, LibjqMatcher, Matcher, build_matcher  # noqa: E402
from stream_processor.matcher.fast import _libjq_plan  # noqa: E402
from stream_processor.matcher.jqparse import parse  # noqa: E402
from stream_processor.matcher.libjq import first_output  # noqa: E402
from stream_processor.model import Position, RawRecord  # noqa: E402
from stream_processor.pipeline import decode_and_match  # noqa: E402

RULESETS = {
    "seed": "examples/seed.toml",
    "cis": "examples/cis.toml",
    "rules60": "examples/rules60.toml",
    "untuned": "examples/untuned.toml",
    "sigma": "examples/sigma-cloudtrail.toml",
}
# Records handed to decode + match at once: one KCL process_records call carries a few hundred records.
RECORDS_PER_BATCH = 100
SHARD = "shardId-000000000000"
# Fewer collections of the young generation: a decoded batch allocates ~30 containers per event, and with the
# default threshold (700) the collector walks them over and over while they are all still alive.

err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 130)


@dataclass(frozen=True, slots=True)
class Entry:
    """One measured path: the JSON written to benchmarks/results/latest.json is a list of these."""

    path: str
    ruleset: str
    events: int
    seconds: float
    events_per_s: float
    rules: int = 0
    repeats: int = 1
    median_events_per_s: float = 0.0
    events_per_cpu_s: float = 0.0
    matched_events: int | None = None
    load_1min: float = 0.0
    libjq_rules: int | None = None  # decode+fast only: rules the compiled path hands to libjq
    unindexed_rules: int | None = None  # decode+fast only: rules every event visits
    note: str = ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events to generate (default 100000)")
    parser.add_argument("--libjq-events", type=int, default=5_000, help="subsample for the naive libjq loop")
    parser.add_argument("--jq-events", type=int, default=0, help="events fed to the jq CLI (default: all)")
    parser.add_argument("--forced-events", type=int, default=20_000,
                        help="events for the rule forced onto libjq (0: skip that measurement)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per decode/fast path (best reported)")
    parser.add_argument("--cli-repeats", type=int, default=2, help="timed runs of the jq CLI and the libjq loop")
    parser.add_argument("--gc", choices=("default", "tuned", "off"), default="tuned",
                        help="Python's cyclic GC while measuring: tuned (default: what the consumer does, "
                             f"gc.freeze() + thresholds {GC_TUNED_THRESHOLDS}), as Python has it, or off")
    parser.add_argument("--file-events", type=int, default=200_000,
                        help="events of the CloudTrail file `match` reads whole-process, rules60 (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-rate", type=float, default=0.02)
    parser.add_argument("--rulesets", default=",".join(RULESETS), help="comma-separated: " + ",".join(RULESETS))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "latest.json")
    args = parser.parse_args(argv)

    names = [name.strip() for name in args.rulesets.split(",") if name.strip()]
    unknown = [name for name in names if name not in RULESETS]
    if unknown:
        parser.error(f"unknown ruleset(s) {unknown}; known: {list(RULESETS)}")
    rulesets = {name: load_config(str(REPO / RULESETS[name])).rules for name in names}

    err.print(f"[bold]stream-processor benchmark[/]: Python {platform.python_version()}, {platform.machine()}, "
              f"one process, one core; {args.events:,} events, seed {args.seed}, match rate {args.match_rate}, "
              f"GC {args.gc}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    messages, records = _traffic(args.events, args.seed, args.match_rate)
    libjq_records = _prefix(records, args.libjq_events)
    libjq_events = sum(_count(record) for record in libjq_records)

    if args.gc == "off":
        gc.disable()
    elif args.gc == "tuned":
        tune_for_throughput()  # what the consumer does at start-up
    entries: list[Entry] = []
    decode_entry = _measure_decode(records, len(messages), args.repeats)
    entries.append(decode_entry)
    jq_binary = shutil.which("jq")
    jq_events = messages[: args.jq_events] if args.jq_events else messages
    with tempfile.TemporaryDirectory(prefix="sp-bench-") as tmp:
        jsonl = Path(tmp) / "events.jsonl"
        jsonl.write_bytes(b"\n".join(jq_events) + b"\n")
        for name, rules in rulesets.items():
            matcher = build_matcher(rules, kind="fast")
            fast = _measure_matcher("decode+fast", name, matcher, records, len(messages), args.repeats)
            fast = replace(fast, **_plan_counts(matcher))
            entries.append(fast)
            entries.append(_measure_matcher("decode+libjq", name, LibjqMatcher(rules), libjq_records, libjq_events,
                                            args.cli_repeats, note=f"subsample of {libjq_events:,} events"))
            if jq_binary is None:
                entries.append(Entry("jq-cli", name, 0, 0.0, 0.0, len(rules),
                                     note="skipped: no jq binary on PATH (apt-get install jq)"))
            else:
                expected = fast.matched_events if len(jq_events) == len(messages) else None
                entries.append(_measure_jq_cli(jq_binary, name, rules, jsonl, len(jq_events), expected,
                                               args.cli_repeats))

    if args.file_events and "rules60" in rulesets:
        stream = next(entry for entry in entries if entry.path == "decode+fast" and entry.ruleset == "rules60")
        entries.append(_measure_file_path(messages, args.file_events, stream, args.repeats))
    forced: list[Entry] = []
    if args.forced_events:
        forced = _measure_forced_libjq(_prefix(records, args.forced_events), args.cli_repeats)
        entries.extend(forced)
    _print_table(entries, names)
    _print_targets(entries)
    if forced:
        _print_forced(forced)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([asdict(entry) for entry in entries], indent=2) + "\n")
    err.print(f"wrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0


# --- traffic -----------------------------------------------------------------------------------------------


def _traffic(count: int, seed: int, match_rate: float) -> tuple[list[bytes], list[RawRecord]]:
    """Events as JSON bytes and the same events packed as gzip CloudWatch Logs subscription records."""
    generator = TrafficGenerator(seed=seed, match_rate=match_rate)
    messages: list[bytes] = []
    chunk = 10_000
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("generating events", total=count)
        while len(messages) < count:
            step = min(chunk, count - len(messages))
            messages.extend(generator.generate_bytes(step))
            progress.advance(task, step)
        task = progress.add_task("packing subscription records", total=count)
        packed: list[bytes] = []
        for start in range(0, count, chunk):
            packed.extend(pack_subscription_records(messages[start : start + chunk], seed=seed + start))
            progress.advance(task, min(chunk, count - start))
    records = [RawRecord(data, Position(SHARD, f"{index:056d}")) for index, data in enumerate(packed)]
    size = sum(len(message) for message in messages)
    gz = sum(len(record.data) for record in records)
    err.print(f"traffic: {count:,} events, {size / count:,.0f} B/event, {len(records):,} records "
              f"({count / len(records):.0f} events/record, {size / gz:.1f}x gzip)")
    return messages, records


# Runs `stream-processor ARGS...` and writes its own peak RSS (VmHWM of its address space) to the file named first:
# the rusage of a child counts the pages of the parent it was forked from (this process holds the whole traffic).
_PEAK_RSS_WRAPPER = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def write_peak():
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(write_peak)
sys.argv[0] = "stream-processor"
runpy.run_module("stream_processor", run_name="__main__", alter_sys=True)
"""


def _run_match(trail: Path, report: Path, pycache: Path, status_ok: int = 0) -> tuple[float, float, int]:
    """One `match --format jsonl` over `trail`, output discarded: wall seconds, CPU seconds, peak RSS in KiB.

    With a bytecode cache (in `pycache`), as an installed package has one (pip compiles it at install): with
    PYTHONDONTWRITEBYTECODE set, as on our CI machines, every run would compile our sources again (~0.25 s).
    """
    command = [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(report), "match", "-c", str(REPO / RULESETS["rules60"]),
               str(trail), "--format", "jsonl"]
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPYCACHEPREFIX"] = str(pycache)
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL, env=environment)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != status_ok:
        raise RuntimeError(f"match exited with status {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, int(report.read_text() or 0)


def _measure_file_path(messages: Sequence[bytes], count: int, stream: Entry, repeats: int) -> Entry:
    """`stream-processor match` over one gzip CloudTrail log file of `count` events, as a user runs it: a whole
    process (start-up and output included), its CPU time and peak RSS, beside the stream path's figure; and the
    same over an empty file, the start-up (imports, rules compiled, index built), to show the per-event part."""
    with tempfile.TemporaryDirectory(prefix="sp-bench-file-") as tmp:
        trail, empty, report = Path(tmp) / "trail.json.gz", Path(tmp) / "empty.json.gz", Path(tmp) / "peak"
        pycache = Path(tmp) / "pycache"
        events = [messages[i % len(messages)] for i in range(count)]
        trail.write_bytes(gzip.compress(b'{"Records":[' + b",".join(events) + b"]}", compresslevel=6))
        empty.write_bytes(gzip.compress(b'{"Records":[]}'))
        del events
        _run_match(empty, report, pycache, status_ok=1)  # writes the bytecode cache
        runs = [_run_match(trail, report, pycache) for _ in range(max(repeats, 1))]
        start_ups = [_run_match(empty, report, pycache, status_ok=1) for _ in range(max(repeats, 1))]  # 1: no events
    walls, cpus = [run[0] for run in runs], [run[1] for run in runs]
    peak_kib = max(run[2] for run in runs)
    start_up = min(run[1] for run in start_ups)
    stream_rate = stream.events_per_cpu_s
    share = count / min(cpus) / stream_rate if stream_rate else 0.0
    per_event = count / max(min(cpus) - start_up, 1e-9) / stream_rate if stream_rate else 0.0
    note = (f"whole process, start-up included (bytecode cached, as installed); peak RSS {peak_kib / 1024:,.0f} MiB; "
            f"{share:.0%} of the stream path's decode+fast per CPU-second; start-up (an empty file) "
            f"{start_up:.2f} CPU-s, without it {per_event:.0%}")
    return _entry("file: match", "rules60", count, walls, cpus, stream.rules, None, note)


def _batches(records: Sequence[RawRecord]) -> list[Sequence[RawRecord]]:
    return [records[i : i + RECORDS_PER_BATCH] for i in range(0, len(records), RECORDS_PER_BATCH)]


def _prefix(records: Sequence[RawRecord], events: int) -> list[RawRecord]:
    """The leading records that hold at least `events` events."""
    chosen: list[RawRecord] = []
    total = 0
    for record in records:
        if total >= events:
            break
        chosen.append(record)
        total += _count(record)
    return chosen


def _count(record: RawRecord) -> int:
    return len(decode_records([record]).events)


# --- measurements --------------------------------------------------------------------------------------------


def _timed(run: Callable[[], int], repeats: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU times of `repeats` runs after one warm-up run; `run` returns what it counted."""
    counted = run()
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(repeats):
        cpu = time.process_time()
        start = time.perf_counter()
        run()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, counted


def _entry(path: str, ruleset: str, events: int, walls: list[float], cpus: list[float], rules: int,
           matched: int | None, note: str = "") -> Entry:
    """Best of the timed runs: on a shared machine the fastest run is the one least disturbed by others.

    The CPU-time figure (this process, or the jq child) leaves out the time spent waiting for a core, so it
    stays close to events/s/core even when other processes load the machine.
    """
    best = min(walls)
    median = statistics.median(walls)
    entry = Entry(path, ruleset, events, round(best, 4), round(events / best, 1), rules, len(walls),
                  round(events / median, 1), round(events / max(min(cpus), 1e-9), 1), matched,
                  round(os.getloadavg()[0], 2), note=note)
    err.print(f"  {path:<13} {ruleset:<8} {entry.events_per_s:>12,.0f} events/s best of {len(walls)} "
              f"(median {entry.median_events_per_s:,.0f}, per CPU-second {entry.events_per_cpu_s:,.0f})"
              f"{'; ' + note if note else ''}")
    return entry


def _measure_decode(records: Sequence[RawRecord], events: int, repeats: int) -> Entry:
    err.print(f"[bold]decode only[/] ({repeats} runs)")
    batches = _batches(records)

    def run() -> int:
        decoded = 0
        for batch in batches:  # record by record, events let go at once: what the pipeline does
            for record in batch:
                decoded += len(decode_record(record).events)
        return decoded

    walls, cpus, decoded = _timed(run, repeats)
    if decoded != events:
        raise SystemExit(f"decode found {decoded} events, expected {events}")
    return _entry("decode", "none", events, walls, cpus, 0, None)


def _measure_matcher(path: str, ruleset: str, matcher: Matcher, records: Sequence[RawRecord], events: int,
                     repeats: int, note: str = "") -> Entry:
    err.print(f"[bold]{path}[/] {ruleset} ({len(matcher.rules)} rules, {events:,} events, {repeats} run(s))")
    batches = _batches(records)

    def run() -> int:
        matched = 0
        for batch in batches:  # the pipeline's own decode + match step
            _, result = decode_and_match(batch, matcher)
            matched += len({id(match.event) for match in result.matches})
        return matched

    walls, cpus, matched = _timed(run, repeats)
    return _entry(path, ruleset, events, walls, cpus, len(matcher.rules), matched, note)


def _plan_counts(matcher: Matcher) -> dict[str, int]:
    """How many rules run on libjq and how many every event visits (the index cannot rule them out)."""
    assert isinstance(matcher, FastMatcher)
    return {
        "libjq_rules": sum(1 for plan in matcher.plans if plan.path == "libjq"),
        "unindexed_rules": sum(1 for indexed in matcher.index.indexed if not indexed),
    }


def jq_cli_program(rules: Sequence[Rule]) -> str:
    """One jq program that runs every rule on each input with tattletail's first-output semantics.

    Per event it prints the indexes of the rules that matched (nothing when none did). `[r?][0]` is the
    first output, with an error (`?`) counting as no output; `// empty` drops null and false.
    """
    definitions = "".join(f"def r{index}: ({rule.jq_match});\n" for index, rule in enumerate(rules))
    checks = ", ".join(f"([r{index}?][0] // empty | {index})" for index in range(len(rules)))
    return f"{definitions}[{checks}] | select(length > 0)"


def _measure_jq_cli(binary: str, ruleset: str, rules: Sequence[Rule], jsonl: Path, events: int,
                    expected: int | None, repeats: int) -> Entry:
    """One jq process reads every event once and runs all rules: the CLI's best case, not a strawman.

    One process per rule would re-read and re-parse the file for every rule; that is slower and measures
    JSON parsing more than rule evaluation.
    """
    err.print(f"[bold]jq-cli[/] {ruleset} ({len(rules)} rules, {events:,} events, {repeats} run(s))")
    program = jq_cli_program(rules)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    walls: list[float] = []
    cpus: list[float] = []
    matched = 0
    for _ in range(max(1, repeats)):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        completed = subprocess.run([binary, "-c", program, str(jsonl)], capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if completed.returncode != 0:
            reason = completed.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            return Entry("jq-cli", ruleset, events, 0.0, 0.0, len(rules), note=f"failed: {reason[0][:200]}")
        matched = completed.stdout.count(b"\n")
    note = f"{version}, one process, all rules in one program"
    if expected is not None and matched != expected:
        note += f"; WARNING: {matched} matched events, FastMatcher found {expected}"
    return _entry("jq-cli", ruleset, events, walls, cpus, len(rules), matched, note)


# One rule that runs on every event (rules60's "Root account used"), and the same with a `def` in front: the
# analysis cannot read `def`, so libjq gets the whole event.
FORCED_RULE = (
    'select(.userIdentity.type == "Root" and .userIdentity.invokedBy == null and .eventType != "AwsServiceEvent") '
    '| "root used \\(.eventName) in \\(.recipientAccountId // "?") from \\(.sourceIPAddress // "?")"'
)
FORCED_RULES = {
    "whole event": f"def root: .; root | {FORCED_RULE}",
    "projected": FORCED_RULE,
    "projected, gated": FORCED_RULE,
}


def _child_cpu(pid: int) -> float:
    """CPU seconds of a child process so far (from /proc: clock ticks); 0 for none."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure_forced_libjq(records: Sequence[RawRecord], repeats: int) -> list[Entry]:
    """µs per event of one rule on libjq: per event in process (the old path) and batched on the worker."""
    batches = [decode_record(record).events for record in records]
    events = sum(len(batch) for batch in batches)
    entries: list[Entry] = []
    for label, program in FORCED_RULES.items():
        rule = Rule(name="forced", jq_match=program)
        compiled = LibjqMatcher([rule])._programs[0][1]
        err.print(f"[bold]one rule forced onto libjq[/] ({label}, {events:,} events)")

        def per_event(compiled: object = compiled) -> int:
            for batch in batches:
                for event in batch:
                    first_output(compiled, event.data)
            return events

        walls, cpus, _ = _timed(per_event, repeats)
        entries.append(_entry("forced-libjq/per-event", label, events, walls, cpus, 1, None,
                              "libjq per event in process, the event re-serialized (the old path)"))
        matcher = FastMatcher([rule], force_libjq={"forced"})
        if label.endswith("gated"):
            # What a rule gets when only its output needs libjq: the compiled select decides most events.
            matcher.plans = (_libjq_plan(rule, "forced", parse(program)),)
            matcher._index()
        try:
            matched = sum(len(matcher.match_batch(batch).matches) for batch in batches)  # warm-up: starts the worker
            worker = matcher._worker
            pid = worker._process.pid if worker is not None and worker._process is not None else 0
            walls, cpus = [], []
            for _ in range(repeats):
                child, cpu, start = _child_cpu(pid), time.process_time(), time.perf_counter()
                for batch in batches:
                    matcher.match_batch(batch)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu + _child_cpu(pid) - child)
        finally:
            matcher.close()
        entries.append(_entry("forced-libjq/batched", label, events, walls, cpus, 1, matched,
                              "libjq worker, one request per record; CPU of both processes"))
    return entries


# --- report --------------------------------------------------------------------------------------------------


def _print_forced(entries: list[Entry]) -> None:
    table = Table(title="one rule forced onto libjq: µs per event (match only, the events of one record per call)")
    for column in ("event fed to libjq", "per event (old): wall", "batched: wall", "batched: CPU, both processes",
                   "speed-up (wall)"):
        table.add_column(column, justify="left" if column.startswith("event") else "right")
    by_key = {(entry.path, entry.ruleset): entry for entry in entries}
    for label in FORCED_RULES:
        old, new = by_key[("forced-libjq/per-event", label)], by_key[("forced-libjq/batched", label)]
        table.add_row(label, f"{1e6 / old.events_per_s:.1f}", f"{1e6 / new.events_per_s:.1f}",
                      f"{1e6 / new.events_per_cpu_s:.1f}", _ratio(new.events_per_s, old.events_per_s))
    out.print(table)



def _print_table(entries: list[Entry], names: list[str]) -> None:
    _print_one_table(entries, names, "events_per_s",
                     "events/s on one core (wall clock, best of the runs), gzip CloudWatch Logs subscription records")
    _print_one_table(entries, names, "events_per_cpu_s",
                     "events per CPU-second (the same runs, time spent waiting for a core left out)")
    _print_notes(entries)


def _print_one_table(entries: list[Entry], names: list[str], field: str, title: str) -> None:
    by_key = {(entry.path, entry.ruleset): float(getattr(entry, field)) for entry in entries}
    rules = {entry.ruleset: entry.rules for entry in entries}
    plans = {entry.ruleset: entry for entry in entries if entry.path == "decode+fast"}
    ceiling = by_key[("decode", "none")]
    table = Table(title=title)
    for column in ("ruleset", "rules", "on libjq", "not indexed", "decode only", "decode+fast", "decode+libjq",
                   "jq CLI", "fast/libjq", "fast/jq CLI", "fast/ceiling"):
        table.add_column(column, justify="left" if column == "ruleset" else "right")
    for name in names:
        fast = by_key[("decode+fast", name)]
        libjq = by_key[("decode+libjq", name)]
        cli = by_key[("jq-cli", name)]
        table.add_row(
            name,
            str(rules[name]),
            str(plans[name].libjq_rules),
            str(plans[name].unindexed_rules),
            f"{ceiling:,.0f}",
            f"{fast:,.0f}",
            f"{libjq:,.0f}",
            f"{cli:,.0f}" if cli else "skipped",
            _ratio(fast, libjq),
            _ratio(fast, cli),
            f"{fast / ceiling:.0%}",
        )
    out.print(table)


def _print_targets(entries: list[Entry]) -> None:
    """The issue's targets, as ratios of this run: rules written by others beside rules60, the file path."""
    fast = {entry.ruleset: entry for entry in entries if entry.path == "decode+fast"}
    base = fast.get("rules60")
    lines = []
    if base is not None:
        for name in ("untuned", "sigma"):
            if name in fast:
                wall = fast[name].events_per_s / base.events_per_s
                cpu = fast[name].events_per_cpu_s / base.events_per_cpu_s
                lines.append(f"{name} decode+fast / rules60: {wall:.0%} (wall), {cpu:.0%} (per CPU-second)")
    for entry in entries:
        if entry.path == "file: match":
            lines.append(f"file path: {entry.events:,} events at {entry.events_per_cpu_s:,.0f} per CPU-second; "
                         f"{entry.note}")
    for line in lines:
        out.print(line, soft_wrap=True)


def _print_notes(entries: list[Entry]) -> None:
    first_libjq = next((entry for entry in entries if entry.path == "decode+libjq"), None)
    first_cli = next((entry for entry in entries if entry.path == "jq-cli" and entry.events_per_s), None)
    out.print(f"decode only: gunzip + parse with stream_processor.decode, {RECORDS_PER_BATCH} records per batch; "
              f"decode+fast: the same, then FastMatcher.match_batch per batch.")
    if first_libjq is not None:
        out.print(f"decode+libjq: LibjqMatcher (libjq per event per rule) on the first {first_libjq.events:,} events.")
    if first_cli is not None:
        out.print(f"jq CLI: {first_cli.note}, over the same events as JSON lines (no gzip: its best case).")
    load = max(entry.load_1min for entry in entries)
    if load > (os.cpu_count() or 1):
        out.print(f"[yellow]note: load average reached {load:.1f} on {os.cpu_count()} CPUs during the run: other "
                  "processes competed for the cores, so every figure is lower than on an idle machine.[/]")
    for entry in entries:
        if entry.path == "jq-cli" and entry.note and not entry.events_per_s:
            out.print(f"jq CLI for {entry.ruleset}: {entry.note}")
        if "WARNING" in entry.note:
            out.print(f"[red]{entry.ruleset}: {entry.note}[/]")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.0f}x" if b else "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
