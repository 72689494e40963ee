"""Network-bound unlock: a key's passphrase kept only as a Clevis JWE that Tang must help open.

Clevis does the cryptography, without ``-y``: every pin carries its ``thp``, so clevis checks
the advertisement's signature and never asks on a tty. We sort its failures into "no Tang
answers" and "Tang refuses". At unlock clevis hands the plaintext to ssh-add (askpass.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backuppc_agent import askpass, names, proc
from backuppc_agent.agent.passphrases import PassphraseError
from backuppc_agent.errors import BackupPCAgentError

CLEVIS_TIMEOUT_SECONDS = 20.0
JOSE_TIMEOUT_SECONDS = 10.0
ADV_TIMEOUT_SECONDS = 3.0
#: An advertisement is a few hundred bytes; a JWE of several pins a few KiB.
ADV_MAX_BYTES = 1 << 16
JWE_MAX_BYTES = 1 << 20
UNLOCK_DIR = "unlock"
THUMBPRINT_COMMAND = ("jose", "jwk", "thp", "-i-", "-a", "S256")
#: What clevis's tang pin prints (alone or inside sss) when a Tang does not help.
TANG_FAILED = b"Error communicating with server"


class TangError(BackupPCAgentError):
    """Clevis or a Tang failed in a way no retry fixes (bad JWE, bad pin, wrong thumbprint)."""


class TangUnreachableError(TangError):
    """No Tang (or too few of them) answers: retrying later may work."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = tuple(urls)
        super().__init__("no Tang answers: " + ", ".join(self.urls))


class TangRefusedError(PassphraseError):
    """A Tang answers but its current keys cannot open the JWE (old keys removed)."""


@dataclass(frozen=True)
class Pin:
    """One Tang server and the thumbprint of the signing key trusted for it."""

    url: str
    thp: str


def jwe_path(state_dir: Path, key: Path) -> Path:
    """``STATE_DIR/unlock/KEYNAME-HASH.jwe``: the hash of the key's path tells same names apart."""
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:12]
    return state_dir / UNLOCK_DIR / f"{key.name}-{digest}.jwe"


def pin_config(pins: Sequence[Pin], threshold: int) -> tuple[str, str]:
    """Clevis's pin and its JSON config: ``tang`` for one pin, ``sss`` for several."""
    tangs = [{"url": pin.url, "thp": pin.thp} for pin in pins]
    if len(tangs) == 1:
        return "tang", json.dumps(tangs[0], sort_keys=True)
    return "sss", json.dumps({"t": threshold, "pins": {"tang": tangs}}, sort_keys=True)


def make_encrypt_command(pin: str, config: str) -> tuple[str, ...]:
    """``clevis encrypt PIN CONFIG``: no ``-y``, so the pinned ``thp`` is checked."""
    return ("clevis", "encrypt", pin, config)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fetch_advertisement(url: str, timeout: float = ADV_TIMEOUT_SECONDS) -> dict[str, Any]:
    """GET URL/adv; raise TangUnreachableError if no answer, TangError if it is not Tang."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/adv", timeout=timeout) as answer:  # noqa: S310
            raw = answer.read(ADV_MAX_BYTES)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise TangUnreachableError([url]) from err
    try:
        adv = json.loads(raw)
        payload = json.loads(_b64(adv["payload"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise TangError(f"{url} is not a Tang server (its /adv is no advertisement)") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("keys"), list):
        raise TangError(f"{url} is not a Tang server (its advertisement lists no keys)")
    return payload


def thumbprints(payload: dict[str, Any]) -> list[str]:
    """The S256 thumbprints of an advertisement's signing keys; raise TangError if jose fails."""
    keys = [k for k in payload.get("keys", []) if isinstance(k, dict)]
    keys = [k for k in keys if "verify" in k.get("key_ops", [])]
    if not keys:
        return []
    data = json.dumps({"keys": keys}).encode()
    result = _run(THUMBPRINT_COMMAND, data, JOSE_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise TangError(f"jose jwk thp failed: {_last_line(result.stderr)}")
    return result.stdout.decode().split()


def advertised_thumbprints(url: str) -> list[str]:
    """The thumbprints of the signing keys Tang at ``url`` advertises now."""
    return thumbprints(fetch_advertisement(url))


def encrypt(secret: str, pins: Sequence[Pin], threshold: int) -> bytes:
    """The JWE of ``secret`` for ``pins``; raise TangUnreachableError or TangError."""
    result = _run(make_encrypt_command(*pin_config(pins, threshold)), secret.encode("utf-8"))
    if result.returncode != 0 or not result.stdout:
        detail = _last_line(result.stderr)
        if "Unable to fetch advertisement" in detail:
            raise TangError(f"clevis encrypt: {detail} (is the thumbprint still advertised?)")
        raise TangError(f"clevis encrypt failed: {detail}")
    return result.stdout


def run_decrypt(jwe: bytes) -> subprocess.CompletedProcess[bytes]:
    """``clevis decrypt`` of ``jwe``, the plaintext captured: only rekey needs it (askpass.py)."""
    return _run(askpass.CLEVIS_DECRYPT, jwe)


def plaintext(result: subprocess.CompletedProcess[bytes]) -> str:
    """The plaintext run_decrypt printed; raise TangError if it failed."""
    if result.returncode != 0 or not result.stdout:
        raise TangError(f"clevis decrypt failed: {_last_line(result.stderr)}")
    return result.stdout.decode("utf-8")


def open_with(
    jwe: bytes, attempt: Callable[[], subprocess.CompletedProcess[bytes]]
) -> subprocess.CompletedProcess[bytes]:
    """Run ``attempt`` (clevis decrypt, or ssh-add whose askpass runs it); return its result.

    Raises TangUnreachableError when too few of the JWE's Tangs answer, TangRefusedError
    when enough answer but cannot open it, TangError when the JWE is damaged.
    """
    urls = jwe_urls(jwe)  # a damaged JWE fails here, before any attempt
    result = attempt()
    if result.returncode == 0 or TANG_FAILED not in result.stderr:
        return result
    down = [url for url in urls if not _answers(url)]
    if len(urls) - len(down) < jwe_threshold(jwe):
        raise TangUnreachableError(down)
    # Enough Tangs answer now. They may have come back after clevis tried (a Tang
    # starting up at boot): only a second refusal means their keys cannot open it.
    again = attempt()
    if again.returncode == 0 or TANG_FAILED not in again.stderr:
        return again
    raise TangRefusedError(
        "Tang at " + ", ".join(u for u in urls if u not in down) + " answers but its "
        "current keys cannot open the stored passphrase (were its old keys removed?)"
    )


def _answers(url: str) -> bool:
    try:
        fetch_advertisement(url)
    except TangError:
        return False
    return True


def _header(jwe: bytes | str) -> dict[str, Any]:
    text = jwe.decode() if isinstance(jwe, bytes) else jwe
    try:
        header = json.loads(_b64(text.strip().split(".", 1)[0]))
    except (ValueError, binascii.Error) as err:
        raise TangError("the stored JWE is damaged (its header does not parse)") from err
    if not isinstance(header, dict) or not isinstance(header.get("clevis"), dict):
        raise TangError("the stored JWE is not a Clevis JWE")
    return header


def _tang_headers(jwe: bytes | str) -> list[dict[str, Any]]:
    clevis = _header(jwe)["clevis"]
    if clevis.get("pin") == "tang":
        return [clevis.get("tang", {})]
    if clevis.get("pin") == "sss":
        return [h for inner in clevis.get("sss", {}).get("jwe", []) for h in _tang_headers(inner)]
    raise TangError(f"the stored JWE uses clevis pin {clevis.get('pin')!r}, not tang or sss")


def jwe_urls(jwe: bytes | str) -> list[str]:
    """The Tang URLs the JWE was bound to, in order."""
    return [str(h.get("url", "")) for h in _tang_headers(jwe)]


def jwe_threshold(jwe: bytes | str) -> int:
    """How many of the JWE's Tangs must answer (1 for a single tang pin)."""
    clevis = _header(jwe)["clevis"]
    return int(clevis.get("sss", {}).get("t", 1)) if clevis.get("pin") == "sss" else 1


def jwe_thumbprints(jwe: bytes | str) -> dict[str, list[str]]:
    """Each Tang URL and the signing-key thumbprints of the advertisement it was bound to."""
    return {str(h.get("url", "")): thumbprints(h.get("adv", {})) for h in _tang_headers(jwe)}


def _run(
    argv: tuple[str, ...], data: bytes, timeout: float = CLEVIS_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[bytes]:
    return proc.run(argv, timeout, proc.base_env(), None, data)


def _last_line(data: bytes) -> str:
    return names.last_line(data.decode(errors="replace")) or "no message"
