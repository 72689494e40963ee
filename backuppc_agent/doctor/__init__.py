"""``doctor``: run every check, one line each with a fix.

A check returns findings: ok, FAIL (exit 1), warn (cannot be decided
automatically; reported, does not fail) or skip (does not apply here).
Everything the checks read comes in through ``Env``: tests point it at
fixture trees instead of /etc/backuppc, /proc and /sys.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backuppc_agent import proc
from backuppc_agent.agent.probe import ProbeResult, probe
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import SignChecks, sign_keys
from backuppc_agent.backuppc.confdir import ConfDir
from backuppc_agent.install import access
from backuppc_agent.install.context import Context

logger = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """The outcome of one check."""

    OK = "ok"
    FAIL = "FAIL"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Finding:
    """One line of doctor's report."""

    check: str
    verdict: Verdict
    message: str
    fix: str = ""

    def line(self) -> str:
        """``VERDICT check: message; fix: ...``."""
        text = f"{self.verdict.value:<4} {self.check}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix and self.verdict is not Verdict.OK else text


def _run_ssh_version(ssh: str) -> str:
    """``ssh -V`` prints its version on stderr."""
    try:
        result = proc.run((ssh, "-V"), timeout=10)
    except proc.CommandError as err:
        return str(err)
    return (result.stderr or result.stdout).decode(errors="replace")


@dataclass(frozen=True)
class Env:
    """Everything the checks look at."""

    ctx: Context
    backuppc: ConfDir
    procfs: Path
    sysfs: Path
    probe_fn: Callable[[Path, float, int | None], ProbeResult] = probe
    sign_fn: Callable[[Path, Sequence[Identity], float, int | None], SignChecks] = sign_keys
    ssh_version: Callable[[str], str] = _run_ssh_version
    running_uid: int = field(default=-1)
    runner: access.Runner = access.run_as


Check = Callable[[Env], list[Finding]]


def run_checks(env: Env, checks: list[Check]) -> list[Finding]:
    """Run every check; a check that crashes is reported as a FAIL, never a traceback."""
    findings: list[Finding] = []
    for check in checks:
        try:
            findings.extend(check(env))
        except Exception as err:  # doctor reports every check, whatever happens
            logger.debug("check %s crashed", check.__name__, exc_info=True)
            name = check.__name__.removeprefix("check_")
            findings.append(Finding(name, Verdict.FAIL, f"could not be checked: {err}"))
    return findings


def failed(findings: list[Finding]) -> bool:
    """True if any finding is a FAIL."""
    return any(finding.verdict is Verdict.FAIL for finding in findings)
