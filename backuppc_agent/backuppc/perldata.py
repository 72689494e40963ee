"""Read the Data::Dumper text BackupPC writes (log/status.pl, its server's ``status`` replies).

``%Info = (...);`` statements of nested hashes, arrays, quoted strings, numbers and
``undef``, read by a bounded stack machine: anything else (code, a half-written
file, nesting deeper than ``MAX_DEPTH``) raises PerlDataError, never runs Perl.
"""

from __future__ import annotations

import re
from typing import Any

from backuppc_agent.errors import BackupPCAgentError

#: BackupPC's status data nests 3 deep (%Status -> host -> field); allow some slack.
MAX_DEPTH = 8
#: One token of Data::Dumper output; a bare word is only a hash key (followed by =>).
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<assign>[%$@]\w+\s*=(?!>))
    | (?P<open>[({\[])
    | (?P<close>[)}\]])
    | (?P<sep>=>|,)
    | (?P<semi>;)
    | '(?P<single>(?:[^'\\]|\\.)*)'
    | "(?P<double>(?:[^"\\]|\\.)*)"
    | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
    | (?P<undef>undef)\b
    | (?P<bare>-?[A-Za-z_]\w*)(?=\s*=>)
    )""",
    re.S | re.X,
)
_TRAILING_SPACE = re.compile(r"\s*\Z")
_DOUBLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "b": "\b", "a": "\a", "e": "\x1b"}
_ESCAPE = re.compile(r"\\(x\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)
_CLOSERS = {"(": ")", "{": "}", "[": "]"}


class PerlDataError(BackupPCAgentError):
    """The text is not Data::Dumper output of plain data (or is cut short)."""


def parse_statements(text: str) -> dict[str, Any]:
    """``%Name = (...); $Other = {...};`` -> {"Name": ..., "Other": ...}; raise PerlDataError."""
    result: dict[str, Any] = {}
    name: str | None = None
    # each open container: (its opening bracket, the items read so far)
    stack: list[tuple[str, list[Any]]] = []
    pos = 0
    while not _TRAILING_SPACE.match(text, pos):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _error(text, pos, "plain Perl data")
        pos = match.end()
        kind = match.lastgroup
        if kind == "sep":
            continue
        if kind in {"assign", "semi"}:
            name = _statement(kind, match.group(kind), name, stack, text, pos)
            continue
        if name is None or (not stack and name in result):
            raise _error(text, pos, "a %Name = or $Name = assignment")
        value = _push_or_value(kind, match, stack, text, pos)
        if value is _OPENED:
            continue
        if stack:
            stack[-1][1].append(value)
        else:
            result[name] = value
    if stack or name is not None:
        raise _error(text, pos, "the rest of the data (the text is cut short)")
    return result


_OPENED = object()


def _statement(
    kind: str, token: str, name: str | None, stack: list[Any], text: str, pos: int
) -> str | None:
    """Start (``%Name =``) or end (``;``) a statement; return the name now being assigned."""
    if stack or (kind == "assign") == (name is not None):
        raise _error(text, pos, "';' after a complete value" if kind == "semi" else "';'")
    return token[1:].rstrip("= \t\r\n") if kind == "assign" else None


def _push_or_value(kind: str | None, match: re.Match[str], stack: list[tuple[str, list[Any]]],
                   text: str, pos: int) -> Any:  # fmt: skip
    """Open a container (return _OPENED), close one (return it) or read a scalar."""
    if kind == "open":
        if len(stack) >= MAX_DEPTH:
            raise _error(text, pos, f"at most {MAX_DEPTH} levels of nesting")
        stack.append((match.group(kind), []))
        return _OPENED
    if kind == "close":
        if not stack or _CLOSERS[stack[-1][0]] != match.group(kind):
            raise _error(text, pos, "a matching bracket")
        opener, items = stack.pop()
        return _container(opener, items, text, pos)
    return _scalar(kind, match)


def _container(opener: str, items: list[Any], text: str, pos: int) -> Any:
    if opener == "[":
        return items
    if len(items) % 2:
        raise _error(text, pos, "key => value pairs")
    return {str(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _scalar(kind: str | None, match: re.Match[str]) -> Any:
    if kind == "single":
        return match.group(kind).replace("\\\\", "\\").replace("\\'", "'")
    if kind == "double":
        return _ESCAPE.sub(_unescape, match.group(kind))
    if kind == "number":
        number = match.group(kind)
        return float(number) if any(c in number for c in ".eE") else int(number)
    if kind == "undef":
        return None
    return match.group("bare")  # a hash key Data::Dumper left unquoted


def _error(text: str, pos: int, wanted: str) -> PerlDataError:
    found = text[pos : pos + 20] or "the end"
    return PerlDataError(f"at offset {pos}: expected {wanted}, found {found!r}")


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
