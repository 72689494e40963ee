"""``backuppc-agent passphrase set|delete|check|rekey KEYFILE``: for unattended unlock.

``set`` prompts on a terminal (or reads one line from stdin), checks with
ssh-keygen that the passphrase really opens the key, and only then stores it:
in the keyring, or with ``--tang URL`` only as a Clevis JWE (cli/passphrase_tang.py).
``check`` and ``delete`` act on the store ``[agent] unlock`` names.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from functools import partial
from pathlib import Path

from backuppc_agent import exitcodes
from backuppc_agent.agent import passphrases, tang
from backuppc_agent.agent.passphrases import PassphraseError
from backuppc_agent.agent.unlock import with_tang
from backuppc_agent.cli import passphrase_tang
from backuppc_agent.cli.common import config_notes, load_config
from backuppc_agent.errors import BackupPCAgentError, ConfigError, UsageError

MAX_LINE_CHARS = 8192


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """ACTION KEYFILE [--tang URL ...] [--threshold N] [--yes]."""
    parser.add_argument("action", choices=("set", "delete", "check", "rekey"), help="what to do")
    parser.add_argument("key", metavar="KEYFILE", help="the private key file")
    parser.add_argument(
        "--tang",
        metavar="URL",
        action="append",
        default=[],
        help="set: store the passphrase only as a Clevis JWE bound to this Tang server "
        "(repeat for several)",
    )
    parser.add_argument(
        "--threshold",
        metavar="N",
        type=int,
        default=1,
        help="set --tang: how many of the Tang servers must answer to unlock (default 1)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="set --tang, rekey: accept the advertised signing-key thumbprints (printed)",
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to set, delete or check; every failure is one line on stderr."""
    key = passphrases.key_path(args.key)
    if args.tang and args.action != "set":
        raise UsageError("--tang goes with set only (rekey reads the URLs from the stored JWE)")
    if args.tang:
        passphrase_tang.check_urls(args.tang, args.threshold)
    if args.action == "set":
        return _set(key, args)
    if args.action == "rekey":
        return passphrase_tang.rekey(key, args, _read_passphrase)
    if _unlock(args) == "tang":
        return _delete_tang(key, args) if args.action == "delete" else _check_tang(key, args)
    if args.action == "delete":
        return _delete(key)
    return _check(key)


def _unlock(args: argparse.Namespace) -> str:
    """The configured unlock method; "none" when there is no valid config."""
    try:
        return load_config(args).agent.unlock
    except ConfigError:
        return "none"


def _set(key: Path, args: argparse.Namespace) -> int:
    if not passphrases.is_encrypted(key):
        raise BackupPCAgentError(f"{key} has no passphrase: there is nothing to store")
    secret = _read_passphrase(key)
    if not passphrases.opens(key, secret):
        raise BackupPCAgentError(f"that passphrase does not open {key}: nothing stored")
    if args.tang:
        return passphrase_tang.set_tang(key, secret, args)
    passphrases.store(key, secret)
    print(f"stored the passphrase of {key} in keyring {passphrases.backend_name()}")
    _config_notes(key, args)
    return exitcodes.OK


def _read_passphrase(key: Path) -> str:
    """Prompt without echo on a terminal; otherwise read exactly one line from stdin."""
    if sys.stdin.isatty():
        try:
            secret = getpass.getpass(f"Passphrase for {key}: ")
        except EOFError:
            secret = ""
    else:
        secret = sys.stdin.readline(MAX_LINE_CHARS).rstrip("\r\n")
    if not secret:
        raise BackupPCAgentError("no passphrase given: nothing stored")
    return secret


def _config_notes(key: Path, args: argparse.Namespace) -> None:
    """Say when the configuration would not use the stored passphrase."""
    try:
        config = load_config(args)
    except ConfigError:
        return
    config_notes(config, key, "keyring")


def _delete(key: Path) -> int:
    if not passphrases.delete(key):
        raise BackupPCAgentError(f"no passphrase of {key} is stored: nothing deleted")
    print(f"deleted the passphrase of {key} from keyring {passphrases.backend_name()}")
    return exitcodes.OK


def _check(key: Path) -> int:
    secret = passphrases.get(key)
    if secret is None:
        raise PassphraseError(f"no passphrase of {key} is stored in the keyring")
    if passphrases.is_encrypted(key) and not passphrases.opens(key, secret):
        raise PassphraseError(f"the stored passphrase does not open {key}")
    print(f"ok: the stored passphrase opens {key}")
    return exitcodes.OK


def _check_tang(key: Path, args: argparse.Namespace) -> int:
    state_dir = load_config(args).state.dir
    opened = with_tang(state_dir, key, partial(passphrases.run_public, key, clevis=True))
    if passphrases.is_encrypted(key) and opened.returncode != 0:
        raise PassphraseError(f"the passphrase stored for Tang does not open {key}")
    print(f"ok: Tang opens the stored passphrase and it opens {key}")
    return exitcodes.OK


def _delete_tang(key: Path, args: argparse.Namespace) -> int:
    where = tang.jwe_path(load_config(args).state.dir, key)
    try:
        where.unlink()
    except FileNotFoundError:
        raise BackupPCAgentError(
            f"no passphrase of {key} is stored for Tang: nothing deleted"
        ) from None
    except OSError as err:
        raise BackupPCAgentError(f"{where}: cannot delete: {err.strerror}") from err
    print(f"deleted {where}")
    return exitcodes.OK
