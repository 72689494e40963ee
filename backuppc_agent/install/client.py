"""``client-setup``'s ssh to a client, as BackupPC's: one plain session per step.

As the BackupPC user, our ssh options, ``IdentitiesOnly`` on exactly the keys meant.
A step is a fixed script fed to ``sh -s -- ARGS``; its output is untrusted.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backuppc_agent import names, proc
from backuppc_agent.backuppc import confdir
from backuppc_agent.backuppc.confdir import ConfDir, Host
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import access, templates
from backuppc_agent.install.authkeys import GATE_NAME, PublicKey
from backuppc_agent.ssh import remote, sshconfig

UNDO_COMMAND = f"{GATE_NAME} undo"
GATE_FILE = f"client/{GATE_NAME}"
GATE_VERSION = re.compile(rf"^GATE_VERSION=({remote.GATE_VERSION})", re.MULTILINE)
#: The line printed before every script: what a login shell's rc files print before it is skipped.
MARKER = "backuppc-agent-client-setup"
#: The remote command is one argument of the login shell's -c: Linux caps one at 128 KiB.
MAX_COMMAND_CHARS = 120_000
#: On top of the connect timeout: every step is a few small commands.
SESSION_SECONDS = 30.0


def gate_text() -> str:
    """The gate script shipped in the package; raise BackupPCAgentError if missing."""
    try:
        return templates.read(GATE_FILE)
    except OSError as err:
        raise BackupPCAgentError(f"the package lacks its gate script: {err}") from err


def gate_version(text: str) -> str:
    """The ``GATE_VERSION=`` the gate script declares ("unknown" if none)."""
    found = GATE_VERSION.search(text)
    return found.group(1) if found else "unknown"


def protect_args_problem(backuppc: ConfDir, host: Host) -> str | None:
    """Why the gate refuses rsync ``host``'s backups (--protect-args), or None if it would not."""
    protected = confdir.protected_args(backuppc.settings(host.name))
    if host.xfer_method != "rsync" or not protected:
        return None
    return (
        f"{host.name}: the gate restricts the backup key, but {', '.join(protected)} still "
        "pass --protect-args, which the gate refuses: its backups fail"
    )


@dataclass(frozen=True)
class Session:
    """How to reach one client: our config, login@address, the user ssh runs as, its keys."""

    config: Config
    login: str
    address: str
    runas: pwd.struct_passwd | None = None
    identity_files: tuple[Path, ...] = ()

    def argv(self, command: str) -> tuple[str, ...]:
        """ssh (after runuser when we drop to the BackupPC user) to run ``command``."""
        mux = dataclasses.replace(self.config.mux, identity_files=self.identity_files)
        config = dataclasses.replace(self.config, mux=mux)
        quiet = ("-o", "LogLevel=ERROR", "-o", "RequestTTY=no", "-x", "-a")
        words = (*quiet, "-l", self.login, "--", self.address, command)
        return (*self.prefix(), *sshconfig.ssh_command(config, Path("none"), "no", *words))

    def prefix(self) -> tuple[str, ...]:
        """runuser to the BackupPC user, when we drop to it (access.as_user)."""
        return () if self.runas is None else access.as_user(self.runas)

    def env(self) -> dict[str, str]:
        """The child's environment: ours, or the BackupPC user's HOME and names."""
        if self.runas is None:
            return proc.base_env()
        name = self.runas.pw_name
        return proc.base_env({"HOME": self.runas.pw_dir, "USER": name, "LOGNAME": name})

    def run(self, command: str, script: str | None = None, check: bool = False) -> bytes:
        """Run ``command`` (fed ``script``); its stdout.

        Raises BackupPCAgentError if ssh fails, or with ``check`` if the command does.
        """
        if len(command) > MAX_COMMAND_CHARS:
            raise BackupPCAgentError(
                f"the remote command would be {len(command)} characters: too long"
            )
        timeout = self.config.hooks.connect_timeout_seconds + SESSION_SECONDS
        data = None if script is None else script.encode()
        result = proc.run(self.argv(command), timeout, self.env(), input_data=data)
        stderr = result.stderr.decode(errors="replace")
        if result.returncode == remote.SSH_FAILED:
            raise BackupPCAgentError(self._ssh_failure(stderr))
        if check and result.returncode != 0:
            said = remote.escape_untrusted(names.last_line(stderr) or "no message")
            raise BackupPCAgentError(f"{self.address}: {said} (exit {result.returncode})")
        return result.stdout

    def _ssh_failure(self, stderr: str) -> str:
        last = remote.escape_untrusted(names.last_line(stderr) or "ssh failed")
        where = f"{self.login}@{self.address}"
        if "Host key verification failed" in stderr:
            return f"{where}: {last}: trust its host key first (backuppc-agent trust CLIENT)"
        if "Permission denied" in stderr:
            return f"{where}: {last}: the agent's keys are not authorized there"
        return f"{where}: {last}"

    def script(self, script: str, *args: str) -> bytes:
        """Run MARKER's echo, then ``script`` with ``args``; its output after the MARKER line.

        Raises BackupPCAgentError if no MARKER line came.
        """
        stdout = self.run(shlex.join(["sh", "-s", "--", *args]), f"echo {MARKER}\n{script}")
        marker = MARKER.encode() + b"\n"
        at = stdout.find(marker)
        if at < 0 or (at > 0 and stdout[at - 1 : at] != b"\n"):
            said = remote.escape_untrusted(remote.decode(stdout))
            raise BackupPCAgentError(f"the client did not run our script: {said}")
        return stdout[at + len(marker) :]

    def probe(self) -> remote.Probe:
        """Send the probe as the remote command; what answered."""
        return remote.parse_probe(self.run(remote.PROBE_COMMAND))

    @contextmanager
    def offering(self, keys: Sequence[PublicKey]) -> Iterator[Session]:
        """This session offering only ``keys``, as .pub files the user it runs as can read."""
        directory = Path(tempfile.mkdtemp(prefix="backuppc-agent-setup-"))
        try:
            files = tuple(directory / f"key{index}.pub" for index in range(len(keys)))
            for path, key in zip(files, keys, strict=True):
                path.write_text(f"{key.key_type} {key.base64}\n")
            if self.runas is not None:
                for path in (*files, directory):
                    os.chown(path, self.runas.pw_uid, self.runas.pw_gid)
            yield dataclasses.replace(self, identity_files=files)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
