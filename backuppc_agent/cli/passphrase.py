"""``backuppc-agent passphrase set|delete|check|rekey KEYFILE``: for unattended unlock.

A passphrase is stored only once ssh-keygen shows that it opens the key: in the
keyring, or with ``--tang`` only as a Clevis JWE bound to Tangs whose signing-key
thumbprints are pinned (confirmed, or ``--yes``): clevis never trusts on first use.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from backuppc_agent import exitcodes, paths
from backuppc_agent.agent import passphrases, tang
from backuppc_agent.agent.passphrases import PassphraseError
from backuppc_agent.agent.tang import Pin, TangRefusedError
from backuppc_agent.agent.unlock import with_tang
from backuppc_agent.cli.common import confirmed, load_config
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError, ConfigError, UsageError

MAX_LINE_CHARS = 8192


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("set", "delete", "check", "rekey"), help="what to do")
    parser.add_argument("key", metavar="KEYFILE", help="the private key file")
    parser.add_argument(
        "--tang", metavar="URL", action="append", default=[],
        help="set: store the passphrase only as a Clevis JWE bound to this Tang server "
        "(repeat for several)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", metavar="N", type=int, default=1,
        help="set --tang: how many of the Tang servers must answer to unlock (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--yes", action="store_true",
        help="set --tang, rekey: accept the advertised signing-key thumbprints (printed)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Dispatch on the action; every failure is one line on stderr."""
    key = passphrases.key_path(args.key)
    if args.tang and args.action != "set":
        raise UsageError("--tang goes with set only (rekey reads the URLs from the stored JWE)")
    if args.tang:
        check_urls(args.tang, args.threshold)
    if args.action == "set":
        return _set(key, args)
    if args.action == "rekey":
        return rekey(key, args)
    config = _config_or_none(args)
    if config is not None and config.agent.unlock == "tang":
        return _delete_tang(key, config) if args.action == "delete" else _check_tang(key, config)
    return _delete(key) if args.action == "delete" else _check(key)


def _config_or_none(args: argparse.Namespace) -> Config | None:
    """The config; None when it does not load (the keyring needs none)."""
    try:
        return load_config(args)
    except ConfigError:
        return None


def _set(key: Path, args: argparse.Namespace) -> int:
    if not passphrases.is_encrypted(key):
        raise BackupPCAgentError(f"{key} has no passphrase: there is nothing to store")
    secret = _read_passphrase(key)
    _must_open(key, secret)
    config: Config | None
    if args.tang:
        config = load_config(args)
        where = store_tang(config, key, secret, args.tang, args.threshold, args.yes)
    else:
        config = _config_or_none(args)
        passphrases.store(key, secret)
        where = f"in keyring {passphrases.backend_name()}"
    print(f"stored the passphrase of {key} {where}")
    _config_notes(config, key, "tang" if args.tang else "keyring")
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


def _must_open(key: Path, secret: str) -> None:
    if not passphrases.opens(key, secret):
        raise BackupPCAgentError(f"that passphrase does not open {key}: nothing stored")


def _config_notes(config: Config | None, key: Path, unlock: str) -> None:
    """Say when the configuration (if any loads) would not load ``key`` with ``unlock``."""
    if config is None:
        return
    if config.agent.unlock != unlock:
        print(f'note: {config.source}: set [agent] unlock = "{unlock}" to load it at agent start')
    if key not in config.agent.keys:
        print(f"note: {config.source}: add {key} to [agent] keys to load it at agent start")


def _delete(key: Path) -> int:
    if not passphrases.delete(key):
        raise BackupPCAgentError(f"no passphrase of {key} is stored: nothing deleted")
    print(f"deleted the passphrase of {key} from keyring {passphrases.backend_name()}")
    return exitcodes.OK


def _check(key: Path) -> int:
    secret = passphrases.get(key)
    if secret is None:
        raise PassphraseError(f"no passphrase of {key} is stored in the keyring")
    if not passphrases.opens(key, secret):
        raise PassphraseError(f"the stored passphrase does not open {key}")
    print(f"ok: the stored passphrase opens {key}")
    return exitcodes.OK


def _check_tang(key: Path, config: Config) -> int:
    opened = with_tang(config.state.dir, key, partial(passphrases.run_public, key, clevis=True))
    if not passphrases.opened(key, opened):
        raise PassphraseError(f"the passphrase stored for Tang does not open {key}")
    print(f"ok: Tang opens the stored passphrase and it opens {key}")
    return exitcodes.OK


def _delete_tang(key: Path, config: Config) -> int:
    where = tang.jwe_path(config.state.dir, key)
    try:
        where.unlink()
    except FileNotFoundError:
        message = f"no passphrase of {key} is stored for Tang: nothing deleted"
        raise BackupPCAgentError(message) from None
    except OSError as err:
        raise BackupPCAgentError(f"{where}: cannot delete: {err.strerror}") from err
    print(f"deleted {where}")
    return exitcodes.OK


def check_urls(urls: Sequence[str], threshold: int) -> None:
    """Raise UsageError unless every URL is http(s) and 1 <= threshold <= len(urls)."""
    for url in urls:
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise UsageError(f"--tang {url!r}: must be an http:// or https:// URL")
    if len(set(urls)) != len(urls):
        raise UsageError("--tang: the same URL is given twice")
    if not 1 <= threshold <= len(urls):
        raise UsageError(f"--threshold {threshold}: must be between 1 and {len(urls)} (the URLs)")


def pin(url: str, yes: bool) -> Pin:
    """Fetch ``url``'s advertisement, show its signing thumbprint, have it confirmed."""
    thumbprints = tang.advertised_thumbprints(url)
    if not thumbprints:
        raise BackupPCAgentError(f"Tang at {url} advertises no signing key")
    print(f"Tang at {url} signs with key thumbprint(s): {', '.join(thumbprints)}")
    if yes:
        print(f"accepted (--yes): pinned {thumbprints[0]} for {url}")
    elif not sys.stdin.isatty():
        raise UsageError(f"not a terminal: check the thumbprint of {url} and pass --yes")
    elif not confirmed("Do these match the Tang server's own keys (tang-show-keys)?"):
        raise BackupPCAgentError("thumbprint not confirmed: nothing stored")
    return Pin(url, thumbprints[0])


def store_tang(
    config: Config, key: Path, secret: str, urls: Sequence[str], threshold: int, yes: bool
) -> str:
    """Pin each Tang, encrypt ``secret`` for them and write the JWE (0600).

    Returns ``for Tang (T of N) in PATH``; raises if the JWE would not open ``key``.
    """
    pins = [pin(url, yes) for url in urls]
    jwe = tang.encrypt(secret, pins, threshold)
    # The round trip, as the unlock at boot will do it: clevis hands the plaintext to OpenSSH.
    opened = tang.open_with(jwe, partial(passphrases.run_public, key, jwe, clevis=True))
    if opened.returncode != 0:
        raise BackupPCAgentError(f"what clevis stored does not open {key} again: nothing stored")
    where = tang.jwe_path(config.state.dir, key)
    paths.ensure_private_dir(config.state.dir, "state")
    paths.ensure_private_dir(where.parent, "unlock")
    paths.write_private_file(where, jwe)
    return f"for Tang ({threshold} of {len(pins)}) in {where}"


def rekey(key: Path, args: argparse.Namespace) -> int:
    """Decrypt the stored JWE and bind it again to the Tangs' current keys.

    If Tang can no longer open it (its old keys are gone), the passphrase is asked again.
    """
    config = load_config(args)
    where = tang.jwe_path(config.state.dir, key)
    jwe = paths.read_bounded(where, tang.JWE_MAX_BYTES)
    if jwe is None:
        raise BackupPCAgentError(f"no passphrase of {key} is stored for Tang ({where})")
    try:
        secret = tang.plaintext(tang.open_with(jwe, partial(tang.run_decrypt, jwe)))
    except TangRefusedError:
        print(f"Tang can no longer open the stored passphrase of {key}: give it again")
        secret = _read_passphrase(key)
    _must_open(key, secret)
    stored = store_tang(config, key, secret, tang.jwe_urls(jwe), tang.jwe_threshold(jwe), args.yes)
    print(f"re-stored the passphrase of {key} {stored}")
    return exitcodes.OK
