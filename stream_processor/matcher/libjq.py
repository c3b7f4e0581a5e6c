"""The reference matcher: each rule's program compiled once by libjq, run per event per rule, in process.

It has no time budget: it is what the compiled path is checked against, not a way to run untrusted rules.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import jq

from stream_processor.matcher.base import Matcher, is_match
from stream_processor.matcher.jqparse import parse
from stream_processor.model import CloudTrailEvent, Match, MatchResult, Rule, RuleRuntimeError

_NO_OUTPUT = object()


class LibjqMatcher(Matcher):
    """Correct by construction (it is jq); the fast path is checked against it."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        super().__init__(rules)
        self._programs = [(rule.name, jq.compile(rule.jq_match)) for rule in self.rules]

    def match_batch(self, events: Sequence[CloudTrailEvent]) -> MatchResult:
        result = MatchResult()
        for event in events:
            for rule_name, program in self._programs:
                try:
                    output = first_output(program, event.data)
                except ValueError as error:
                    result.errors.append(RuleRuntimeError(rule_name, event.position, str(error)))
                    continue
                except (
                    Exception
                ) as error:  # the jq package re-serializes with json.dumps: RecursionError on deep events
                    message = f"the reference matcher cannot run this event ({type(error).__name__})"
                    result.errors.append(RuleRuntimeError(rule_name, event.position, message))
                    continue
                if output is not _NO_OUTPUT and is_match(output):
                    result.matches.append(Match(rule_name, event, output))
        return result


def first_output(program: Any, value: Any) -> Any:
    """The program's first output, or `_NO_OUTPUT`; stops the program after its first output."""
    iterator = iter(program.input_value(value))
    try:
        return next(iterator)
    except StopIteration:
        return _NO_OUTPUT


@functools.lru_cache(maxsize=4096)
def compile_jq(program: str) -> Any:
    """libjq's compiled program, once per distinct text (rule titles and group_by are rendered per alert, and
    validation compiles every program it checks).

    Raises:
        ValueError: the program does not compile.
    """
    return jq.compile(program)


def compiling_together(programs: Iterable[str]) -> frozenset[str]:
    """The programs libjq is shown to compile by one compile of them all, `(p1), (p2), ...`.

    Each `compile_jq` call costs libjq ~1.5 ms (it binds its builtins anew), most of a short command's start-up
    for a file of rules; together they cost one. Only programs our parser reads whole take part: each is then
    one complete expression, so the parentheses cannot pair with anything in it, and a rule's definitions and
    variables stay inside its own. A program that fails, alone or with others, is left out: the caller
    compiles what is not in the set alone, for its own error. What compiled once is remembered (validation,
    then the matcher, ask about the same rules).
    """
    asked = dict.fromkeys(programs)
    whole: list[str] = []
    for program in asked:
        if program in _COMPILED:
            continue
        try:
            parse(program)
        except Exception:  # Unsupported, too deep, a bug of ours: compiled alone
            continue
        whole.append(program)
    if whole:
        try:
            jq.compile(",\n".join(f"({program}\n)" for program in whole))
        except ValueError:
            whole = []
        if len(_COMPILED) + len(whole) > _COMPILED_KEPT:
            _COMPILED.clear()
        _COMPILED.update(whole)
    return frozenset(program for program in asked if program in _COMPILED)


_COMPILED: set[str] = set()
_COMPILED_KEPT = 4096


def event_output(program_text: str, event: CloudTrailEvent) -> Any:
    """A rule's side program (`title`, `group_by`) on one event: its first output, or None when it has none.

    libjq reads the event's own text (the `jq` package would serialise the parsed event again, and fail on
    one nested deeper than Python's recursion allows).

    Raises:
        ValueError: the program failed on this event (jq's message), or could not run at all.
    """
    try:
        output = next(iter(compile_jq(program_text).input_text(event.raw.decode("utf-8", "replace"))), None)
    except ValueError:
        raise
    except Exception as error:  # whatever the event holds, never an escape from the pipeline
        raise ValueError(f"could not run on this event ({type(error).__name__})") from error
    return output
