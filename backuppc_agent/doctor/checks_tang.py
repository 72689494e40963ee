"""doctor's checks of unattended unlock: which one is in force, and with Tang its health.

For each key: the JWE exists and only its owner (the BackupPC user) can read
it; each Tang it is bound to answers; the thumbprint pinned at store time is
still among those the Tang advertises (else: ``passphrase rekey``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from backuppc_agent.agent import tang
from backuppc_agent.doctor import Env, Finding, Verdict
from backuppc_agent.errors import BackupPCAgentError


def check_unlock(env: Env) -> list[Finding]:
    """Say which unlock is in force; with "tang", check each key's JWE and Tang."""
    config = env.ctx.config
    method = config.agent.unlock
    findings = [Finding("unlock", Verdict.OK, f'unattended unlock: "{method}"')]
    if method != "tang":
        return findings
    for key in config.agent.keys:
        findings += _key_findings(key, tang.jwe_path(config.state.dir, key), env.ctx.user.pw_uid)
    return findings


def _key_findings(key: Path, where: Path, owner_uid: int) -> list[Finding]:
    fix = f"backuppc-agent passphrase set {key} --tang URL"
    try:
        info = os.lstat(where)
        jwe = where.read_bytes()
    except OSError as err:
        return [Finding("tang", Verdict.FAIL, f"{key}: {where}: {err.strerror}", fix)]
    if not stat.S_ISREG(info.st_mode) or info.st_uid != owner_uid or info.st_mode & 0o077:
        message = f"{where}: must be a regular file of uid {owner_uid}, mode 0600"
        return [Finding("tang", Verdict.FAIL, message, f"chmod 600 {where}")]
    try:
        pinned = tang.jwe_thumbprints(jwe)
    except BackupPCAgentError as err:
        return [Finding("tang", Verdict.FAIL, f"{where}: {err}", fix)]
    return [_tang_finding(key, url, thps) for url, thps in pinned.items()]


def _tang_finding(key: Path, url: str, pinned: list[str]) -> Finding:
    rekey = f"backuppc-agent passphrase rekey {key}"
    try:
        advertised = tang.advertised_thumbprints(url)
    except BackupPCAgentError as err:
        return Finding("tang", Verdict.FAIL, f"{key}: {url}: {err}", "start that Tang server")
    if not set(pinned) & set(advertised):
        message = f"{key}: {url} no longer advertises the signing key pinned at store time"
        return Finding("tang", Verdict.WARN, message, rekey)
    return Finding("tang", Verdict.OK, f"{key}: {url} answers and advertises the pinned key")
