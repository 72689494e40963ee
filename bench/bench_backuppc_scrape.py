"""Issue 11 target: a full scrape with 5,000 processes and 500 BackupPC hosts <= 150 ms.

A generated /proc (5,000 processes: status, stat, cmdline, io, limits,
smaps_rollup, fd/) and a generated BackupPC tree (500 hosts, 8 backups each,
status.pl; no server, so its socket is not asked) feed the exporter, served
over HTTP from a process of its own. Debian's process-exporter scrapes the SAME generated
/proc in the same run, with its defaults (smaps on) and with smaps off.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import Result, median_seconds
from tests.bpc_tree import make_tree
from tests.helpers import ROOT, make_setup, wait_for

PROCESSES = 5_000
HOSTS = 500
BACKUPS_PER_HOST = 8
CAPTURED = ROOT / "tests" / "fixtures" / "procfs" / "captured"
PROCESS_EXPORTER = shutil.which("prometheus-process-exporter")
PE_CONFIG = "process_names:\n  - name: '{{.Comm}}'\n    cmdline: ['.+']\n"
#: the exporter on a config file (argv[1]) and a procfs root (argv[2]), until killed
SERVE = """
import sys, threading
from pathlib import Path
from backuppc_agent import config
from backuppc_agent.metrics.exporter import Exporter
Exporter(config.load(sys.argv[1]), procfs=Path(sys.argv[2]))
threading.Event().wait()
"""


def fake_proc(root: Path, processes: int) -> Path:
    """A /proc with ``processes`` sleeping processes, every 10th with memory in swap."""
    root.mkdir()
    for name in ("meminfo", "vmstat", "swaps", "mounts"):
        shutil.copy(CAPTURED / name, root / name)
    shutil.copytree(CAPTURED / "pressure", root / "pressure")
    shutil.copy("/proc/stat", root / "stat")
    status = (CAPTURED / "6291" / "status").read_text()
    limits = Path("/proc/self/limits").read_text()
    rollup = Path("/proc/self/smaps_rollup").read_text()
    for pid in range(1, processes + 1):
        directory = root / str(pid)
        (directory / "fd").mkdir(parents=True)
        swap = f"VmSwap:\t{pid * 4 if pid % 10 == 0 else 0} kB"
        text = status.replace("Pid:\t6291", f"Pid:\t{pid}").replace("VmSwap:\t       0 kB", swap)
        (directory / "status").write_text(text)
        (directory / "stat").write_text(
            f"{pid} (sleep) S 1 {pid} {pid} 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 140595 "
            "3133440 390 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 "
            "0 0 0 0 0 0 0\n"
        )
        (directory / "cmdline").write_bytes(b"sleep\x003600\x00")
        (directory / "io").write_text("rchar: 1\nwchar: 1\nsyscr: 1\nsyscw: 1\nread_bytes: 0\n"
                                      "write_bytes: 0\ncancelled_write_bytes: 0\n")  # fmt: skip
        (directory / "limits").write_text(limits)
        (directory / "smaps_rollup").write_text(rollup)
    return root


def backuppc_tree(root: Path, hosts: int) -> dict[str, str]:
    """``hosts`` hosts with BACKUPS_PER_HOST backups each; the [backuppc] keys pointing there."""
    now = int(time.time())
    day = 86_400
    backups = [("full" if n % 7 == 0 else "incr", now - (n + 1) * day, now - (n + 1) * day + 600)
               for n in reversed(range(BACKUPS_PER_HOST))]  # fmt: skip
    names = {f"host{index:04d}": backups for index in range(hosts)}
    reasons = dict.fromkeys(names, ("Reason_backup_done", ""))
    tree = make_tree(root, names, reasons)
    return {key: str(getattr(tree, key)) for key in ("top_dir", "conf_dir", "log_dir", "run_dir")}


def _scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return bytes(reply.read())


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ours(tmp: Path, proc: Path, bpc: dict[str, str]) -> list[Result]:
    port = _free_port()
    setup = make_setup(tmp / "inst", metrics={"listen": f"127.0.0.1:{port}"},
                       swap={"top_processes": 10}, backuppc=bpc)  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    setup.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the supervisor would
    argv = [sys.executable, "-c", SERVE, str(setup.config), str(proc)]
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(url), timeout=30)
        body = _scrape(url)
        hosts = body.count(b"backuppc_agent_backuppc_last_backup_number{")
        median = median_seconds(lambda: _scrape(url), runs=21, warmup=3)
    finally:
        child.terminate()
        child.wait(timeout=10)
    name = (f"full scrape, {PROCESSES} generated processes + {hosts} BackupPC hosts "
            f"({len(body) // 1024} KiB), median of 21")  # fmt: skip
    return [Result(name, median * 1000, "ms", "<= 150 ms", "", median <= 0.150)]


def _process_exporter(tmp: Path, proc: Path, smaps: bool) -> Result | None:
    """process-exporter on the same generated /proc; None where Debian has no package."""
    if PROCESS_EXPORTER is None:
        return None
    config = tmp / "pe.yml"
    config.write_text(PE_CONFIG)
    port = _free_port()
    argv = [PROCESS_EXPORTER, "-procfs", str(proc), "-config.path", str(config),
            "-web.listen-address", f"127.0.0.1:{port}",
            f"-gather-smaps={str(smaps).lower()}"]  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    with (tmp / f"pe-{smaps}.log").open("wb") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_for(lambda: _answers(url), timeout=30)
        counted = _scrape(url).count(b'namedprocess_namegroup_num_procs{groupname="sleep"} 5000')
        median = median_seconds(lambda: _scrape(url), runs=5 if smaps else 11, warmup=1)
    finally:
        child.terminate()
        child.wait(timeout=10)
    what = "smaps on (its default)" if smaps else "smaps off"
    seen = "all 5000 seen" if counted else "NOT all processes seen"
    return Result(f"process-exporter on the same generated /proc, {what}, {seen}",
                  median * 1000, "ms", "", "peer, same run")  # fmt: skip


def _answers(url: str) -> bool:
    try:
        _scrape(url)
    except OSError:
        return False
    return True


def run() -> list[Result]:
    """Generate /proc and the BackupPC tree once, then measure ours and process-exporter's."""
    with tempfile.TemporaryDirectory(prefix="bpa-bench-bpc-") as name:
        tmp = Path(name)
        tmp.chmod(0o700)
        proc = fake_proc(tmp / "proc", PROCESSES)
        bpc = backuppc_tree(tmp / "bpc", HOSTS)
        results = _ours(tmp, proc, bpc)
        for smaps in (True, False):
            peer = _process_exporter(tmp, proc, smaps)
            if peer is not None:
                results.append(peer)
    return results
