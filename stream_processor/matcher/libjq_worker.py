"""What the compiled path cannot run goes to libjq in a child process, batched, under a per-event budget.

One request per batch: every (event, fallback rule) pair of the batch in one libjq program run, each event
given as JSON text once (its original bytes, or the part of it the rules read: matcher/projection.py) with
the rules to run on it. The program is a driver around the rules, compiled once in the child:

    def __sp_rule_0: (<rule text>
    );  ...
    .[1] as $in | [.[0][] as $i | $in | try ([limit(1; rule $i)] | <first output or none>) catch [3, .]]

so each event yields one array with, per rule, no output `[0]`, the event itself `[1]`, its first output
`[2, v]` or the error before the first output `[3, message]`: tattletail's first-output semantics, exactly.

The child (matcher/libjq_child.py) has a memory limit and a CPU budget per event, and marks the event it is
on in a shared page. When it dies (budget, memory, a crash in libjq) or misses the wall-clock deadline, the
culprit event is known; if several rules ran on it, each is run alone on it to find which one overran. The
worker starts again on the next request; the record processor never shares its fate.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import mmap
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream_processor.matcher import libjq_child
from stream_processor.matcher.libjq_child import NO_EVENT, PROGRESS, frame

log = logging.getLogger(__name__)

# Result tags, per rule per event (the first four are the driver's own).
NO_OUTPUT, SAME, OUTPUT, ERROR = 0, 1, 2, 3
BREACH = 4  # the rule overran its budget (or killed libjq) on this event: an error, counted for quarantine
UNAVAILABLE = 5  # the worker itself could not run: an error, not the rule's fault

SKIPPED = 6  # not run: the rule was quarantined while the batch was running

Result = tuple[Any, ...]
_Unit = tuple[list[int], bytes]  # the local indexes of the rules to run on one event, and the event's text
_Heard = Callable[[int, int, str], bool]  # (local rule, unit, why) -> the rule is now quarantined
OnBreach = Callable[[int, int, str], bool]  # (rule, job, why) -> the rule is now quarantined


@dataclass(frozen=True, slots=True)
class _Program:
    """Rules compiled together in the child, as two drivers: every rule on each event (`every`: the input is
    the bare event), or the rules each event names (`selected`: the input is `[[local indexes], event]`)."""

    every: str
    selected: str
    rules: tuple[int, ...]  # global rule index per local index


# Per rule per event: 0 no output, 1 the event itself, [v] the first output v, [null, e] the error e.
_FIRST = "try ([first({call})] | if length == 0 then 0 elif .[0] == $__sp_in then 1 else [.[0]] end) catch [null, .]"


def _drivers(rules: Sequence[str]) -> tuple[str, str]:
    """The two drivers over `rules`, with first-output semantics and errors as values.

    Each rule is the body of its own def, starting on the first line of its def, so the rule's text is
    untouched; the closing parenthesis goes on a line of its own, so a trailing comment stays a comment.
    """
    defs = "".join(f"def __sp_rule_{index}: ({text}\n);\n" for index, text in enumerate(rules))

    def tree(low: int, high: int) -> str:
        if high - low == 1:
            return f"__sp_rule_{low}"
        middle = (low + high) // 2
        return f"if $__sp_i < {middle} then {tree(low, middle)} else {tree(middle, high)} end"

    each = [_FIRST.format(call=f"__sp_rule_{index}") for index in range(len(rules))]
    every = defs + ". as $__sp_in | " + (each[0] if len(each) == 1 else "[" + ", ".join(each) + "]")
    selected = (
        defs
        + f"def __sp_rule($__sp_i): {tree(0, len(rules))};\n"
        + ".[1] as $__sp_in | [.[0][] as $__sp_i | $__sp_in | "
        + _FIRST.format(call="__sp_rule($__sp_i)")
        + "]"
    )
    return every, selected


def _layout(rules: Sequence[str], together: bool) -> list[_Program]:
    """The child's programs: every rule in one (`together`), except those reading `$__loc__`, whose line
    numbers must stay their own; or one program per rule."""
    alone = [index for index, text in enumerate(rules) if not together or "__loc__" in text]
    shared = [index for index in range(len(rules)) if index not in set(alone)]
    groups = ([tuple(shared)] if shared else []) + [(index,) for index in alone]
    return [_Program(*_drivers([rules[i] for i in group]), group) for group in groups]


_NONE: list[Result] = [(NO_OUTPUT,)]  # shared by every event without an output: never changed


def _result(value: Any) -> Result:
    if value == 0 and type(value) is int:
        return (NO_OUTPUT,)
    if value == 1 and type(value) is int:
        return (SAME,)
    if type(value) is list and len(value) == 1:
        return (OUTPUT, value[0])
    if type(value) is list and len(value) == 2:
        return (ERROR, value[1])
    return (ERROR, f"the libjq worker answered {type(value).__name__}")  # not reached: the drivers say so


class _Died(Exception):
    """The child ended (or was killed) while working on the event at `position` (None: on none)."""

    def __init__(self, position: int | None, reason: str) -> None:
        super().__init__(reason)
        self.position = position
        self.reason = reason


class LibjqWorker:
    """A killable libjq for the fallback rules of one matcher; started on first use, restarted after a death."""

    START_SECONDS = 30.0
    """How long the child may take to start and compile the rules."""
    WALL_SLACK_SECONDS = 2.0
    """The wall-clock deadline of a request: this plus 3x the CPU budgets of its events (a safety net: the CPU
    budget is enforced in the child by the kernel)."""
    RESTART_BACKOFF_SECONDS = 10.0
    """After the child failed to start, requests fail at once for this long instead of trying again."""

    def __init__(self, rules: Sequence[str], budget_seconds: float, memory_bytes: int) -> None:
        self.rules = tuple(rules)
        self.budget_seconds = budget_seconds
        self.memory_bytes = memory_bytes
        self.together = True
        self._programs = _layout(self.rules, together=True)
        self._place: dict[int, tuple[int, int]] = {}
        self._place_rules()
        self._process: subprocess.Popen[bytes] | None = None
        self._progress: mmap.mmap | None = None
        self._progress_fd = -1
        self._buffer = bytearray()
        self._down_until = 0.0
        self.starts = 0
        self.deaths = 0

    def _place_rules(self) -> None:
        self._place = {
            rule: (number, local)
            for number, program in enumerate(self._programs)
            for local, rule in enumerate(program.rules)
        }

    # -- the process

    def _start(self) -> None:
        self.close()
        fd = os.memfd_create("stream-processor-libjq-progress", os.MFD_CLOEXEC)
        os.ftruncate(fd, PROGRESS.size)
        self._progress_fd = fd
        self._progress = mmap.mmap(fd, PROGRESS.size)
        PROGRESS.pack_into(self._progress, 0, NO_EVENT)
        script = Path(libjq_child.__file__)
        self._process = subprocess.Popen(
            [sys.executable, "-P", str(script), str(self.memory_bytes), str(fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(fd,),
            start_new_session=True,
        )
        self.starts += 1
        self._buffer = bytearray()
        deadline = time.monotonic() + self.START_SECONDS
        texts = [text for program in self._programs for text in (program.every, program.selected)]
        self._send(marshal.dumps(texts), deadline)
        errors: list[str | None] = marshal.loads(self._receive(deadline))
        failed = [error for error in errors if error is not None]
        if failed and self.together:
            # Some rule does not go well with the others (it compiled alone at load): one program per rule.
            log.warning("libjq worker: the rules do not compile as one program, running them one by one")
            self.together = False
            self._programs = _layout(self.rules, together=False)
            self._place_rules()
            self._start()
        elif failed:
            raise _Died(None, f"libjq could not compile a rule: {failed[0]}")

    def close(self) -> None:
        """Stop the child (if any); a later request starts a new one."""
        process, self._process = self._process, None
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            if process.poll() is None:
                process.kill()
            process.wait()
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._progress_fd >= 0:
            os.close(self._progress_fd)
            self._progress_fd = -1

    def _send(self, payload: bytes, deadline: float) -> None:
        assert self._process is not None and self._process.stdin is not None
        data = memoryview(frame(payload))
        fd = self._process.stdin.fileno()
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while data:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except BrokenPipeError:
                raise self._death() from None
            data = data[written:]
            if data and not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                raise self._death(timed_out=True)

    def _receive(self, deadline: float) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        header = libjq_child._HEADER
        buffer = self._buffer
        while True:
            if len(buffer) >= header.size:
                (length,) = header.unpack_from(buffer)
                if len(buffer) >= header.size + length:
                    body = bytes(buffer[header.size : header.size + length])
                    del buffer[: header.size + length]
                    return body
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                raise self._death(timed_out=True)
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise self._death()
            buffer += chunk

    def _death(self, timed_out: bool = False) -> _Died:
        """The child is gone or must go: kill it, and say on which event and why."""
        position: int | None = None
        if self._progress is not None:
            (marked,) = PROGRESS.unpack_from(self._progress)
            position = None if marked == NO_EVENT else marked
        process = self._process
        status: int | None = None
        if process is not None:
            if timed_out:
                process.kill()
            try:
                status = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                status = process.wait()
        self.close()
        self.deaths += 1
        budget_ms = self.budget_seconds * 1000
        if timed_out:
            reason = "libjq did not answer in time (worker killed)"
        elif status == -signal.SIGPROF:
            reason = f"ran over its time budget of {budget_ms:g} ms of CPU on this event (libjq stopped)"
        elif status is not None and status < 0:
            reason = f"libjq died on this event ({signal.Signals(-status).name}: out of memory or a crash in libjq)"
        else:
            reason = f"the libjq worker ended on this event (exit status {status})"
        return _Died(position, reason)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown the child sees its stdin close and ends
            self.close()

    # -- requests

    def evaluate(
        self, jobs: Sequence[tuple[Sequence[int], bytes]], on_breach: OnBreach | None = None
    ) -> list[list[Result]]:
        """Per job (the rules to run on one event, the event's JSON text): per rule, its result.

        A result is `(NO_OUTPUT,)`, `(SAME,)` (the first output is the event itself), `(OUTPUT, value)`,
        `(ERROR, jq's error value)`, `(BREACH, why)`, `(UNAVAILABLE, why)` (the worker itself failed) or
        `(SKIPPED,)`. `on_breach(rule, job, why)` hears of each breach as it is found; when it answers True
        (the rule is quarantined) the rule is skipped on the jobs left. Never raises for a rule or an event.
        """
        place = self._place
        if len(self._programs) == 1:  # the usual case: one program holds every rule, in order
            locals_of: dict[tuple[int, ...], list[int]] = {}
            units: list[_Unit] = []
            for rules, payload in jobs:
                key = tuple(rules)
                locals_ = locals_of.get(key)
                if locals_ is None:
                    locals_ = locals_of[key] = [place[rule][1] for rule in key]
                units.append((locals_, payload))
            owners = self._programs[0].rules

            def heard_one(local: int, unit: int, why: str) -> bool:
                return on_breach is not None and on_breach(owners[local], unit, why)

            return self._run(0, units, heard_one)
        results: list[list[Result]] = [[(UNAVAILABLE, "not run")] * len(rules) for rules, _ in jobs]
        # Per program: (job, the job's slots of these rules, their local indexes, the event's text).
        per_program: dict[int, list[tuple[int, list[int], list[int], bytes]]] = {}
        for job, (rules, payload) in enumerate(jobs):
            for slot, rule in enumerate(rules):
                number, local = place[rule]
                program_units = per_program.setdefault(number, [])
                if program_units and program_units[-1][0] == job:
                    program_units[-1][1].append(slot)
                    program_units[-1][2].append(local)
                else:
                    program_units.append((job, [slot], [local], payload))
        for number, program_units in per_program.items():
            members = self._programs[number].rules
            jobs_of = [job for job, _, _, _ in program_units]

            def heard(
                local: int, unit: int, why: str, members: tuple[int, ...] = members, jobs_of: list[int] = jobs_of
            ) -> bool:
                return on_breach is not None and on_breach(members[local], jobs_of[unit], why)

            outcomes = self._run(number, [(locals_, payload) for _, _, locals_, payload in program_units], heard)
            for (job, slots, _, _), outcome in zip(program_units, outcomes, strict=True):
                for slot, result in zip(slots, outcome, strict=True):
                    results[job][slot] = result
        return results

    def _run(self, number: int, units: list[_Unit], heard: _Heard, base: int = 0) -> list[list[Result]]:
        """Run units (local rule indexes, event text) of one program, in order; deaths are handled here.

        `base` is the index of `units[0]` among the units `heard` knows.
        """
        done: list[list[Result]] = []
        start = 0
        retried = False
        while start < len(units):
            batch = units[start:]
            running = self._process is not None
            try:
                outputs, failure = self._request(number, batch)
            except _Died as died:
                if died.position is None and running and not retried:
                    retried = True  # it died between requests (killed from outside): once more, on a new one
                    continue
                if died.position is None or died.position >= len(batch):
                    why = f"the libjq worker failed: {died.reason}"
                    done.extend([[(UNAVAILABLE, why)] * len(locals_) for locals_, _ in batch])
                    return done
                # The answers for the events before the culprit died with the child: run them again.
                done.extend(self._run(number, batch[: died.position], heard, base + start))
                culprit = base + start + died.position
                results, quarantined = self._culprit(number, batch[died.position], died.reason, heard, culprit)
                done.append(results)
                start += died.position + 1
                if quarantined:
                    done.extend(self._without(number, units[start:], quarantined, heard, base + start))
                    return done
                continue
            done.extend(outputs)
            if failure is None:
                return done
            position, message = failure
            done.append([(ERROR, f"libjq could not read the event: {message}")] * len(batch[position][0]))
            start += position + 1
        return done

    def _without(
        self, number: int, units: list[_Unit], dropped: set[int], heard: _Heard, base: int
    ) -> list[list[Result]]:
        """Run `units` without the quarantined rules `dropped` (their results: SKIPPED)."""
        kept = [
            (index, [local for local in locals_ if local not in dropped], payload)
            for index, (locals_, payload) in enumerate(units)
        ]
        sent = [(locals_, payload) for _, locals_, payload in kept if locals_]
        where = [base + index for index, locals_, _ in kept if locals_]

        def shifted(local: int, unit: int, why: str) -> bool:
            return heard(local, where[unit - base], why)

        outcomes = iter(self._run(number, sent, shifted, base))
        done: list[list[Result]] = []
        for (locals_, _), (_, remaining, _) in zip(units, kept, strict=True):
            found = dict(zip(remaining, next(outcomes), strict=True)) if remaining else {}
            done.append([found.get(local, (SKIPPED,)) for local in locals_])
        return done

    def _culprit(
        self, number: int, unit: _Unit, reason: str, heard: _Heard, index: int
    ) -> tuple[list[Result], set[int]]:
        """The event the child died on: its rule alone is the culprit; with several, each runs alone to find it.

        Returns the event's results and the rules quarantined on the way.
        """
        locals_, payload = unit
        results: list[Result] = []
        quarantined: set[int] = set()
        for local in locals_:
            if len(locals_) == 1:
                died: _Died | None = _Died(0, reason)
            else:
                died = None
                try:
                    outputs, failure = self._request(number, [([local], payload)])
                except _Died as error:
                    died = error
            if died is None:
                results.extend([(ERROR, f"libjq could not read the event: {failure[1]}")] if failure else outputs[0])
            elif died.position is None:
                results.append((UNAVAILABLE, died.reason))
            else:
                results.append((BREACH, died.reason))
                if heard(local, index, died.reason):
                    quarantined.add(local)
        return results, quarantined

    def _request(self, number: int, batch: list[tuple[list[int], bytes]]) -> tuple[list[list[Result]], Any]:
        """One round trip: per event its results (as far as the child got) and its failure, if any."""
        if self._process is None:
            if time.monotonic() < self._down_until:
                raise _Died(None, "it failed to start a moment ago")
            try:
                self._start()
            except _Died as died:
                self._down_until = time.monotonic() + self.RESTART_BACKOFF_SECONDS
                raise _Died(None, f"it could not start: {died.reason}") from None
            except OSError as error:
                self.close()
                self._down_until = time.monotonic() + self.RESTART_BACKOFF_SECONDS
                raise _Died(None, f"it could not start: {error}") from None
        assert self._progress is not None
        program = self._programs[number]
        everything = list(range(len(program.rules)))
        every = all(locals_ == everything for locals_, _ in batch)
        budget = self.budget_seconds
        budgets = [budget * len(locals_) for locals_, _ in batch]
        if every:
            text = b"\n".join(payload for _, payload in batch)
        else:
            text = b"\n".join(b"[" + orjson.dumps(locals_) + b"," + payload + b"]" for locals_, payload in batch)
        deadline = time.monotonic() + self.WALL_SLACK_SECONDS + 3 * sum(budgets)
        PROGRESS.pack_into(self._progress, 0, NO_EVENT)
        one = every and len(everything) == 1
        self._send(marshal.dumps((2 * number + (0 if every else 1), one, budgets, text)), deadline)
        outputs, failure = marshal.loads(self._receive(deadline))
        if one:
            return [_NONE if output == 0 and type(output) is int else [_result(output)] for output in outputs], failure
        return [[_result(value) for value in output] for output in outputs], failure
