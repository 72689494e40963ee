"""Fetch a client's host key and add it to the known_hosts file our ssh options use.

Under BatchMode an unknown host key fails ("Host key verification failed"),
the most common first-day error. ``ssh-keyscan -t ed25519`` fetches the key
(``-q`` prints nothing on OpenSSH 9.2); ``ssh-keygen -F`` finds what the file
already holds, hashed entries included. When no key comes back, ``ssh.reach``
says why: nothing listens, no answer, or an sshd >= 9.8 dropping this server
for its PerSourcePenalties (which ssh-keyscan's own connections earn).
"""

from __future__ import annotations

from pathlib import Path

from backuppc_agent import proc
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import fsops
from backuppc_agent.install.authkeys import PublicKey, read_key
from backuppc_agent.ssh import reach

KEY_TYPE = "ssh-ed25519"
SCAN_TIMEOUT_SECONDS = 5
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
    keys = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0].startswith("@"):
            continue
        key = read_key(" ".join(fields[1:3]))
        if key is not None:
            keys.append(key)
    return keys


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


def known_keys(known_hosts: Path, name: str) -> list[PublicKey]:
    """The keys ``known_hosts`` holds for ``name`` (hashed entries too)."""
    if not known_hosts.is_file():
        return []
    argv = ("ssh-keygen", "-F", name, "-f", str(known_hosts))
    result = proc.run(argv, SCAN_TIMEOUT_SECONDS)
    return parse_key_lines(result.stdout.decode(errors="replace"))


def add(known_hosts: Path, name: str, key: PublicKey, owner: fsops.Owner, user: str) -> None:
    """Append ``name TYPE BASE64`` to known_hosts, which then belongs to ``owner``.

    known_hosts is the BackupPC user's: rewritten as root it goes to ``owner``
    (one made by ``sudo ssh-keyscan >>`` was root's); as that user, to the user
    and its own group (a foreign group could not be kept: fchown is refused).
    Raises BackupPCAgentError naming the directory's owner and the fix.
    """
    fsops.ensure_dir(known_hosts.parent, 0o700, owner)
    current = fsops.read_text(known_hosts) or ""
    if current and not current.endswith("\n"):
        current += "\n"
    line = f"{name} {key.key_type} {key.base64}\n"
    try:
        fsops.write_text(known_hosts, current + line, 0o644, owner, keep_owner=False)
    except fsops.InstallError as err:
        raise BackupPCAgentError(f"{err}; {_write_fix(known_hosts.parent, user)}") from err


def _write_fix(directory: Path, user: str) -> str:
    """Who owns ``directory`` and how to get past it."""
    import pwd  # noqa: PLC0415

    try:
        uid = directory.stat().st_uid
        who = pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        who = "someone else"
    return (
        f"{directory} belongs to {who}: run trust as root (sudo backuppc-agent trust ...), "
        f"or give it to {user}: chown {user} {directory}"
    )
