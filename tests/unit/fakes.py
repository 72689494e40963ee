"""Fakes passed through the product's seams: a clock whose sleeps only move it forward,
and an agent that answers probes from a script on that clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backuppc_agent.agent.probe import ProbeResult
from backuppc_agent.agent.protocol import Identity
from backuppc_agent.agent.signing import SignCheck, Signed


@dataclass
class FakeClock:
    """A monotonic clock that advances only when something sleeps on it."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


class FakeAgent:
    """A probe that answers from a script: (seconds from the start, probe result)."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, ProbeResult]]) -> None:
        self.clock, self.start, self.script = clock, clock(), script
        self.timeouts: list[float] = []

    def __call__(self, path: Path, timeout: float) -> ProbeResult:
        self.timeouts.append(timeout)
        elapsed = self.clock() - self.start
        return [result for when, result in self.script if when <= elapsed][-1]

    def sign(self, path: Path, keys: Sequence[Identity], timeout: float) -> dict[str, SignCheck]:
        """Every key signs."""
        return {key.fingerprint: SignCheck(Signed.OK) for key in keys}
