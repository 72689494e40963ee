"""``client-setup``'s remote steps: reach a client as BackupPC does, read and rewrite its keys.

One plain ssh session per step (ControlMaster no), as the BackupPC user (root
drops to it with setpriv: uid, gid, groups, HOME) with our ssh options and
``IdentitiesOnly`` on the keys we mean. Each step is a fixed script from
client_scripts fed to ``sh -s -- ARGS``; what comes back is untrusted: bounded,
parsed strictly, shown escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
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
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import client_scripts as scripts
from backuppc_agent.install import templates
from backuppc_agent.install.authkeys import PublicKey
from backuppc_agent.ssh import remote, sshconfig

UNDO_COMMAND = "backuppc-agent-gate undo"
GATE_FILE = "client/backuppc-agent-gate"
GATE_VERSION = re.compile(r"^(?:GATE_)?VERSION=['\"]?([0-9A-Za-z._+-]{1,40})", re.MULTILINE)
MAX_AUTHKEYS_BYTES = 256 * 1024
#: The remote command is one argument of the login shell's -c: Linux caps one at 128 KiB.
MAX_COMMAND_CHARS = 120_000
#: On top of the connect timeout: every step is a few small commands.
SESSION_SECONDS = 30.0
SETPRIV = "setpriv"


def gate_text() -> str:
    """The gate script shipped in the package; raise BackupPCAgentError if missing."""
    try:
        return templates.read(GATE_FILE)
    except OSError as err:
        raise BackupPCAgentError(f"the package lacks its gate script: {err}") from err


def gate_version(text: str) -> str:
    """The ``VERSION=`` the gate script declares ("unknown" if none)."""
    found = GATE_VERSION.search(text)
    return found.group(1) if found else "unknown"


def probe(session: Session) -> remote.Probe:
    """Send the probe as the remote command; what answered."""
    return remote.parse_probe(session.run(remote.PROBE_COMMAND))


def shown(text: str) -> str:
    """Untrusted text for a one-line message: escaped, cut short."""
    return names.escaped(text, remote.SHOWN_CHARS)


@dataclass(frozen=True)
class Session:
    """How to reach one client: our config, login@address, the user ssh runs as."""

    config: Config
    login: str
    address: str
    runas: pwd.struct_passwd | None = None
    identity_files: tuple[Path, ...] = ()

    def argv(self, command: str) -> tuple[str, ...]:
        """ssh (after setpriv when we drop to the BackupPC user) to run ``command``."""
        # our options, but IdentitiesOnly with exactly the given key files
        mux = dataclasses.replace(self.config.mux, identity_files=self.identity_files)
        config = dataclasses.replace(self.config, mux=mux)
        quiet = ("-o", "LogLevel=ERROR", "-o", "RequestTTY=no", "-x", "-a")
        words = (*quiet, "-l", self.login, "--", self.address, command)
        return (*self.prefix(), *sshconfig.ssh_command(config, Path("none"), "no", *words))

    def prefix(self) -> tuple[str, ...]:
        if self.runas is None:
            return ()
        user = self.runas
        return (SETPRIV, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--")

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
            said = shown(names.last_line(stderr) or "no message")
            raise BackupPCAgentError(f"{self.address}: {said} (exit {result.returncode})")
        return result.stdout

    def _ssh_failure(self, stderr: str) -> str:
        last = shown(names.last_line(stderr) or "ssh failed")
        where = f"{self.login}@{self.address}"
        if "Host key verification failed" in stderr:
            return f"{where}: {last}: trust its host key first (backuppc-agent trust CLIENT)"
        if "Permission denied" in stderr:
            return f"{where}: {last}: the agent's keys are not authorized there"
        return f"{where}: {last}"

    def script(self, script: str, *args: str) -> bytes:
        """Run a client_scripts script with ``args``; its output after the marker line."""
        command = shlex.join(["sh", "-s", "--", *args])
        return after_marker(self.run(command, script))


def after_marker(stdout: bytes) -> bytes:
    """What follows the scripts' marker line; raise if the marker never came."""
    marker = scripts.MARKER.encode() + b"\n"
    at = stdout.find(marker)
    if at < 0 or (at > 0 and stdout[at - 1 : at] != b"\n"):
        said = shown(remote.decode(stdout))
        raise BackupPCAgentError(f"the client did not run our script: {said}")
    return stdout[at + len(marker) :]


@contextmanager
def identity_files(
    keys: Sequence[PublicKey], owner: pwd.struct_passwd | None
) -> Iterator[tuple[Path, ...]]:
    """``KEY.pub`` files of ``keys`` in a private directory ``owner`` can read; removed after."""
    directory = Path(tempfile.mkdtemp(prefix="backuppc-agent-setup-"))
    try:
        files = []
        for index, key in enumerate(keys):
            path = directory / f"key{index}.pub"
            path.write_text(f"{key.key_type} {key.base64}\n")
            files.append(path)
            if owner is not None:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        yield tuple(files)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sha256(text: str) -> str:
    """The hex digest sha256sum prints for ``text``'s bytes."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()


def b64(text: str) -> str:
    """``text`` as base64 (an argument safe for any shell)."""
    return base64.b64encode(text.encode("utf-8", errors="surrogateescape")).decode("ascii")
