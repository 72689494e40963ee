"""Issue 2 targets: status/wait start-up, ssh-add -> ready, RSS, 10,000 keys."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backuppc_agent.agent import protocol
from backuppc_agent.agent.probe import probe
from bench.common import STARTUP_TARGET_MS, Result, interleaved_medians, startup_context
from tests.helpers import (
    CLI,
    askpass_helper,
    make_key,
    make_setup,
    running,
    ssh_add,
)

KEY_COUNT = 10_000
#: Agent messages only this bench sends (PROTOCOL.agent): loading keys fast, in-process.
SSH_AGENT_SUCCESS = 6
SSH_AGENTC_ADD_IDENTITY = 17


def _status_and_wait(config: Path) -> list[Result]:
    medians = interleaved_medians(
        {
            "bare": [sys.executable, "-c", "pass"],
            "status": [CLI, "--config", str(config), "status", "--json"],
            "wait": [CLI, "--config", str(config), "wait", "--timeout", "5"],
        }
    )
    results = []
    for name, label in (("status", "status --json"), ("wait", "wait")):
        seconds = medians[name]
        peer = f"keychain 29 ms; {startup_context(seconds, medians['bare'])}"
        results.append(
            Result(
                f"{label} (ready), median of 31",
                seconds * 1000,
                "ms",
                f"<= {STARTUP_TARGET_MS:g} ms",
                peer,
                seconds * 1000 <= STARTUP_TARGET_MS,
            )
        )
    return results


def _ready_latency(
    setup_dir: Path, socket_path: Path, key: Path, askpass: Path, state_file: Path, runs: int = 15
) -> list[float]:
    delays = []
    for _ in range(runs):
        ssh_add(socket_path, "-D")
        _wait_state(state_file, "waiting", 5)
        assert ssh_add(socket_path, str(key), askpass=askpass).returncode == 0
        returned = time.monotonic()
        _wait_state(state_file, "ready", 5)
        delays.append(time.monotonic() - returned)
    return delays


def _wait_state(state_file: Path, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads(state_file.read_bytes())["state"] == name:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.001)
    raise RuntimeError(f"state {name} not published within {timeout} s")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _add_identity_frame(key: Ed25519PrivateKey, comment: str) -> bytes:
    raw_priv = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    raw_pub = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    payload = b"".join(
        (
            protocol.encode_string(b"ssh-ed25519"),
            protocol.encode_string(raw_pub),
            protocol.encode_string(raw_priv + raw_pub),
            protocol.encode_string(comment.encode()),
        )
    )
    return protocol.frame(SSH_AGENTC_ADD_IDENTITY, payload)


def _load_many_keys(socket_path: Path, count: int) -> float:
    """Generate ``count`` ed25519 keys in-process and add them; return generation seconds."""
    started = time.monotonic()
    frames = [_add_identity_frame(Ed25519PrivateKey.generate(), f"bench-{i}") for i in range(count)]
    generated = time.monotonic() - started
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(socket_path))
        for frame in frames:
            conn.sendall(frame)
            reply = conn.recv(5)
            if reply[-1:] != bytes((SSH_AGENT_SUCCESS,)):
                raise RuntimeError(f"agent refused a key: {reply!r}")
    return generated


def _many_keys(setup, sup_pid: int) -> list[Result]:  # type: ignore[no-untyped-def]
    ssh_add(setup.socket, "-D")
    generated = _load_many_keys(setup.socket, KEY_COUNT)
    _wait_state(setup.state_dir / "state.json", "ready", 30)
    probes = [probe(setup.socket, 10.0) for _ in range(7)]
    seconds = statistics.median(p.seconds for p in probes)
    count = len(probes[0].identities)
    status = subprocess.run(
        [CLI, "--config", str(setup.config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    reported = json.loads(status.stdout)
    ssh_add_l = subprocess.run(
        ["ssh-add", "-l"],
        env={"SSH_AUTH_SOCK": str(setup.socket)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ok = count == KEY_COUNT and reported["identities"] == KEY_COUNT and reported["ready"]
    return [
        Result(
            f"generate {KEY_COUNT} ed25519 keys in-process",
            generated,
            "s",
            "no stall",
            "1.9 s (FACTS.md)",
            generated < 10,
        ),
        Result(
            f"probe with {KEY_COUNT} keys (median of 7)",
            seconds * 1000,
            "ms",
            "<= 1000 ms, count right",
            f"ssh-add -l: exit {ssh_add_l.returncode} ({ssh_add_l.stderr.strip()[:40]})",
            ok and seconds <= 1.0,
        ),
        Result(
            f"status --json with {KEY_COUNT} keys reports",
            reported["identities"],
            "keys",
            f"== {KEY_COUNT}, ready",
            "",
            ok,
        ),
        Result(
            f"supervisor RSS with {KEY_COUNT} keys",
            _rss_kib(sup_pid) / 1024,
            "MiB",
            "<= 40 MB",
            "",
            _rss_kib(sup_pid) / 1024 <= 40,
        ),
    ]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o700)
        keydir = root / "keys"
        keydir.mkdir(mode=0o700)
        key = make_key(keydir)
        askpass = askpass_helper(keydir)
        setup = make_setup(root / "inst")
        with running(setup) as sup:
            rss_idle = _rss_kib(sup.pid) / 1024
            delays = _ready_latency(
                root, setup.socket, key, askpass, setup.state_dir / "state.json"
            )
            results = _status_and_wait(setup.config)
            results.append(
                Result(
                    "ssh-add returned -> published ready, median of 15",
                    statistics.median(delays) * 1000,
                    "ms",
                    "<= 1000 ms",
                    "",
                    max(delays) <= 1.0,
                )
            )
            results.append(
                Result(
                    "ssh-add returned -> published ready, worst of 15",
                    max(delays) * 1000,
                    "ms",
                    "<= 1000 ms",
                    "",
                    max(delays) <= 1.0,
                )
            )
            results.append(
                Result("supervisor RSS, idle", rss_idle, "MiB", "<= 40 MB", "", rss_idle <= 40)
            )
            results += _many_keys(setup, sup.pid)
        return results
