"""Read the Perl data BackupPC writes with Data::Dumper, without running Perl.

BackupPC's ``log/status.pl`` and its server's ``status`` replies are Data::Dumper
text: ``%Info = (...);`` / ``%Status = (...);`` statements of nested hashes,
arrays, quoted strings, bare numbers and ``undef``. This is a bounded
recursive-descent reader of exactly that subset; anything else (code, a
half-written file, nesting deeper than ``MAX_DEPTH``) raises PerlDataError,
never evaluates anything.
"""

from __future__ import annotations

import re
from typing import Any

from backuppc_agent.errors import BackupPCAgentError

#: BackupPC's status data nests 3 deep (%Status -> host -> field); allow some slack.
MAX_DEPTH = 8
_SPACE = re.compile(r"\s*")
_NAME = re.compile(r"([%$@])(\w+)\s*=\s*")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_BAREWORD = re.compile(r"-?[A-Za-z_]\w*")
_SINGLE = re.compile(r"'((?:[^'\\]|\\.)*)'", re.S)
_DOUBLE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "b": "\b", "a": "\a", "e": "\x1b"}
_ESCAPE = re.compile(r"\\(x\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)
_CLOSERS = {"(": ")", "{": "}", "[": "]"}


class PerlDataError(BackupPCAgentError):
    """The text is not Data::Dumper output of plain data (or is cut short)."""


def parse_statements(text: str) -> dict[str, Any]:
    """``%Name = (...); $Other = {...};`` -> {"Name": ..., "Other": ...}; raise PerlDataError."""
    reader = _Reader(text)
    result: dict[str, Any] = {}
    while not reader.at_end():
        match = reader.expect(_NAME, "a %Name = or $Name = assignment")
        result[match.group(2)] = reader.value(0)
        reader.literal(";")
    return result


class _Reader:
    """A cursor over the text; every method raises PerlDataError on anything unexpected."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def fail(self, wanted: str) -> PerlDataError:
        found = self.text[self.pos : self.pos + 20] or "the end"
        return PerlDataError(f"at offset {self.pos}: expected {wanted}, found {found!r}")

    def expect(self, pattern: re.Pattern[str], wanted: str) -> re.Match[str]:
        self.skip_space()
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise self.fail(wanted)
        self.pos = match.end()
        return match

    def literal(self, token: str) -> None:
        self.skip_space()
        if not self.text.startswith(token, self.pos):
            raise self.fail(repr(token))
        self.pos += len(token)

    def peek(self, token: str) -> bool:
        self.skip_space()
        return self.text.startswith(token, self.pos)

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"at most {MAX_DEPTH} levels of nesting")
        self.skip_space()
        char = self.text[self.pos : self.pos + 1]
        if char in _CLOSERS:
            return self.container(char, depth)
        if char in ("'", '"'):
            return self.string()
        if self.text.startswith("undef", self.pos):
            self.pos += len("undef")
            return None
        return self.number()

    def container(self, opener: str, depth: int) -> Any:
        self.pos += 1
        items = self.items(_CLOSERS[opener], depth)
        if opener == "[":
            return items
        if len(items) % 2:
            raise self.fail("key => value pairs")
        return {str(items[i]): items[i + 1] for i in range(0, len(items), 2)}

    def items(self, closer: str, depth: int) -> list[Any]:
        items: list[Any] = []
        while not self.peek(closer):
            items.append(self.key_or_value(depth + 1))
            if self.peek("=>"):
                self.pos += 2
            elif self.peek(","):
                self.pos += 1
            elif not self.peek(closer):
                raise self.fail(f"',', '=>' or {closer!r}")
        self.pos += 1
        return items

    def key_or_value(self, depth: int) -> Any:
        self.skip_space()
        bare = _BAREWORD.match(self.text, self.pos)
        if bare and bare.group() != "undef":
            self.pos = bare.end()
            return bare.group()  # a hash key Data::Dumper left unquoted
        return self.value(depth)

    def string(self) -> str:
        double = self.text[self.pos] == '"'
        match = (_DOUBLE if double else _SINGLE).match(self.text, self.pos)
        if match is None:
            raise self.fail("a closing quote")
        self.pos = match.end()
        body = match.group(1)
        if not double:
            return body.replace("\\\\", "\\").replace("\\'", "'")
        return _ESCAPE.sub(_unescape, body)

    def number(self) -> int | float:
        match = self.expect(_NUMBER, "a value")
        text = match.group()
        return float(text) if any(c in text for c in ".eE") else int(text)


def _unescape(match: re.Match[str]) -> str:
    """One backslash escape of a double-quoted Perl string."""
    code = match.group(1)
    if code.startswith("x{"):
        return chr(min(int(code[2:-1], 16), 0x10FFFF))
    if code.startswith("x") and len(code) > 1:
        return chr(int(code[1:], 16))
    if code[0] in "01234567":
        return chr(int(code, 8))
    return _DOUBLE_ESCAPES.get(code, code)
