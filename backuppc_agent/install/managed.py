"""Files and blocks that ``install`` manages, and whether the operator has edited them.

What install writes carries a marker with the SHA-256 of what it wrote: a
whole file gets one marker line, a block inside someone else's file (BackupPC's
config.pl, ~/.profile) sits between a begin and an end line. Comparing the
marker with the current text tells "ours, untouched" (safe to update) from
"edited by the operator" (kept; our version goes to FILE.backuppc-agent-new),
like dpkg's conffiles, with the state kept in the file itself.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

SIDECAR_SUFFIX = ".backuppc-agent-new"
_FILE_MARK = "# Written by backuppc-agent install (sha256:{digest}); edits are kept: install then"
_FILE_MARK_TAIL = " writes FILE.backuppc-agent-new."
_FILE_MARK_RE = re.compile(r"^# Written by backuppc-agent install \(sha256:([0-9a-f]{16})\).*$")
_BLOCK_BEGIN = "# >>> backuppc-agent (sha256:{digest}) written by backuppc-agent install >>>"
_BLOCK_BEGIN_RE = re.compile(r"^# >>> backuppc-agent \(sha256:([0-9a-f]{16})\).*>>>$")
_BLOCK_END = "# <<< backuppc-agent <<<"


class Action(enum.Enum):
    """What install does with one target."""

    CREATE = "create"  # missing: written
    UPDATE = "update"  # ours and untouched, but out of date: replaced
    UNCHANGED = "unchanged"  # already what we would write
    KEPT = "kept"  # edited by the operator; we have nothing new for it
    CONFLICT = "conflict"  # edited (or not ours) and we have something new: sidecar


@dataclass(frozen=True)
class Decision:
    """The action for one target and the full text to write (file or sidecar)."""

    action: Action
    text: str | None


def digest(body: str) -> str:
    """The short SHA-256 recorded in markers."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def decide(current: str | None, recorded: str | None, new: str) -> Action:
    """Compare what is there (``current``, its marker's ``recorded`` digest) with ``new``."""
    if current is None:
        return Action.CREATE
    if current == new and recorded == digest(new):
        return Action.UNCHANGED
    if recorded is not None and digest(current) == recorded:
        return Action.UPDATE
    if recorded is not None and recorded == digest(new):
        return Action.KEPT
    return Action.CONFLICT


# -- whole files --------------------------------------------------------------


def stamp_file(body: str) -> str:
    """Return ``body`` with the marker line (after a ``#!`` line, if any)."""
    mark = _FILE_MARK.format(digest=digest(body)) + _FILE_MARK_TAIL + "\n"
    if body.startswith("#!") and "\n" in body:
        first, _, rest = body.partition("\n")
        return f"{first}\n{mark}{rest}"
    return mark + body


def parse_file(text: str) -> tuple[str, str | None]:
    """Split a file into (body without marker, recorded digest or None)."""
    lines = text.splitlines(keepends=True)
    for index in range(min(2, len(lines))):
        match = _FILE_MARK_RE.match(lines[index].rstrip("\n"))
        if match:
            return "".join(lines[:index] + lines[index + 1 :]), match.group(1)
    return text, None


def plan_file(current_text: str | None, body: str) -> Decision:
    """Decide what to do with a whole managed file whose wanted content is ``body``."""
    if current_text is None:
        return Decision(Action.CREATE, stamp_file(body))
    current, recorded = parse_file(current_text)
    if recorded is None and current == body:
        # Already exactly ours, unmarked: the Debian package's own copy (a conffile).
        return Decision(Action.UNCHANGED, None)
    action = decide(current, recorded, body)
    if action in (Action.UNCHANGED, Action.KEPT):
        return Decision(action, None)
    return Decision(action, stamp_file(body))


# -- blocks in other files ----------------------------------------------------


def render_block(body: str) -> str:
    """The block with its begin (carrying the digest) and end lines."""
    text = body if body.endswith("\n") else body + "\n"
    return f"{_BLOCK_BEGIN.format(digest=digest(text))}\n{text}{_BLOCK_END}\n"


def find_block(text: str) -> tuple[int, int, str, str] | None:
    """Locate our block: (start, end offsets, body, recorded digest), or None."""
    offset = 0
    start = None
    recorded = ""
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        match = _BLOCK_BEGIN_RE.match(stripped)
        if start is None and match:
            start, recorded, body_start = offset, match.group(1), offset + len(line)
        elif start is not None and stripped == _BLOCK_END:
            return start, offset + len(line), text[body_start:offset], recorded
        offset += len(line)
    return None


def plan_block(current_text: str | None, body: str) -> Decision:
    """Decide what to do with our block inside a shared file (which may not exist)."""
    wanted = body if body.endswith("\n") else body + "\n"
    block = render_block(wanted)
    if current_text is None:
        return Decision(Action.CREATE, block)
    found = find_block(current_text)
    if found is None:
        separator = "" if not current_text or current_text.endswith("\n") else "\n"
        return Decision(Action.CREATE, current_text + separator + "\n" + block)
    start, end, current, recorded = found
    action = decide(current, recorded, wanted)
    if action in (Action.UNCHANGED, Action.KEPT):
        return Decision(action, None)
    return Decision(action, current_text[:start] + block + current_text[end:])
