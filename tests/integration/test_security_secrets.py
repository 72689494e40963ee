"""No secret anywhere: a planted passphrase and a private key, through the whole path.

Unattended unlock reads a known passphrase from a real file keyring and loads a
real key; a pre-dump hook opens a real master to a loopback sshd (127.0.0.121);
a transfer session runs through it; the metrics endpoint is scraped. Then every
output is searched for the passphrase and for the private key's PEM body: the
supervisor log, hook and session output, every file in the state dir (SQLite,
its WAL, master logs), the env file, the exposition, status,
and the argv and environment of every process started (supervisor, agent,
master; ssh-add and the askpass helper through recording wrappers on PATH).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from backuppc_agent.ssh import mux
from tests.helpers import (
    cli,
    make_key,
    make_setup,
    plant_passphrase,
    private_dir,
    proc_texts,
    running,
)
from tests.scrape import scrape
from tests.sshd import CLIENT_USER, needs_root, running_sshd

pytestmark = needs_root

ADDRESS = "127.0.0.121"
SECRET = f"planted passphrase {secrets.token_hex(8)}"
#: in the supervisor's own environment only: children get an explicit, minimal one
CANARY = f"canary-{secrets.token_hex(8)}"


def _descendants(root: int) -> list[int]:
    """Every live process whose ancestry reaches ``root`` (root included)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[1])
    found = []
    for pid in parents:
        walk = pid
        while walk > 1 and walk != root:
            walk = parents.get(walk, 1)
        if walk == root:
            found.append(pid)
    return found


def _recorders(directory: Path) -> tuple[Path, Path]:
    """ssh-add and askpass wrappers first on PATH: each records its argv and environment."""
    bin_dir = private_dir(directory / "bin")
    add_record, ask_record = directory / "ssh-add.record", directory / "askpass.record"
    ask = bin_dir / "askpass-recorder"
    ask.write_text(
        f'#!/bin/sh\n{{ tr "\\0" " " < /proc/$$/cmdline; echo; env; }} >> "{ask_record}"\n'
        'exec "$BPA_REAL_ASKPASS" "$@"\n'
    )
    add = bin_dir / "ssh-add"
    add.write_text(
        f'#!/bin/sh\n{{ tr "\\0" " " < /proc/$$/cmdline; echo; env; }} >> "{add_record}"\n'
        f'export BPA_REAL_ASKPASS="$SSH_ASKPASS" SSH_ASKPASS="{ask}"\n'
        'exec /usr/bin/ssh-add "$@"\n'
    )
    ask.chmod(0o700)
    add.chmod(0o700)
    return add_record, ask_record


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short private directory: control paths must fit in 90 characters."""
    root = Path(tempfile.mkdtemp(prefix="bpa-sec-"))
    root.chmod(0o700)
    try:
        yield root
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _pem_lines(key: Path) -> list[bytes]:
    body = [line for line in key.read_bytes().splitlines() if not line.startswith(b"-----")]
    assert len(body) >= 3
    return [*body, b"".join(body)]


def test_no_passphrase_or_key_material_in_any_output(
    keyring_env: Path,
    tmp_path: Path,
    short_dir: Path,
    free_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = make_key(private_dir(tmp_path / "keys"), "id_secret", passphrase=SECRET)
    plant_passphrase(key, SECRET)
    add_record, ask_record = _recorders(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("BPA_CANARY", CANARY)
    known_hosts = short_dir / "known_hosts"
    setup = make_setup(
        tmp_path / "inst",
        agent={"unlock": "keyring", "keys": [key]},
        metrics={"listen": f"127.0.0.1:{free_port}"},
        hooks={"wait_seconds": 10, "on_ready": "none"},
        mux={
            "control_dir": short_dir / "mux",
            "known_hosts": known_hosts,
            "identity_files": [f"{key}.pub"],
        },
    )
    host = f"{CLIENT_USER}@{ADDRESS}"
    outputs: dict[str, bytes] = {}
    with running_sshd(ADDRESS, key) as sshd:
        known_hosts.write_text(sshd.known_hosts_line())
        with running(setup, wait_state="ready") as sup:
            hook = cli("hook", "pre-dump", "--client", "web01", "--host", host, config=setup.config)
            assert hook.returncode == 0, hook.stdout + hook.stderr
            session = cli("master", "ssh", "web01", host, "echo", "hi", config=setup.config)
            assert session.stdout == "hi\n", session.stderr
            outputs["metrics"] = scrape(f"http://127.0.0.1:{free_port}/metrics").text.encode()
            outputs["status"] = cli("status", "--json", config=setup.config).stdout.encode()
            outputs["hook"] = (hook.stdout + hook.stderr).encode()
            outputs["session"] = (session.stdout + session.stderr).encode()
            master = mux.check(short_dir / "mux" / "web01", 1.0)
            assert master.alive
            assert master.pid is not None
            state = setup.state() or {}
            pids = {sup.pid, state["agent_pid"], master.pid, *_descendants(sup.pid)}
            for pid in pids:
                outputs[f"/proc/{pid}"] = proc_texts(pid)
            supervisor = f"/proc/{sup.pid}"
            outputs["log"] = sup.logtext().encode()
        try:
            os.kill(master.pid, 9)
        except ProcessLookupError:
            pass
    for path in [*setup.state_dir.rglob("*"), setup.env_file, add_record, ask_record]:
        if path.is_file():
            outputs[str(path)] = path.read_bytes()
    # the path worked: the key was loaded through askpass, the master rode the agent
    assert b"SSH_ASKPASS_REQUIRE=force" in outputs[str(add_record)]
    assert str(key).encode() in outputs[str(add_record)]
    assert outputs[str(ask_record)]
    assert "unattended unlock: loaded" in outputs["log"].decode()
    assert any(name.endswith("events.sqlite3") for name in outputs)
    assert len([name for name in outputs if name.startswith("/proc/")]) >= 3
    leaks = [name for name, text in outputs.items() if SECRET.encode() in text]
    assert leaks == []
    inherited = [name for name, text in outputs.items() if CANARY.encode() in text]
    assert inherited == [supervisor]  # seen where it was planted, and in no child
    pem = _pem_lines(key)
    leaks = [name for name, text in outputs.items() if any(line in text for line in pem)]
    assert leaks == []
