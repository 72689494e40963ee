"""Kill what a backup started on a client, and ask what the backup key gets there.

The mux protocol cannot signal a remote process, and without a pty a remote command
outlives its ssh client. So each transfer is marked in its environment (``env
BACKUPPC_AGENT_JOB=TAG.TOKEN CMD``), and a kill session feeds kill_script.py to
``sh -s`` (no quoting depends on the client's login shell).
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import names, proc
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.ssh import masterfiles, sshconfig
from backuppc_agent.ssh.kill_script import KILL_SCRIPT

JOB_VAR = "BACKUPPC_AGENT_JOB"
#: The script's own TERM-to-KILL grace is 3 s; the session gets this much on top.
KILL_EXTRA_SECONDS = 10.0
SSH_FAILED = 255
#: A probe session through a live master: a few milliseconds unless the client is wedged.
PROBE_SECONDS = 10.0
PROBE_COMMAND = "echo backuppc-agent-gate-probe"
SHELL_ANSWER = "backuppc-agent-gate-probe"
#: A gate version, as its GATE_VERSION= line and its probe answer spell it.
GATE_VERSION = r"[0-9A-Za-z._+-]{1,40}"
GATE_ANSWER = re.compile(rf"backuppc-agent-gate ({GATE_VERSION}) (backup|restore)")
MAX_PROBE_BYTES = 64 * 1024
SHOWN_CHARS = 200


class Answer(enum.StrEnum):
    """What the probe met on the client."""

    SHELL = "shell"  # an unrestricted shell echoed it
    GATE = "gate"  # our gate answered
    OTHER = "other"  # another forced command


@dataclass(frozen=True)
class Probe:
    """The probe's outcome: kind, the gate's version and mode, the raw last line."""

    answer: Answer
    version: str = ""
    mode: str = ""
    text: str = ""


def parse_probe(stdout: bytes) -> Probe:
    """Classify the probe's output (only its last non-empty line counts: rc files chatter)."""
    last = names.last_line(decode(stdout[:MAX_PROBE_BYTES]))
    if last == SHELL_ANSWER:
        return Probe(Answer.SHELL, text=last)
    found = GATE_ANSWER.fullmatch(last)
    if found:
        return Probe(Answer.GATE, found.group(1), found.group(2), last)
    return Probe(Answer.OTHER, text=escape_untrusted(last or "(nothing)"))


def escape_untrusted(text: str) -> str:
    """Untrusted text from a client for a one-line message: escaped, cut short."""
    return names.escaped(text, SHOWN_CHARS)


def decode(data: bytes) -> str:
    """Bytes from the client as text that encodes back to the same bytes."""
    return data.decode("utf-8", errors="surrogateescape")


def client_tag(client: str) -> str:
    """A short hex tag for a client, safe in any shell word and regex.

    CRC-32 is enough: it only keeps apart the clients that share a machine.
    """
    return f"{zlib.crc32(client.encode()):08x}"


def new_token(client: str) -> str:
    """A fresh job token ``TAG.RANDOM`` (hex and one dot)."""
    return f"{client_tag(client)}.{os.urandom(6).hex()}"


def mark_command(token: str, command: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Prefix a remote command so the job and its children carry the token."""
    return ("env", f"{JOB_VAR}={token}", *command)


def make_kill_command(
    config: Config, client: str, host: str, mode: str, ident: str
) -> tuple[str, ...]:
    """argv of the kill session: through CLIENT's master if alive, else a direct login."""
    return sshconfig.client_command(config, client, host, "no", ("sh", "-s", "--", mode, ident))


def _parse(output: str) -> int | None:
    for line in reversed(output.splitlines()):
        if line.startswith("killed "):
            # the client's output is untrusted: "killed " alone, or "killed ²", is no count
            fields = line.split()
            tail = fields[1] if len(fields) > 1 else ""
            return int(tail) if tail.isascii() and tail.isdigit() else None
    return None


def kill_remote(config: Config, client: str, token: str | None, host: str | None = None) -> str:
    """Kill one job (``token``) or every job of CLIENT (``token`` None); one summary line.

    In memory files: a full state dir never stops a kill. Raises BackupPCAgentError.
    """
    sshconfig.control_path(config.mux.control_dir, client)  # refuse a bad name before any use
    target = host or masterfiles.remembered_host(config, client) or client
    mode, ident = ("job", token) if token else ("client", client_tag(client))
    argv = make_kill_command(config, client, target, mode, ident)
    timeout = config.hooks.connect_timeout_seconds + KILL_EXTRA_SECONDS
    try:
        code, raw = proc.run_in_memory(argv, timeout, proc.base_env(), KILL_SCRIPT.encode())
    except proc.CommandError as err:
        raise BackupPCAgentError(f"kill-remote {client}: {err}") from err
    output = raw.decode("utf-8", "replace")
    killed = _parse(output)
    if code != 0 or killed is None:
        last = names.last_line(output) or f"ssh exited {code}"
        raise BackupPCAgentError(f"kill-remote {client}: {names.printable(last, SHOWN_CHARS)}")
    what = "job" if token else "jobs"
    return f"killed {killed} remote process(es) of {client}'s backup {what}"


def probe_access(config: Config, client: str, host: str, record: bool = True) -> Answer:
    """What the backup key gets on CLIENT through its master (the gate, a shell, another command).

    ``record``: keep the answer (for doctor and the metrics). Raises BackupPCAgentError.
    """
    argv = sshconfig.client_command(config, client, host, "no", (PROBE_COMMAND,))
    try:
        result = proc.run(argv, PROBE_SECONDS, proc.base_env())
    except proc.CommandError as err:
        raise BackupPCAgentError(f"probe of {client}: {err}") from err
    if result.returncode == SSH_FAILED:
        said = names.last_line(result.stderr.decode("utf-8", "replace")) or "ssh failed"
        raise BackupPCAgentError(f"probe of {client}: {names.printable(said, SHOWN_CHARS)}")
    answer = parse_probe(result.stdout).answer
    if record:
        masterfiles.remember(masterfiles.masters_dir(config), client, "access", answer)
    return answer


def remembered_accesses(state_dir: Path) -> dict[str, tuple[Answer, float]]:
    """Each client's last recorded probe answer and when it was recorded; {} if none."""
    found = {}
    for path in sorted((state_dir / masterfiles.MASTERS_DIR).glob("*.access")):
        client = path.name.removesuffix(".access")
        access = masterfiles.recall(path.parent, client, "access")
        with contextlib.suppress(OSError):
            if access in set(Answer):
                found[client] = (Answer(access), path.stat().st_mtime)
    return found
