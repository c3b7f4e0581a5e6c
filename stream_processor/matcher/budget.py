"""Every rule gets a time budget per event; a rule that keeps overrunning it is quarantined.

Compiled rules are Python closures, so they can be interrupted: while batches are matched, an interval timer
(ITIMER_PROF: CPU time of this process) ticks four times per budget, and the tick's handler looks at the
match loop's frame: when the same rule has been running on the same event for a whole budget, it raises
`RuleOverBudget` inside the rule. The match loop pays nothing per rule call for this (no clock read, no
system call), and nothing per batch while batches keep coming: a batch starts the timer and the first tick
that lands outside a batch stops it (measured in benchmarks/README.md). A single C call that never returns to
Python (a huge `sum`) cannot be interrupted; the static bounds (matcher/bounds.py) keep the rule from being
handed numbers large enough to need one.

libjq cannot be interrupted from Python: fallback rules run in a child process the kernel stops on overrun
(matcher/libjq_worker.py), under the same budget.

A rule over budget on an event is a rule error for that event. `RuleBudget.quarantine_after` breaches within
`quarantine_window_seconds` quarantine the rule: it is disabled in this process, logged once, counted in the
metrics, and one operator alert goes to its destinations (pipeline.py).
"""

from __future__ import annotations

import atexit
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

DEFAULT_BUDGET_MS = 50.0


@dataclass(frozen=True, slots=True)
class RuleBudget:
    """How long a rule may run on one event, and what repeated overruns cost it.

    `budget_ms` is CPU time (of the record processor for compiled rules, of the libjq worker for the
    others); `libjq_memory_mib` bounds the libjq worker's address space.
    """

    budget_ms: float = DEFAULT_BUDGET_MS
    quarantine_after: int = 3
    quarantine_window_seconds: float = 600.0
    libjq_memory_mib: int = 256

    @property
    def seconds(self) -> float:
        return self.budget_ms / 1000.0


class RuleOverBudget(BaseException):
    """Raised inside a compiled rule that ran over its budget on the current event.

    A BaseException, so no `try` inside the rule's own code (a compiled jq `try`, an `except Exception`) can
    swallow it; only the match loop catches it.
    """


class Watchdog:
    """Interrupts the compiled rule that has run on one event for longer than the budget.

    `loop_codes` are the code objects of the functions that run rules; each must have the locals `event`
    (the event) and `rule_name` (the rule running, or None between rules). Works in the main thread only
    (Python runs signal handlers there); elsewhere `arm` does nothing and compiled rules run unbounded.
    """

    TICKS_PER_BUDGET = 4

    def __init__(self, budget_seconds: float, loop_codes: frozenset[CodeType]) -> None:
        self.interval = budget_seconds / self.TICKS_PER_BUDGET
        self.loop_codes = loop_codes
        self.enabled = budget_seconds > 0
        self._generation = 0
        self._slot: tuple[int, int, Any] | None = None
        self._ticks = 0

    def arm(self) -> bool:
        """Make sure the timer ticks for this batch; False when this thread cannot be interrupted.

        The timer keeps ticking after the batch: the first tick that finds no match loop running stops it.
        So a steady stream of batches costs no system call per batch, and idle time costs nothing (CPU time
        does not advance while the process waits).
        """
        global _current, _ticking
        if not self.enabled or threading.get_ident() != _MAIN_THREAD:
            if _current is not None and _current is not self:
                _current = None  # another matcher's timer must not tick in this one's batch
            return False
        self._generation += 1  # a new batch: a slot of the last one is not this one's
        if _current is not self or not _ticking:
            if not _install():
                return False
            self._slot = None
            self._ticks = 0
            _current = self
            signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
            _ticking = True
        return True

    def done(self) -> None:
        """The batch is over (the timer runs on until a tick finds no batch: see `arm`)."""
        self._slot = None

    def tick(self, frame: FrameType | None) -> None:
        while frame is not None and frame.f_code not in self.loop_codes:
            frame = frame.f_back
        if frame is None:  # between batches: stop ticking until the next batch
            _stop()
            self._slot = None
            return
        local = frame.f_locals
        rule_name = local.get("rule_name")
        if rule_name is None or getattr(local.get("self"), "_watchdog", None) is not self:
            self._slot = None
            return
        slot = (self._generation, id(local.get("event")), rule_name)
        if slot != self._slot:
            self._slot = slot
            self._ticks = 1
            return
        self._ticks += 1
        if self._ticks > self.TICKS_PER_BUDGET:  # seen at 5 ticks in a row: it has run at least 4 intervals
            self._slot = None
            self._ticks = 0
            raise RuleOverBudget(rule_name)


_MAIN_THREAD = threading.main_thread().ident
_current: Watchdog | None = None
_ticking = False
_installed = False
_previous_handler: Any = None


def _on_tick(signum: int, frame: FrameType | None) -> None:
    watchdog = _current
    if watchdog is None:
        _stop()
    else:
        watchdog.tick(frame)


def _stop() -> None:
    global _ticking
    signal.setitimer(signal.ITIMER_PROF, 0)
    _ticking = False


def _install() -> bool:
    """Our SIGPROF handler, once per process; not over a handler someone else installed (a profiler)."""
    global _installed, _previous_handler
    if _installed:
        return signal.getsignal(signal.SIGPROF) is _on_tick
    current = signal.getsignal(signal.SIGPROF)
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return False
    _previous_handler = current
    signal.signal(signal.SIGPROF, _on_tick)
    # At exit Python puts SIGPROF back to its default action, which ends the process: a tick still on its way
    # would turn a clean exit into "killed by SIGPROF". Stop the timer first.
    atexit.register(_stop)
    signal.siginterrupt(signal.SIGPROF, False)  # restart system calls the tick lands in
    _installed = True
    return True


class Quarantine:
    """Counts each rule's budget breaches in a sliding window and says when a rule must be quarantined."""

    def __init__(self, budget: RuleBudget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._breaches: dict[str, deque[float]] = {}

    def breach(self, rule_name: str) -> int | None:
        """Record one breach; the number of breaches in the window when the rule is to be quarantined now."""
        now = self._clock()
        times = self._breaches.setdefault(rule_name, deque())
        times.append(now)
        while times and times[0] < now - self.budget.quarantine_window_seconds:
            times.popleft()
        if len(times) >= self.budget.quarantine_after:
            count = len(times)
            times.clear()
            return count
        return None
