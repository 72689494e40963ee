"""Hook and master benchmarks against a real sshd on loopback (needs root).

- pre-dump hook with the agent ready and the master alive (the hot path);
- an ssh session through the generated ssh_config and a live master, beside
  raw ``ssh -S SOCKET`` on the same master and a fresh connection;
- the transfer wrapper (``master ssh``) beside plain ssh through the master;
- ``master list`` with 200 live masters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    STARTUP_TARGET_MS,
    Result,
    at_most,
    command_median,
    interleaved_medians,
    median_seconds,
    startup_context,
)
from tests.helpers import CLI, agent_holding, askpass_helper, make_key, write_config
from tests.sshd import Sshd, running_sshd

ADDRESS = "127.0.0.40"
MASTERS = 200
KEYCHAIN_MS = 29.0  # keychain --eval --quiet --noask, measured on this machine (FACTS.md)


@contextmanager
def _bed() -> Iterator[tuple[Path, Path, Sshd]]:
    root = Path(tempfile.mkdtemp(prefix="bpa-bench-"))
    root.chmod(0o700)
    key = make_key(root)
    try:
        with (
            agent_holding(key, askpass_helper(root)) as sock,
            running_sshd(ADDRESS, key, max_startups="1000:30:2000") as server,
        ):
            (root / "known_hosts").write_text(server.known_hosts_line())
            config = write_config(
                root / "config.toml",
                agent={"socket": sock},
                state={"dir": root / "state"},
                metrics={"listen": ""},
                mux={"control_dir": root / "mux", "known_hosts": root / "known_hosts"},
            )
            yield root, config, server
    finally:
        for pid in _master_pids(root):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _master_pids(root: Path) -> list[int]:
    from backuppc_agent.ssh.master import list_masters  # noqa: PLC0415

    return [m.pid for m in list_masters(root / "mux", 0.5) if m.pid]


def _hook(config: Path, host: str) -> Result:
    argv = [CLI, "--config", str(config), "hook", "pre-dump", "--client", "c0", "--host", host]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)  # opens the master
    # In turns with bare Python and `status` (probe only), which put the figure in context.
    medians = interleaved_medians(
        {
            "hook": argv,
            "bare": [sys.executable, "-c", "pass"],
            "status": [CLI, "--config", str(config), "status"],
        }
    )
    seconds, bare, status = medians["hook"], medians["bare"], medians["status"]
    peer = (
        f"keychain {KEYCHAIN_MS:g} ms; {startup_context(seconds, bare)}; "
        f"status {status * 1000:.1f} ms"
    )
    return Result(
        "pre-dump hook, ready + master alive",
        seconds * 1000,
        "ms",
        f"<= {STARTUP_TARGET_MS:g} ms",
        peer,
        at_most(seconds * 1000, STARTUP_TARGET_MS),
    )


def _sessions(root: Path, config: Path, host: str) -> list[Result]:
    conf = root / "ssh_config"
    subprocess.run(
        [CLI, "--config", str(config), "ssh-config", "--write", str(conf)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    sock = root / "mux" / "c0"
    medians = interleaved_medians(
        {
            "config": ["ssh", "-F", str(conf), "-o", f"ControlPath={sock}", host, "true"],
            "raw": ["ssh", "-S", str(sock), host, "true"],
            "wrapper": [CLI, "--config", str(config), "master", "ssh", "c0", host, "true"],
        }
    )
    via_config, raw, wrapper = medians["config"], medians["raw"], medians["wrapper"]
    fresh = command_median(
        ["ssh", "-F", str(conf), "-o", "ControlMaster=no", "-o", "ControlPath=none", host, "true"],
        runs=11,
    )
    return [
        Result(
            "ssh session via generated config + master",
            via_config * 1000,
            "ms",
            f"<= 1.2x raw -S ({raw * 1000:.1f} ms)",
            f"raw -S {raw * 1000:.1f} ms",
            at_most(via_config, 1.2 * raw),
        ),
        Result(
            "fresh connection / session via master",
            fresh / via_config,
            "x",
            ">= 20x",
            f"fresh {fresh * 1000:.0f} ms",
            fresh / via_config >= 20,
        ),
        Result(
            "transfer wrapper (master ssh) session",
            wrapper * 1000,
            "ms",
            "small beside a transfer",
            f"plain ssh via master {via_config * 1000:.1f} ms",
        ),
    ]


def _open_many(config: Path, host: str) -> None:
    def one(index: int) -> None:
        subprocess.run(
            [CLI, "--config", str(config), "master", "open", f"c{index}", "--host", host],
            check=True,
            capture_output=True,
            timeout=120,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(1, MASTERS)))


def _list(root: Path, config: Path, host: str) -> Result:
    _open_many(config, host)
    alive = len(_master_pids(root))
    argv = [CLI, "--config", str(config), "master", "list"]
    seconds = median_seconds(lambda: subprocess.run(argv, check=True, capture_output=True), runs=11)
    return Result(
        f"master list, {alive} live masters",
        seconds,
        "s",
        "<= 0.2 s",
        "ssh -O check: 5 ms per master",
        at_most(seconds, 0.2) and alive == MASTERS,
    )


def run() -> list[Result]:
    """All hook and master figures (skipped when not root: sshd needs it)."""
    if os.geteuid() != 0:
        return [Result("hooks and masters (needs root for sshd)", 0, "", "", "", None)]
    with _bed() as (root, config, server):
        host = f"bpaclient@{server.address}"
        results = [_hook(config, host)]
        results += _sessions(root, config, host)
        results.append(_list(root, config, host))
    return results
