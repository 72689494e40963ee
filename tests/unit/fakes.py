"""Fakes passed through the product's seams: a clock whose sleeps only move it forward."""

from __future__ import annotations

from dataclasses import dataclass, field


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
