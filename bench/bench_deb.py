"""The installed Debian package: its pre-dump hook on Debian's python3, and `make deb`.

- pre-dump hook run as /usr/bin/backuppc-agent (Debian's python3 and its
  python3-keyring/python3-prometheus-client, no venv) with the agent ready and
  the master alive, in turns with a bare `/usr/bin/python3 -c pass`;
- `make deb` wall time (builds dist/backuppc-agent_*_all.deb and runs lintian).

Skipped with a line when the package is not installed or the build tools are
missing (tests/system-deps.sh installs them; `make deb` then apt install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from bench.bench_hooks import _bed
from bench.common import Result, interleaved_medians, startup_context
from tests.helpers import ROOT

PACKAGED = "/usr/bin/backuppc-agent"
DEBIAN_PYTHON = "/usr/bin/python3"


def _installed() -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "backuppc-agent"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "install ok installed" in done.stdout


def _hook() -> Result:
    name = "pre-dump hook, installed package (Debian python3)"
    if os.geteuid() != 0:
        return Result(f"{name}: needs root for sshd", 0, "", "", "skipped", None)
    if not _installed():
        hint = "skipped: make deb && apt install ./dist/backuppc-agent_*_all.deb"
        return Result(f"{name}: package not installed", 0, "", "", hint, None)
    with _bed() as (_, config, server):
        argv = [PACKAGED, "--config", str(config), "hook", "pre-dump", "--client", "c0",
                "--host", f"bpaclient@{server.address}"]  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=60)  # opens the master
        medians = interleaved_medians({"hook": argv, "bare": [DEBIAN_PYTHON, "-c", "pass"]})
    seconds, bare = medians["hook"], medians["bare"]
    return Result(name, seconds * 1000, "ms", "", startup_context(seconds, bare))


def _build() -> Result:
    name = "make deb (build + lintian)"
    if not all(shutil.which(tool) for tool in ("dpkg-buildpackage", "dh_python3", "lintian")):
        return Result(f"{name}: build tools missing", 0, "", "", "skipped", None)
    started = time.perf_counter()
    subprocess.run(["make", "deb"], cwd=ROOT, check=True, capture_output=True, timeout=900)
    return Result(name, time.perf_counter() - started, "s", "", "one run")


def run() -> list[Result]:
    """The packaged hook's median and the package build time."""
    return [_hook(), _build()]
