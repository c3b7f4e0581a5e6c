"""Compiled regexes run on RE2 in linear time and give jq's (Oniguruma's) answers, `match` output included."""

from __future__ import annotations

import json
import os
import time
from importlib.resources import files
from typing import Any

import jq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stream_processor.matcher import jqregex
from stream_processor.matcher.jqparse import Unsupported
from stream_processor.matcher.jqregex import class_ranges, compile_regex
from stream_processor.matcher.jqruntime import NeedsLibjq
from tests.unit.matcher.differential import same

# Every construct the translator accepts, with the escapes and classes whose meaning is Oniguruma's own.
PATTERNS = [
    "a", "^a", "a$", "^$", "a.b", "(a|b)+", "[a-c]", "[^a-c]", "a*?b", "a{2}", "a{1,2}", "\\.", "\\d+", "\\w+",
    "\\s", "\\bfoo\\b", "[\\d,]+", "x|", "()", "a(?:b|c)", "[a-]", ".", "^Create", "Policy$", "[A-Z][a-z]+",
    "\\W", "\\S+", "\\D", "colou?r", "a+?", "(ab){1,}", "\\h", "\\H", "\\q", "\\ ", "\\u00e9", "\\x41", "\\x{e9}",
    "\\x{1F600}", "\\012", "\\0", "\\e", "\\a", "\\t\\n", "\\A", "\\z", "\\Z", "a\\Z", "\\Aa", "\\p{L}+", "\\p{^L}",
    "\\P{Lu}", "\\p{Greek}", "[[:alpha:]]", "[[:^alpha:]]+", "[[:punct:]]", "[[:space:]]", "[:alpha:]", "[\\w-]",
    "[\\]]", "[]a]", "[^]]", "a{,2}", "{", "a{", "}", "]", "(?<name>a)(b)?", "(?<x>a)|(?<y>b)", "(?i)a", "(?i:a)b",
    "a(?i)b|c", "(?-i)a", "(?s).", "(?#comment)a", "(a)?b", "(a*)b", "a|", "a*", "(?:a|)*b", "ss", "k", "[a-z]+",
    "[^k]", "é", "É", ".+", "\\.\\*", "x{0}", "(a){0}", "\\w\\b", "a\\x{20}b", "a b c", "a\\ b", "[ ]", "a#comment",
    "a+ b", "(?:)", "|", "(?'q'x)", "[\\x41-\\x43]", "[\\t\\n]", "[\\b]", "\\bé", "(?<a>x)(?<a>y)", "a{2}?",
]  # fmt: skip
SUBJECTS = [
    "", "a", "ab", "aab", "a\nb", "b\na", "a\n", "\n", "é", "aé", "É", "A", "x y", "foo bar", "foobar", "123", "a-b",
    "İ", "CreateUser", "PutBucketPolicy", "colour", "color", "abab", "a,1", "\t", "\u00a0", "ß", "SS", "\u212a", "k",
    "😀a", "a😀b", "٣4", "_", "a\u2028b", "aaa", "AbC dEf", "x.y", "\\", "[", "]", "-", "{1}", "a{1,2}", "éa😀",
    "\r\n", "Straße", "xy", "\b",
]  # fmt: skip
FLAGS = [None, "g", "i", "gi", "x", "gx", "p", "s", "m", "gn"]

UNSUPPORTED = [
    "(a)\\1", "\\k<n>", "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(?>a)", "a*+", "a++", "a?+", "\\G", "\\K", "\\X",
    "\\R", "\\y", "\\N", "\\O", "\\Qa\\E", "(?m)a", "(?x)a", "\\xe9", "\\x{110000}", "\\pL", "(a|)*", "(a*)+",
    "(a?){2}", "a{1001}", "a**", "*a", "(", ")", "[z-a]", "[]", "\\cA", "\\101", "(?i)é", "[[:alpha:]]", "(?:^)*",
    "(?:a|^)*", "(?i)[\\w-]", "(?i)[[:alpha:]]",
]  # fmt: skip


def _libjq_matches(pattern: str, flags: str | None) -> list[Any]:
    program = jq.compile('[.[] | try [match($re; $flags)] catch "error"]', args={"re": pattern, "flags": flags})
    return list(program.input_value(SUBJECTS).first())


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: f"flags={f}")
@pytest.mark.parametrize("pattern", PATTERNS)
def test_match_output_is_jqs(pattern: str, flags: str | None) -> None:
    # GIVEN a pattern the translator accepts, WHEN matched against each subject, THEN jq's exact `match` array.
    if pattern == "[[:alpha:]]" and flags and "i" in flags:
        pytest.skip("POSIX brackets under `i` go to libjq")
    try:
        regex = compile_regex(pattern, flags)
    except Unsupported as why:
        assert flags and ("i" in flags or "n" in flags), f"{pattern!r} refused: {why.reason}"
        return
    expected = _libjq_matches(pattern, flags)
    checked = 0
    for subject, want in zip(SUBJECTS, expected, strict=True):
        try:
            got, found = regex.matches(subject), regex.test(subject)
        except NeedsLibjq:
            continue
        checked += 1
        assert want != "error", (pattern, flags, subject)
        assert same(got, want), (pattern, flags, subject, got, want)
        assert [list(m) for m in got] == [list(m) for m in want], "key order differs"
        assert found == bool(want)
    assert checked >= len(SUBJECTS) // 2


@pytest.mark.parametrize("pattern", UNSUPPORTED)
def test_constructs_re2_cannot_mirror_are_refused(pattern: str) -> None:
    flags = "i" if pattern == "[[:alpha:]]" else None
    with pytest.raises(Unsupported):
        compile_regex(pattern, flags)


@pytest.mark.parametrize(("pattern", "flags"), [("a", "l"), ("a*", "n"), ("a|", "gn"), ("a", "q"), ("a", "gq")])
def test_flags_without_an_exact_translation_are_refused(pattern: str, flags: str) -> None:
    with pytest.raises(Unsupported):
        compile_regex(pattern, flags)


@pytest.mark.parametrize(
    ("pattern", "flags", "subject"),
    [
        ("a$", None, "a\n"),  # Oniguruma's $ also matches before a final newline
        ("\\bfoo", None, "é foo"),  # RE2's \b is ASCII-only
        ("ss", "i", "ß"),  # Oniguruma folds ß to ss
        ("", "g", "éa"),  # jq resumes an empty global match one byte on, inside a character
    ],
)
def test_corners_hand_the_subject_to_libjq(pattern: str, flags: str | None, subject: str) -> None:
    regex = compile_regex(pattern, flags)
    with pytest.raises(NeedsLibjq):
        regex.matches(subject)


@pytest.mark.parametrize(
    "pattern",
    ["^(\\w+\\s?)*$", "(a+)+$", "(a|aa)+b", "^(([a-z])+.)+[A-Z]([a-z])+$", "(\\d+)*x", "(.*a){12}"],
)
def test_backtracking_patterns_run_in_linear_time(pattern: str) -> None:
    # Oniguruma and Python's re take seconds to minutes on these; RE2 answers in microseconds.
    regex = compile_regex(pattern, None)
    subject = "a" * 45 + "!" + "1" * 30
    start = time.perf_counter()
    for _ in range(10):
        regex.test(subject)
        regex.matches(subject)
    assert time.perf_counter() - start < 0.5


def test_unicode_classes_come_from_libjq() -> None:
    # \d is Oniguruma's Decimal_Number, whatever Unicode version RE2 ships: probed from libjq itself.
    digits = class_ranges("\\d", False)
    assert (0x30, 0x39) in digits
    assert any(lo <= 0x663 <= hi for lo, hi in digits)  # ARABIC-INDIC DIGIT THREE
    regex = compile_regex("^\\d+$", None)
    assert regex.test("٣4")
    assert not regex.test("x")


# -- generated regexes: random compositions of the constructs above, against libjq's `match`

REGEX_EXAMPLES = int(os.environ.get("MATCHER_REGEX_EXAMPLES", "300"))

ATOMS = (
    "a", "b", "é", "😀", " ", "-", ".", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\h", "\\x{e9}", "\\x41", "\\t",
    "\\.", "\\ ", "[a-c]", "[^a-c]", "[[:alpha:]]", "[[:digit:][:space:]]", "\\p{L}", "\\P{Lu}", "[é-ü]", "[\\w-]",
    "\\p{Greek}", "[a\\]]", "ss", "k", "\\012", "\\e", "{", "a{,2}", "}", "\\u", "\\q", "(?#c)", "[A-Z]", "#x\n",
)  # fmt: skip
ANCHORS = ("^", "$", "\\A", "\\z", "\\Z", "\\b", "\\B")
QUANTIFIERS = ("", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{1,2}", "{0,}", "{1,2}?")
REGEX_SUBJECTS = (
    "", "a", "ab", "aab", "ba", "é", "aé b", "A B", "a\nb", "a\n", "😀a", "ab-c", "x1 y2", "\u0391\u0392\u03b3", "  ",
    "a.b", "abcabc", "Straße", "ss", "\u212a", "a\tb", "ü-é", "]", "\u017f", "K", "{}", "a{,2}", "u\n", "#x",
)  # fmt: skip


@st.composite
def regexes(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.integers(min_value=0, max_value=9 if depth < 2 else 6))
        if kind <= 5:
            parts.append(draw(st.sampled_from(ATOMS)) + draw(st.sampled_from(QUANTIFIERS)))
        elif kind == 6:
            parts.append(draw(st.sampled_from(ANCHORS)))
        elif kind == 7:
            inner = draw(regexes(depth=depth + 1))
            opener = draw(st.sampled_from(["(", "(?:", "(?<n>", "(?i:"]))
            parts.append(f"{opener}{inner}){draw(st.sampled_from(QUANTIFIERS))}")
        elif kind == 8:
            parts.append(f"(?:{draw(regexes(depth=depth + 1))}|{draw(regexes(depth=depth + 1))})")
        else:
            parts.append("(?i)")
    return "".join(parts)


@settings(max_examples=REGEX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regexes(), flags=st.sampled_from([None, "g", "gi", "x", "gp", "gn", "s"]))
def test_generated_regexes_match_like_jq(pattern: str, flags: str | None) -> None:
    try:
        regex = compile_regex(pattern, flags)
    except Unsupported:
        assume(False)
        return
    program = jq.compile('[.[] | try [match($re; $flags)] catch "error"]', args={"re": pattern, "flags": flags})
    expected = program.input_value(list(REGEX_SUBJECTS)).first()
    for subject, want in zip(REGEX_SUBJECTS, expected, strict=True):
        try:
            got = regex.matches(subject)
        except NeedsLibjq:
            continue
        assert want != "error", (pattern, flags, subject)
        assert same(got, want), (pattern, flags, subject, got, want)
        assert regex.test(subject) == bool(want)


def test_the_shipped_shorthand_classes_are_what_the_installed_libjq_reads() -> None:
    shipped = json.loads((files("stream_processor.matcher") / jqregex.SHIPPED_CLASSES).read_text("utf-8"))
    assert shipped == jqregex.shorthand_tables(), "jq changed: run `make regex-classes` and commit the file"


def test_a_shorthand_class_is_read_from_the_shipped_table_not_from_libjq(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(onig_class: str, icase: bool) -> tuple[tuple[int, int], ...]:
        raise AssertionError(f"probed {onig_class}")

    jqregex.class_ranges.cache_clear()
    monkeypatch.setattr(jqregex, "probe_class", no_probe)
    try:
        assert (0x30, 0x39) in jqregex.class_ranges("\\d", False)
        with pytest.raises(AssertionError, match="probed"):
            jqregex.class_ranges("[[:alpha:]]", False)  # not shipped: read from libjq
    finally:
        jqregex.class_ranges.cache_clear()


def test_the_installed_jq_version_is_read_without_importlib_metadata() -> None:
    import importlib.metadata

    assert jqregex._jq_version() == importlib.metadata.version("jq")


def test_another_jq_release_reads_the_classes_again(monkeypatch: pytest.MonkeyPatch) -> None:
    jqregex._shipped_classes.cache_clear()
    monkeypatch.setattr(jqregex, "_jq_version", lambda: "0.0.1")
    try:
        assert jqregex._shipped_classes() == {}
    finally:
        monkeypatch.undo()
        jqregex._shipped_classes.cache_clear()
