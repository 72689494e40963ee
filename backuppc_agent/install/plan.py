"""Plan and apply ``install``: decide per target, show diffs, write what changed.

Idempotent: a second run finds everything "unchanged" and writes nothing. An
operator's edit is never overwritten: it is "kept" when we have nothing new
for that file, or our version goes next to it as FILE.backuppc-agent-new.

What install writes carries a marker with the SHA-256 of what it wrote: a
whole file gets one marker line, a block inside someone else's file (BackupPC's
config.pl, ~/.profile) sits between a begin and an end line. Comparing the
marker with the current text tells "ours, untouched" (safe to update) from
"edited by the operator" (kept; our version goes to FILE.backuppc-agent-new),
like dpkg's conffiles, with the state kept in the file itself.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent.install import fsops
from backuppc_agent.install.context import Context
from backuppc_agent.install.targets import Directory, Target

logger = logging.getLogger(__name__)

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


# -- install's steps -----------------------------------------------------------

_WRITES = (Action.CREATE, Action.UPDATE, Action.CONFLICT)


@dataclass(frozen=True)
class Step:
    """The decision for one target: what is there, and what we would write where."""

    target: Target
    disk_path: Path
    action: Action
    old_text: str | None
    new_text: str | None
    write_path: Path | None

    @property
    def writes(self) -> bool:
        """True if applying this step changes a file."""
        return self.write_path is not None


def plan_target(ctx: Context, target: Target) -> Step:
    for packaged in target.packaged:
        if fsops.read_text(ctx.under(packaged)) == target.body:
            return Step(target, ctx.under(packaged), Action.UNCHANGED, target.body, None, None)
    disk = ctx.under(target.path)
    current = fsops.read_text(disk)
    plan_text = plan_block if target.block else plan_file
    decision = plan_text(current, target.body)
    if decision.action is Action.CONFLICT:
        sidecar = disk.with_name(disk.name + SIDECAR_SUFFIX)
        old = fsops.read_text(sidecar)
        write = None if old == decision.text else sidecar
        return Step(target, disk, decision.action, old, decision.text, write)
    write_path = disk if decision.action in _WRITES else None
    return Step(target, disk, decision.action, current, decision.text, write_path)


def plan(ctx: Context, targets: list[Target]) -> list[Step]:
    return [plan_target(ctx, target) for target in targets]


def missing_dirs(ctx: Context, dirs: list[Directory]) -> list[Directory]:
    return [directory for directory in dirs if not ctx.under(directory.path).is_dir()]


def apply(ctx: Context, steps: list[Step], dirs: list[Directory]) -> None:
    """Create the directories and write every step that changes something."""
    user_owner = fsops.Owner.of_user(ctx.user.pw_name)
    for directory in dirs:
        fsops.ensure_dir(ctx.under(directory.path), 0o700, user_owner)
    for step in steps:
        if step.write_path is None or step.new_text is None:
            continue
        if step.target.for_user:
            owner = user_owner
            fsops.ensure_dir(step.write_path.parent, 0o700, user_owner)
        else:
            owner = fsops.Owner()
            fsops.ensure_dir(step.write_path.parent, 0o755, owner)
        fsops.write_text(step.write_path, step.new_text, step.target.mode, owner)
        logger.debug("wrote %s", step.write_path)


def describe(step: Step, dry_run: bool) -> str:
    """One report line for a step."""
    what = f"{step.disk_path} ({step.target.what})"
    verb = step.action.value.upper() if step.action is Action.CONFLICT else step.action.value
    if step.action is Action.CREATE and step.target.block and step.old_text is not None:
        verb = "append to"  # our block added to a file that was already there
    if dry_run and step.writes:
        verb = "would " + verb.lower()
    if step.action is Action.KEPT:
        return f"{verb:<10} {what}: edited since install wrote it; nothing new from us"
    if step.action is Action.CONFLICT:
        return (
            f"{verb:<10} {what}: differs from what install writes (edited, or not ours); "
            f"kept as is, ours is in {step.disk_path}{SIDECAR_SUFFIX}: merge by hand"
        )
    return f"{verb:<10} {what}"


def diff(step: Step) -> str:
    """The unified diff of a step that writes (against the sidecar for a conflict)."""
    if not step.writes or step.new_text is None or step.write_path is None:
        return ""
    old = step.old_text or ""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        step.new_text.splitlines(keepends=True),
        fromfile=str(step.write_path) if step.old_text is not None else "/dev/null",
        tofile=str(step.write_path),
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
