"""Plan and apply ``install``: decide per target, show diffs, write what changed.

Like dpkg's conffiles, what install writes records its SHA-256 (a marker line, or
begin/end lines around a block in config.pl, ~/.profile). Ours and untouched is
updated; an edit is kept, ours going to FILE.backuppc-agent-new if we have news.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from backuppc_agent.install import fsops
from backuppc_agent.install.context import Context
from backuppc_agent.install.targets import Target

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


class Decision(NamedTuple):
    """The action for one target and the full text to write (file or sidecar), if any."""

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


def _split_block(text: str) -> tuple[str, str | None, str | None, str]:
    """(text before our block, its body, its recorded digest, text after); no block: appended."""
    offset, start, recorded = 0, None, ""
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\n")
        match = _BLOCK_BEGIN_RE.match(stripped)
        if start is None and match:
            start, recorded, body_start = offset, match.group(1), offset + len(line)
        elif start is not None and stripped == _BLOCK_END:
            end = offset + len(line)
            return text[:start], text[body_start:offset], recorded, text[end:]
        offset += len(line)
    return text + ("" if not text or text.endswith("\n") else "\n") + "\n", None, None, ""


def plan_text(current_text: str | None, body: str, block: bool) -> Decision:
    """Decide what to do with a managed file, or our block in a shared one (maybe missing)."""
    if block:
        body = body if body.endswith("\n") else body + "\n"
        marked = f"{_BLOCK_BEGIN.format(digest=digest(body))}\n{body}{_BLOCK_END}\n"
    else:
        marked = stamp_file(body)
    if current_text is None:
        return Decision(Action.CREATE, marked)
    if block:
        before, current, recorded, after = _split_block(current_text)
    else:
        (current, recorded), before, after = parse_file(current_text), "", ""
    if recorded is None and current == body:
        return Decision(Action.UNCHANGED, None)  # exactly ours unmarked: the package's conffile
    action = decide(current, recorded, body)
    if action in (Action.UNCHANGED, Action.KEPT):
        return Decision(action, None)
    return Decision(action, before + marked + after)


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
    """What to do with ``target``; a packaged copy equal to it counts as unchanged."""
    for packaged in map(ctx.under, target.packaged):
        if fsops.read_text(packaged) == target.body:
            return Step(target, packaged, Action.UNCHANGED, target.body, None, None)
    disk = ctx.under(target.path)
    current = fsops.read_text(disk)
    action, text = plan_text(current, target.body, target.block)
    if action is not Action.CONFLICT:
        return Step(target, disk, action, current, text, None if text is None else disk)
    sidecar = disk.with_name(disk.name + SIDECAR_SUFFIX)
    old = fsops.read_text(sidecar)
    return Step(target, disk, action, old, text, None if old == text else sidecar)


def apply(ctx: Context, steps: list[Step], dirs: dict[Path, str]) -> None:
    """Create the directories (paths under the root) and write every step that changes something."""
    user = fsops.owner_of(ctx.user)
    for directory in dirs:
        fsops.ensure_dir(directory, 0o700, user)
    for step in steps:
        if step.write_path is None or step.new_text is None:
            continue
        owner = user if step.target.for_user else None
        fsops.ensure_dir(step.write_path.parent, 0o700 if step.target.for_user else 0o755, owner)
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
    if step.write_path is None or step.new_text is None:
        return ""
    lines = difflib.unified_diff(
        (step.old_text or "").splitlines(keepends=True),
        step.new_text.splitlines(keepends=True),
        fromfile=str(step.write_path) if step.old_text is not None else "/dev/null",
        tofile=str(step.write_path),
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
