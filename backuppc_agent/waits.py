"""Every wait in the package: poll a check until it passes or a deadline comes.

Pauses are select() on no descriptors: Python 3.11's time.sleep sleeps to an absolute
CLOCK_MONOTONIC deadline (TIMER_ABSTIME), which libfaketime (preloaded by the clock-jump
tests) rewrites into EINVAL. select() takes a relative timeout: no clock tool or jump
moves it.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def pause(seconds: float) -> None:
    """Wait ``seconds`` (nothing if not positive)."""
    if seconds > 0:
        select.select([], [], [], seconds)


def until(
    check: Callable[[], T],
    deadline: float | None,
    interval: float,
    *,
    done: Callable[[T], bool] = bool,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = pause,
) -> T:
    """Call ``check`` every ``interval`` seconds until ``done(result)`` or the deadline.

    ``deadline`` is a time on ``clock`` (None: no limit); ``check`` runs at
    least once. Returns the last result, done or not.
    """
    while True:
        result = check()
        if done(result):
            return result
        if deadline is None:
            sleep(interval)
            continue
        left = deadline - clock()
        if left <= 0:
            return result
        sleep(min(interval, left))
