"""Fetch a client's host key and add it to the known_hosts file our ssh options use.

Under BatchMode an unknown host key fails: the most common first-day error. When no
key comes, ``ssh.reach`` says why (an sshd >= 9.8 penalizing ssh-keyscan's connections).
"""

from __future__ import annotations

import pwd
from pathlib import Path

from backuppc_agent import proc
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import fsops
from backuppc_agent.install.authkeys import PublicKey, read_key
from backuppc_agent.ssh import reach

KEY_TYPE = "ssh-ed25519"
SCAN_TIMEOUT_SECONDS = 5
LOOKUP_TIMEOUT_SECONDS = 10
DEFAULT_PORT = 22


def host_field(address: str, port: int) -> str:
    """The known_hosts name of ADDRESS:PORT (``[addr]:port`` unless port 22)."""
    return address if port == DEFAULT_PORT else f"[{address}]:{port}"


def make_keyscan_command(
    address: str, port: int, timeout: int = SCAN_TIMEOUT_SECONDS
) -> tuple[str, ...]:
    """``ssh-keyscan -t ed25519 -T 5 -p PORT -- ADDRESS``."""
    return ("ssh-keyscan", "-t", "ed25519", "-T", str(timeout), "-p", str(port), "--", address)


def parse_key_lines(text: str) -> list[PublicKey]:
    """Host keys from ssh-keyscan or known_hosts lines (comments and markers skipped)."""
    rows = [line.split() for line in text.splitlines()]
    keys = [read_key(" ".join(row[1:3])) for row in rows if row and row[0][0] not in "#@"]
    return [key for key in keys if key is not None]


def scan(address: str, port: int, timeout: int = SCAN_TIMEOUT_SECONDS) -> PublicKey:
    """The client's ed25519 host key; raise BackupPCAgentError saying why none came."""
    result = proc.run(make_keyscan_command(address, port, timeout), timeout * 3)
    output = result.stdout.decode(errors="replace")
    keys = [key for key in parse_key_lines(output) if key.key_type == KEY_TYPE]
    if keys:
        return keys[0]
    said = reach.classify(result.stderr.decode(errors="replace") + "\n" + output)
    # ssh-keyscan is silent when refused or timed out: only a connect tells those apart.
    kind = said or reach.probe(address, port, timeout)
    why = reach.explain(kind, address, port, timeout, reach.source_address(address, port))
    raise BackupPCAgentError(f"no ed25519 host key from {address} port {port}: {why}")


def lookup(known_hosts: Path, name: str) -> str:
    """The lines ``ssh-keygen -F`` finds for ``name`` (hashed ones too); "" if none or no file."""
    if not known_hosts.is_file():
        return ""
    found = proc.run(("ssh-keygen", "-F", name, "-f", str(known_hosts)), LOOKUP_TIMEOUT_SECONDS)
    return found.stdout.decode(errors="replace") if found.returncode == 0 else ""


def already_known(known_hosts: Path, name: str, key: PublicKey) -> bool:
    """True if known_hosts holds ``key`` for ``name``; raise if a different key of its type.

    That is what a man-in-the-middle looks like, and also a reinstalled client.
    """
    known = parse_key_lines(lookup(known_hosts, name))
    same_type = [k for k in known if k.key_type == key.key_type]
    if any(k.blob == key.blob for k in same_type):
        return True
    if same_type:
        raise BackupPCAgentError(
            f"{known_hosts} holds a DIFFERENT ed25519 key for {name} ({same_type[0].fingerprint}):"
            f" if the client was reinstalled, remove it first: ssh-keygen -R '{name}' "
            f"-f {known_hosts}"
        )
    return False


def add(known_hosts: Path, name: str, key: PublicKey, user: pwd.struct_passwd) -> None:
    """Append ``name TYPE BASE64`` to known_hosts, which then belongs to ``user``.

    As root too (one made by ``sudo ssh-keyscan >>`` was root's). Raises
    BackupPCAgentError naming the directory's owner and the fix.
    """
    owner = fsops.owner_of(user)
    fsops.ensure_dir(known_hosts.parent, 0o700, owner)
    current = fsops.read_text(known_hosts) or ""
    if current and not current.endswith("\n"):
        current += "\n"
    line = f"{name} {key.key_type} {key.base64}\n"
    try:
        fsops.write_text(known_hosts, current + line, 0o644, owner, keep_owner=False)
    except fsops.InstallError as err:
        fix = _write_fix(known_hosts.parent, user.pw_name)
        raise BackupPCAgentError(f"{err}; {fix}") from err


def _write_fix(directory: Path, user: str) -> str:
    try:
        who = pwd.getpwuid(directory.stat().st_uid).pw_name
    except (OSError, KeyError):
        who = "someone else"
    return (
        f"{directory} belongs to {who}: run trust as root (sudo backuppc-agent trust ...), "
        f"or give it to {user}: chown {user} {directory}"
    )
