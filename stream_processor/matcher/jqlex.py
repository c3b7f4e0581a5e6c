"""A lexer for the jq language (1.7/1.8 grammar), shared by the sandbox check and the parser.

String literals are lexed whole: their interpolations (`"\\(...)"`) become nested token lists, so a
consumer sees code inside strings as code and text as text (`"env"` is text, `"\\(env)"` is code).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

KEYWORDS = frozenset(
    {
        "__loc__", "as", "import", "include", "module", "def", "if", "then", "elif", "else", "end",
        "and", "or", "reduce", "foreach", "try", "catch", "label",
    }
)  # fmt: skip

# Longest first: the lexer tries these in order.
OPERATORS = (
    "?//=", "?//", "//=", "|=", "+=", "-=", "*=", "/=", "%=", "==", "!=", "<=", ">=", "//", "..",
    ".", "?", "=", ";", ",", ":", "|", "+", "-", "*", "/", "%", "<", ">",
    "[", "]", "{", "}", "(", ")",
)  # fmt: skip

_IDENT = re.compile(r"(?:[a-zA-Z_][a-zA-Z_0-9]*::)*[a-zA-Z_][a-zA-Z_0-9]*")
_FIELD = re.compile(r"\.[a-zA-Z_][a-zA-Z_0-9]*")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_VAR = re.compile(r"\$(?:__loc__|[a-zA-Z_][a-zA-Z_0-9]*(?:::[a-zA-Z_][a-zA-Z_0-9]*)*)")
_FORMAT = re.compile(r"@[a-zA-Z0-9_]+")
_SPACE = re.compile(r"[ \t\r\n]+")
_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JqSyntaxError(ValueError):
    """The program is not jq we can read (jq itself may or may not accept it: callers fall back)."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token. `kind` is NUM, STR, IDENT, FIELD, VAR, FORMAT, KEYWORD, OP or EOF.

    For STR, `parts` holds the literal text pieces and, for each interpolation, its token list.
    """

    kind: str
    text: str
    pos: int
    parts: tuple[str | tuple[Token, ...], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Lexed:
    """The token list and whether the source has something jq versions read differently."""

    tokens: tuple[Token, ...]
    ambiguous_comment: bool


@functools.lru_cache(maxsize=1024)
def tokenize(source: str) -> Lexed:
    """Split a jq program into tokens; raises JqSyntaxError on text jq would not lex.

    Cached: the Go regex translation, the sandbox, the bounds check and the parser each lex the same rule.
    """
    lexer = _Lexer(source)
    tokens = lexer.run(0, top=True)
    return Lexed(tuple(tokens), lexer.ambiguous_comment)


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.ambiguous_comment = False

    def run(self, start: int, top: bool) -> list[Token]:
        """Lex from `start`; at `top` until the end, else until the `)` closing an interpolation."""
        src = self.src
        self.i = start
        tokens: list[Token] = []
        depth = 0
        while True:
            self._skip_space()
            if self.i >= len(src):
                if not top:
                    raise JqSyntaxError("unterminated string interpolation")
                tokens.append(Token("EOF", "", self.i))
                return tokens
            c = src[self.i]
            pos = self.i
            if c == '"':
                tokens.append(self._string())
                continue
            if c == "$":
                m = _VAR.match(src, self.i)
                if m is None:
                    raise JqSyntaxError(f"bad variable at {pos}")
                tokens.append(Token("VAR", m.group(), pos))
                self.i = m.end()
                continue
            if c == "@":
                m = _FORMAT.match(src, self.i)
                if m is None:
                    raise JqSyntaxError(f"bad format at {pos}")
                tokens.append(Token("FORMAT", m.group(), pos))
                self.i = m.end()
                continue
            if c in _DIGITS or (c == "." and self.i + 1 < len(src) and src[self.i + 1] in _DIGITS):
                m = _NUMBER.match(src, self.i)
                assert m is not None
                tokens.append(Token("NUM", m.group(), pos))
                self.i = m.end()
                continue
            if c == ".":
                m = _FIELD.match(src, self.i)
                if m is not None:
                    tokens.append(Token("FIELD", m.group()[1:], pos))
                    self.i = m.end()
                    continue
            if c in _IDENT_START:
                m = _IDENT.match(src, self.i)
                assert m is not None
                word = m.group()
                tokens.append(Token("KEYWORD" if word in KEYWORDS else "IDENT", word, pos))
                self.i = m.end()
                continue
            for op in OPERATORS:
                if src.startswith(op, self.i):
                    break
            else:
                raise JqSyntaxError(f"unexpected character {c!r} at {pos}")
            if op == "(":
                depth += 1
            elif op == ")":
                if depth == 0 and not top:
                    self.i += 1
                    return tokens
                depth -= 1
            tokens.append(Token("OP", op, pos))
            self.i += len(op)

    def _skip_space(self) -> None:
        src = self.src
        while self.i < len(src):
            m = _SPACE.match(src, self.i)
            if m is not None:
                self.i = m.end()
                continue
            if src[self.i] == "#":
                end = src.find("\n", self.i)
                end = len(src) if end < 0 else end
                comment = src[self.i : end].rstrip("\r")
                trailing = len(comment) - len(comment.rstrip("\\"))
                if trailing % 2 == 1:
                    # jq 1.8 continues such a comment on the next line, jq 1.7 does not.
                    self.ambiguous_comment = True
                self.i = end
                continue
            return

    def _string(self) -> Token:
        src = self.src
        pos = self.i
        self.i += 1
        parts: list[str | tuple[Token, ...]] = []
        buf: list[str] = []
        while True:
            if self.i >= len(src):
                raise JqSyntaxError(f"unterminated string at {pos}")
            c = src[self.i]
            if c == '"':
                self.i += 1
                break
            if c != "\\":
                buf.append(c)
                self.i += 1
                continue
            if self.i + 1 >= len(src):
                raise JqSyntaxError(f"unterminated string at {pos}")
            e = src[self.i + 1]
            if e in _ESCAPES:
                buf.append(_ESCAPES[e])
                self.i += 2
            elif e == "u":
                self.i += 2
                buf.append(self._unicode_escape())
            elif e == "(":
                if buf:
                    parts.append("".join(buf))
                    buf = []
                inner = _Lexer(src)
                inner_tokens = inner.run(self.i + 2, top=False)
                self.ambiguous_comment = self.ambiguous_comment or inner.ambiguous_comment
                inner_tokens.append(Token("EOF", "", inner.i - 1))
                parts.append(tuple(inner_tokens))
                self.i = inner.i
            else:
                raise JqSyntaxError(f"invalid escape \\{e} at {self.i}")
        if buf or not parts:
            parts.append("".join(buf))
        return Token("STR", src[pos : self.i], pos, tuple(parts))

    def _unicode_escape(self) -> str:
        code = self._hex4()
        if 0xD800 <= code < 0xDC00 and self.src.startswith("\\u", self.i):
            save = self.i
            self.i += 2
            low = self._hex4()
            if 0xDC00 <= low < 0xE000:
                return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
            self.i = save
        if 0xD800 <= code < 0xE000:
            # A lone surrogate: jq replaces it; not worth mirroring.
            raise JqSyntaxError("lone surrogate in string literal")
        return chr(code)

    def _hex4(self) -> int:
        text = self.src[self.i : self.i + 4]
        if len(text) != 4 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
            raise JqSyntaxError(f"invalid \\u escape at {self.i}")
        self.i += 4
        return int(text, 16)
