"""What least privilege costs (issue 17), against real sshds on loopback (needs root).

Two sshds accept the same backup key: 127.0.0.92 plainly (a client nobody set
up), 127.0.0.93 only through the shipped gate (``restrict,command=...``, as
client-setup writes it), which lets the restore key in too, in restore mode.
Each pair is measured in turns in one run:

- a session (``true``) through a live master, with and without the gate;
- the pre-dump hook with its master alive, without and with a restore key set up;
- the pre-dump hook that opens its master (and now probes the client through it);
- pre-restore: as before (no restore key: it reuses the backup master like a
  pre-dump), failing fast while the restore key is not loaded, and opening the
  restore's own master once it is.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Result, interleaved_medians
from tests.helpers import CLI, agent_holding, askpass_helper, make_key, ssh_add, write_config
from tests.sshd import Sshd, public_key_line, running_sshd

PLAIN, GATED = "127.0.0.92", "127.0.0.93"
GATE = Path(__file__).parent.parent / "backuppc_agent/install/files/client/backuppc-agent-gate"
RUNS = 21


def _gate(server: Sshd, backup: Path, restore: Path) -> None:
    """Authorize ``backup`` through the gate in backup mode and ``restore`` in restore mode."""
    gate = server.root / "backuppc-agent-gate"
    shutil.copyfile(GATE, gate)
    gate.chmod(0o755)
    lines = [
        f'restrict,command="{gate} {mode} {server.authorized_keys}" {public_key_line(key)}\n'
        for mode, key in (("backup", backup), ("restore", restore))
    ]
    server.authorized_keys.write_text("".join(lines))


@contextmanager
def _bed() -> Iterator[tuple[Path, Path, Path, Path]]:
    """(askpass helper, agent socket, config without restore key, config with one)."""
    root = Path(tempfile.mkdtemp(prefix="bpa-bench-"))
    root.chmod(0o700)
    askpass = askpass_helper(root)
    backup, restore = make_key(root, "id_backup"), make_key(root, "id_restore")
    try:
        with (
            agent_holding(backup, askpass) as sock,
            running_sshd(PLAIN, backup) as plain,
            running_sshd(GATED) as gated,
        ):
            _gate(gated, backup, restore)
            known = root / "known_hosts"
            known.write_text(plain.known_hosts_line() + gated.known_hosts_line())
            configs = [
                write_config(
                    root / f"{name}.toml",
                    agent={"socket": sock, "restore_key": key, "keys": [backup]},
                    state={"dir": root / name / "state"},
                    metrics={"listen": ""},
                    mux={"control_dir": root / name / "mux", "known_hosts": known},
                )
                for name, key in (("before", root / "none"), ("after", restore))
            ]
            yield askpass, sock, configs[0], configs[1]
    finally:
        _kill_masters(root)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _kill_masters(root: Path) -> None:
    from backuppc_agent.ssh.master import list_masters  # noqa: PLC0415

    for directory in root.glob("*/mux"):
        for sub in (directory, directory / "restore"):
            for master in list_masters(sub, 0.5):
                if master.pid:
                    os.kill(master.pid, signal.SIGKILL)


def _hook(config: Path, hook: str, client: str, address: str, *extra: str) -> list[str]:
    host = f"bpaclient@{address}"
    return [CLI, "--config", str(config), "hook", hook, "--client", client, "--host", host, *extra]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _sessions(before: Path) -> Result:
    """`true` through a live master to the plain and to the gated client."""
    _run(_hook(before, "pre-dump", "plain", PLAIN))
    _run(_hook(before, "pre-dump", "gated", GATED))
    mux = before.parent / "before" / "mux"
    medians = interleaved_medians(
        {
            "plain": ["ssh", "-S", str(mux / "plain"), f"bpaclient@{PLAIN}", "true"],
            "gated": ["ssh", "-S", str(mux / "gated"), f"bpaclient@{GATED}", "true"],
        },
        RUNS,
    )
    plain, gated = medians["plain"], medians["gated"]
    return Result(
        "session through a master, gate in front",
        gated * 1000,
        "ms",
        "small beside a transfer",
        f"without the gate {plain * 1000:.1f} ms (+{(gated - plain) * 1000:.1f} ms)",
    )


def _pre_dumps(before: Path, after: Path) -> list[Result]:
    """pre-dump with the master alive, then pre-dump opening (and probing) a new master."""
    _run(_hook(after, "pre-dump", "gated", GATED))
    alive = interleaved_medians(
        {
            "before": _hook(before, "pre-dump", "gated", GATED),
            "after": _hook(after, "pre-dump", "gated", GATED),
        },
        RUNS,
    )
    opening = _opening_medians(before, after)
    return [
        Result(
            "pre-dump, master alive, restore key set up",
            alive["after"] * 1000,
            "ms",
            "as before",
            f"without a restore key {alive['before'] * 1000:.1f} ms",
        ),
        Result(
            "pre-dump opening its master (+ client probe)",
            opening["pre-dump"] * 1000,
            "ms",
            "one login + one session",
            f"master open alone {opening['open'] * 1000:.1f} ms",
        ),
    ]


def _medians_after_undo(commands: dict[str, tuple[list[str], list[str]]]) -> dict[str, float]:
    """Median seconds of each (command, undo) pair: undo untimed before every timed run.

    For what a second run would find done (a master already open): in turns, 11 runs each.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(11):
        for name, (argv, undo) in commands.items():
            subprocess.run(undo, capture_output=True, check=False, timeout=60)
            started = time.perf_counter()
            _run(argv)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _opening_medians(before: Path, after: Path) -> dict[str, float]:
    """The hook that opens a master (and probes) beside ``master open`` (which does not)."""
    close = [CLI, "--config", str(after), "master", "close", "gated"]
    close_before = [CLI, "--config", str(before), "master", "close", "opened"]
    hook = _hook(after, "pre-dump", "gated", GATED)
    open_only = [CLI, "--config", str(before), "master", "open", "opened", "--host"]
    open_only.append(f"bpaclient@{GATED}")
    return _medians_after_undo({"pre-dump": (hook, close), "open": (open_only, close_before)})


def _pre_restores(sock: Path, before: Path, after: Path, askpass: Path) -> list[Result]:
    """pre-restore before (backup master reused), refused fast, and opening the restore master."""
    _run(_hook(before, "pre-dump", "gated", GATED))
    refused = interleaved_medians(
        {
            "before": _hook(before, "pre-restore", "gated", GATED),
            "refused": _hook(after, "pre-restore", "gated", GATED),
        },
        RUNS,
    )
    restore = askpass.parent / "id_restore"
    assert ssh_add(sock, str(restore), askpass=askpass).returncode == 0
    post = _hook(after, "post-restore", "gated", GATED, "--xfer-ok", "1")
    pre = _hook(after, "pre-restore", "gated", GATED)
    armed = _medians_after_undo({"armed": (pre, post)})["armed"]
    return [
        Result(
            "pre-restore, restore key not loaded (fails fast)",
            refused["refused"] * 1000,
            "ms",
            "fast",
            f"pre-restore before (backup master reused) {refused['before'] * 1000:.1f} ms",
        ),
        Result(
            "pre-restore opening the restore master",
            armed * 1000,
            "ms",
            "one login",
            f"pre-restore before {refused['before'] * 1000:.1f} ms",
        ),
    ]


def run() -> list[Result]:
    """The figures of the issue-17 closing note (skipped when not root: sshd needs it)."""
    if os.geteuid() != 0:
        return [Result("least privilege (needs root for sshd)", 0, "", "", "", None)]
    with _bed() as (askpass, sock, before, after):
        results = [_sessions(before)]
        results += _pre_dumps(before, after)
        results += _pre_restores(sock, before, after, askpass)
    return results
