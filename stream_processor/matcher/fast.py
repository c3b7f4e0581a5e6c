"""The fast matcher: rules compiled to Python closures, dispatched through an eventName/eventSource index.

Each rule is parsed and compiled once; a rule outside the compiled subset runs on libjq (compiled once).
From each compiled rule's AST we derive, conservatively, the eventName or eventSource values it can
match at all -- only when, for any other value, the rule provably produces no match *and no error* --
and send each event only to the rules that can match it plus the rules with no such requirement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jq

from stream_processor.config import Rule
from stream_processor.matcher.base import Matcher
from stream_processor.matcher.jqcompile import NONE, compile_program, string_literals
from stream_processor.matcher.jqparse import (
    Binary,
    Call,
    Identity,
    Index,
    Literal,
    Node,
    Pipe,
    Unsupported,
    parse,
)
from stream_processor.matcher.jqruntime import JqError, to_output
from stream_processor.matcher.libjq import _NO_OUTPUT, first_output
from stream_processor.model import CloudTrailEvent, Match, MatchResult, RuleRuntimeError

INDEX_FIELDS = ("eventName", "eventSource")
_CACHE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class RulePlan:
    """How one rule runs: the compiled path or libjq, and what the index knows about it."""

    name: str
    path: str  # "compiled" | "libjq"
    reason: str
    index_field: str | None
    index_values: frozenset[str]
    run: Callable[[Any], Any]  # first output or NONE; raises JqError (a jq error) or NeedsLibjq
    program: Any  # the libjq program, for fallback per event


def plan_rule(rule: Rule) -> RulePlan:
    """Compile one rule (libjq always, to reject what jq rejects; the fast path when it can)."""
    program = jq.compile(rule.jq_match)
    try:
        ast = parse(rule.jq_match)
        run = compile_program(ast)
        requirement = _program_requirement(ast, falsy=True)
    except Unsupported as why:
        return _libjq_plan(rule, program, why.reason)
    except RecursionError:
        return _libjq_plan(rule, program, "nested too deeply")
    except Exception as error:  # a compiler bug must cost speed, never correctness or availability
        return _libjq_plan(rule, program, f"the compiler failed ({type(error).__name__})")
    if requirement is None:
        return RulePlan(rule.name, "compiled", "compiled, not indexed", None, frozenset(), run, program)
    field, values = requirement
    shown = ", ".join(sorted(values))
    reason = f"compiled, indexed on {field} in {{{shown}}}"
    return RulePlan(rule.name, "compiled", reason, field, frozenset(values), run, program)


def _libjq_plan(rule: Rule, program: Any, reason: str) -> RulePlan:
    return RulePlan(rule.name, "libjq", f"libjq: {reason}", None, frozenset(), _libjq_runner(program), program)


def _libjq_runner(program: Any) -> Callable[[Any], Any]:
    def run(data: Any) -> Any:
        try:
            output = first_output(program, data)
        except ValueError as error:
            raise JqError(str(error)) from error
        return NONE if output is _NO_OUTPUT else output

    return run


# -- the index: what a rule provably requires of eventName / eventSource

Requirement = tuple[str, frozenset[str]]


def _program_requirement(node: Node, falsy: bool) -> Requirement | None:
    """Values of a field outside which `node` yields no output (or, if `falsy`, only null/false) and no error.

    The input is always an event object, so `.eventName` itself can never error.
    """
    if isinstance(node, Pipe):
        # The right side only runs on outputs of the left side.
        return _program_requirement(node.left, falsy=False)
    if isinstance(node, Call) and node.name == "select" and len(node.args) == 1:
        return _falsy_requirement(node.args[0])
    if falsy:
        return _falsy_requirement(node)
    return None


def _field_of(node: Node) -> str | None:
    if (
        isinstance(node, Index)
        and isinstance(node.target, Identity)
        and isinstance(node.key, Literal)
        and node.key.value in INDEX_FIELDS
    ):
        return str(node.key.value)
    return None


def _falsy_requirement(node: Node) -> Requirement | None:
    """Outside the values, every output of `node` is null/false (or there is none) and nothing errors."""
    if isinstance(node, Binary):
        if node.op == "==":
            for a, b in ((node.left, node.right), (node.right, node.left)):
                field = _field_of(a)
                if field is not None and isinstance(b, Literal) and type(b.value) is str:
                    return field, frozenset((b.value,))
            return None
        if node.op == "or":
            left, right = _falsy_requirement(node.left), _falsy_requirement(node.right)
            if left is None or right is None or left[0] != right[0]:
                return None
            return left[0], left[1] | right[1]
        if node.op == "and":
            # `a and b` evaluates b only when a is truthy.
            left, right = _falsy_requirement(node.left), _falsy_requirement(node.right)
            if left is not None and right is not None and left[0] == right[0]:
                return left[0], left[1] & right[1]
            if right is not None and _never_fails(node.left) and (left is None or right[0] == "eventName"):
                # eventName is the sharper key; usable since `a` cannot fail on the way to `b`.
                return right
            return left
        return None
    if isinstance(node, Pipe):
        field = _field_of(node.left)
        tail = node.right
        if field is not None and isinstance(tail, Call) and tail.name == "IN" and len(tail.args) == 1:
            values = string_literals(tail.args[0])
            if values is not None:
                return field, frozenset(values)
        return None
    if isinstance(node, Call) and node.name == "IN" and len(node.args) == 2:
        field = _field_of(node.args[0])
        values = string_literals(node.args[1])
        if field is not None and values is not None:
            return field, frozenset(values)
    return None


def _never_fails(node: Node) -> bool:
    """Conservative: one top-level field of the event, a literal, equalities and `and`/`or` of such.

    Each of these has exactly one output on an object input, and cannot raise.
    """
    if isinstance(node, Literal):
        return True
    if isinstance(node, Binary) and node.op in ("and", "or"):
        return _never_fails(node.left) and _never_fails(node.right)
    if isinstance(node, Index):
        return isinstance(node.target, Identity) and isinstance(node.key, Literal) and type(node.key.value) is str
    if isinstance(node, Binary) and node.op in ("==", "!="):
        return _never_fails(node.left) and _never_fails(node.right)
    return False


# -- the matcher

_Entry = tuple[str, Callable[[Any], Any], Any, bool]


class FastMatcher(Matcher):
    """Same results as LibjqMatcher, at native speed for the compiled subset."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        super().__init__(rules)
        self.plans = tuple(plan_rule(rule) for rule in self.rules)
        entries: list[_Entry] = [(p.name, p.run, p.program, p.path == "compiled") for p in self.plans]
        self._entries = entries
        self._unindexed = tuple(i for i, p in enumerate(self.plans) if p.index_field is None)
        self._by_field: dict[str, dict[str, list[int]]] = {field: {} for field in INDEX_FIELDS}
        for i, plan in enumerate(self.plans):
            if plan.index_field is not None:
                for value in plan.index_values:
                    self._by_field[plan.index_field].setdefault(value, []).append(i)
        self._cache: dict[tuple[Any, Any], tuple[_Entry, ...]] = {}
        self.libjq_fallbacks = 0  # (rule, event) pairs the compiled path handed to libjq

    def _candidates(self, key: tuple[str | None, str | None]) -> tuple[_Entry, ...]:
        name, source = key
        chosen = set(self._unindexed)
        if name is not None:
            chosen.update(self._by_field["eventName"].get(name, ()))
        if source is not None:
            chosen.update(self._by_field["eventSource"].get(source, ()))
        selected = tuple(self._entries[i] for i in sorted(chosen))
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[key] = selected
        return selected

    def match_batch(self, events: Sequence[CloudTrailEvent]) -> MatchResult:
        result = MatchResult()
        matches = result.matches
        errors = result.errors
        cache = self._cache
        every_rule = tuple(self._entries)
        for event in events:
            data = event.data
            if type(data) is dict:
                name = data.get("eventName")
                source = data.get("eventSource")
                key = (name if type(name) is str else None, source if type(source) is str else None)
                entries = cache.get(key)
                if entries is None:
                    entries = self._candidates(key)
            else:
                entries = every_rule  # the index assumes an object; anything else visits every rule
            for rule_name, run, program, compiled in entries:
                try:
                    output = run(data)
                    if output is NONE or output is None or output is False:
                        continue
                    if compiled:
                        output = to_output(output)
                        if output is None:  # NaN: libjq hands it back as null, no match
                            continue
                except JqError as error:
                    errors.append(RuleRuntimeError(rule_name, event.position, str(error)))
                    continue
                except Exception:  # NeedsLibjq, or a value too deep for Python's recursion: libjq decides
                    self.libjq_fallbacks += 1
                    try:
                        output = first_output(program, data)
                    except ValueError as error:
                        errors.append(RuleRuntimeError(rule_name, event.position, str(error)))
                        continue
                    if output is _NO_OUTPUT or output is None or output is False:
                        continue
                matches.append(Match(rule_name, event, output))
        return result


def explain(rules: Sequence[Rule]) -> list[tuple[str, str, str]]:
    """Per rule: (name, "compiled" | "libjq", why / what the index knows), for `validate --explain`."""
    return [(plan.name, plan.path, plan.reason) for plan in (plan_rule(rule) for rule in rules)]


def build_matcher(rules: Sequence[Rule], kind: str = "fast") -> Matcher:
    """The matcher by name: "fast" (compiled + index, the default) or "libjq" (the reference)."""
    if kind == "fast":
        return FastMatcher(rules)
    if kind == "libjq":
        from stream_processor.matcher.libjq import LibjqMatcher

        return LibjqMatcher(rules)
    raise ValueError(f"unknown matcher kind {kind!r} (expected 'fast' or 'libjq')")
