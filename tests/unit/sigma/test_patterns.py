"""Sigma's regex subset, wildcards and CIDR networks as canonical regexes: same meaning in every engine,
accepted by the compiled matcher, and a reason for everything refused."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import jq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processor.matcher.jqregex import compile_regex
from stream_processor.matcher.jqruntime import NeedsLibjq
from stream_processor.sigma.patterns import (
    PatternError,
    RegexOptions,
    ascii_lower,
    ipv4_network_regex,
    octet_regex,
    translate_regex,
)

ATOMS = ["a", "B", "k", "\\.", "-", ".", "[a-cK]", "[^a\\]]", "[Z-a]", "\\d", "\\W", "\\s", "\\n", "\\x41", " ",
         "&", "[&x]", "[^&]", "\\/", "\\*", "\u00e9", "\\t"]
SUBJECTS = st.text(alphabet="aAbBkK\u212a.-_ \n\t1&]^\u00e9\u00df\u0663Z[`", max_size=8)


@st.composite
def sigma_regex(draw: st.DrawFn) -> str:
    def sequence(depth: int) -> str:
        out = []
        for _ in range(draw(st.integers(1, 3))):
            atom = draw(st.sampled_from(ATOMS))
            if depth > 0 and draw(st.integers(0, 6)) == 0:
                atom = draw(st.sampled_from(["^", "$"]))  # an anchor inside a group: no quantifier after it
                out.append(atom)
                continue
            if depth < 2 and draw(st.integers(0, 4)) == 0:
                kind = "(?:" if draw(st.booleans()) else "("
                atom = kind + sequence(depth + 1) + "|" + sequence(depth + 1) + ")"
            out.append(atom + draw(st.sampled_from(["", "", "*", "+", "?", "{1,2}", "{2}", "{0,}", "+?", "??"])))
        return "".join(out)

    branches = [sequence(0) for _ in range(draw(st.integers(1, 2)))]
    anchored = [draw(st.sampled_from(["", "^"])) + b + draw(st.sampled_from(["", "$"])) for b in branches]
    return "|".join(anchored)


@settings(max_examples=600, deadline=None)
@given(sigma_regex(), st.lists(st.sampled_from("ims"), unique=True), st.lists(SUBJECTS, min_size=1, max_size=6))
def test_translated_regexes_search_like_pcre(pattern: str, flags: list[str], subjects: list[str]) -> None:
    # Python's re with ASCII is PCRE's meaning for this subset (no UCP: \d is [0-9], i folds ASCII letters)
    options = RegexOptions(ignore_case="i" in flags, multiline="m" in flags, dotall="s" in flags)
    python_flags = re.ASCII
    for flag, value in (("i", re.I), ("m", re.M), ("s", re.S)):
        python_flags |= value if flag in flags else 0
    try:
        translated = translate_regex(pattern, options)
    except PatternError as error:  # the two refusals this grammar can reach
        assert (options.multiline and "m modifier" in str(error)) or "a quantifier on ^ or $" in str(error)
        return
    reference = re.compile(pattern, python_flags)
    program = jq.compile(f"test({_jq_string(translated)})")
    compiled = compile_regex(translated, None)  # the matcher's compiled path (RE2) takes every translation
    for subject in subjects:
        want = reference.search(subject) is not None
        text = ascii_lower(subject) if options.ignore_case else subject
        assert (re.search(translated, text) is not None) == want, (pattern, translated, subject)
        assert next(iter(program.input_value(text))) == want, (pattern, translated, subject)
        with contextlib.suppress(NeedsLibjq):  # a subject the compiled path hands to libjq, checked just above
            assert compiled.test(text) == want


def _jq_string(text: str) -> str:
    from stream_processor.sigma.jqexpr import string

    return string(text)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("a(?=b)", "group extension"),
        ("(?i)a", "group extension"),
        ("(a)\\1", "escape '\\1'"),
        ("\\bword", "escape '\\b'"),
        ("a*+", "possessive"),
        ("a{,3}", "'{,'"),
        ("[[:alpha:]]", "POSIX"),
        ("a**", "directly after another"),
        ("*a", "without anything to repeat"),
        ("(a", "unclosed '('"),
        ("a)", "unbalanced ')'"),
        ("[a", "unclosed '['"),
        ("a\\", "lone backslash"),
        ("[z-a]", "out of order"),
        ("a{3,1}", "reversed"),
        ("a{5000}", "above"),
        ("\\x4", "two hex digits"),
        ("\\p{L}", "escape '\\p'"),
    ],
    ids=lambda value: value,
)
def test_what_the_subset_lacks_is_refused_with_a_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=re.escape(reason)):
        translate_regex(pattern, RegexOptions())


def test_multiline_anchors_only_at_the_edges() -> None:
    assert translate_regex("^a|b$", RegexOptions(multiline=True)) == "(?:^|\n)a|b(?:$|\n)"
    with pytest.raises(PatternError, match="inside a group"):
        translate_regex("(^a)", RegexOptions(multiline=True))
    with pytest.raises(PatternError, match="start and end"):
        translate_regex("a^b", RegexOptions(multiline=True))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255))
def test_octet_ranges_match_their_numbers_and_nothing_else(a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    regex = re.compile(octet_regex(low, high))
    for number in range(256):
        assert (regex.fullmatch(str(number)) is not None) == (low <= number <= high), (low, high, number)
    assert regex.fullmatch(f"0{low}") is None  # no leading zeros: CloudTrail writes none


ANY_IPV4 = str(ipaddress.IPv4Address(0))  # the whole internet as a CIDR's base, and an address of its own
PRIVATE_TEN = str(ipaddress.ip_network((10 << 24, 8)))  # RFC 1918's class A block


@pytest.mark.parametrize("cidr", [PRIVATE_TEN, "172.16.0.0/12", "192.168.1.128/25", f"{ANY_IPV4}/0", "203.0.113.7/32"])
def test_ipv4_networks_match_their_addresses(cidr: str) -> None:
    network = ipaddress.ip_network(cidr)
    regex = re.compile(ipv4_network_regex(cidr))
    for address in ["10.1.2.3", "172.31.255.255", "172.32.0.0", "192.168.1.127", "192.168.1.200", "203.0.113.7",
                    "8.8.8.8", "255.255.255.255", ANY_IPV4]:
        assert (regex.search(address) is not None) == (ipaddress.ip_address(address) in network), (cidr, address)
    for text in ["10.01.2.3", "10.1.2", "10.1.2.3.4", "x10.1.2.3", "10.1.2.256"]:
        assert regex.search(text) is None, (cidr, text)


def test_ipv6_networks_are_refused() -> None:
    with pytest.raises(PatternError, match="IPv6"):
        ipv4_network_regex("2001:db8::/32")
