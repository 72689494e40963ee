"""Issue 4 targets: scrape of the whole endpoint with 5,000 processes, with 30 days of hook
records, and the exporter's memory across 1,000 scrapes.

Everything is real: ~5,000 ``sleep`` processes, the ``backuppc-agent run``
supervisor with its exporter, and HTTP scrapes over loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backuppc_agent.events import EventStore, HookRecord
from bench.common import Result, median_seconds
from tests.helpers import make_setup, running

PROCESSES = 5_000
RECORDS_PER_DAY = 1_000
DAYS = 30
SCRAPES_FOR_MEMORY = 1_000
PEER = "process-exporter 1.69 s, node_exporter 14 ms (FACTS.md, 5,080 procs)"


def _process_count() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


@contextmanager
def _sleepers(total: int) -> Iterator[int]:
    """Keep ``total`` processes on the machine with idle ``sleep`` children; yield the count."""
    children: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(max(0, total - _process_count())):
            children.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL))
        yield _process_count()
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return bytes(reply.read())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fill_store(state_dir: Path) -> int:
    """1,000 hook runs a day for 30 days, as the hooks would record them."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = EventStore(state_dir)
    now = time.time()
    step = 86_400 / RECORDS_PER_DAY
    results = ("ok",) * 17 + ("not-ready", "ssh-failed", "failed")
    try:
        for index in range(RECORDS_PER_DAY * DAYS):
            when = now - DAYS * 86_400 + index * step
            hook = "pre-dump" if index % 2 == 0 else "post-dump"
            client = f"client{index % 200:03d}"
            waited = (index % 97) / 10
            store.record(HookRecord(when, hook, client, results[index % 20], waited))
    finally:
        store.close()
    return RECORDS_PER_DAY * DAYS


def _python_loop_seconds() -> float:
    """The plain Python loop over /proc/*/status that FACTS.md quotes (0.10 s), measured here."""

    def loop() -> None:
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/status", encoding="utf-8") as handle:
                        for line in handle:
                            if line.startswith("VmSwap"):
                                break
                except OSError:
                    pass

    return median_seconds(loop, runs=11)


def _scrape_results(url: str, procs: int, with_records: bool) -> Result:
    median = median_seconds(lambda: _scrape(url), runs=21, warmup=3)
    if with_records:
        name = f"scrape, {procs} processes + {RECORDS_PER_DAY * DAYS} hook records, median of 21"
        return Result(name, median * 1000, "ms", "<= 250 ms", PEER, median <= 0.250)
    name = f"scrape of the whole endpoint, {procs} processes, median of 21"
    return Result(name, median * 1000, "ms", "<= 170 ms", PEER, median <= 0.170)


def _memory_results(url: str, pid: int) -> list[Result]:
    """RSS of the supervisor across 1,000 scrapes: in total, and over the second half."""
    for _ in range(50):
        _scrape(url)
    before = _rss_kib(pid)
    started = time.monotonic()
    for _ in range(SCRAPES_FOR_MEMORY // 2):
        _scrape(url)
    middle = _rss_kib(pid)
    for _ in range(SCRAPES_FOR_MEMORY // 2):
        _scrape(url)
    after = _rss_kib(pid)
    elapsed = time.monotonic() - started
    total = f"exporter RSS growth over {SCRAPES_FOR_MEMORY} scrapes ({before} KiB after 50; "
    return [
        Result(total + f"{elapsed:.0f} s)", after - before, "KiB", "", "", None),
        Result(f"exporter RSS growth over the last {SCRAPES_FOR_MEMORY // 2} of them",
               after - middle, "KiB", "flat: <= 256 KiB", "", after - middle <= 256),
    ]  # fmt: skip


def run() -> list[Result]:
    """Measure the issue 4 targets with a real supervisor and ~5,000 real processes."""
    load = float(Path("/proc/loadavg").read_text().split()[0])
    results = [Result("load average (1 min) when the bench started", load, "", "2 cores")]
    with tempfile.TemporaryDirectory(prefix="bpa-bench-exp-") as tmp, _sleepers(PROCESSES) as n:
        Path(tmp).chmod(0o700)
        results.append(
            Result(
                f"plain Python loop over /proc/*/status, {n} processes",
                _python_loop_seconds() * 1000,
                "ms",
                "",
                "0.10 s (FACTS.md)",
            )
        )
        port = _free_port()
        setup = make_setup(Path(tmp) / "inst")
        setup.config.write_text(
            setup.config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{port}"')
        )
        url = f"http://127.0.0.1:{port}/metrics"
        with running(setup):
            results.append(_scrape_results(url, n, with_records=False))
            _fill_store(setup.state_dir)
            results.append(_scrape_results(url, n, with_records=True))
        with running(setup) as sup:
            results.extend(_memory_results(url, sup.pid))
        results.append(Result("processes on the machine during the scrapes", n, "", ">= 5000"))
    return results
