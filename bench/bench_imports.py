"""What the short-lived commands import, from ``python -X importtime``.

A hook runs once per backup and most of its start-up is Python and imports.
This reports the cumulative import time of a pre-dump hook run and its
costliest top-level imports, and checks that the heavy libraries stay out of
the hook, ``status`` and ``wait``: the commands that need them import them
lazily (``run`` for prometheus_client, unlock and ``passphrase`` for keyring).
No root, no sshd: the hook finds a real agent holding a key (the ready path)
and its ``[mux] ssh`` is ``/bin/false``, so opening the master fails at once.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.common import Result
from tests.helpers import agent_holding, askpass_helper, make_key, write_config

RUNS = 7
TOP = 5
HEAVY = ("paramiko", "prometheus_client", "keyring")
#: the console script's own entry point, with the command line after it
ENTRY = "import sys; from backuppc_agent.cli.main import main; sys.exit(main(sys.argv[1:]))"


def parse_importtime(stderr: str) -> dict[str, tuple[int, int]]:
    """{module: (depth, cumulative microseconds)} from ``-X importtime`` lines."""
    found: dict[str, tuple[int, int]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.split("|", 2)
        depth = len(name) - len(name.lstrip(" "))
        found[name.strip()] = (depth, int(cumulative))
    return found


def _imports(config: Path, *args: str) -> dict[str, tuple[int, int]]:
    argv = [sys.executable, "-X", "importtime", "-c", ENTRY, "--config", str(config), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return parse_importtime(done.stderr)


def _top_level(modules: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Cumulative microseconds of the modules imported at the outermost level."""
    outermost = min(depth for depth, _ in modules.values())
    return {name: us for name, (depth, us) in modules.items() if depth == outermost}


def _hook_figure(config: Path, hook: tuple[str, ...]) -> Result:
    runs = [_top_level(_imports(config, *hook)) for _ in range(RUNS)]
    total_ms = statistics.median(sum(run.values()) for run in runs) / 1000
    names = set().union(*runs)
    medians = {name: statistics.median(run.get(name, 0) for run in runs) for name in names}
    top = sorted(medians.items(), key=lambda item: item[1], reverse=True)[:TOP]
    listed = ", ".join(f"{name} {us / 1000:.1f} ms" for name, us in top)
    return Result("pre-dump hook: imports (-X importtime, cumulative)", total_ms, "ms",
                  "", f"top: {listed}")  # fmt: skip


def _heavy_figure(config: Path, label: str, *args: str) -> Result:
    heavy = sorted(set(HEAVY) & set(_imports(config, *args)))
    return Result(f"{label}: heavy imports", len(heavy), "", f"none of {', '.join(HEAVY)}",
                  ", ".join(heavy) or "none", not heavy)  # fmt: skip


def _bare_ms() -> float:
    """Median cumulative import time of ``python -c pass`` (the interpreter's own start-up)."""
    argv = [sys.executable, "-X", "importtime", "-c", "pass"]
    totals = []
    for _ in range(RUNS):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        totals.append(sum(_top_level(parse_importtime(done.stderr)).values()))
    return statistics.median(totals) / 1000


def run() -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="bpa-bench-imp-"))
    try:
        with agent_holding(make_key(root), askpass_helper(root)) as sock:
            config = write_config(
                root / "config.toml",
                agent={"socket": sock},
                state={"dir": root / "state"},
                metrics={"listen": ""},
                hooks={"wait_seconds": 5, "on_ready": "none"},
                mux={"control_dir": root / "mux", "ssh": "/bin/false"},
            )
            hook = ("hook", "pre-dump", "--client", "c0", "--host", "root@127.0.0.1")
            figure = _hook_figure(config, hook)
            return [
                replace(figure, peer=f"python -c pass {_bare_ms():.1f} ms; {figure.peer}"),
                _heavy_figure(config, "pre-dump hook", *hook),
                _heavy_figure(config, "status", "status", "--json"),
                _heavy_figure(config, "wait", "wait", "--timeout", "0"),
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
