"""Names from BackupPC ($client, $host), checked before they reach a path or ssh's argv.

Refused: path separators, a leading '-' (an ssh option), whitespace and control
characters (BackupPC splits commands on whitespace; log lines stay one line), '%'
(ssh expands %-tokens in ControlPath), '.', '..', and overlong names.
"""

from __future__ import annotations

from backuppc_agent.errors import BadNameError

#: DNS names are at most 253 characters; nothing BackupPC passes is longer.
MAX_NAME_CHARS = 253
_FORBIDDEN = {"/": "a '/'", "\\": "a '\\'", "%": "a '%'"}


def problem(value: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """Return why ``value`` is not a safe name, or None if it is."""
    if not value:
        return "is empty"
    if len(value) > max_chars:
        return f"is {len(value)} characters long (at most {max_chars})"
    if value.startswith("-"):
        return "starts with '-'"
    if value in (".", ".."):
        return "is '.' or '..'"
    return _bad_character(value)


def _bad_character(value: str) -> str | None:
    for char in value:
        if char in _FORBIDDEN:
            return f"contains {_FORBIDDEN[char]}"
        if char.isspace():
            return "contains whitespace"
        if not char.isprintable():
            return "contains a control character"
    return None


def check(value: str, what: str, max_chars: int = MAX_NAME_CHARS, bound_by: str = "") -> str:
    """Return ``value`` if it is a safe name; raise BadNameError (one line) if not.

    ``bound_by`` says what sets a ``max_chars`` that ``value`` exceeds.
    """
    reason = problem(value, max_chars)
    if reason is not None:
        why = f" ({bound_by})" if bound_by and len(value) > max_chars else ""
        raise BadNameError(f"refusing {what} name {printable(value)}: it {reason}{why}")
    return value


def visible(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, each unprintable one shown as '?' (one line)."""
    return "".join(char if char.isprintable() else "?" for char in text[:limit])


def printable(value: str, limit: int = 60) -> str:
    """Quote a possibly hostile value for a one-line message: escaped and truncated."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return repr(shown)


def escaped(text: str, limit: int | None = None) -> str:
    """Untrusted text for a one-line message: control characters escaped, cut to ``limit``."""
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return shown if limit is None or len(shown) <= limit else shown[:limit] + "..."


def last_line(text: str) -> str:
    """The last non-blank line of ``text``, stripped ("" if none): what a command said last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
