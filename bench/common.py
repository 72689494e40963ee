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


#: Median of a short-lived command (the pre-dump hook, status, wait) on a 2-core machine.
#: A hook runs once per backup, next to a transfer of minutes: well below what anyone
#: notices. (The earlier 40 ms target measured start-up machinery, not what a user feels.)
STARTUP_TARGET_MS = 120.0


def at_most(value: float, limit: float) -> bool:
    return value <= limit


BARE_START_MS = 11.0  # bare Python start on a quiet machine of this kind (FACTS.md)


def interleaved_medians(commands: dict[str, list[str]], runs: int = 31) -> dict[str, float]:
    """Median wall seconds of each command, run in turns so load drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for turn in range(runs + 2):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if turn >= 2:  # two warm-up turns
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def startup_context(seconds: float, bare: float) -> str:
    """How a short command compares with a bare interpreter start measured in the same run."""
    ratio = seconds / bare
    return (
        f"same run: python -c pass {bare * 1000:.1f} ms, ratio {ratio:.2f} "
        f"(= {ratio * BARE_START_MS:.0f} ms at a quiet {BARE_START_MS:g} ms start)"
    )
