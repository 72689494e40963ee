"""What every benchmark module uses: timing helpers and the result row."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One row of the table: a measured figure beside its target and a peer figure."""

    name: str
    value: float
    unit: str
    target: str = ""
    peer: str = ""
    ok: bool | None = None


def median_seconds(action: Callable[[], object], runs: int = 21, warmup: int = 2) -> float:
    """Median wall time of ``action`` over ``runs`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def command_median(
    argv: Sequence[str], runs: int = 21, env: dict[str, str] | None = None, expect: int | None = 0
) -> float:
    """Median wall seconds of running ``argv`` (output discarded)."""

    def once() -> None:
        code = subprocess.call(
            list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        if expect is not None and code != expect:
            raise RuntimeError(f"{argv} exited {code}, expected {expect}")

    return median_seconds(once, runs)


def at_most(value: float, limit: float) -> bool:
    return value <= limit
