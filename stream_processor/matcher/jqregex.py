"""jq's regexes (Oniguruma, Perl_NG syntax, UTF-8) run by RE2, in time linear in the subject.

The pattern is translated to RE2 syntax construct by construct, each one with Oniguruma's meaning as jq
1.8 uses it; what RE2 cannot express with exactly that meaning (backreferences, lookaround, atomic and
possessive groups, `\\G`, `\\K`, `\\X`, the `l` and `n` flags, a repeated group that can match empty and
holds a capture...) raises `Unsupported`, so the rule runs on libjq.

Character classes whose meaning depends on Unicode tables (`\\w`, `\\d`, `\\s`, `[[:alpha:]]`, `\\p{...}`,
any bracket class holding one of them) are not guessed: their code points are read once from the
installed libjq itself (one `match` over a string of every code point) and written as explicit RE2
ranges, so the two engines agree whatever Unicode version each ships. The shorthands' ranges for the jq
release the lock pins ship in `shorthand_classes.json` (reading one costs a worker 0.2-0.4 s at start-up);
`tests/unit/matcher/test_regex.py` checks them against libjq, and with another jq they are read again.

Three corners are decided per subject instead (the subject goes to libjq, `NeedsLibjq`): `$`/`\\Z` on a
subject ending in a newline (Oniguruma's `$` also matches before it), `\\b`/`\\B` on a non-ASCII subject
(RE2's word boundary is ASCII-only), and case-insensitive matching on a subject holding a character whose
case folding is several characters (Oniguruma folds `ß` to `ss`, RE2 does not).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import jq
import re2

from stream_processor.matcher.jqparse import Unsupported
from stream_processor.matcher.jqruntime import JqError, NeedsLibjq, error_text, type_name

# Oniguruma's repeat limit is 100000; RE2's is 1000, so larger counts are refused.
_MAX_REPEAT = 1000
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")
# Escaped letters that Oniguruma (Perl_NG syntax) reads as the letter itself, found by probing libjq.
_LITERAL_ESCAPES = frozenset("hijlmquvEFHIJLTUV")
_LITERAL_ESCAPES_IN_CLASS = frozenset("ghijlmqvyzABEFGHIJKLMNOQRTUVXYZ")
_CONTROL_ESCAPES = {"a": 0x07, "e": 0x1B, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09}
_SHORTHANDS = frozenset("dDsSwW")
_ANCHORS = (r"\A", r"\z", r"\b", r"\B")
_ZERO_WIDTH = frozenset({r"\A", r"\z", r"\b", r"\B", ""})  # anchors and comments: they consume nothing
# Whitespace the `x` flag skips outside classes (ASCII only: a pattern with other spaces under x is refused).
_EXTENDED_SPACE = frozenset(" \t\n\r\f\v")
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}")
_VALID_FLAGS = frozenset("gixnsplm")


@functools.cache
def _multi_fold() -> frozenset[str]:
    """Characters whose full case folding is several characters: Oniguruma matches them against sequences."""
    return frozenset(chr(c) for c in range(sys.maxunicode + 1) if len(chr(c).casefold()) > 1)


@dataclass(frozen=True, slots=True)
class Regex:
    """A translated pattern and the per-subject guards its translation needs."""

    regexp: Any  # re2._Regexp
    names: tuple[str | None, ...]  # capture group names, in group order
    global_: bool
    ascii_subject: bool  # uses \b or \B
    newline_end: bool  # uses $ or \Z
    fold_guard: bool  # case-insensitive somewhere
    required: str  # a substring every match contains: without it there is no match, and no need to ask RE2
    required_folded: str  # the same, lowercased, for a case-insensitive run (checked on ASCII subjects)

    def _cannot_match(self, subject: str) -> bool:
        if self.required:
            return self.required not in subject
        if self.required_folded and subject.isascii():
            return self.required_folded not in subject.lower()
        return False

    def _encode(self, subject: str) -> bytes:
        if self.ascii_subject and not subject.isascii():
            raise NeedsLibjq("word boundary on a non-ASCII subject")
        if self.newline_end and subject.endswith("\n"):
            raise NeedsLibjq("end anchor on a subject ending in a newline")
        if self.fold_guard and not subject.isascii() and not _multi_fold().isdisjoint(subject):
            raise NeedsLibjq("case-insensitive match on a character with a multi-character folding")
        try:
            return subject.encode()
        except UnicodeEncodeError as error:
            raise NeedsLibjq("lone surrogate in the subject") from error

    def test(self, subject: str) -> bool:
        if self._cannot_match(subject):
            return False
        encoded = self._encode(subject)
        return self.regexp._regexp.Match(_UNANCHORED, encoded, 0, len(encoded))[0][0] >= 0  # type: ignore[no-any-return]

    def spans(self, subject: str) -> list[list[tuple[int, int]]]:
        """jq's search loop: one span list (whole match, then each group; (-1, -1) if unset) per match."""
        if self._cannot_match(subject):
            return []
        encoded = self._encode(subject)
        end = len(encoded)
        match = self.regexp._regexp.Match
        found: list[list[tuple[int, int]]] = []
        start = 0
        while True:
            spans = match(_UNANCHORED, encoded, start, end)
            b, e = spans[0]
            if b < 0:
                break
            found.append(spans)
            if b == e:
                # jq resumes one byte further: inside a multi-byte character Oniguruma's answer is odd.
                if e < end and encoded[e] >= 0x80:
                    raise NeedsLibjq("empty match before a non-ASCII character")
                start = e + 1
            else:
                start = e
            if not self.global_ or start > end:
                break
        if found and not subject.isascii():
            return [[_char_span(encoded, span) for span in spans] for spans in found]
        return found

    def matches(self, subject: str) -> list[dict[str, Any]]:
        """The array jq's `_match_impl` returns, objects with jq's key order."""
        out: list[dict[str, Any]] = []
        names = self.names
        for spans in self.spans(subject):
            b, e = spans[0]
            captures: list[dict[str, Any]] = []
            for (cb, ce), name in zip(spans[1:], names, strict=True):
                if cb < 0:
                    captures.append({"offset": -1, "string": None, "length": 0, "name": name})
                elif cb == ce:
                    captures.append({"offset": b if b == e else cb, "string": "", "length": 0, "name": name})
                else:
                    captures.append({"offset": cb, "length": ce - cb, "string": subject[cb:ce], "name": name})
            out.append({"offset": b, "length": e - b, "string": subject[b:e], "captures": captures})
        return out


_UNANCHORED = re2._Anchor.UNANCHORED


def _char_span(encoded: bytes, span: tuple[int, int]) -> tuple[int, int]:
    b, e = span
    if b < 0:
        return span
    start = len(encoded[:b].decode())
    return start, start + len(encoded[b:e].decode())


def check_flags(flags: Any) -> None:
    """jq's own check of the modifier string (a run-time error in jq)."""
    if flags is None:
        return
    if type(flags) is not str:
        raise Unsupported("regex flags that are not a string")
    if not set(flags) <= _VALID_FLAGS:
        raise Unsupported(f"regex flags {flags!r} jq rejects")


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str, flags: str | None) -> Regex:
    """Translate and compile; raises Unsupported when RE2 cannot have Oniguruma's exact meaning."""
    check_flags(flags)
    flag_set = set(flags or "")
    if "l" in flag_set:
        raise Unsupported("regex flag `l` (longest match)")
    translator = _Translator(
        pattern, icase="i" in flag_set, dotall=bool(flag_set & {"p", "m"}), extended="x" in flag_set
    )
    text = translator.run()
    if "n" in flag_set and translator.nullable:
        # Oniguruma then backtracks past empty matches, an order RE2 cannot follow; on a pattern that
        # never matches empty the flag changes nothing.
        raise Unsupported("regex flag `n` on a pattern that can match empty")
    if translator.uses_icase:
        _multi_fold()  # built now, at load: on a first event it would count against the rule's time budget
    options = re2.Options()
    options.max_mem = 32 << 20
    try:
        regexp = re2.compile(text, options)
    except re2.error as error:
        raise Unsupported(f"regex RE2 cannot compile: {error}") from error
    return Regex(
        regexp,
        tuple(translator.names),
        "g" in flag_set,
        translator.uses_boundary,
        translator.uses_dollar,
        translator.uses_icase,
        translator.required,
        translator.required_folded,
    )


def regex_error(subject: Any) -> JqError:
    return JqError(f"{type_name(subject)} ({error_text(subject)}) cannot be matched, as it is not a string")


# -- classes read from libjq


_PROBE_LOCK = threading.Lock()
_GAP = 0xE000 - 0xD800  # the surrogates, absent from the probe string


@functools.cache
def _probe_string() -> str:
    """Every code point but the surrogates, in order: the code point at offset i is i, or i + _GAP past them."""
    return "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, sys.maxunicode + 1)))


def release_probe_string() -> None:
    """Free the 4 MB probe string once the rules are compiled (classes already read stay cached)."""
    _probe_string.cache_clear()


def _code_point(offset: int) -> int:
    return offset if offset < 0xD800 else offset + _GAP


SHIPPED_CLASSES = "shorthand_classes.json"


@functools.cache
def _shipped_classes() -> dict[str, tuple[tuple[int, int], ...]]:
    """The shorthands' ranges read from this jq release's libjq when the package was built, if it is that jq."""
    try:
        shipped = json.loads(files("stream_processor.matcher").joinpath(SHIPPED_CLASSES).read_text("utf-8"))
        if shipped["jq"] != _jq_version():
            return {}
        return {key: tuple((lo, hi) for lo, hi in ranges) for key, ranges in shipped["classes"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _jq_version() -> str | None:
    """The installed `jq` distribution's version: from its `.dist-info` folder beside the module when there is
    exactly one (a wheel install), which costs a directory listing where importlib.metadata costs 20 ms of
    imports in a command's start-up; else from importlib.metadata."""
    folder = Path(jq.__file__ or "").parent
    found = [entry.name for entry in folder.glob("jq-*.dist-info")] if folder.name else []
    if len(found) == 1:
        return found[0].removeprefix("jq-").removesuffix(".dist-info")
    import importlib.metadata

    try:
        return importlib.metadata.version("jq")
    except importlib.metadata.PackageNotFoundError:
        return None


def _shipped_key(onig_class: str, icase: bool) -> str:
    return f"{onig_class}/{'i' if icase else ''}"


def shorthand_tables() -> dict[str, Any]:
    """What `shorthand_classes.json` holds, read from the installed libjq now (`make regex-classes` writes it)."""
    classes = {
        _shipped_key("\\" + e, icase): [list(r) for r in probe_class(f"\\{e}", icase)]
        for e in sorted(_SHORTHANDS)
        for icase in (False, True)
    }
    return {"jq": _jq_version(), "classes": classes}


@functools.lru_cache(maxsize=512)
def class_ranges(onig_class: str, icase: bool) -> tuple[tuple[int, int], ...]:
    """The code points one Oniguruma character class matches, as ranges: shipped, or asked of libjq itself."""
    shipped = _shipped_classes().get(_shipped_key(onig_class, icase))
    return shipped if shipped is not None else probe_class(onig_class, icase)


def probe_class(onig_class: str, icase: bool) -> tuple[tuple[int, int], ...]:
    """The code points one Oniguruma character class matches, as ranges, asked of libjq itself."""
    with _PROBE_LOCK:
        program = jq.compile(
            "[match($p; $f) | .offset, .length]", args={"p": f"(?:{onig_class})+", "f": "gi" if icase else "g"}
        )
        try:
            flat = program.input_value(_probe_string()).first()
        except ValueError as error:
            raise Unsupported(f"regex class {onig_class} jq rejects") from error
    ranges: list[tuple[int, int]] = []
    for i in range(0, len(flat), 2):
        offset, length = flat[i], flat[i + 1]
        lo, hi = _code_point(offset), _code_point(offset + length - 1)
        if hi - lo != length - 1:  # the run spans the surrogate gap
            ranges.append((lo, 0xD7FF))
            lo = 0xE000
        ranges.append((lo, hi))
    return tuple(ranges)


def _ranges_text(ranges: tuple[tuple[int, int], ...]) -> str:
    if not ranges:
        return r"[^\x00-\x{10FFFF}]"
    parts = [f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in ranges]
    return "(?-i:[" + "".join(parts) + "])"


def _literal(code: int) -> str:
    c = chr(code)
    if c.isascii() and (c.isalnum() or c == "_"):
        return c
    return f"\\x{{{code:X}}}"


# -- the translator


@dataclass(slots=True)
class _Piece:
    text: str
    nullable: bool
    captures: bool
    literal: str = ""  # a character matched exactly (no case folding), or a run every match contains


class _Translator:
    def __init__(self, pattern: str, icase: bool, dotall: bool, extended: bool) -> None:
        self.src = pattern
        self.i = 0
        self.icase = icase
        self.dotall = dotall
        self.extended = extended
        self.names: list[str | None] = []
        self.required = ""
        self.required_folded = ""
        self.nullable = True
        self.uses_boundary = False
        self.uses_dollar = False
        self.uses_icase = icase
        if extended and any(c.isspace() and not c.isascii() for c in pattern):
            raise Unsupported("non-ASCII whitespace in a regex under the `x` flag")

    def run(self) -> str:
        piece = self.alternation()
        if self.i < len(self.src):
            raise Unsupported("unmatched `)` in a regex")
        self.nullable = piece.nullable
        literal = piece.literal
        if "\0" in literal:  # some characters case-insensitive: compare lowercased ASCII subjects only
            self.required_folded = literal.replace("\0", "").lower()
        else:
            self.required = literal
        prefix = "(?i)" if self.icase else ""
        return prefix + piece.text

    # -- structure

    def _skip_extended(self) -> None:
        if not self.extended:
            return
        src = self.src
        while self.i < len(src):
            c = src[self.i]
            if c in _EXTENDED_SPACE:
                self.i += 1
            elif c == "#":
                end = src.find("\n", self.i)
                self.i = len(src) if end < 0 else end + 1
            else:
                return

    def alternation(self) -> _Piece:
        """Branches up to the group's end; an inline option like `(?i)` lasts until then (Perl's rule)."""
        saved = (self.icase, self.dotall)
        branches = [self.sequence()]
        while self.i < len(self.src) and self.src[self.i] == "|":
            self.i += 1
            branches.append(self.sequence())
        self.icase, self.dotall = saved
        return _Piece(
            "|".join(b.text for b in branches),
            any(b.nullable for b in branches),
            any(b.captures for b in branches),
            branches[0].literal if len(branches) == 1 else "",
        )

    def sequence(self) -> _Piece:
        parts: list[str] = []
        nullable, captures = True, False
        run, longest = "", ""  # consecutive unquantified exact characters: every match contains them
        while True:
            self._skip_extended()
            if self.i >= len(self.src) or self.src[self.i] in "|)":
                break
            atom = self.atom()
            if isinstance(atom, str):  # an inline option: RE2 reads it with the same scope
                parts.append(atom)
                continue
            plain = atom
            atom = self.quantified(atom)
            if atom is plain and atom.literal and len(atom.literal) <= 2:
                run += atom.literal
                longest = max(longest, run, key=lambda r: len(r.replace("\0", "")))
            elif atom.text not in _ZERO_WIDTH:
                run = ""
            parts.append(atom.text)
            nullable = nullable and atom.nullable
            captures = captures or atom.captures
        return _Piece("".join(parts), nullable, captures, longest)

    def quantified(self, atom: _Piece) -> _Piece:
        src = self.src
        self._skip_extended()
        if self.i >= len(src):
            return atom
        c = src[self.i]
        low, high = 0, -1
        if c in "*+?":
            low, high = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[c]
            quant = c
            self.i += 1
        elif c == "{" and (m := _QUANTIFIER.match(src, self.i)) is not None:
            low = int(m.group(1))
            if m.group(2) is None:
                high = low
            elif m.group(3):
                high = int(m.group(3))
            if max(low, high) > _MAX_REPEAT:
                raise Unsupported("regex repeat count above 1000")
            if high != -1 and high < low:
                raise Unsupported("regex repeat range jq rejects")
            quant = m.group()
            self.i = m.end()
        else:
            return atom
        if atom.text in _ZERO_WIDTH or (atom.text.startswith("(?") and any(a in atom.text for a in _ANCHORS)):
            # Oniguruma rejects a repeated anchor, also inside a non-capturing group (`(?:^|a)*`).
            raise Unsupported("regex quantifier on an anchor")
        lazy = ""
        if self.i < len(src) and src[self.i] == "?":
            lazy = "?"
            self.i += 1
        elif self.i < len(src) and src[self.i] == "+":
            raise Unsupported("possessive regex quantifier")
        self._skip_extended()
        if self.i < len(src) and (src[self.i] in "*+?" or _QUANTIFIER.match(src, self.i)):
            raise Unsupported("stacked regex quantifiers")
        if atom.nullable and atom.captures and high != 0:
            # Oniguruma and RE2 set captures differently in an iteration that matches empty.
            raise Unsupported("a repeated regex group that can match empty and holds a capture")
        return _Piece(f"(?:{atom.text}){quant}{lazy}", atom.nullable or low == 0, atom.captures)

    def atom(self) -> _Piece | str:
        src = self.src
        c = src[self.i]
        if c == "(":
            return self.group()
        if c == "[":
            return self.bracket()
        if c == "\\":
            return self.escape()
        self.i += 1
        if c == ".":
            return _Piece(r"(?s:.)" if self.dotall else r"[^\n]", False, False)
        if c == "^":
            return _Piece(r"\A", True, False)
        if c == "$":
            self.uses_dollar = True
            return _Piece(r"\z", True, False)
        if c in "*+?":
            raise Unsupported("regex quantifier without a target")
        if c == "{" and _QUANTIFIER.match(src, self.i - 1):
            raise Unsupported("regex quantifier without a target")
        return self._char(ord(c))

    def _char(self, code: int) -> _Piece:
        if self.icase and code >= 0x80:
            raise Unsupported("case-insensitive regex with a non-ASCII character")
        # An exact character is its own literal; under `i` an ASCII one is marked by a leading NUL (folded).
        return _Piece(_literal(code), False, False, "\0" + chr(code).lower() if self.icase else chr(code))

    def group(self) -> _Piece | str:
        src = self.src
        self.i += 1
        name: str | None = None
        capture = True
        if src.startswith("?", self.i):
            self.i += 1
            head = src[self.i : self.i + 1]
            if head == ":":
                self.i += 1
                capture = False
            elif head in ("<", "'") and src[self.i + 1 : self.i + 2] not in ("=", "!"):
                close = ">" if head == "<" else "'"
                end = src.find(close, self.i + 1)
                name = src[self.i + 1 : end] if end > 0 else ""
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise Unsupported("a regex group name jq may read differently")
                self.i = end + 1
            elif head == "#":
                end = src.find(")", self.i)
                if end < 0:
                    raise Unsupported("unterminated regex comment")
                self.i = end + 1
                return _Piece("", True, False)
            else:
                return self.options()
        if capture:
            self.names.append(name)
        inner = self.alternation()
        if self.i >= len(src) or src[self.i] != ")":
            raise Unsupported("unterminated regex group")
        self.i += 1
        text = f"({inner.text})" if capture else f"(?:{inner.text})"
        return _Piece(text, inner.nullable, inner.captures or capture)

    def options(self) -> _Piece | str:
        """`(?i)`, `(?-i)`, `(?s)`, `(?i-s:...)`: the flags Oniguruma and RE2 read alike."""
        src = self.src
        m = re.compile(r"([is]*)(?:-([is]*))?([:)])").match(src, self.i)
        if m is None:
            raise Unsupported("a regex group extension (lookaround, atomic group, inline option...)")
        on, off, end = m.group(1), m.group(2) or "", m.group(3)
        self.i = m.end()
        icase = ("i" in on) or (self.icase and "i" not in off)
        dotall = ("s" in on) or (self.dotall and "s" not in off)
        self.uses_icase = self.uses_icase or icase
        flag_text = ("i" if icase else "-i") if ("i" in on or "i" in off) else ""
        if end == ")":
            self.icase, self.dotall = icase, dotall
            return f"(?{flag_text})" if flag_text else ""
        saved = (self.icase, self.dotall)
        self.icase, self.dotall = icase, dotall
        inner = self.alternation()
        self.icase, self.dotall = saved
        if self.i >= len(src) or src[self.i] != ")":
            raise Unsupported("unterminated regex group")
        self.i += 1
        prefix = f"(?{flag_text}:" if flag_text else "(?:"
        return _Piece(prefix + inner.text + ")", inner.nullable, inner.captures)

    # -- escapes

    def escape(self) -> _Piece:
        src = self.src
        if self.i + 1 >= len(src):
            raise Unsupported("regex ending in a backslash")
        e = src[self.i + 1]
        self.i += 2
        if e in _SHORTHANDS:
            return _Piece(_ranges_text(class_ranges("\\" + e, self.icase)), False, False)
        if e == "p" or e == "P":
            m = re.compile(r"\{\^?[A-Za-z0-9_ ]+\}").match(src, self.i)
            if m is None:
                raise Unsupported("a regex property escape without braces")
            self.i = m.end()
            if self.icase:
                raise Unsupported("a case-insensitive regex property class")
            return _Piece(_ranges_text(class_ranges("\\" + e + m.group(), False)), False, False)
        if e in "bB":
            self.uses_boundary = True
            return _Piece("\\" + e, True, False)
        if e == "A":
            return _Piece(r"\A", True, False)
        if e == "z":
            return _Piece(r"\z", True, False)
        if e == "Z":
            self.uses_dollar = True
            return _Piece(r"\z", True, False)
        code = self._code_escape(e, in_class=False)
        return self._char(code)

    def _code_escape(self, e: str, in_class: bool) -> int:
        """The code point of a character escape (after the backslash and `e`); refuses anything else."""
        src = self.src
        if e in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[e]
        if e == "0":
            digits = ""
            while len(digits) < 2 and self.i < len(src) and src[self.i] in _OCTAL:
                digits += src[self.i]
                self.i += 1
            return int(digits or "0", 8)
        if e == "x":
            if src.startswith("{", self.i):
                end = src.find("}", self.i)
                digits = src[self.i + 1 : end] if end > 0 else ""
                if not digits or len(digits) > 8 or not set(digits) <= _HEX:
                    raise Unsupported("a regex \\x{...} escape jq may read differently")
                code = int(digits, 16)
                if code > 0x10FFFF or 0xD800 <= code < 0xE000:
                    raise Unsupported("a regex \\x{...} escape outside Unicode")
                self.i = end + 1
                return code
            digits = ""
            while len(digits) < 2 and self.i < len(src) and src[self.i] in _HEX:
                digits += src[self.i]
                self.i += 1
            if not digits or int(digits, 16) >= 0x80:
                raise Unsupported("a regex \\x escape of a raw byte")
            return int(digits, 16)
        if e.isascii() and e.isalnum():
            allowed = _LITERAL_ESCAPES_IN_CLASS if in_class else _LITERAL_ESCAPES
            if e in allowed:
                return ord(e)
            raise Unsupported(f"the regex escape \\{e}")
        return ord(e)

    # -- bracket classes

    def bracket(self) -> _Piece:
        """A bracket class: literal members are written out; any other member makes libjq answer for it."""
        src = self.src
        start = self.i
        i = start + 1
        negate = src.startswith("^", i)
        if negate:
            i += 1
        members: list[tuple[int, int]] = []
        probe = False
        first = True
        while True:
            if i >= len(src):
                raise Unsupported("unterminated regex class")
            c = src[i]
            if c == "]" and not first:
                i += 1
                break
            first = False
            if c == "[":
                if re.compile(r"\[:\^?[a-z]+:\]").match(src, i):
                    probe = True
                    i = src.index(":]", i) + 2
                    continue
                raise Unsupported("a `[` inside a regex class")
            if c == "&" and src.startswith("&&", i):
                raise Unsupported("`&&` in a regex class")
            low, i, special = self._class_member(i)
            if special:
                probe = True
                continue
            if src.startswith("-", i) and not src.startswith("-]", i) and i + 1 < len(src):
                high, j, special = self._class_member(i + 1)
                if special:
                    raise Unsupported("a regex class range ending in a class")
                if high < low:
                    raise Unsupported("an empty regex class range")
                members.append((low, high))
                i = j
                continue
            members.append((low, low))
        self.i = i
        onig_class = src[start:i]
        if probe:
            if self.icase and re.search(r"\[:|\\[pP]", onig_class):
                raise Unsupported("a case-insensitive regex class with a POSIX bracket or property")
            ranges = class_ranges(onig_class, self.icase)
            if self.icase and not negate and any(lo <= ord(c) <= hi for c in _multi_fold() for lo, hi in ranges):
                # Oniguruma lets such a class match the folding's several characters (`[\w]` matches "ss").
                raise Unsupported("a case-insensitive regex class holding a character that folds to several")
            return _Piece(_ranges_text(ranges), False, False)
        if self.icase and any(high >= 0x80 for _, high in members):
            raise Unsupported("a case-insensitive regex class with non-ASCII characters")
        body = "".join(_class_char(lo) if lo == hi else f"{_class_char(lo)}-{_class_char(hi)}" for lo, hi in members)
        return _Piece(f"[{'^' if negate else ''}{body}]", False, False)

    def _class_member(self, i: int) -> tuple[int, int, bool]:
        """(code point, next index, is-a-class) of one member of a bracket class."""
        src = self.src
        c = src[i]
        if c != "\\":
            return ord(c), i + 1, False
        if i + 1 >= len(src):
            raise Unsupported("regex ending in a backslash")
        e = src[i + 1]
        if e in _SHORTHANDS:
            return 0, i + 2, True
        if e in "pP":
            m = re.compile(r"\{\^?[A-Za-z0-9_ ]+\}").match(src, i + 2)
            if m is None:
                raise Unsupported("a regex property escape without braces")
            return 0, m.end(), True
        if e == "b":
            return 0x08, i + 2, False
        saved = self.i
        self.i = i + 2
        try:
            code = self._code_escape(e, in_class=True)
            return code, self.i, False
        finally:
            self.i = saved


def _class_char(code: int) -> str:
    c = chr(code)
    if c.isascii() and c.isalnum():
        return c
    return f"\\x{{{code:X}}}"
