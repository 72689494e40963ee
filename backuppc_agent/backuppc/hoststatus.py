"""BackupPC's own files, parsed: each host's backups, a few config scalars, the server's words.

Pure functions (text in, records out) that follow BackupPC 4.4's readers
(BackupPC::Storage::Text): ``TopDir/pc/HOST/backups`` (one tab-separated line per
backup: num, type, startTime, endTime, ...). A line BackupPC itself would not
write raises MalformedError: the file is being rewritten or damaged. The
server's free-text fields become a few bounded words (``state_word``,
``result_word``, ``error_word``): label values, never the text itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backuppc_agent import exitcodes
from backuppc_agent.errors import BackupPCAgentError

#: The backup types in a backups file; "active" is a dump still running.
BACKUP_TYPES = ("full", "incr", "partial", "active")
_BACKUP_LINE = re.compile(r"(\d+)\t(full|incr|partial|active)\t(\d+)\t(\d*)(?:\t|$)")
_CONF_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
#: What the server does for a host now (BackupPC's Status_* words, shortened).
STATES = frozenset({"idle", "backup-starting", "backup-in-progress", "restore-starting",
                    "restore-in-progress", "archive-in-progress", "admin-pending",
                    "admin-running", "link-pending", "link-running"})  # fmt: skip
#: How the last attempt ended (BackupPC's Reason_* words), plus "aborted", "none", "other".
RESULTS = frozenset({"done", "failed", "aborted", "no-ping", "canceled", "idle", "none",
                     "restore-done", "restore-failed", "restore-canceled", "archive-done",
                     "archive-failed", "archive-canceled", "other"})  # fmt: skip
_REASONS = {
    "backup_done": "done",
    "backup_failed": "failed",
    "no_ping": "no-ping",
    "backup_canceled_by_user": "canceled",
    "nothing_to_do": "idle",
    "restore_canceled_by_user": "restore-canceled",
    "archive_canceled_by_user": "archive-canceled",
}
#: A pre hook's exit code (DumpPreUserCmd returned error status CODE*256) -> error word.
_HOOK_EXITS = {
    exitcodes.HOOK_NOT_READY: "keys-not-loaded",
    exitcodes.HOOK_SSH_FAILED: "ssh-master-failed",
    exitcodes.BAD_NAME: "bad-name",
}
_PRE_COMMAND = re.compile(r"(?:Dump|Restore|Archive)PreUserCmd returned error status (\d+)")
_ERROR_WORDS = (
    (re.compile(r"aborted by user"), "aborted-by-user"),
    (re.compile(r"aborted|signal=", re.I), "aborted"),
    (re.compile(r"^(?:no ping|ping too slow|host not found)"), "no-ping"),
    (re.compile(r"No files dumped for share"), "no-files"),
    (re.compile(r"PostUserCmd returned error"), "post-command-failed"),
    (re.compile(r"rsync|[Tt]ar exited|smbclient|fileListReceive|fatal error"), "transfer-failed"),
)  # fmt: skip


class MalformedError(BackupPCAgentError):
    """A BackupPC file cannot be read, or holds something BackupPC would not have written."""


@dataclass(frozen=True)
class Backups:
    """One host's backups file, summed up."""

    counts: dict[str, int]
    #: the full or incr backup with the latest start, as BackupPC's summary page picks it
    last_number: int | None = None
    last_type: str | None = None
    last_end: float | None = None


def parse_backups(text: str) -> Backups:
    """TopDir/pc/HOST/backups -> Backups; raise MalformedError on a line BackupPC never writes."""
    counts = dict.fromkeys(BACKUP_TYPES, 0)
    last: tuple[int, int, str, float] | None = None
    for line in text.splitlines():
        if not line:
            continue
        match = _BACKUP_LINE.match(line)
        # only a finished full or incr is sure to have an end time: BackupPC 4.4
        # keeps a stopped dump as "partial" with its end time (and sizes) empty
        if match is None or (match.group(2) in ("full", "incr") and not match.group(4)):
            raise MalformedError(f"malformed backups line {line[:80]!r}")
        number, kind, start, end = match.groups()
        counts[kind] += 1
        if kind in ("full", "incr") and (last is None or int(start) > last[0]):
            last = (int(start), int(number), kind, float(end))
    if last is None:
        return Backups(counts)
    return Backups(counts, last[1], last[2], last[3])


def config_number(settings: dict[str, str], key: str) -> float | None:
    """The number ``$Conf{KEY}`` is set to in ``settings`` (confdir.assignments), or None.

    Raise MalformedError if KEY is set to anything but a plain number (an
    expression, a variable): then only Perl knows the value.
    """
    value = settings.get(key)
    if value is None:
        return None
    if _CONF_NUMBER.fullmatch(value) is None:
        raise MalformedError(f"$Conf{{{key}}} is not set to a plain number")
    return float(value)


def state_word(state: object) -> str:
    """BackupPC's Status_* word for what it does now -> a STATES word, or "other"."""
    word = str(state or "").removeprefix("Status_").replace("_", "-")
    return word if word in STATES else "other"


def result_word(reason: object, error: object) -> str:
    """BackupPC's Reason_* word (and error) for the last attempt -> a RESULTS word."""
    text = str(reason or "")
    if not text:
        return "none"
    word = _REASONS.get(
        text.removeprefix("Reason_"), text.removeprefix("Reason_").replace("_", "-")
    )
    if word == "failed" and error_word(error).startswith("aborted"):
        return "aborted"
    return word if word in RESULTS else "other"


def error_word(error: object) -> str:
    """BackupPC's free-text error of the last attempt -> one of a few words ("none" if none)."""
    text = str(error or "")
    if not text:
        return "none"
    pre = _PRE_COMMAND.search(text)
    if pre:
        return _HOOK_EXITS.get(int(pre.group(1)) >> 8, "pre-command-failed")
    for pattern, word in _ERROR_WORDS:
        if pattern.search(text):
            return word
    return "other"
