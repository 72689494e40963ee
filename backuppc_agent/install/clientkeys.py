"""The client's authorized_keys files, through a Session: where they are, read, write, undo.

Where: ``sshd -T -C user=LOGIN,host=ADDR,addr=ADDR`` on the client (root only),
its ``authorizedkeysfile`` with %h %u %U %% expanded; else sshd's default
``~/.ssh/authorized_keys``. ADDR, the server as the client sees it, is the
first field of the session's ``$SSH_CONNECTION``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from backuppc_agent import names
from backuppc_agent.errors import BackupPCAgentError
from backuppc_agent.install import client_scripts as scripts
from backuppc_agent.install.client import MAX_AUTHKEYS_BYTES, Session, b64, sha256, shown
from backuppc_agent.ssh.remote import decode

DEFAULT_AUTHKEYS = ".ssh/authorized_keys"
#: sshd expands these in AuthorizedKeysFile; a value with any other token is skipped.
TOKENS = ("%%", "%h", "%u", "%U")


@dataclass(frozen=True)
class Account:
    """The login account on the client, and the files its sshd reads."""

    address: str | None
    home: str
    user: str
    files: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class KeysFile:
    """One authorized_keys file as read: its state, text (when read), saved copy."""

    path: str
    state: str
    text: str | None = None
    saved: bool = False


def expand(value: str, home: str, user: str, uid: str) -> str | None:
    """An AuthorizedKeysFile value as sshd expands it for this account; None if we can't."""
    out, index = [], 0
    values = {"%%": "%", "%h": home, "%u": user, "%U": uid}
    while index < len(value):
        token = value[index : index + 2]
        if value[index] == "%":
            if token not in values:
                return None
            out.append(values[token])
            index += 2
        else:
            out.append(value[index])
            index += 1
    path = "".join(out)
    return path if path.startswith("/") else f"{home.rstrip('/')}/{path}"


def parse_inspect(output: str) -> Account:
    """The inspect script's lines as an Account; raise BackupPCAgentError if malformed."""
    fields: dict[str, str] = {}
    values: list[str] = []
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        if key == "akf":
            values += value.split()
        elif key in ("addr", "home", "user", "uid", "akf-unknown"):
            fields[key] = value
    home, user, uid = fields.get("home", ""), fields.get("user", ""), fields.get("uid", "")
    if not home.startswith("/") or not user:
        raise BackupPCAgentError(f"the client gave no home or user: {shown(output)}")
    if values:
        files = [expand(v, home, user, uid) for v in values if v.lower() != "none"]
        source = "sshd -T"
    else:
        files = [f"{home.rstrip('/')}/{DEFAULT_AUTHKEYS}"]
        source = f"sshd's default ({fields.get('akf-unknown', 'sshd -T gave none')})"
    return Account(
        _address(fields.get("addr", "")), home, user, tuple(f for f in files if f), source
    )


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def inspect(session: Session) -> Account:
    """Ask the client where its sshd reads this account's keys."""
    return parse_inspect(decode(session.script(scripts.INSPECT_SCRIPT)[:65536]))


def parse_read(output: bytes, paths: tuple[str, ...]) -> list[KeysFile]:
    """The read script's output for ``paths``; raise BackupPCAgentError if it does not add up."""
    found, rest = [], output
    for path in paths:
        header, newline, rest = rest.partition(b"\n")
        words = decode(header).split()
        if not newline or not words:
            raise BackupPCAgentError(f"{path}: the client's answer was cut short")
        if words[0] != "file" or len(words) != 3 or not words[1].isdigit():
            found.append(KeysFile(path, shown(" ".join(words))))
            continue
        size = int(words[1])
        if size > MAX_AUTHKEYS_BYTES or len(rest) < size:
            raise BackupPCAgentError(f"{path}: changed while it was read: try again")
        found.append(KeysFile(path, "file", decode(rest[:size]), words[2] == "1"))
        rest = rest[size:]
    return found


def read(session: Session, paths: tuple[str, ...]) -> list[KeysFile]:
    """Read each of ``paths`` on the client (bounded)."""
    output = session.script(scripts.READ_SCRIPT, str(MAX_AUTHKEYS_BYTES), *paths)
    return parse_read(output[: len(paths) * (MAX_AUTHKEYS_BYTES + 100)], paths)


def write(session: Session, path: str, old: str, new: str, gate: str) -> None:
    """Keep the saved copy, install the gate, replace ``path`` (if it still holds ``old``)."""
    output = decode(session.script(scripts.WRITE_SCRIPT, path, sha256(old), b64(gate), b64(new)))
    last = names.last_line(output)
    if last != "written":
        raise BackupPCAgentError(f"{path}: {shown(last.removeprefix('error ') or 'no answer')}")


def undo_by_shell(session: Session, paths: tuple[str, ...]) -> str | None:
    """Move a saved copy back over its file and remove the gate; the path, or None if none."""
    last = names.last_line(decode(session.script(scripts.UNDO_SCRIPT, *paths)[:65536]))
    if last == "nothing":
        return None
    if last.startswith("restored ") and last[9:] in paths:
        return last[9:]
    raise BackupPCAgentError(f"undo failed on the client: {shown(last.removeprefix('error '))}")
