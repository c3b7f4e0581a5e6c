"""Go (RE2) regex syntax in rules written for cloudtrail-tattletail, read the way tattletail read it.

tattletail ran rules with gojq, whose `test`, `match`, `capture`, `scan`, `split/2`, `splits`, `sub` and `gsub` use
Go's regexp (RE2 syntax); jq uses Oniguruma. Where the same text means something else, a tattletail rule would
load here and then never match (Oniguruma refuses the pattern at run time, which counts as no match):

- `(?P<name>re)`, Go's named group: Oniguruma has no `P` group option. Translated to `(?<name>re)`.
- `\\pL`, `\\PN`, one-letter Unicode classes without braces: Oniguruma reads `\\p` then a literal letter.
  Translated to `\\p{L}`, `\\P{N}`.
- `(?U)` (ungreedy by default) has no Oniguruma equivalent: refused, with the fix (lazy quantifiers `*?`, `+?`).
  `-U` (greedy, Go's default anyway) is dropped.

Only string literals in regex position are touched (the first argument of those builtins); the same text in
any other string keeps its meaning. What stays different is documented in docs/deploy.md (migration): `\\d`,
`\\w`, `\\s` and `\\b` are ASCII in Go and Unicode in Oniguruma.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from stream_processor.matcher.jqlex import JqSyntaxError, Token, tokenize

REGEX_BUILTINS = frozenset({"test", "match", "capture", "scan", "splits", "sub", "gsub"})
REGEX_BUILTINS_WITH_TWO_ARGUMENTS = frozenset({"split"})  # split/1 splits on a plain string, split/2 on a regex
_FLAG_LETTERS = frozenset("imsU")


@dataclass(frozen=True, slots=True)
class Translation:
    """A jq program with its regex literals in Oniguruma syntax, what changed, and what cannot be translated."""

    program: str
    changes: tuple[str, ...] = ()
    refusals: tuple[str, ...] = field(default=())


@functools.lru_cache(maxsize=1024)
def translate_program(program: str) -> Translation:
    """`program` with every Go-only construct in its regex literals rewritten for Oniguruma.

    A program that does not lex is returned unchanged: its compile error is reported elsewhere. Cached:
    validation translates a file's programs once to compile them together, then once per rule it checks.
    """
    if "(?" not in program and "\\p" not in program and "\\P" not in program:
        return Translation(program)  # the common case, without lexing
    try:
        tokens = tokenize(program).tokens
    except JqSyntaxError:
        return Translation(program)
    edits: list[tuple[int, int, str]] = []
    changes: list[str] = []
    refusals: list[str] = []
    for literal in _regex_literals(tokens):
        pattern = _plain_text(literal)
        if pattern is None:
            continue
        rewritten, found, refused = translate_pattern(pattern)
        refusals.extend(f"regex {json.dumps(pattern)}: {reason}" for reason in refused)
        if rewritten != pattern:
            edits.append((literal.pos, literal.pos + len(literal.text), json.dumps(rewritten, ensure_ascii=False)))
            changes.extend(f"regex {json.dumps(pattern)}: {what}" for what in found)
    for start, end, text in sorted(edits, reverse=True):
        program = program[:start] + text + program[end:]
    return Translation(program, tuple(changes), tuple(refusals))


def _regex_literals(tokens: tuple[Token, ...] | list[Token]) -> list[Token]:
    """String tokens that are the first argument of a regex builtin, interpolations included."""
    found: list[Token] = []
    for index, token in enumerate(tokens):
        if token.kind == "STR":
            for part in token.parts:
                if isinstance(part, tuple):
                    found.extend(_regex_literals(part))
        if token.kind != "IDENT" or index + 3 >= len(tokens):
            continue
        opening, literal, after = tokens[index + 1], tokens[index + 2], tokens[index + 3]
        if opening.text != "(" or literal.kind != "STR" or after.kind != "OP" or after.text not in (";", ")"):
            continue
        if token.text in REGEX_BUILTINS or (token.text in REGEX_BUILTINS_WITH_TWO_ARGUMENTS and after.text == ";"):
            found.append(literal)
    return found


def _plain_text(token: Token) -> str | None:
    """The literal's text, or None when it interpolates (built at run time: not ours to rewrite)."""
    if len(token.parts) == 1 and isinstance(token.parts[0], str):
        return token.parts[0]
    return None


def translate_pattern(pattern: str) -> tuple[str, list[str], list[str]]:
    """(Oniguruma pattern, what was translated, what cannot be) for one Go regex."""
    out: list[str] = []
    changes: list[str] = []
    refusals: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            letter = pattern[i + 2] if i + 2 < len(pattern) else ""
            if escaped in "pP" and letter.isalpha() and letter.isascii():
                out.append(f"\\{escaped}{{{letter}}}")
                changes.append(f"\\{escaped}{letter} (a one-letter Unicode class) reads \\{escaped}{{{letter}}}")
                i += 3
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
            elif char == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                if end != -1:
                    out.append(pattern[i : end + 2])
                    i = end + 2
                    continue
            out.append(char)
            i += 1
            continue
        if char == "[":
            in_class = True
            out.append(char)
            i += 1
            if pattern.startswith("^", i):
                out.append("^")
                i += 1
            if pattern.startswith("]", i):  # a leading ] is a literal in Go
                out.append("]")
                i += 1
            continue
        if pattern.startswith("(?P<", i):
            out.append("(?<")
            changes.append("(?P<name>...) (Go's named group) reads (?<name>...)")
            i += 4
            continue
        if pattern.startswith("(?", i):
            flags_end = i + 2
            while flags_end < len(pattern) and (pattern[flags_end] in _FLAG_LETTERS or pattern[flags_end] == "-"):
                flags_end += 1
            closer = pattern[flags_end] if flags_end < len(pattern) else ""
            flags = pattern[i + 2 : flags_end]
            if flags and closer in (")", ":") and "U" in flags:
                on, _, off = flags.partition("-")
                if "U" in on:
                    refusals.append(
                        f"(?{flags}{closer} asks for ungreedy quantifiers (Go's U flag), which Oniguruma does not "
                        "have: drop U and make each quantifier lazy instead (*?, +?, ??, {n,m}?)"
                    )
                off = off.replace("U", "")
                kept = on + (f"-{off}" if off else "")
                changes.append(f"(?{flags}{closer}: U dropped (greedy is the default)")
                out.append(f"(?{kept}{closer}" if kept or closer == ":" else "")
                i = flags_end + 1
                continue
        out.append(char)
        i += 1
    return "".join(out), changes, refusals


__all__ = ["Translation", "translate_pattern", "translate_program"]
