"""The packaged pre-dump hook on each Debian release's own python3, under its real systemd.

For Debian 13 and Debian 12: the systemd tier's cached tree is booted (a copy, private
network), the package is built inside with that release's tools and installed with
apt, `install` wires it and the units run; the backuppc key is loaded and a master to
a loopback client sshd opened. Then, inside and as the backuppc user, the pre-dump
hook (agent ready, master alive) in turns with a bare `python3 -c pass`.

Skipped with a line when not root or without systemd-nspawn and debootstrap.
"""

from __future__ import annotations

import json
import os
import shutil

from bench.common import Result, startup_context
from tests.helpers import wait_for
from tests.systemd.container import Container, cached_tree, fresh_root
from tests.systemd.test_units import (
    AS_AGENT_USER,
    CLIENT,
    CLIENT_ADDRESS,
    CLIENT_USER,
    CONFIG,
    HOME,
    KEY,
    PASSPHRASE,
    SOCKET,
    Box,
    _add_key,
    _build_and_install,
    _client_sshd,
)

RELEASES = ("trixie", "bookworm")
RUNS = 31
#: Run inside as root: each command as backuppc, in turns, two warm-up turns; medians.
TIMER = """
import json, statistics, subprocess, sys, time
commands = json.loads(sys.argv[1])
times = {name: [] for name in commands}
for turn in range(int(sys.argv[2]) + 2):
    for name, argv in commands.items():
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if turn >= 2:
            times[name].append(time.perf_counter() - started)
print(json.dumps({name: statistics.median(values) for name, values in times.items()}))
"""


def _as_backuppc(*argv: str) -> list[str]:
    env = [f"{key}={value}" for key, value in AS_AGENT_USER.items()]
    return ["setpriv", "--reuid=backuppc", "--regid=backuppc", "--init-groups", "--",
            "env", "-i", f"HOME={HOME}", "PATH=/usr/bin:/bin", *env, *argv]  # fmt: skip


def _ready(c: Container) -> Box:
    """Package built and installed, units running, key loaded, the client trusted."""
    box = Box(c, _build_and_install(c))
    c.check("ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", KEY, user="backuppc")
    _client_sshd(c, c.release)
    c.check("backuppc-agent", "install", "--client-user", CLIENT_USER)
    c.check("systemctl", "daemon-reload")
    c.check("systemctl", "enable", "--now", "backuppc-agent")
    wait_for(lambda: c.path(SOCKET).is_socket(), timeout=30)
    _add_key(box)
    c.check("backuppc-agent", "trust", CLIENT, "--host", CLIENT_ADDRESS, "--yes")
    return box


def _measure(release: str) -> Result:
    name = f"pre-dump hook, installed package, Debian {release} python3"
    c = Container.copy_of(release, cached_tree(release), fresh_root(release))
    try:
        c.boot()
        c.copy_source()
        _ready(c)
        target = f"{CLIENT_USER}@{CLIENT_ADDRESS}"
        hook = _as_backuppc("/usr/bin/backuppc-agent", "--config", CONFIG, "hook", "pre-dump",
                            "--client", CLIENT, "--host", target)  # fmt: skip
        opened = c.run(*hook, timeout=60)  # the first run opens the master
        assert opened.returncode == 0, opened.stdout + opened.stderr
        commands = {"hook": hook, "bare": _as_backuppc("/usr/bin/python3", "-c", "pass")}
        out = c.check("python3", "-c", TIMER, json.dumps(commands), str(RUNS), timeout=600)
        medians = json.loads(out)
    finally:
        try:
            c.poweroff()
        finally:
            c.kill()
            shutil.rmtree(c.root, ignore_errors=True)
            c.console_log.unlink(missing_ok=True)
    seconds, bare = medians["hook"], medians["bare"]
    return Result(name, seconds * 1000, "ms", "<= 120 ms", startup_context(seconds, bare),
                  seconds <= 0.120)  # fmt: skip


def run() -> list[Result]:
    """One figure per release; skipped where this machine cannot boot the trees."""
    if os.geteuid() != 0 or not (shutil.which("systemd-nspawn") and shutil.which("debootstrap")):
        return [Result("pre-dump hook per Debian release: needs root, systemd-nspawn and "
                       "debootstrap", 0, "", "", "skipped", None)]  # fmt: skip
    return [_measure(release) for release in RELEASES]
