"""Refuse rules that could read the worker's environment, files or other inputs, or talk past the alert.

A rule's output ends up in a Slack channel or an e-mail; a rule author who can write `$ENV` could post
the worker's AWS credentials there. The check works on jq's tokens, so words inside string literals
(`.eventName == "env"`) and field names (`.env`, `{input: 1}`) are not mistaken for the builtins.
"""

from __future__ import annotations

from collections.abc import Sequence

from stream_processor.matcher.jqlex import JqSyntaxError, Token, tokenize

_ENVIRONMENT = "rules may not read the worker's environment (it could leak credentials into an alert)"
_INPUTS = "a rule sees one event at a time and may not read other inputs"
_FILESYSTEM = "rules may not read the worker's file system layout"
_HALT = "a rule may not stop the worker"
_STDERR = "a rule may not write to the worker's stderr (it could leak event data into logs or break the KCL protocol)"
_MODULES = "rules may not load jq modules from the file system"

REFUSED_BUILTINS: dict[str, str] = {
    "env": _ENVIRONMENT,
    "input": _INPUTS,
    "inputs": _INPUTS,
    "input_filename": _FILESYSTEM,
    "get_search_list": _FILESYSTEM,
    "get_prog_origin": _FILESYSTEM,
    "get_jq_origin": _FILESYSTEM,
    "modulemeta": _MODULES,
    "halt": _HALT,
    "halt_error": _HALT,
    "debug": _STDERR,
    "stderr": _STDERR,
}
REFUSED_VARIABLES: dict[str, str] = {"$ENV": _ENVIRONMENT}
REFUSED_KEYWORDS: dict[str, str] = {"import": _MODULES, "include": _MODULES, "module": _MODULES}


def sandbox_violations(program: str) -> list[str]:
    """What in `program` a rule may not use, one message per finding; empty when the rule is allowed.

    A program the lexer cannot read is refused too: what cannot be checked cannot be trusted.
    """
    try:
        lexed = tokenize(program)
        found: list[str] = []
        if lexed.ambiguous_comment:
            found.append("has a comment ending in a backslash: jq versions disagree on whether the next line is code")
        _scan(lexed.tokens, found)
    except JqSyntaxError as error:
        return [f"cannot be checked: {error}"]
    except RecursionError:
        return ["is nested too deeply to be checked (string interpolations inside string interpolations)"]
    unique: list[str] = []
    for message in found:
        if message not in unique:
            unique.append(message)
    return unique


def _scan(tokens: Sequence[Token], found: list[str]) -> None:
    brackets: list[str] = []
    for index, token in enumerate(tokens):
        kind, text = token.kind, token.text
        if kind == "STR":
            for part in token.parts:
                if isinstance(part, tuple):
                    _scan(part, found)
        elif kind == "OP":
            if text in ("(", "[", "{"):
                brackets.append(text)
            elif text in (")", "]", "}") and brackets:
                brackets.pop()
        elif kind == "KEYWORD" and text in ("if", "end") and not _is_object_key(tokens, index, brackets):
            # `if ... end` may hold bare commas inside an object value: `{a: if . then 1, env, 2 else 3 end}`.
            if text == "if":
                brackets.append("if")
            elif brackets:
                brackets.pop()
        elif kind == "VAR" and text in REFUSED_VARIABLES:
            found.append(f"uses `{text}`: {REFUSED_VARIABLES[text]}")
        elif kind == "KEYWORD" and text in REFUSED_KEYWORDS and not _is_object_key(tokens, index, brackets):
            found.append(f"uses `{text}`: {REFUSED_KEYWORDS[text]}")
        elif kind == "IDENT":
            if "::" in text:
                found.append(f"uses `{text}`: {_MODULES}")
            elif text in REFUSED_BUILTINS and not _is_object_key(tokens, index, brackets):
                found.append(f"uses `{text}`: {REFUSED_BUILTINS[text]}")


def _is_object_key(tokens: Sequence[Token], index: int, brackets: list[str]) -> bool:
    """`{env: 1}` and the shorthand `{env}` (= `{env: .env}`) name a key, not the builtin.

    In jq's grammar an object value cannot contain a bare `,`, so right after `{` or `,` directly inside
    braces only a key can start; a key word is followed by `:`, `,` or `}`.
    """
    if not brackets or brackets[-1] != "{" or index == 0:
        return False
    before, after = tokens[index - 1], tokens[index + 1]
    return before.kind == "OP" and before.text in ("{", ",") and after.kind == "OP" and after.text in (":", ",", "}")
