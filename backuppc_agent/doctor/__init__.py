"""``doctor``: run every check, one line each with a fix.

A finding is ok, FAIL (exit 1), warn (cannot be decided automatically: reported,
does not fail) or skip (does not apply here). Checks read everything through
``Env``: tests point it at fixture trees instead of /etc/backuppc, /proc and /sys.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from backuppc_agent.agent.probe import probe
from backuppc_agent.agent.readiness import Readiness, check_probe
from backuppc_agent.backuppc.confdir import ConfDir
from backuppc_agent.install import access
from backuppc_agent.install.context import Context

logger = logging.getLogger(__name__)


class Verdict(enum.Enum):
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
        """``VERDICT check: message; fix: ...`` (an ok line shows no fix)."""
        text = f"{self.verdict.value:<4} {self.check}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix and self.verdict is not Verdict.OK else text


@dataclass(frozen=True)
class Env:
    """Everything the checks look at."""

    ctx: Context
    backuppc: ConfDir
    procfs: Path
    sysfs: Path
    running_uid: int = field(default_factory=os.getuid)
    runner: access.Runner = access.run_as

    @cached_property
    def readiness(self) -> Readiness:
        """The BackupPC user's agent, probed and judged once for every check that reads it."""
        agent = self.ctx.config.agent
        seconds = agent.probe_timeout_seconds
        return check_probe(agent, probe(agent.socket, seconds, self.ctx.user.pw_uid), seconds)


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
    return any(finding.verdict is Verdict.FAIL for finding in findings)
