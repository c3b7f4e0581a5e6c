"""The fast matcher: rules compiled to Python closures, dispatched through the rule index.

Each rule is parsed and compiled once; a rule outside the compiled subset runs on libjq (batched, in a
worker process). The index (matcher/index.py) analyses each parsed rule into a condition on a few fields of
the event, which holds wherever the rule could match *or fail*, and sends each event only to the rules whose
condition it can satisfy. Every rule runs under a time budget per event (matcher/budget.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from stream_processor.matcher.base import Matcher
from stream_processor.matcher.budget import Quarantine, RuleBudget, RuleOverBudget, Watchdog
from stream_processor.matcher.index import Formula, RuleIndex, Top, condition, render_path
from stream_processor.matcher.jqcompile import NONE, compile_program
from stream_processor.matcher.jqlex import JqSyntaxError, Token, tokenize
from stream_processor.matcher.jqparse import Binary, Call, Node, Pipe, Unsupported, parse
from stream_processor.matcher.jqruntime import JqError, to_output
from stream_processor.matcher.libjq import compile_jq, compiling_together
from stream_processor.matcher.libjq_worker import ERROR, NO_OUTPUT, OUTPUT, SAME, SKIPPED, LibjqWorker, Result
from stream_processor.matcher.projection import Trie, analyse, merge, projector
from stream_processor.model import CloudTrailEvent, Match, MatchResult, QuarantinedRule, Rule, RuleRuntimeError

log = logging.getLogger(__name__)


class _ForLibjq(Exception):
    """Raised by the entry of a rule libjq runs (so the match loop needs no test per rule to tell them apart)."""


@dataclass(frozen=True, slots=True)
class RulePlan:
    """How one rule runs: the compiled path or libjq, and what events it can match or fail on."""

    name: str
    path: str  # "compiled" | "libjq"
    reason: str
    condition: Formula  # for the index: true on every event where the rule may match or fail
    run: Callable[[Any], Any]  # first output or NONE; raises JqError (a jq error) or hands over to libjq
    gated: bool = False  # a libjq rule whose `run` is its compiled leading select (NONE, or hand over to libjq)


def plan_rule(rule: Rule) -> RulePlan:
    """Compile one rule for the fast path when it can (`require_compiles` says whether jq accepts it at all)."""
    ast: Node | None = None
    try:
        ast = parse(rule.jq_match)
        run = compile_program(ast)
    except Unsupported as why:
        return _libjq_plan(rule, why.reason, ast)
    except RecursionError:
        return _libjq_plan(rule, "nested too deeply", ast)
    except Exception as error:  # a compiler bug must cost speed, never correctness or availability
        return _libjq_plan(rule, f"the compiler failed ({type(error).__name__})", ast)
    return RulePlan(rule.name, "compiled", "compiled", _condition(ast), run)


def require_compiles(rules: Sequence[Rule]) -> None:
    """Reject what jq rejects, in rule order, whatever path each rule would take.

    Raises:
        ValueError: libjq's compile error of the first rule it does not compile.
    """
    together = compiling_together(rule.jq_match for rule in rules)
    for rule in rules:
        if rule.jq_match not in together:
            compile_jq(rule.jq_match)


def _condition(ast: Node | None) -> Formula:
    """The index's condition for a program; the analysis failing costs the index, never the rule."""
    if ast is None:
        return Top(None, "the index cannot read it either")
    try:
        return condition(ast)
    except Exception as error:
        return Top(None, f"the analysis failed ({type(error).__name__})")


def _libjq_plan(rule: Rule, reason: str, ast: Node | None = None) -> RulePlan:
    """A rule for libjq; indexed like a compiled one when its program parses (what a program requires of
    eventName is a property of the program, not of the compiler), so libjq sees only the events it can match.

    When the program starts with a `select` whose condition (or its first conjuncts) compiles, `run` is that
    compiled gate: no output means the rule has no output either, and only the other events go to libjq.
    """
    gate = _gate(ast) if ast is not None else None
    if gate is not None:
        reason += ", gated by its compiled select"
    return RulePlan(rule.name, "libjq", f"libjq: {reason}", _condition(ast), gate or _hand_over, gate is not None)


def _gate(ast: Node) -> Callable[[Any], Any] | None:
    """The compiled leading `select(c)` of a program libjq runs, or `select(a)` for `c` = `a and b`.

    jq evaluates the program's leftmost `select` first, and `a and b` evaluates `a` first: when the gate has
    no output and raises nothing, the rule has no output and raises nothing. Anything else (an output, an
    error, a value outside the compiled model) is libjq's to decide, exactly.
    """
    head = ast.left if isinstance(ast, Pipe) else ast
    if not (isinstance(head, Call) and head.name == "select" and len(head.args) == 1):
        return None
    condition: Node = head.args[0]
    while True:
        try:
            check = compile_program(Call("select", (condition,)))
            break
        except Exception:  # Unsupported, or a compiler bug: try a shorter gate
            if not (isinstance(condition, Binary) and condition.op == "and"):
                return None
            condition = condition.left

    def gate(data: Any) -> Any:
        try:
            if check(data) is NONE:
                return NONE
        except Exception:
            pass
        raise _ForLibjq

    return gate


# -- the matcher

_Entry = tuple[str, Callable[[Any], Any], int]  # name, compiled run (or _hand_over for libjq), rule index


def _hand_over(data: Any) -> Any:
    raise _ForLibjq


_UNION_CACHE_LIMIT = 4096


class FastMatcher(Matcher):
    """Same results as LibjqMatcher, at native speed for the compiled subset, and bounded in time.

    Rules outside the compiled subset, and (rule, event) pairs the compiled path hands over, run batched on
    a libjq worker process (matcher/libjq_worker.py). Every rule has a time budget per event on both paths
    (matcher/budget.py); `quarantined` (name -> jq program) lists rules an earlier matcher of this process
    quarantined: they stay disabled while their program is unchanged. `force_libjq` names rules to run on
    libjq even though they compile: for the differential tests and the benchmark of the libjq path.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        budget: RuleBudget | None = None,
        quarantined: Mapping[str, str] | None = None,
        *,
        force_libjq: Collection[str] = (),
    ) -> None:
        super().__init__(rules)
        require_compiles(self.rules)
        self.budget = budget or RuleBudget()
        self.plans = tuple(
            _libjq_plan(rule, "forced") if rule.name in force_libjq else plan_rule(rule) for rule in self.rules
        )
        self.quarantined: dict[str, str] = {
            rule.name: rule.jq_match for rule in self.rules if (quarantined or {}).get(rule.name) == rule.jq_match
        }
        self._rank = {plan.name: i for i, plan in enumerate(self.plans)}
        self._entries: list[_Entry] = []
        self.index: RuleIndex[_Entry] = RuleIndex((), ())
        self._index()
        self._watchdog = Watchdog(self.budget.seconds, _LOOP_CODES)
        self._quarantine = Quarantine(self.budget)
        self._worker: LibjqWorker | None = None
        self._projections: dict[int, tuple[Trie | None, bool]] = {}
        self._cuts: dict[tuple[int, ...], Callable[[Any], Any] | None] = {}
        self._memo: dict[tuple[tuple[int, ...], bytes], list[Result]] = {}
        self._deterministic: dict[int, bool] = {}
        self.libjq_fallbacks = 0  # (rule, event) pairs the compiled path handed to libjq

    def _index(self) -> None:
        """(Re)build the index over the rules not quarantined (a batch in progress keeps its old dispatch)."""
        active = [i for i, plan in enumerate(self.plans) if plan.name not in self.quarantined]
        self._entries = [(p.name, p.run, i) for i, p in enumerate(self.plans)]
        self.index = RuleIndex([self.plans[i].condition for i in active], [self._entries[i] for i in active])

    def match_batch(self, events: Sequence[CloudTrailEvent]) -> MatchResult:
        result = MatchResult()
        matches = result.matches
        errors = result.errors
        jobs: list[tuple[CloudTrailEvent, int]] = []  # (event, rule index) for libjq, in event then rule order
        armed = self._watchdog.arm()
        try:
            iterator = iter(events)
            entries: tuple[_Entry, ...] = ()
            event: CloudTrailEvent | None = None
            rule_name: str | None = None
            while True:
                try:
                    dispatch = self.index.dispatch  # the rules an event can match or fail (all, for a non-object)
                    for event in iterator:
                        data = event.data
                        entries = dispatch(data)
                        for rule_name, run, index in entries:
                            try:
                                output = run(data)
                                if output is NONE or output is None or output is False:
                                    continue
                                output = to_output(output)
                                if output is None:  # NaN: libjq hands it back as null, no match
                                    continue
                            except JqError as error:
                                errors.append(RuleRuntimeError(rule_name, event.position, str(error)))
                                continue
                            except Exception:  # a libjq rule, NeedsLibjq, too deep for Python, a compiler bug
                                jobs.append((event, index))
                                continue
                            matches.append(Match(rule_name, event, output))
                    rule_name = None
                    break
                except RuleOverBudget:
                    assert event is not None and rule_name is not None
                    rest = self._over_budget(event, rule_name, entries, result, jobs)
                    rule_name = None
                    self._finish_event(event, rest, result, jobs)
        finally:
            if armed:
                self._watchdog.done()
        if jobs:
            try:
                self._run_libjq(events, jobs, result)
            except Exception as error:  # a bug of ours must cost these pairs an error, never the shard
                log.exception("the libjq hand-off failed")
                for event, index in jobs:
                    why = f"the libjq worker failed ({type(error).__name__})"
                    result.errors.append(RuleRuntimeError(self.plans[index].name, event.position, why))
        return result

    def _finish_event(
        self,
        event: CloudTrailEvent,
        entries: tuple[_Entry, ...],
        result: MatchResult,
        jobs: list[tuple[CloudTrailEvent, int]],
    ) -> None:
        """The rules left to run on `event` after one was interrupted (the rare path: a plain loop)."""
        data = event.data
        rule_name: str | None = None
        while entries:
            try:
                for rule_name, run, index in entries:
                    try:
                        output = run(data)
                        if output is NONE or output is None or output is False:
                            continue
                        output = to_output(output)
                        if output is None:  # NaN: libjq hands it back as null, no match
                            continue
                    except JqError as error:
                        result.errors.append(RuleRuntimeError(rule_name, event.position, str(error)))
                        continue
                    except Exception:
                        jobs.append((event, index))
                        continue
                    result.matches.append(Match(rule_name, event, output))
                rule_name = None
                return
            except RuleOverBudget:
                assert rule_name is not None
                entries = self._over_budget(event, rule_name, entries, result, jobs)
                rule_name = None

    def _over_budget(
        self,
        event: CloudTrailEvent,
        rule_name: str,
        entries: tuple[_Entry, ...],
        result: MatchResult,
        jobs: list[tuple[CloudTrailEvent, int]],
    ) -> tuple[_Entry, ...]:
        """Count the interrupted rule's breach; the entries after it, still to run on the event."""
        position = next((k for k, entry in enumerate(entries) if entry[0] == rule_name), len(entries))
        finished = (
            (result.matches and result.matches[-1].rule_name == rule_name and result.matches[-1].event is event)
            or (
                result.errors
                and result.errors[-1].rule_name == rule_name
                and result.errors[-1].position is event.position
            )
            or (jobs and jobs[-1][0] is event and position < len(entries) and jobs[-1][1] == entries[position][2])
        )
        if not finished:  # (the tick can land just after the rule's result is in: then it did finish)
            message = f"ran over its time budget of {self.budget.budget_ms:g} ms of CPU on this event (interrupted)"
            result.errors.append(RuleRuntimeError(rule_name, event.position, message))
            self._breach(rule_name, event, message, result)
        return tuple(entry for entry in entries[position + 1 :] if entry[0] not in self.quarantined)

    def _breach(self, rule_name: str, event: CloudTrailEvent, why: str, result: MatchResult) -> None:
        count = self._quarantine.breach(rule_name)
        if count is None or rule_name in self.quarantined:
            return
        plan = self.plans[self._rank[rule_name]]
        self.quarantined[plan.name] = self.rules[self._rank[rule_name]].jq_match
        self._index()
        window = self.budget.quarantine_window_seconds
        reason = (
            f"rule {rule_name!r} ran over its time budget ({self.budget.budget_ms:g} ms per event) {count} times "
            f"within {window:g} s, the last time on the event at {event.position}: {why}. It is disabled in this "
            "worker process until the worker restarts or the rule's program changes"
        )
        log.error("quarantined: %s", reason)
        result.quarantined.append(QuarantinedRule(rule_name, event, count, reason))

    # -- libjq, batched

    def _run_libjq(
        self, events: Sequence[CloudTrailEvent], jobs: list[tuple[CloudTrailEvent, int]], result: MatchResult
    ) -> None:
        """Run the (event, rule) pairs the compiled path did not, in one request, and merge in order."""
        plans = self.plans
        self.libjq_fallbacks += sum(1 for _, index in jobs if plans[index].path == "compiled")
        work: list[tuple[CloudTrailEvent, list[int]]] = []  # jobs come grouped by event, in event order
        last: CloudTrailEvent | None = None
        quarantined = self.quarantined
        for event, index in jobs:
            if quarantined and plans[index].name in quarantined:
                continue
            if event is last:
                work[-1][1].append(index)
            else:
                work.append((event, [index]))
                last = event
        if not work:
            return
        payload = self._payload
        keys = [tuple(indexes) for _, indexes in work]
        texts = [payload(event, key) for (event, _), key in zip(work, keys, strict=True)]
        # A rule's result depends only on what it reads: a projection seen before has its answer remembered.
        memo = self._memo
        outcomes: list[list[Result] | None] = [
            memo.get((key, text)) if projected is not _MISSING else None
            for key, (text, projected) in zip(keys, texts, strict=True)
        ]
        asked = [position for position, outcome in enumerate(outcomes) if outcome is None]
        had = (len(result.matches), len(result.errors))
        if asked:
            if self._worker is None:
                memory = self.budget.libjq_memory_mib << 20
                self._worker = LibjqWorker([rule.jq_match for rule in self.rules], self.budget.seconds, memory)

            def on_breach(index: int, job: int, why: str) -> bool:
                name = plans[index].name
                self._breach(name, work[asked[job]][0], why, result)
                return name in self.quarantined

            answers = self._worker.evaluate([(keys[position], texts[position][0]) for position in asked], on_breach)
            for position, answer in zip(asked, answers, strict=True):
                outcomes[position] = answer
                key, (text, projected) = keys[position], texts[position]
                if projected is not _MISSING and self._memoizable(key, answer):
                    if len(memo) >= _MEMO_LIMIT:
                        memo.clear()
                    memo[(key, text)] = answer
        take = self._take
        for (event, indexes), (_, projected), outcome in zip(work, texts, outcomes, strict=True):
            assert outcome is not None
            for index, found in zip(indexes, outcome, strict=True):
                if found[0] != NO_OUTPUT:
                    take(event, index, found, projected, result)
        # Back in order (events, then rules in file order), when both paths added something.
        rank = self._rank
        if had[0] and len(result.matches) > had[0]:
            order = {id(event): position for position, event in enumerate(events)}
            result.matches.sort(key=lambda match: (order.get(id(match.event), 0), rank.get(match.rule_name, 0)))
        if had[1] and len(result.errors) > had[1]:
            positions = {id(event.position): position for position, event in enumerate(events)}
            result.errors.sort(key=lambda e: (positions.get(id(e.position), 0), rank.get(e.rule_name, 0)))

    def _take(self, event: CloudTrailEvent, index: int, found: Result, projected: Any, result: MatchResult) -> None:
        """One libjq result; `projected` is what the worker was fed instead of the event (_MISSING: the event)."""
        rule_name = self.plans[index].name
        tag = found[0]
        if tag == NO_OUTPUT:
            return
        if tag == SAME:  # the output equals the input: the event itself, or an object built equal to the projection
            value = event.data if projected is _MISSING or self._outputs_event(index) else projected
            try:
                output = to_output(value)
            except Exception:
                output = value
        elif tag == OUTPUT:
            output = found[1]
            if output is None or output is False:
                return
        elif tag == SKIPPED:
            return
        else:  # a jq error, a breach (already counted by on_breach), the worker unavailable
            message = found[1] if type(found[1]) is str else json.dumps(found[1])
            result.errors.append(RuleRuntimeError(rule_name, event.position, message))
            return
        result.matches.append(Match(rule_name, event, output))

    def _payload(self, event: CloudTrailEvent, indexes: tuple[int, ...]) -> tuple[bytes, Any]:
        """The event as JSON text for libjq, and the projection it holds (_MISSING: the whole event).

        The part the rules read when that is known, else the event's original bytes: never json.dumps.
        """
        cut = self._cuts.get(indexes, _MISSING)
        if cut is _MISSING:
            tries = [self._analysis(index)[0] for index in indexes]
            trie = merge(tries)
            cut = None if trie is None else projector(trie)
            if len(self._cuts) < _UNION_CACHE_LIMIT:
                self._cuts[indexes] = cut
        if cut is not None and type(event.data) is dict:
            projected = cut(event.data)
            try:
                return orjson.dumps(projected), projected
            except (orjson.JSONEncodeError, RecursionError):
                pass  # too deep for orjson: the original text
        if event.raw:
            return event.raw, _MISSING
        try:
            return orjson.dumps(event.data), _MISSING
        except orjson.JSONEncodeError:
            return json.dumps(event.data).encode(), _MISSING

    def _analysis(self, index: int) -> tuple[Trie | None, bool]:
        found = self._projections.get(index)
        if found is None:
            found = self._projections[index] = analyse(self.rules[index].jq_match)
        return found

    def _outputs_event(self, index: int) -> bool:
        return self._analysis(index)[1]

    def _memoizable(self, key: tuple[int, ...], answer: list[Result]) -> bool:
        """Remember no output, "the event itself" and errors (never a value a match would share, nor a breach),
        for rules whose result depends on their input alone (not on the clock: `now`)."""
        if not all(found[0] in (NO_OUTPUT, SAME, ERROR) for found in answer):
            return False
        deterministic = self._deterministic
        for index in key:
            if index not in deterministic:
                deterministic[index] = "now" not in _words(self.rules[index].jq_match)
            if not deterministic[index]:
                return False
        return True

    def close(self) -> None:
        """Stop the libjq worker process, if one was started."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    @property
    def quarantined_rules(self) -> dict[str, str]:
        return dict(self.quarantined)


_MISSING: Any = object()
_MEMO_LIMIT = 10_000
"""Projections remembered with their results (a few hundred bytes each: ~4 MiB), per matcher; forgotten all at once."""


def _words(program: str) -> set[str]:
    """The names a program calls, in string interpolations too (`now` for a program that cannot be lexed)."""
    words: set[str] = set()

    def scan(tokens: Sequence[Token]) -> None:
        for token in tokens:
            if token.kind == "IDENT":
                words.add(token.text)
            for part in token.parts:
                if isinstance(part, tuple):
                    scan(part)

    try:
        scan(tokenize(program).tokens)
    except JqSyntaxError:
        return {"now"}
    return words


_LOOP_CODES = frozenset({FastMatcher.match_batch.__code__, FastMatcher._finish_event.__code__})


def explain(rules: Sequence[Rule]) -> list[tuple[str, str, str]]:
    """Per rule: (name, "compiled" | "libjq", why, then its index key or why it has none), for `validate --explain`."""
    matcher = FastMatcher(rules)
    try:
        return [
            (plan.name, plan.path, f"{plan.reason}, {matcher.index.describe(i)}")
            for i, plan in enumerate(matcher.plans)
        ]
    finally:
        matcher.close()


def index_fields(rules: Sequence[Rule]) -> list[str]:
    """The fields the index reads on every event for these rules (dotted paths), for `validate --explain`."""
    matcher = FastMatcher(rules)
    try:
        return [render_path(path) for path in matcher.index.fields]
    finally:
        matcher.close()


def build_matcher(
    rules: Sequence[Rule],
    kind: str = "fast",
    budget: RuleBudget | None = None,
    quarantined: Mapping[str, str] | None = None,
) -> Matcher:
    """The matcher by name: "fast" (compiled + index, the default) or "libjq" (the reference, unbudgeted)."""
    if kind == "fast":
        return FastMatcher(rules, budget, quarantined)
    if kind == "libjq":
        from stream_processor.matcher.libjq import LibjqMatcher

        return LibjqMatcher(rules)
    raise ValueError(f"unknown matcher kind {kind!r} (expected 'fast' or 'libjq')")
