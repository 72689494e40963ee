"""Pauses inside deadline loops, without time.sleep.

Python 3.11's time.sleep sleeps until an absolute CLOCK_MONOTONIC deadline
(clock_nanosleep with TIMER_ABSTIME). libfaketime, which the clock-jump tests
preload to move the wall clock under a running hook, rewrites that deadline
and time.sleep fails with EINVAL. select() takes a relative timeout, which
every clock tool leaves alone, and a jump of the wall clock cannot stretch or
cut it either. Every loop that pauses also checks a monotonic deadline.
"""

from __future__ import annotations


def pause(seconds: float) -> None:
    """Wait ``seconds`` (nothing if not positive): select() on no descriptors."""
    if seconds <= 0:
        return
    import select  # noqa: PLC0415  (only loops that really wait pay for the import)

    select.select([], [], [], seconds)
