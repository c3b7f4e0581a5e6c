"""Regexes run natively only where Python's `re` provably agrees with jq's Oniguruma; the rest go to libjq."""

from __future__ import annotations

import itertools

import jq
import pytest

from stream_processor.matcher.jqparse import Unsupported
from stream_processor.matcher.jqregex import translate

PATTERNS = [
    "a", "^a", "a$", "^$", "a.b", "(a|b)+", "[a-c]", "[^a-c]", "a*?b", "a{2}", "a{1,2}", "\\.", "\\d+", "\\w+",
    "\\s", "\\bfoo\\b", "[\\d,]+", "x|", "()", "a(?:b|c)", "[a-]", ".", "^Create", "Policy$", "[A-Z][a-z]+",
    "\\W", "\\S+", "\\D", "colou?r", "a+?", "(ab){1,}",
]  # fmt: skip
SUBJECTS = [
    "", "a", "ab", "aab", "a\nb", "b\na", "a\n", "\n", "é", "aé", "É", "A", "x y", "foo bar", "foobar", "123",
    "a-b", "İ", "CreateUser", "PutBucketPolicy", "colour", "color", "abab", "a,1", "\t", "\u00a0",
]  # fmt: skip
FLAGS = [None, "i", "g", "gi"]

UNSUPPORTED = ["(?i)a", "(?<n>a)", "\\p{L}", "[[:alpha:]]", "a{,2}", "[a&&b]", "\\h", "a**", "*a", "\\Qa\\E", "\\1"]


@pytest.mark.parametrize(("pattern", "flags"), list(itertools.product(PATTERNS, FLAGS)))
def test_translated_regexes_agree_with_jq(pattern: str, flags: str | None) -> None:
    regex = translate(pattern, flags)
    program = jq.compile(".[] | test($re; $flags)", args={"re": pattern, "flags": flags})
    expected = program.input_value(SUBJECTS).all()
    for subject, want in zip(SUBJECTS, expected, strict=True):
        if regex.ascii_only and not subject.isascii():
            continue  # the matcher hands these to libjq
        assert (regex.pattern.search(subject) is not None) == want, (pattern, flags, subject)


@pytest.mark.parametrize("pattern", UNSUPPORTED)
def test_constructs_without_a_proof_of_equivalence_are_refused(pattern: str) -> None:
    with pytest.raises(Unsupported):
        translate(pattern, None)


@pytest.mark.parametrize("flags", ["x", "n", "s", "l", "p"])
def test_flags_without_a_proof_of_equivalence_are_refused(flags: str) -> None:
    with pytest.raises(Unsupported):
        translate("a", flags)


def test_case_insensitive_non_ascii_pattern_is_refused() -> None:
    # Oniguruma folds some non-ASCII letters onto ASCII ones (the Kelvin sign onto k): not provably the same.
    with pytest.raises(Unsupported):
        translate("\u212a", "i")
