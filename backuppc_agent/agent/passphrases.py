"""Key passphrases: kept in the keyring (username: the key's absolute path), given to
ssh-add and ssh-keygen only through our askpass helper, on a pipe (askpass.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from backuppc_agent import askpass, exitcodes, names, proc
from backuppc_agent.errors import BackupPCAgentError

logger = logging.getLogger(__name__)

SERVICE = "backuppc-agent"
ASKPASS_PROGRAM = "backuppc-agent-askpass"
SSH_ADD_TIMEOUT_SECONDS = 15.0
SSH_KEYGEN_TIMEOUT_SECONDS = 30.0


class PassphraseError(BackupPCAgentError):
    """A passphrase is missing or does not open its key."""

    exit_code = exitcodes.BAD_PASSPHRASE


class KeyringError(BackupPCAgentError):
    """The keyring backend failed (none configured, locked, unreadable)."""


def _keyring() -> Any:
    import keyring  # noqa: PLC0415  (only unlock and `passphrase` pay for it)

    return keyring


def backend_name() -> str:
    """The configured keyring backend's class, for messages."""
    backend = _keyring().get_keyring()
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def key_path(key: str | Path) -> Path:
    """A key file's absolute, normalized path, symlinks kept (as [agent] keys names it)."""
    return Path(os.path.normpath(Path(key).absolute()))


def entry_name(key: Path) -> str:
    """The keyring username of a key: its absolute path."""
    return str(key_path(key))


def get(key: Path) -> str | None:
    """The stored passphrase of ``key``, or None; raise KeyringError if the keyring fails."""
    try:
        return _keyring().get_password(SERVICE, entry_name(key))  # type: ignore[no-any-return]
    except Exception as err:  # any backend, any plugin: report, never crash
        raise KeyringError(f"keyring {backend_name()}: cannot read: {err}") from err


def store(key: Path, passphrase: str) -> None:
    """Store the passphrase of ``key``; raise KeyringError if the keyring refuses."""
    try:
        _keyring().set_password(SERVICE, entry_name(key), passphrase)
    except Exception as err:  # any backend, any plugin
        raise KeyringError(f"keyring {backend_name()}: cannot store: {err}") from err


def delete(key: Path) -> bool:
    """Delete the entry of ``key``; False if there was none."""
    errors = _keyring().errors
    try:
        _keyring().delete_password(SERVICE, entry_name(key))
    except errors.PasswordDeleteError:
        return False
    except Exception as err:  # any backend, any plugin
        raise KeyringError(f"keyring {backend_name()}: cannot delete: {err}") from err
    return True


def askpass_program() -> str:
    """The installed askpass helper: next to this Python's scripts, ours, or on PATH."""
    ours = [sysconfig.get_path("scripts"), str(Path(sys.argv[0]).absolute().parent)]
    search = os.pathsep.join([*ours, os.environ.get("PATH", os.defpath)])
    found = shutil.which(ASKPASS_PROGRAM, path=search)
    if found is None:
        raise KeyringError(f"{ASKPASS_PROGRAM} is not installed (reinstall backuppc-agent)")
    return found


def askpass_env(socket: Path | None = None, clevis: bool = False) -> dict[str, str]:
    """The environment that makes ssh-add/ssh-keygen ask our helper (``clevis``: to decrypt)."""
    extra = {"SSH_ASKPASS": askpass_program(), "SSH_ASKPASS_REQUIRE": "force"}
    if socket is not None:
        extra["SSH_AUTH_SOCK"] = str(socket)
    if clevis:
        extra[askpass.MODE_VAR] = askpass.CLEVIS
    return proc.base_env(extra)


def make_add_command(key: Path) -> tuple[str, ...]:
    """``ssh-add KEY``: the passphrase comes from askpass."""
    return ("ssh-add", str(key))


def make_public_command(key: Path) -> tuple[str, ...]:
    """``ssh-keygen -y -f KEY``: prints the public key only if the passphrase opens it."""
    return ("ssh-keygen", "-y", "-f", str(key))


def _feed(passphrase: str) -> bytes:
    return passphrase.encode("utf-8") + b"\n"


def opens(key: Path, passphrase: str) -> bool:
    """True if ``passphrase`` opens ``key``, or ``key`` needs none; raise as opened."""
    return opened(key, run_public(key, _feed(passphrase)))


def is_encrypted(key: Path) -> bool:
    """True if ``key`` needs a passphrase; raise as opened."""
    return not opened(key, run_public(key, b""))  # askpass answers nothing


def run_public(key: Path, feed: bytes, clevis: bool = False) -> subprocess.CompletedProcess[bytes]:
    """ssh-keygen -y on ``key`` with ``feed`` for askpass (a JWE if ``clevis``).

    Raises BackupPCAgentError, naming ``key``, if it is no file or ssh-keygen cannot run.
    """
    if not Path(key).is_file():
        raise BackupPCAgentError(f"{key}: no such key file")
    argv = make_public_command(key)
    try:
        return proc.run(argv, SSH_KEYGEN_TIMEOUT_SECONDS, askpass_env(None, clevis), None, feed)
    except proc.CommandError as err:
        raise BackupPCAgentError(f"{key}: {err}") from err


def opened(key: Path, result: subprocess.CompletedProcess[bytes]) -> bool:
    """Whether ssh-keygen -y ``result`` opened ``key``: it printed the public key.

    An unencrypted key opens without asking askpass. False means the passphrase did not
    open it; raises BackupPCAgentError if ``key`` is not a usable private key.
    """
    if result.returncode == 0:
        return True
    complaint = _complaint(result)
    if complaint is not None:
        raise BackupPCAgentError(f"{key}: not a usable private key: {complaint}")
    return False


def _complaint(result: subprocess.CompletedProcess[bytes]) -> str | None:
    """OpenSSH's last word on a failed ``result``; None if it blames the passphrase or is silent."""
    detail = result.stderr.decode(errors="replace").strip()
    return None if not detail or "passphrase" in detail.lower() else names.last_line(detail)


def add(socket: Path, key: Path, passphrase: str) -> None:
    """Load ``key`` into the agent on ``socket``; raise as check_added."""
    check_added(run_add(socket, key, _feed(passphrase)), socket, key)


def run_add(
    socket: Path, key: Path, feed: bytes, clevis: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """ssh-add ``key`` to the agent on ``socket``, ``feed`` for askpass (a JWE if ``clevis``)."""
    argv = make_add_command(key)
    return proc.run(argv, SSH_ADD_TIMEOUT_SECONDS, askpass_env(socket, clevis), None, feed)


def check_added(result: subprocess.CompletedProcess[bytes], socket: Path, key: Path) -> None:
    """Raise PassphraseError or BackupPCAgentError unless ssh-add ``result`` loaded ``key``."""
    if result.returncode == 0:
        return
    if result.returncode == 2:
        detail = result.stderr.decode(errors="replace").strip()
        raise BackupPCAgentError(f"ssh-add cannot reach the agent on {socket}: {detail}")
    complaint = _complaint(result)
    if complaint is None:
        raise PassphraseError(f"the stored passphrase does not open {key}")
    raise BackupPCAgentError(f"ssh-add {key} failed: {complaint}")
