"""The fast matcher: rules compiled to Python closures, dispatched through the rule index.

Each rule is parsed and compiled once; a rule outside the compiled subset runs on libjq (compiled once).
The index (matcher/index.py) analyses each parsed rule into a condition on a few fields of the event,
which holds wherever the rule could match *or fail*, and sends each event only to the rules whose
condition it can satisfy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jq

from stream_processor.config import Rule
from stream_processor.matcher.base import Matcher
from stream_processor.matcher.index import Formula, RuleIndex, Top, condition, render_path
from stream_processor.matcher.jqcompile import NONE, compile_program
from stream_processor.matcher.jqparse import Node, Unsupported, parse
from stream_processor.matcher.jqruntime import JqError, to_output
from stream_processor.matcher.libjq import _NO_OUTPUT, first_output
from stream_processor.model import CloudTrailEvent, Match, MatchResult, RuleRuntimeError


@dataclass(frozen=True, slots=True)
class RulePlan:
    """How one rule runs: the compiled path or libjq, and what events it can match or fail on."""

    name: str
    path: str  # "compiled" | "libjq"
    reason: str
    condition: Formula  # for the index: true on every event where the rule may match or fail
    run: Callable[[Any], Any]  # first output or NONE; raises JqError (a jq error) or NeedsLibjq
    program: Any  # the libjq program, for fallback per event


def plan_rule(rule: Rule) -> RulePlan:
    """Compile one rule (libjq always, to reject what jq rejects; the fast path when it can)."""
    program = jq.compile(rule.jq_match)
    ast: Node | None = None
    try:
        ast = parse(rule.jq_match)
        run = compile_program(ast)
    except Unsupported as why:
        return _libjq_plan(rule, program, why.reason, ast)
    except RecursionError:
        return _libjq_plan(rule, program, "nested too deeply", ast)
    except Exception as error:  # a compiler bug must cost speed, never correctness or availability
        return _libjq_plan(rule, program, f"the compiler failed ({type(error).__name__})", ast)
    return RulePlan(rule.name, "compiled", "compiled", condition(ast), run, program)


def _libjq_plan(rule: Rule, program: Any, reason: str, ast: Node | None) -> RulePlan:
    """libjq runs the rule; the index still reads it when it parsed."""
    requirement = condition(ast) if ast is not None else Top(None, "the index cannot read it either")
    return RulePlan(rule.name, "libjq", f"libjq: {reason}", requirement, _libjq_runner(program), program)


def _libjq_runner(program: Any) -> Callable[[Any], Any]:
    def run(data: Any) -> Any:
        try:
            output = first_output(program, data)
        except ValueError as error:
            raise JqError(str(error)) from error
        return NONE if output is _NO_OUTPUT else output

    return run


# -- the matcher

_Entry = tuple[str, Callable[[Any], Any], Any, bool]


class FastMatcher(Matcher):
    """Same results as LibjqMatcher, at native speed for the compiled subset."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        super().__init__(rules)
        self.plans = tuple(plan_rule(rule) for rule in self.rules)
        entries: list[_Entry] = [(p.name, p.run, p.program, p.path == "compiled") for p in self.plans]
        self.index = RuleIndex([plan.condition for plan in self.plans], entries)
        self.libjq_fallbacks = 0  # (rule, event) pairs the compiled path handed to libjq

    def match_batch(self, events: Sequence[CloudTrailEvent]) -> MatchResult:
        result = MatchResult()
        matches = result.matches
        errors = result.errors
        dispatch = self.index.dispatch  # the rules this event can match or fail (every rule for a non-object)
        for event in events:
            data = event.data
            entries = dispatch(data)
            for rule_name, run, program, compiled in entries:
                try:
                    output = run(data)
                    if output is NONE or output is None or output is False:
                        continue
                    if compiled:
                        output = to_output(output)
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
    """Per rule: (name, "compiled" | "libjq", why, then its index key or why it has none), for `validate --explain`."""
    matcher = FastMatcher(rules)
    return [
        (plan.name, plan.path, f"{plan.reason}, {matcher.index.describe(i)}") for i, plan in enumerate(matcher.plans)
    ]


def index_fields(rules: Sequence[Rule]) -> list[str]:
    """The fields the index reads on every event for these rules (dotted paths), for `validate --explain`."""
    return [render_path(path) for path in FastMatcher(rules).index.fields]


def build_matcher(rules: Sequence[Rule], kind: str = "fast") -> Matcher:
    """The matcher by name: "fast" (compiled + index, the default) or "libjq" (the reference)."""
    if kind == "fast":
        return FastMatcher(rules)
    if kind == "libjq":
        from stream_processor.matcher.libjq import LibjqMatcher

        return LibjqMatcher(rules)
    raise ValueError(f"unknown matcher kind {kind!r} (expected 'fast' or 'libjq')")
