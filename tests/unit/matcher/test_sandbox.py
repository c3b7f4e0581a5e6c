"""The sandbox refuses rules that could read the environment or other inputs, and nothing else."""

from __future__ import annotations

import jq
import pytest

from stream_processor.matcher.sandbox import sandbox_violations

REFUSED = [
    ("$ENV.AWS_SECRET_ACCESS_KEY", "$ENV"),
    ('select(.eventName == "X") | "\\($ENV.HOME)"', "$ENV"),
    ("env.HOME", "env"),
    ('"key: \\(env | tostring)"', "env"),
    ('"outer \\("inner \\(env.PATH)")"', "env"),
    ("{$ENV}", "$ENV"),
    ("{a: env}", "env"),
    ("{(env.X): 1}", "env"),
    ("{a: if . then 1, env, 2 else 3 end}", "env"),
    ("input", "input"),
    ("[limit(1; inputs)]", "inputs"),
    ("first(inputs)", "inputs"),
    ("halt", "halt"),
    ('halt_error("x")', "halt_error"),
    ("halt_error", "halt_error"),
    ("debug", "debug"),
    ('debug("msg")', "debug"),
    ("stderr", "stderr"),
    ("input_filename", "input_filename"),
    ("get_search_list", "get_search_list"),
    ('import "foo" as foo; .', "import"),
    ('include "foo"; .', "include"),
    ("def env: 1; env", "env"),
    (". as $x | env", "env"),
]

ALLOWED = [
    'select(.eventName == "CreateAccessKey")',
    'select(.eventName == "env")',
    'select(.eventName == "$ENV" or .eventName == "input")',
    '"env: \\(.env) input: \\(.input)"',
    ".env",
    ".input.inputs",
    '."env"',
    '.["env"]',
    "{env: 1}",
    "{env}",
    "{a: 1, input: 2, halt}",
    "{if: 1}",
    "{a: if . then 1 else 2 end, env: 3}",
    "$__loc__",
    'getpath(["a"])',
    'ltrimstr("x")',
    "@sh",
    "# env in a comment\n.a",
    ". as {env: $e} | $e",
    'select(.eventName == "StartSession") | "username: \\(.responseElements.sessionId) target: \\(.target)"',
]


@pytest.mark.parametrize(("program", "word"), REFUSED)
def test_refused_programs_name_what_they_use(program: str, word: str) -> None:
    violations = sandbox_violations(program)
    assert violations, program
    assert any(f"`{word}`" in message for message in violations), violations


@pytest.mark.parametrize("program", ALLOWED)
def test_words_in_strings_fields_and_keys_are_allowed(program: str) -> None:
    assert sandbox_violations(program) == []


@pytest.mark.parametrize("program", ALLOWED)
def test_allowed_programs_are_valid_jq(program: str) -> None:
    # The allowed list is only meaningful if jq reads these programs the way the test assumes.
    jq.compile(program)


def test_message_says_why() -> None:
    (message,) = sandbox_violations("$ENV.PATH")
    assert "environment" in message
    assert "credentials" in message


def test_unreadable_program_is_refused() -> None:
    assert sandbox_violations('"unterminated')


def test_backslash_continued_comment_is_refused() -> None:
    # jq 1.8 reads the second line as part of the comment, older jq as code: do not guess.
    assert sandbox_violations(".a # note \\\n| env")


def test_a_program_nested_too_deeply_to_read_is_refused_not_crashed() -> None:
    program = '"' + '\\("' * 2000 + "x" + '")' * 2000 + '"'
    (message,) = sandbox_violations(program)
    assert "nested too deeply" in message
