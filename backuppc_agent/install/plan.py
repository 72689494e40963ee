"""Plan and apply ``install``: decide per target, show diffs, write what changed.

Idempotent: a second run finds everything "unchanged" and writes nothing. An
operator's edit is never overwritten: it is "kept" when we have nothing new
for that file, or our version goes next to it as FILE.backuppc-agent-new.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent.install import fsops, managed
from backuppc_agent.install.context import Context
from backuppc_agent.install.managed import Action
from backuppc_agent.install.targets import Directory, Target

logger = logging.getLogger(__name__)

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
    """Decide what to do with one target."""
    for packaged in target.packaged:
        if fsops.read_text(ctx.under(packaged)) == target.body:
            return Step(target, ctx.under(packaged), Action.UNCHANGED, target.body, None, None)
    disk = ctx.under(target.path)
    current = fsops.read_text(disk)
    if target.block:
        decision = managed.plan_block(current, target.body)
    else:
        decision = managed.plan_file(current, target.body)
    if decision.action is Action.CONFLICT:
        sidecar = disk.with_name(disk.name + managed.SIDECAR_SUFFIX)
        old = fsops.read_text(sidecar)
        write = None if old == decision.text else sidecar
        return Step(target, disk, decision.action, old, decision.text, write)
    write_path = disk if decision.action in _WRITES else None
    return Step(target, disk, decision.action, current, decision.text, write_path)


def plan(ctx: Context, targets: list[Target]) -> list[Step]:
    """Decide every target."""
    return [plan_target(ctx, target) for target in targets]


def missing_dirs(ctx: Context, dirs: list[Directory]) -> list[Directory]:
    """The directories that do not exist yet."""
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
            f"kept as is, ours is in {step.disk_path}{managed.SIDECAR_SUFFIX}: merge by hand"
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
