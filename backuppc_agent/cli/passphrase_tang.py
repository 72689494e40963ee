"""``passphrase set KEYFILE --tang URL ...`` and ``passphrase rekey KEYFILE``: Clevis + Tang.

The passphrase is stored only as a Clevis JWE in ``[state] dir/unlock/``, mode
0600. Each Tang's signing-key thumbprint is shown and pinned: confirmed at a
terminal, or accepted (and printed) with ``--yes``; clevis then checks it and
never trusts on first use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from backuppc_agent import exitcodes, paths
from backuppc_agent.agent import passphrases, tang
from backuppc_agent.agent.tang import Pin, TangRefusedError
from backuppc_agent.agent.unlock import tang_passphrase
from backuppc_agent.cli.common import config_notes, confirmed, load_config
from backuppc_agent.config import Config
from backuppc_agent.errors import BackupPCAgentError, UsageError


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
    if not yes:
        _confirm(url)
    else:
        print(f"accepted (--yes): pinned {thumbprints[0]} for {url}")
    return Pin(url, thumbprints[0])


def _confirm(url: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(f"not a terminal: check the thumbprint of {url} and pass --yes")
    if not confirmed("Do these match the Tang server's own keys (tang-show-keys)?"):
        raise BackupPCAgentError("thumbprint not confirmed: nothing stored")


def store(config: Config, key: Path, secret: str, pins: Sequence[Pin], threshold: int) -> Path:
    """Encrypt ``secret`` for ``pins`` and write the JWE (0600); return its path."""
    jwe = tang.encrypt(secret, pins, threshold)
    # The round trip, as the unlock at boot will do it: clevis hands the plaintext to OpenSSH.
    opened = tang.open_with(jwe, partial(passphrases.run_public, key, jwe, clevis=True))
    if opened.returncode != 0:
        raise BackupPCAgentError(f"what clevis stored does not open {key} again: nothing stored")
    where = tang.jwe_path(config.state.dir, key)
    paths.ensure_private_dir(config.state.dir, "state")
    paths.ensure_private_dir(where.parent, "unlock")
    paths.write_private_file(where, jwe)
    return where


def set_tang(key: Path, secret: str, args: argparse.Namespace) -> int:
    """``set --tang``: ``secret`` already opens ``key``; pin, encrypt and store it."""
    config = load_config(args)
    pins = [pin(url, args.yes) for url in args.tang]
    where = store(config, key, secret, pins, args.threshold)
    print(f"stored the passphrase of {key} for Tang ({args.threshold} of {len(pins)}) in {where}")
    config_notes(config, key, "tang")
    return exitcodes.OK


def rekey(key: Path, args: argparse.Namespace, read_secret: Callable[[Path], str]) -> int:
    """Decrypt the stored JWE and bind it again to the Tangs' current keys.

    If Tang can no longer open it (its old keys are gone), ``read_secret`` asks again.
    """
    config = load_config(args)
    where = tang.jwe_path(config.state.dir, key)
    jwe = paths.read_bounded(where, tang.JWE_MAX_BYTES)
    if jwe is None:
        raise BackupPCAgentError(f"no passphrase of {key} is stored for Tang ({where})")
    try:
        secret = tang_passphrase(config.state.dir, key)
    except TangRefusedError:
        print(f"Tang can no longer open the stored passphrase of {key}: give it again")
        secret = read_secret(key)
    if passphrases.is_encrypted(key) and not passphrases.opens(key, secret):
        raise BackupPCAgentError(f"that passphrase does not open {key}: nothing stored")
    pins = [pin(url, args.yes) for url in tang.jwe_urls(jwe)]
    threshold = tang.jwe_threshold(jwe)
    store(config, key, secret, pins, threshold)
    print(f"re-stored the passphrase of {key} for Tang ({threshold} of {len(pins)}) in {where}")
    return exitcodes.OK
